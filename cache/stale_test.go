package cache

import (
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
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

// An answered failure of a fetch ends an outage of its secret: with a
// TTL of zero a known secret is revalidated with a fetch of its item, and
// once a fetch is answered, even with a failure, the next lookup asks the
// store rather than give the stale answer at once, and the recovery is
// told.
func TestAnAnsweredFetchFailureEndsAnOutage(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	clk, rec := newClock(), &recorder{}
	c := New(f, Options{TTL: 0, StaleIfError: time.Hour, Now: clk.Now, Observer: rec})
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
	eventually(t, "the recovery is told", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.recovered) == 1
	})
	if e, err := c.Lookup(bg, key("a")); err != nil || e.Stale || e.Version != 1 {
		t.Errorf("after the answered failure: version %d, stale %v, %v; want version 1, fresh", e.Version, e.Stale, err)
	}
}

// A listing the store answers with a failure of the whole (a request it
// rejects) says nothing about any one name: the last listing stands
// within the stale window, to List as to Lookup, and a secret that
// appears meanwhile is told once a listing succeeds, as after any other
// listing.
func TestAListingFailedAsAWholeKeepsTheLastListingAndTellsWhatAppearsAfter(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	told := make(chan store.Key, 4)
	c.OnChange(func(k store.Key) { told <- k })
	if _, _, err := c.List(bg, "app", "", 0); err != nil {
		t.Fatal(err)
	}
	clk.advance(ttl)
	f.failNext("List", fault.E(fault.Invalid, "the request was rejected"))
	if page, _, err := c.List(bg, "app", "", 0); err != nil || len(page) != 1 {
		t.Fatalf("List after an answered failure: %d names, %v; want the last listing's 1", len(page), err)
	}
	if e, err := c.Lookup(bg, key("a")); err != nil || e.Version != 1 {
		t.Fatalf("Lookup after an answered failure: %+v, %v; want version 1", e, err)
	}
	f.set(key("b"), "beta", 1)
	clk.advance(retryDue) // the retry in the background lists again
	select {
	case k := <-told:
		if k != key("b") {
			t.Errorf("told of %s, want %s", k, key("b"))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the secret that appeared after the answered failure was not told")
	}
}
