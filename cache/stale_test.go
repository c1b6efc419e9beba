package cache

import (
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
)

// The chaos soak's one EIO on a secret read before, step by step (TTL and
// backend deadline both 1s, as the soak mounts with): a listing names a
// newer revision; a lookup tries to decrypt it while the keys are frozen,
// which costs their deadline, by when the listing is past its TTL; the
// revalidation then gets no answer from the store, which is frozen again,
// after its own deadline. The decryption failed more than RetryAfter ago
// by then, and the lookup must still answer with the last value read,
// not with the revision it just failed to decrypt (whose read would wait
// for the keys again and fail).
func TestALookupWhoseRevalidationOutlastsRetryAfterStillServesTheLastValueRead(t *testing.T) {
	const deadline = time.Second // each backend call's, as --timeout 1s
	f := newFake()
	f.set(key("a"), "read", 1)
	c, clk, _ := newCatalog(t, f, Options{TTL: time.Second, StaleIfError: time.Hour})
	read(t, c, key("a"))
	f.set(key("a"), "listed", 2)
	clk.advance(time.Second)
	if _, _, err := c.List(bg, "app", "", 0); err != nil { // another caller's listing learns revision 2
		t.Fatal(err)
	}

	f.failNext("Open", fault.E(fault.Unavailable, "KMS frozen"))
	releaseOpen := f.hold("Open")
	defer releaseOpen()
	type result struct {
		e   secrets.Entry
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := c.Lookup(bg, key("a"))
		done <- result{e, err}
	}()
	waitEntered(t, f, "Open") // the lookup tries revision 2
	f.failNext("List", fault.E(fault.Unavailable, "store frozen"))
	releaseList := f.hold("List")
	defer releaseList()
	clk.advance(deadline) // the keys' deadline: the listing is past its TTL now
	releaseOpen()
	waitEntered(t, f, "List") // the lookup revalidates
	clk.advance(deadline)     // the store's deadline
	releaseList()
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the lookup did not return")
	}
	if r.err != nil || !r.e.Stale || r.e.Version != 1 {
		t.Fatalf("store and keys frozen, the decryption failed %v ago: version %d, stale %v, %v; want version 1, stale",
			deadline, r.e.Version, r.e.Stale, r.err)
	}
	if m, ok := c.Known(key("a")); !ok || m.Version != 1 {
		t.Errorf("Known: version %d, %v; want what the lookup answered, version 1", m.Version, ok)
	}
	opens := f.count("Open")
	if got := readRevision(t, c, key("a"), r.e.Meta); got != "read" {
		t.Errorf("the served revision reads %q", got)
	}
	if n := f.count("Open"); n != opens {
		t.Errorf("reading the served revision asked the keys %d times", n-opens)
	}
}

// What an open checks its revision against (Known) agrees with the lookup
// that answered the last value read, for as long as nothing has decrypted
// the newer revision: the kernel keeps that answer for RetryAfter after
// the lookup, which may be more than RetryAfter after the decryption
// failed, and an open of it must not be sent to look the name up again
// (the kernel retries only once). A lookup later than RetryAfter tries the
// keys again, and the newer revision is served once they answer.
func TestKnownAgreesWithTheLastValueServedUntilTheNewerRevisionIsDecrypted(t *testing.T) {
	f := newFake()
	f.set(key("a"), "read", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	read(t, c, key("a"))
	f.set(key("a"), "new", 2)
	clk.advance(ttl)
	f.failNext("Open", fault.E(fault.Unavailable, "KMS frozen"))
	if e := lookup(t, c, key("a")); !e.Stale || e.Version != 1 {
		t.Fatalf("the keys down: version %d, stale %v; want version 1, stale", e.Version, e.Stale)
	}
	clk.advance(retryDue) // the kernel still holds the answer
	if m, ok := c.Known(key("a")); !ok || m.Version != 1 {
		t.Errorf("Known %v after the failed decryption: version %d, %v; want version 1, as the lookup answered", retryDue, m.Version, ok)
	}
	opens := f.count("Open")
	f.failNext("Open", fault.E(fault.Unavailable, "KMS still frozen"))
	if e := lookup(t, c, key("a")); !e.Stale || e.Version != 1 {
		t.Fatalf("the keys still down: version %d, stale %v; want version 1, stale", e.Version, e.Stale)
	}
	if n := f.count("Open"); n != opens+1 {
		t.Errorf("a lookup past RetryAfter asked the keys %d times, want once", n-opens)
	}
	clk.advance(retryDue)
	if got := read(t, c, key("a")); got != "new" {
		t.Errorf("once the keys answer: %q", got)
	}
	if m, ok := c.Known(key("a")); !ok || m.Version != 2 {
		t.Errorf("Known once decrypted: version %d, %v; want version 2", m.Version, ok)
	}
}

// A listing the store answers with a failure (a tampered page, a request
// it rejects: fault.Answered) is that answer, to every caller, until a
// listing succeeds: the names listed before are not served as stale, as
// they would be while the store cannot answer (nor during an outage that
// follows), and the store is not asked again in the background as for an
// outage.
func TestAListingTheStoreAnswersWithAFailureIsNotServedStaleNorRetried(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	if _, _, err := c.List(bg, "app", "", 0); err != nil {
		t.Fatal(err)
	}
	clk.advance(ttl)
	for i := range 2 {
		f.failNext("List", fault.E(fault.Integrity, "malformed item in the listing"))
		if page, _, err := c.List(bg, "app", "", 0); !fault.Is(fault.Integrity, err) {
			t.Fatalf("listing %d answered Integrity: %d names, %v; want Integrity, not the names listed before", i+1, len(page), err)
		}
	}
	lists := f.count("List")
	if lists != 3 {
		t.Errorf("%d listings, want 3: each List after the answered failure asks the store", lists)
	}
	clk.advance(10 * retryDue)
	if n := f.count("List"); n != lists {
		t.Errorf("%d listings in the background after an answered failure, want none", n-lists)
	}
	// Nor while the store then cannot answer: its last answer about the
	// listing was the failure.
	f.failNext("List", fault.E(fault.Unavailable, "frozen"))
	if page, _, err := c.List(bg, "app", "", 0); !fault.Is(fault.Unavailable, err) {
		t.Errorf("an outage after the answered failure: %d names, %v; want Unavailable", len(page), err)
	}
	clk.advance(retryDue)
	if page, _, err := c.List(bg, "app", "", 0); err != nil || len(page) != 1 {
		t.Errorf("the store answering again: %d names, %v; want 1", len(page), err)
	}
}

// An answered failure of a listing ends an outage: the last answer of the
// store is that failure, not silence, so a lookup that follows is not
// given the stale answer at once; it asks, and is fresh once the store
// lists again. The retries in the background stop.
func TestAnAnsweredListingFailureEndsAnOutage(t *testing.T) {
	f, c, clk, _ := inAnOutage(t)
	lists := f.count("List")
	f.failNext("List", fault.E(fault.Integrity, "malformed item in the listing"))
	clk.advance(retryDue) // the retry gets the answered failure
	if n := f.count("List"); n != lists+1 {
		t.Fatalf("RetryAfter after the outage: %d listings, want one more", n-lists)
	}
	if e, err := c.Lookup(bg, key("a")); err != nil || e.Stale || e.Version != 1 {
		t.Errorf("after the answered failure: version %d, stale %v, %v; want version 1, fresh", e.Version, e.Stale, err)
	}
	lists = f.count("List")
	if lists != 3 {
		t.Errorf("%d listings, want 3: the lookup after the answered failure asks the store", lists)
	}
	clk.advance(10 * retryDue)
	if n := f.count("List"); n != lists {
		t.Errorf("retries went on after the store answered: %d more listings", n-lists)
	}
}

// An answered failure of a fetch ends an outage as a listing's does (see
// TestAnAnsweredListingFailureEndsAnOutage): with a TTL of zero a known
// secret is revalidated with a fetch of its item, and once a fetch is
// answered, even with a failure, the next lookup asks the store rather
// than give the stale answer at once.
func TestAnAnsweredFetchFailureEndsAnOutage(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	clk := newClock()
	c := New(f, Options{TTL: 0, StaleIfError: time.Hour, Now: clk.Now})
	c.after = clk.afterFunc
	defer c.Close()
	read(t, c, key("a"))
	f.failNext("Fetch", fault.E(fault.Unavailable, "frozen"))
	if e, err := c.Lookup(bg, key("a")); err != nil || !e.Stale {
		t.Fatalf("with the store down: %+v, %v; want a stale answer", e, err)
	}
	// The lookup during the outage answers stale at once; the fetch it
	// starts is answered with a failure.
	f.failNext("Fetch", fault.E(fault.Integrity, "malformed item"))
	fetches := f.count("Fetch")
	if e, err := c.Lookup(bg, key("a")); err != nil || !e.Stale {
		t.Fatalf("again within the outage: %+v, %v; want a stale answer", e, err)
	}
	eventually(t, "the fetch is answered", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return f.count("Fetch") == fetches+1 && c.apps["app"].keys["a"].fetch == nil
	})
	if e, err := c.Lookup(bg, key("a")); err != nil || e.Stale || e.Version != 1 {
		t.Errorf("after the answered failure: version %d, stale %v, %v; want version 1, fresh", e.Version, e.Stale, err)
	}
}
