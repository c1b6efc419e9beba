package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/breaker"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// clock is a settable time for the catalog's TTL, stale window and idle
// bound, and the timer of its background retries.
type clock struct {
	mu     sync.Mutex
	t      time.Time
	timers []timer
}

type timer struct {
	at time.Time
	f  func()
}

// afterFunc runs f once the clock has advanced by d.
func (c *clock) afterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, timer{at: c.t.Add(d), f: f})
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// advance moves the clock on, and runs the timers then due, each to its
// end, before it returns.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []func()
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.t) {
			kept = append(kept, t)
		} else {
			due = append(due, t.f)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// recorder is an Observer that remembers what it was told.
type recorder struct {
	mu         sync.Mutex
	hits, miss int
	stale      []bool // first, per stale answer
	recovered  []store.Key
	rollbacks  [][2]store.Version
	crowded    []int // the size, per plaintext the count bound wiped
}

func (r *recorder) Crowded(size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crowded = append(r.crowded, size)
}

func (r *recorder) Looked(hit bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if hit {
		r.hits++
	} else {
		r.miss++
	}
}
func (r *recorder) Revalidated(string, int) {}
func (r *recorder) Stale(k store.Key, cause error, first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stale = append(r.stale, first)
}
func (r *recorder) RolledBack(k store.Key, from, to store.Version) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rollbacks = append(r.rollbacks, [2]store.Version{from, to})
}

func (r *recorder) Recovered(k store.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recovered = append(r.recovered, k)
}

func (r *recorder) staleAnswers() (total, first int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.stale {
		total++
		if f {
			first++
		}
	}
	return total, first
}

const ttl = 30 * time.Second

// retryDue is when a background retry scheduled RetryAfter from now is
// due, its jitter included.
const retryDue = DefaultRetryAfter + DefaultRetryAfter/10

// newCatalog returns a catalog over f with a TTL of 30s, a stale window
// of an hour and a settable clock.
func newCatalog(t *testing.T, f *fakeOrigin, opts Options) (*Catalog, *clock, *recorder) {
	t.Helper()
	clk, rec := newClock(), &recorder{}
	if opts.TTL == 0 {
		opts.TTL = ttl
	}
	opts.Now, opts.Observer = clk.Now, rec
	f.stores = &breaker.Breaker{Name: "the store", Now: clk.Now}
	f.keys = &breaker.Breaker{Name: "the keys", Now: clk.Now}
	c := New(f, opts)
	c.after = clk.afterFunc
	t.Cleanup(c.Close)
	return c, clk, rec
}

var bg = context.Background()

// read looks k up and reads its current value, as an open and a read do.
func read(t *testing.T, c *Catalog, k store.Key) string {
	t.Helper()
	e, err := c.Lookup(bg, k)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", k, err)
	}
	s := c.Snapshot(k, e.Meta)
	defer s.Release()
	v, err := s.Value(bg)
	if err != nil {
		t.Fatalf("Value(%s): %v", k, err)
	}
	defer v.Wipe()
	return string(v)
}

// inAnOutage returns a catalog over a store holding app/a, which was
// read, and whose revalidation a TTL later got no answer: the lookup
// that asked was given the stale answer (checked).
func inAnOutage(t *testing.T) (*fakeOrigin, *Catalog, *clock, *recorder) {
	t.Helper()
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, rec := newCatalog(t, f, Options{StaleIfError: time.Hour})
	read(t, c, key("a"))
	clk.advance(ttl)
	f.failNext("List", fault.E(fault.Unavailable, "frozen"))
	if e, err := c.Lookup(bg, key("a")); err != nil || !e.Stale {
		t.Fatalf("with the store down: %+v, %v; want a stale answer", e, err)
	}
	return f, c, clk, rec
}

func TestColdReadCostsOneFetchAndOneOpenAndHotReadsNothing(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, _, rec := newCatalog(t, f, Options{})
	if got := read(t, c, key("a")); got != "alpha" {
		t.Fatalf("read %q", got)
	}
	if got := f.counts(); got["Fetch"] != 1 || got["Open"] != 1 || got["List"] != 0 {
		t.Errorf("a cold read cost %v, want 1 Fetch and 1 Open", got)
	}
	before := f.counts()
	for range 5 {
		read(t, c, key("a"))
	}
	sameCounts(t, f, before, "hot reads")
	if rec.hits != 5 || rec.miss != 1 {
		t.Errorf("observer saw %d hits and %d misses, want 5 and 1", rec.hits, rec.miss)
	}
}

func TestConcurrentColdReadersShareOneFetchAndOneOpen(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, _, _ := newCatalog(t, f, Options{})
	release := f.hold("Fetch")
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			e, err := c.Lookup(bg, key("a"))
			if err != nil {
				errs <- err
				return
			}
			s := c.Snapshot(key("a"), e.Meta)
			defer s.Release()
			buf := make([]byte, 16)
			if n, err := s.ReadAt(bg, buf, 0); err != nil || string(buf[:n]) != "alpha" {
				errs <- errors.New("read " + string(buf[:n]))
			}
		})
	}
	waitEntered(t, f, "Fetch")
	time.Sleep(20 * time.Millisecond) // let the others join
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := f.counts(); got["Fetch"] != 1 || got["Open"] != 1 {
		t.Errorf("32 cold readers cost %v, want 1 Fetch and 1 Open", got)
	}
}

// After the TTL, one listing revalidates every secret of the application
// it knows, and an unchanged secret is not decrypted again.
func TestRevalidationListsTheApplicationOnceAndDecryptsNothingUnchanged(t *testing.T) {
	f := newFake()
	for _, n := range []string{"a", "b", "c"} {
		f.set(key(n), "value-"+n, 1)
	}
	c, clk, _ := newCatalog(t, f, Options{})
	for _, n := range []string{"a", "b", "c"} {
		read(t, c, key(n))
	}
	for range 3 {
		clk.advance(ttl + time.Second)
		before := f.counts()
		for range 4 {
			for _, n := range []string{"a", "b", "c"} {
				if got := read(t, c, key(n)); got != "value-"+n {
					t.Fatalf("read %q", got)
				}
			}
		}
		after := f.counts()
		if after["List"]-before["List"] != 1 || after["Fetch"] != before["Fetch"] || after["Open"] != before["Open"] {
			t.Errorf("a TTL of reads of 3 unchanged secrets cost %v, then %v: want one more List only", before, after)
		}
	}
}

func TestAChangeElsewhereIsSeenAfterTheTTLAndTold(t *testing.T) {
	f := newFake()
	f.set(key("a"), "old", 1)
	c, clk, _ := newCatalog(t, f, Options{})
	told := make(chan store.Key, 4)
	c.OnChange(func(k store.Key) { told <- k })
	read(t, c, key("a"))
	f.set(key("a"), "new", 2)
	if got := read(t, c, key("a")); got != "old" {
		t.Errorf("within the TTL: %q, want the old value", got)
	}
	clk.advance(ttl)
	if got := read(t, c, key("a")); got != "new" {
		t.Errorf("after the TTL: %q, want the new value", got)
	}
	select {
	case k := <-told:
		if k != key("a") {
			t.Errorf("told of %s", k)
		}
	case <-time.After(5 * time.Second):
		t.Error("the change was not told")
	}
	f.remove(key("a"))
	clk.advance(ttl)
	if _, err := c.Lookup(bg, key("a")); !fault.Is(fault.NotFound, err) {
		t.Errorf("after a removal elsewhere: %v, want NotFound", err)
	}
}

// An open file reads the revision it opened, even once its plaintext was
// wiped and the secret replaced: the snapshot keeps its protected item.
func TestASnapshotKeepsItsRevisionAfterWipeAndReplacement(t *testing.T) {
	f := newFake()
	f.set(key("a"), "first", 1)
	c, clk, _ := newCatalog(t, f, Options{Idle: 50 * time.Millisecond})
	e, err := c.Lookup(bg, key("a"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot(key("a"), e.Meta)
	defer s.Release()
	wipes := make(chan struct{}, 4)
	s.OnWipe(func() { wipes <- struct{}{} })
	if v, _ := s.Value(bg); string(v) != "first" {
		t.Fatalf("read %q", v)
	}
	f.set(key("a"), "second", 2)
	clk.advance(ttl + time.Minute)
	if got := read(t, c, key("a")); got != "second" {
		t.Fatalf("the name reads %q, want the new revision", got)
	}
	select {
	case <-wipes:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle plaintext was not wiped")
	}
	fetches := f.count("Fetch")
	if v, err := s.Value(bg); err != nil || string(v) != "first" {
		t.Errorf("after the wipe the open snapshot reads %q, %v: want its own revision", v, err)
	}
	if f.count("Fetch") != fetches {
		t.Error("decrypting the wiped snapshot again read the store")
	}
}

func TestStaleIfErrorServesTheLastAnswerAtOnceAndSaysSoOncePerOutage(t *testing.T) {
	f, c, clk, rec := inAnOutage(t)
	lists := f.count("List")
	for range 5 {
		if e, err := c.Lookup(bg, key("a")); err != nil || !e.Stale {
			t.Fatalf("again: %+v, %v", e, err)
		}
	}
	if f.count("List") != lists {
		t.Error("the store was asked again within RetryAfter of its failure")
	}
	eventually(t, "the stale answers are observed", func() bool { n, _ := rec.staleAnswers(); return n == 6 })
	if _, first := rec.staleAnswers(); first != 1 {
		t.Errorf("%d stale answers said first, want 1 per outage", first)
	}
	// The store answers again: RetryAfter after the failure the catalog
	// asks it in the background, so the next lookup is fresh (see
	// TestAListingThatGetsNoAnswerIsRetriedInTheBackground).
	clk.advance(retryDue)
	if e, err := c.Lookup(bg, key("a")); err != nil || e.Stale {
		t.Fatalf("after recovery: %+v, %v", e, err)
	}
	// Past the stale window, an outage is an error.
	clk.advance(ttl + time.Hour + time.Second)
	f.failNext("List", fault.E(fault.Unavailable, "frozen"))
	if _, err := c.Lookup(bg, key("a")); !fault.Is(fault.Unavailable, err) {
		t.Errorf("past the stale window: %v, want Unavailable", err)
	}
}

// A secret never read has no answer to fall back on: a lookup fails
// while the store cannot answer, and the store is not asked again within
// RetryAfter (the breaker in front of it remembers), then it works.
func TestNeverReadSecretFailsWhenTheStoreCannotAnswerAndTheFailureIsRemembered(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	f.failNext("Fetch", fault.E(fault.Unavailable, "frozen"))
	if _, err := c.Lookup(bg, key("a")); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("cold lookup with the store down: %v", err)
	}
	if _, err := c.Lookup(bg, key("a")); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("second lookup: %v", err)
	}
	if n := f.count("Fetch"); n != 1 {
		t.Errorf("two lookups within RetryAfter asked the store %d times, want 1", n)
	}
	clk.advance(retryDue)
	if got := read(t, c, key("a")); got != "alpha" {
		t.Errorf("after recovery: %q", got)
	}
}

func TestAccessDeniedRefusesAtOnceAndWipes(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	e, _ := c.Lookup(bg, key("a"))
	s := c.Snapshot(key("a"), e.Meta)
	defer s.Release()
	wiped := make(chan struct{}, 1)
	s.OnWipe(func() { wiped <- struct{}{} })
	s.Value(bg)
	clk.advance(ttl)
	f.failNext("List", fault.E(fault.Permission, "AccessDenied"))
	if _, err := c.Lookup(bg, key("a")); !fault.Is(fault.Permission, err) {
		t.Errorf("AccessDenied: %v, want Permission, not a stale answer", err)
	}
	select {
	case <-wiped:
	case <-time.After(5 * time.Second):
		t.Error("the refused secret's plaintext was not wiped")
	}
}

func TestIdlePlaintextIsWipedAndTheSizeBoundWipesTheLeastRecentlyRead(t *testing.T) {
	f := newFake()
	for _, n := range []string{"a", "b", "c"} {
		f.set(key(n), "value-"+n, 1)
	}
	c, clk, _ := newCatalog(t, f, Options{Size: 2, Idle: 50 * time.Millisecond})
	read(t, c, key("a"))
	clk.advance(time.Millisecond)
	read(t, c, key("b"))
	clk.advance(time.Millisecond)
	read(t, c, key("c"))
	if n := c.Held(); n != 2 {
		t.Errorf("holding %d plaintexts, want at most Size=2", n)
	}
	opens := f.count("Open")
	read(t, c, key("c"))
	if f.count("Open") != opens {
		t.Error("the most recently read value was wiped")
	}
	read(t, c, key("a"))
	if f.count("Open") != opens+1 {
		t.Error("the least recently read value was not the one wiped")
	}
	clk.advance(time.Second)
	eventually(t, "idle plaintext is wiped", func() bool { return c.Held() == 0 })
	for _, p := range f.handedOut() {
		if !wiped(p) {
			t.Error("a plaintext the catalog dropped was not zeroed")
		}
	}
}

func TestAWriteIsReadBackWithoutUnwrapAndAFailedWriteAsksTheStoreNextTime(t *testing.T) {
	f := newFake()
	c, _, _ := newCatalog(t, f, Options{})
	value := []byte("written")
	meta, err := c.Put(bg, key("a"), value, store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	if string(value) != "written" {
		t.Error("Put changed the caller's slice")
	}
	before := f.counts()
	if got := read(t, c, key("a")); got != "written" {
		t.Fatalf("read %q", got)
	}
	sameCounts(t, f, before, "reading back a write")

	f.set(key("a"), "elsewhere", meta.Version.Next())
	if _, err := c.Put(bg, key("a"), []byte("late"), meta.Revision()); !fault.Is(fault.Conflict, err) {
		t.Fatalf("stale write: %v, want Conflict", err)
	}
	if got := read(t, c, key("a")); got != "elsewhere" {
		t.Errorf("after a failed write the catalog answers %q, want what the store holds", got)
	}
}

func TestAListedRevisionReplacedBeforeItsFirstReadIsSuperseded(t *testing.T) {
	f := newFake()
	f.set(key("a"), "listed", 1)
	c, _, _ := newCatalog(t, f, Options{})
	page, _, err := c.List(bg, "app", "", 0)
	if err != nil || len(page) != 1 {
		t.Fatalf("List: %v, %v", page, err)
	}
	s := c.Snapshot(key("a"), page[0])
	defer s.Release()
	f.set(key("a"), "replaced", 2)
	err = s.Bind(bg)
	sup := secrets.AsSuperseded(err)
	if sup == nil || sup.Now.Version != 2 {
		t.Fatalf("Bind: %v, want Superseded by version 2", err)
	}
	// A lookup of the name within the listing's TTL reads the item, and
	// so learns of the new revision.
	e, err := c.Lookup(bg, key("a"))
	if err != nil || e.Version != 2 {
		t.Errorf("Lookup: %+v, %v", e, err)
	}
}

func TestListingRemovesNamesItDoesNotList(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	f.set(key("b"), "beta", 1)
	c, _, _ := newCatalog(t, f, Options{})
	read(t, c, key("a"))
	read(t, c, key("b"))
	f.remove(key("b"))
	if _, _, err := c.List(bg, "app", "", 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Known(key("b")); ok {
		t.Error("a name the listing lacks is still known")
	}
	if _, ok := c.Known(key("a")); !ok {
		t.Error("a listed name was forgotten")
	}
}

func TestReleasingTheLastPinWipes(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, _, _ := newCatalog(t, f, Options{})
	read(t, c, key("a"))
	f.set(key("a"), "beta", 2)
	if _, err := c.Verify(bg, key("a")); err != nil { // revision 2 replaces revision 1
		t.Fatal(err)
	}
	// Revision 1 was being read: it is kept until revision 2 can be
	// read (see TestANewRevisionTheKeysCannotDecryptServesTheLastValue),
	// and let go once it is.
	if got := read(t, c, key("a")); got != "beta" {
		t.Fatalf("read %q", got)
	}
	if c.Held() != 1 {
		t.Errorf("holding %d plaintexts, want only revision 2's", c.Held())
	}
	if p := f.handedOut(); len(p) != 2 || !wiped(p[0]) {
		t.Error("the plaintext of revision 1, which nothing pins, was not zeroed")
	}
}

func TestWriteOnlyKeepsNoPlaintextOfWrites(t *testing.T) {
	f := newFake()
	c, _, _ := newCatalog(t, f, Options{WriteOnly: true})
	if _, err := c.Put(bg, key("a"), []byte("secret"), store.NoItem); err != nil {
		t.Fatal(err)
	}
	if c.Held() != 0 {
		t.Error("a write-only catalog holds what was written")
	}
}

func TestCloseWipesEverything(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c := New(f, Options{TTL: ttl})
	read(t, c, key("a"))
	c.Close()
	if c.Held() != 0 {
		t.Error("plaintext held after Close")
	}
	for _, p := range f.handedOut() {
		if !wiped(p) {
			t.Error("not zeroed")
		}
	}
}

func TestHasSecretsAnswersFromAFreshListing(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{})
	for range 3 {
		if ok, err := c.HasSecrets(bg, "app"); !ok || err != nil {
			t.Fatalf("HasSecrets: %v, %v", ok, err)
		}
	}
	if n := f.count("List"); n != 1 {
		t.Errorf("three HasSecrets within a TTL listed %d times, want 1", n)
	}
	read(t, c, key("a"))
	if n := f.count("Fetch"); n != 1 {
		t.Errorf("a lookup after the listing fetched %d times, want 1 (to bind)", n)
	}
	clk.advance(ttl)
	f.remove(key("a"))
	if ok, err := c.HasSecrets(bg, "app"); ok || err != nil {
		t.Errorf("after the TTL: %v, %v; want false", ok, err)
	}
}

// A caller that gives up (a signal to the reader) does not cancel the
// backend call it shares; it still gets the answer.
func TestACancelledCallerDoesNotCancelTheSharedCall(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, _, _ := newCatalog(t, f, Options{})
	release := f.hold("Fetch")
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctx, key("a"))
		done <- err
	}()
	waitEntered(t, f, "Fetch")
	cancel()
	time.Sleep(20 * time.Millisecond)
	release()
	if err := <-done; err != nil {
		t.Errorf("a cancelled lookup failed: %v", err)
	}
	if _, ok := c.Known(key("a")); !ok {
		t.Error("the shared fetch was abandoned")
	}
}

// With a TTL of zero every lookup asks the store, once, and is answered
// by what it said.
func TestZeroTTLAsksTheStoreOncePerLookup(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c := New(f, Options{TTL: 0})
	defer c.Close()
	for i := range 4 {
		if got := read(t, c, key("a")); got != "alpha" {
			t.Fatalf("read %q", got)
		}
		if asked := f.count("Fetch") + f.count("List"); asked != i+1 {
			t.Fatalf("after %d lookups the store was asked %d times", i+1, asked)
		}
	}
	if n := f.count("Open"); n != 1 {
		t.Errorf("an unchanged secret was decrypted %d times, want once", n)
	}
	f.remove(key("a"))
	if _, err := c.Lookup(bg, key("a")); !fault.Is(fault.NotFound, err) {
		t.Errorf("after a removal: %v", err)
	}
}

// With a TTL of zero, a lookup of a known secret asks for its item, and
// a walk through its application's directory for one entry, not for the
// whole application: looking up every name of a listed application costs
// one fetch each and no listing, not a listing each.
func TestZeroTTLRevalidatesAKnownSecretWithItsItemNotAListing(t *testing.T) {
	f := newFake()
	const n = 50
	for i := range n {
		f.set(key(fmt.Sprintf("s%02d", i)), "v", 1)
	}
	c := New(f, Options{TTL: 0})
	defer c.Close()
	if _, _, err := c.List(bg, "app", "", 0); err != nil {
		t.Fatal(err)
	}
	before := f.counts()
	for i := range n {
		if _, err := c.Lookup(bg, key(fmt.Sprintf("s%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count("List") - before["List"]; got != 0 {
		t.Errorf("%d lookups listed the application %d times, want 0", n, got)
	}
	if got := f.count("Fetch") - before["Fetch"]; got != n {
		t.Errorf("%d lookups fetched %d items, want one each", n, got)
	}
	before = f.counts()
	for range n {
		if ok, err := c.HasSecrets(bg, "app"); !ok || err != nil {
			t.Fatalf("HasSecrets: %v, %v", ok, err)
		}
	}
	if got := f.count("List") - before["List"]; got != 0 {
		t.Errorf("%d walks through the application's directory listed it whole %d times, want 0", n, got)
	}
	if got := f.count("ListPage") - before["ListPage"]; got != n {
		t.Errorf("%d walks through the application's directory asked for %d pages of one, want one each", n, got)
	}
	f.set(key("s00"), "changed", 2)
	if e, err := c.Lookup(bg, key("s00")); err != nil || e.Version != 2 {
		t.Errorf("after a change elsewhere: version %d, %v; want 2", e.Version, err)
	}
}

// List pages through the names the index holds, in order, each once:
// the cursor is the last name of a page, the last page has none, and a
// name that comes or goes between pages is seen or not after the cursor.
func TestListPagesThroughTheHeldNamesInOrder(t *testing.T) {
	f := newFake()
	for i := range 25 {
		f.set(key(fmt.Sprintf("s%02d", i)), "v", 1)
	}
	c := New(f, Options{TTL: time.Hour})
	defer c.Close()
	if _, err := c.Lookup(bg, key("absent")); !fault.Is(fault.NotFound, err) { // known absent: never listed
		t.Fatalf("lookup of an absent name: %v", err)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("List does not end")
		}
		page, next, err := c.List(bg, "app", after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			got = append(got, m.Name)
		}
		if pages == 1 {
			// Between pages: a name after the cursor appears (written
			// through the catalog), one before it is not listed again.
			if _, err := c.Put(bg, key("s20x"), []byte("new"), store.NoItem); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			if len(page) > 7 {
				t.Errorf("the last page has %d names, over the limit", len(page))
			}
			break
		}
		if len(page) != 7 || next != page[len(page)-1].Name {
			t.Fatalf("a page of %d names with the cursor %q after %q", len(page), next, page[len(page)-1].Name)
		}
		after = next
	}
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("s%02d", i))
		if i == 20 {
			want = append(want, "s20x")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %v\nwant %v", got, want)
	}
}

// A legacy item records no size: decrypting it once tells, and listings
// of it show the size learned from then on.
func TestALegacyItemsSizeIsLearnedByDecryptingItOnce(t *testing.T) {
	f := newFake()
	f.setLegacy(key("old"), "legacy value")
	c, _, _ := newCatalog(t, f, Options{})
	e, err := c.Lookup(bg, key("old"))
	if err != nil || e.Size != -1 {
		t.Fatalf("Lookup of a legacy item: %+v, %v; want size -1 (unknown)", e.Meta, err)
	}
	s := c.Snapshot(key("old"), e.Meta)
	defer s.Release()
	if size, err := s.Size(bg); err != nil || size != int64(len("legacy value")) {
		t.Fatalf("Size: %d, %v", size, err)
	}
	page, _, err := c.List(bg, "app", "", 0)
	if err != nil || len(page) != 1 || page[0].Size != int64(len("legacy value")) {
		t.Errorf("List after the size was learned: %+v, %v", page, err)
	}
	if got := read(t, c, key("old")); got != "legacy value" {
		t.Errorf("read %q", got)
	}
	if n := f.count("Open"); n != 1 {
		t.Errorf("learning the size and reading decrypted %d times, want 1", n)
	}
}

// A write that fails while the store is down (its answer lost, or no
// answer at all) makes the catalog ask the store before it answers from
// memory again, but what it knew still stands for stale-if-error: the
// next lookups do not fail while the store cannot answer.
func TestAFailedWriteDoesNotMakeTheNextLookupsFailWhileAValueIsHeld(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	e := lookup(t, c, key("a"))
	f.failNext("Put", fault.E(fault.Unavailable, "frozen"))
	if _, err := c.Put(bg, key("a"), []byte("beta"), e.Revision()); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Put with the store down: %v", err)
	}
	// The store is still down: the listing the lookup asks for fails
	// (at once: the breaker in front of the store remembers).
	got, err := c.Lookup(bg, key("a"))
	if err != nil || !got.Stale || got.Version != 1 {
		t.Fatalf("lookup after the failed write, store down: %+v, %v; want the last value, stale", got, err)
	}
	// Once the store answers, the lookup asks it first: the failed write
	// may have landed after all.
	f.set(key("a"), "landed", 2)
	clk.advance(retryDue)
	eventually(t, "the store is asked again", func() bool {
		got, err := c.Lookup(bg, key("a"))
		return err == nil && !got.Stale && got.Version == 2
	})
}

func TestTheRootListingIsKeptForTheTTLAndFollowsWhatTheCatalogLearns(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{})
	for range 10 {
		if apps, err := c.Apps(bg); err != nil || len(apps) != 1 || apps[0] != "app" {
			t.Fatalf("Apps: %v, %v", apps, err)
		}
	}
	if n := f.count("Apps"); n != 1 {
		t.Errorf("10 listings of the applications within the TTL cost %d, want 1", n)
	}
	other := store.Key{App: "billing", Name: "db"}
	if _, err := c.Put(bg, other, []byte("x"), store.NoItem); err != nil {
		t.Fatal(err)
	}
	if apps, _ := c.Apps(bg); len(apps) != 2 || apps[0] != "app" || apps[1] != "billing" {
		t.Errorf("after a write to a new application: %v", apps)
	}
	e := lookup(t, c, other)
	if err := c.Delete(bg, other, e.Revision()); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.HasSecrets(bg, "billing"); ok || err != nil {
		t.Fatalf("HasSecrets after removing the last secret: %v, %v", ok, err)
	}
	if apps, _ := c.Apps(bg); len(apps) != 1 {
		t.Errorf("after the application emptied: %v", apps)
	}
	if n := f.count("Apps"); n != 1 {
		t.Errorf("the listing was asked for %d times, want 1", n)
	}
	clk.advance(ttl)
	c.Apps(bg)
	if n := f.count("Apps"); n != 2 {
		t.Errorf("after the TTL: %d listings, want 2", n)
	}
}

// Probing names that are not applications costs one listing each, once
// per TTL, and leaves nothing behind but a bounded set of absences.
func TestAbsentApplicationsAreRememberedForTheTTLInBoundedMemory(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{})
	const probes = 3 * absentApps
	for i := range probes {
		if ok, err := c.HasSecrets(bg, fmt.Sprintf("nope-%d", i)); ok || err != nil {
			t.Fatalf("HasSecrets: %v, %v", ok, err)
		}
	}
	if n := f.count("List"); n != probes {
		t.Errorf("%d probes listed %d times", probes, n)
	}
	c.mu.Lock()
	indexes, absences := len(c.apps), c.absent.Len()
	c.mu.Unlock()
	if indexes != 0 || absences > absentApps {
		t.Errorf("after %d probes: %d indexes and %d absences kept, want 0 and at most %d", probes, indexes, absences, absentApps)
	}
	last := fmt.Sprintf("nope-%d", probes-1)
	before := f.counts()
	c.HasSecrets(bg, last)
	if _, err := c.Lookup(bg, store.Key{App: last, Name: "x"}); !fault.Is(fault.NotFound, err) {
		t.Errorf("lookup in an absent application: %v", err)
	}
	sameCounts(t, f, before, "asking again about an absent application within the TTL")
	clk.advance(ttl)
	c.HasSecrets(bg, last)
	if f.count("List") != before["List"]+1 {
		t.Error("an absence older than the TTL was not asked again")
	}
}

func TestAListingThatGetsNoAnswerIsRetriedInTheBackground(t *testing.T) {
	f, c, clk, rec := inAnOutage(t)
	// The store answers again, and the secret changes there. Nobody
	// reads; the retry finds out.
	f.set(key("a"), "new", 2)
	lists := f.count("List")
	clk.advance(retryDue)
	if n := f.count("List"); n != lists+1 {
		t.Fatalf("RetryAfter after the failure: %d listings, want one more", n-lists)
	}
	eventually(t, "the recovery is told", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.recovered) == 1
	})
	before := f.counts()
	e, err := c.Lookup(bg, key("a"))
	if err != nil || e.Stale || e.Version != 2 {
		t.Errorf("the first lookup after the store came back: %+v, %v; want version 2, fresh", e, err)
	}
	if after := f.counts(); after["List"] != before["List"] {
		t.Error("the first lookup after recovery had to list again")
	}
	clk.advance(10 * retryDue)
	if n := f.count("List"); n != lists+1 {
		t.Errorf("retries went on after the store answered: %d listings", n-lists)
	}
}

func TestASizeOverTheStoresLimitIsRefusedAndTheOthersList(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	f.set(key("huge"), "tiny", 1)
	f.mu.Lock()
	f.items[key("huge")].Size = 1 << 50
	f.mu.Unlock()
	c, _, _ := newCatalog(t, f, Options{})
	page, _, err := c.List(bg, "app", "", 0)
	if err != nil || len(page) != 2 {
		t.Fatalf("List: %+v, %v", page, err)
	}
	for _, m := range page {
		if m.Name == "huge" && m.Size != -1 {
			t.Errorf("the listing claims %d bytes for the refused secret, want -1 (unknown)", m.Size)
		}
	}
	if _, err := c.Lookup(bg, key("huge")); !fault.Is(fault.Integrity, err) {
		t.Errorf("Lookup of a secret with an impossible size: %v, want Integrity", err)
	}
	if _, ok := c.Known(key("huge")); ok {
		t.Error("a refused revision is known as current")
	}
	if got := read(t, c, key("a")); got != "alpha" {
		t.Errorf("the other secret reads %q", got)
	}
}

// A malformed item the store lists (store.Meta.Invalid) is refused like
// an impossible size: its lookup is an integrity failure (EIO), not an
// absence (ENOENT, which a program may take for a secret it need not
// have), and the others list and read.
func TestAMalformedItemIsRefusedAndTheOthersList(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	f.set(key("bad"), "x", 1)
	f.mu.Lock()
	f.items[key("bad")].Invalid = fault.E(fault.Integrity, "malformed item: attribute Version is of type S, want N")
	f.mu.Unlock()
	c, _, _ := newCatalog(t, f, Options{})
	if page, _, err := c.List(bg, "app", "", 0); err != nil || len(page) != 2 {
		t.Fatalf("List: %+v, %v; want both names", page, err)
	}
	if _, err := c.Lookup(bg, key("bad")); !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "attribute Version") {
		t.Errorf("Lookup of a malformed item: %v, want Integrity naming what is malformed", err)
	}
	if got := read(t, c, key("a")); got != "alpha" {
		t.Errorf("the other secret reads %q", got)
	}
}

// A lookup whose read of the item is answered with a failure (the store
// finds the item malformed, though its listing did not) gives that
// failure, after one read: it does not read the item again and again.
func TestALookupWhoseItemReadFailsGivesThatFailureOnce(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, _, _ := newCatalog(t, f, Options{})
	if _, _, err := c.List(bg, "app", "", 0); err != nil {
		t.Fatal(err)
	}
	f.failNext("Fetch", fault.E(fault.Integrity, "malformed item"))
	if _, err := c.Lookup(bg, key("a")); !fault.Is(fault.Integrity, err) {
		t.Errorf("Lookup with the item read failing: %v, want Integrity", err)
	}
	if n := f.count("Fetch"); n != 1 {
		t.Errorf("%d reads of the item, want 1", n)
	}
}

func TestANewRevisionTheKeysCannotDecryptServesTheLastValue(t *testing.T) {
	f := newFake()
	f.set(key("a"), "old", 1)
	c, clk, rec := newCatalog(t, f, Options{StaleIfError: time.Hour})
	read(t, c, key("a"))
	f.set(key("a"), "new", 2)
	clk.advance(ttl)
	f.failNext("Open", fault.E(fault.Unavailable, "KMS frozen"))
	e, err := c.Lookup(bg, key("a"))
	if err != nil || !e.Stale || e.Version != 1 {
		t.Fatalf("with the keys down: %+v, %v; want version 1, stale", e, err)
	}
	if m, ok := c.Known(key("a")); !ok || m.Version != 1 {
		t.Errorf("Known: %+v, %v; want what lookups answer, version 1", m, ok)
	}
	if got := readRevision(t, c, key("a"), e.Meta); got != "old" {
		t.Errorf("the served revision reads %q", got)
	}
	opens := f.count("Open")
	for range 3 {
		if e, err := c.Lookup(bg, key("a")); err != nil || e.Version != 1 {
			t.Fatalf("again: %+v, %v", e, err)
		}
	}
	if f.count("Open") != opens {
		t.Error("the keys were asked again within RetryAfter of their failure")
	}
	eventually(t, "the stale answers are observed", func() bool { n, _ := rec.staleAnswers(); return n == 4 })
	if _, first := rec.staleAnswers(); first != 1 {
		t.Errorf("%d stale answers said first, want 1", first)
	}
	clk.advance(retryDue)
	if got := read(t, c, key("a")); got != "new" {
		t.Errorf("once the keys answer: %q", got)
	}
	if n := c.Held(); n != 1 {
		t.Errorf("holding %d plaintexts, want the new one only", n)
	}
	// An answer is not an outage: a revision the keys refuse to open is
	// the name's, and reading it fails.
	f.set(key("a"), "newer", 3)
	clk.advance(ttl)
	f.failNext("Open", fault.E(fault.Integrity, "tampered"))
	if e, err := c.Lookup(bg, key("a")); err != nil || e.Version != 3 || e.Stale {
		t.Errorf("a revision that fails authentication: %+v, %v; want version 3", e, err)
	}
}

func TestAVersionThatGoesDownIsTold(t *testing.T) {
	f := newFake()
	f.set(key("a"), "v3", 3)
	c, clk, rec := newCatalog(t, f, Options{})
	read(t, c, key("a"))
	f.set(key("a"), "v1 again", 1)
	clk.advance(ttl)
	read(t, c, key("a"))
	eventually(t, "the rollback is told", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.rollbacks) == 1 && rec.rollbacks[0] == [2]store.Version{3, 1}
	})
}

func TestAnIndexNobodyUsesIsDropped(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{Idle: 50 * time.Millisecond})
	read(t, c, key("a"))
	clk.advance(ttl + time.Second)
	eventually(t, "the unused index is dropped", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.apps) == 0
	})
	if got := read(t, c, key("a")); got != "alpha" {
		t.Errorf("after the drop: %q", got)
	}
}

func lookup(t *testing.T, c *Catalog, k store.Key) secrets.Entry {
	t.Helper()
	e, err := c.Lookup(bg, k)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", k, err)
	}
	return e
}

// readRevision reads the revision of k that meta describes.
func readRevision(t *testing.T, c *Catalog, k store.Key, meta store.Meta) string {
	t.Helper()
	s := c.Snapshot(k, meta)
	defer s.Release()
	v, err := s.Value(bg)
	if err != nil {
		t.Fatalf("Value(%s): %v", k, err)
	}
	defer v.Wipe()
	return string(v)
}

// With a TTL of zero, an application a listing found empty is absent
// for the lookup that waited for that listing: it does not list again,
// and again.
func TestZeroTTLAsksOnceAboutAnAbsentApplication(t *testing.T) {
	f := newFake()
	c := New(f, Options{TTL: 0})
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if ok, err := c.HasSecrets(bg, "nothing"); ok || err != nil {
			t.Errorf("HasSecrets: %v, %v", ok, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("HasSecrets of an absent application did not return; it listed %d times", f.count("List"))
	}
	if n := f.count("List"); n != 1 {
		t.Errorf("listed %d times, want 1", n)
	}
}

// tamperedRevision returns a fake store holding a ("alpha", revision
// 1), the clock of a catalog over it, and a snapshot of that revision,
// released when the test ends, whose next unwrap fails authentication
// (fault.Integrity), as a tampered item's does.
func tamperedRevision(t *testing.T) (*fakeOrigin, *clock, secrets.Snapshot) {
	t.Helper()
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{})
	e := lookup(t, c, key("a"))
	s := c.Snapshot(key("a"), e.Meta)
	t.Cleanup(s.Release)
	f.failNext("Open", fault.E(fault.Integrity, "tampered"))
	return f, clk, s
}

// A revision whose item fails authentication is not unwrapped again at
// every read: within a TTL, every read answers the same failure, from
// one unwrap. (A TTL on, its item is read again, and decrypted again
// only if the store then holds other bytes under it:
// TestATamperedRevisionRepairedInPlaceReadsATTLOn.)
func TestATamperedRevisionIsNotUnwrappedAgain(t *testing.T) {
	f, _, s := tamperedRevision(t)
	for range 3 {
		if _, err := s.Value(bg); !fault.Is(fault.Integrity, err) {
			t.Fatalf("Value: %v, want Integrity", err)
		}
	}
	if n := f.count("Open"); n != 1 {
		t.Errorf("a tampered revision was unwrapped %d times, want once", n)
	}
}

// The file's size is the one listed: a revision whose item, read, gives
// another Size (a store writer changed it between the listing and the
// read) is an integrity failure, found before any unwrap, whichever way
// the sizes differ; never a value served under a size it does not have.
func TestARevisionReadWithAnotherSizeThanListedIsAnIntegrityFailure(t *testing.T) {
	for _, listed := range []int64{3, 0, 9} {
		f := newFake()
		f.set(key("a"), "alpha", 1)
		f.setSize(key("a"), listed)
		c, _, _ := newCatalog(t, f, Options{})
		page, _, err := c.List(bg, "app", "", 0)
		if err != nil || len(page) != 1 || page[0].Size != listed {
			t.Fatalf("listing: %+v, %v; want a with the forged size %d", page, err, listed)
		}
		f.setSize(key("a"), 5) // the item as the read finds it
		s := c.Snapshot(key("a"), page[0])
		for range 2 {
			if _, err := s.Value(bg); !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "two sizes for one revision") {
				t.Errorf("listed %d, read 5: Value: %v, want Integrity", listed, err)
			}
		}
		if n := f.count("Open"); n != 0 {
			t.Errorf("listed %d, read 5: %d unwraps, want none", listed, n)
		}
		s.Release()
	}
}

// A revision whose listed Size was forged before anything read it fails
// its read (the listing and the read give two sizes). Once the store
// holds its true Size again, repaired in place under the same Version
// and IV, the next listing a TTL on lists it as another file, told to
// the watchers, whose snapshot reads the value: not EIO until a restart.
// The failed snapshot stays failed for whoever holds it.
func TestARevisionListedWithAForgedSizeReadsOnceTheStoreIsRepaired(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	f.setSize(key("a"), 3)
	c, clk, _ := newCatalog(t, f, Options{})
	told := make(chan store.Key, 4)
	c.OnChange(func(k store.Key) { told <- k })
	page, _, err := c.List(bg, "app", "", 0)
	if err != nil || len(page) != 1 || page[0].Size != 3 {
		t.Fatalf("listing: %+v, %v; want a with the forged size 3", page, err)
	}
	f.setSize(key("a"), 5) // repaired: the read finds the true size
	forgedMeta := page[0]
	forged := c.Snapshot(key("a"), forgedMeta)
	defer forged.Release()
	if _, err := forged.Value(bg); !fault.Is(fault.Integrity, err) {
		t.Fatalf("listed 3, read 5: Value: %v, want Integrity", err)
	}

	clk.advance(ttl)
	page, _, err = c.List(bg, "app", "", 0)
	if err != nil || len(page) != 1 || page[0].Size != 5 || page[0].Version != 1 {
		t.Fatalf("listing a TTL on: %+v, %v; want a, version 1, 5 bytes", page, err)
	}
	select {
	case k := <-told:
		if k != key("a") {
			t.Errorf("told of %s, want a", k)
		}
	case <-time.After(5 * time.Second):
		t.Error("the revision relisted with its true size was not told")
	}
	if e := lookup(t, c, key("a")); e.Size != 5 {
		t.Errorf("a lookup answers %d bytes, want 5", e.Size)
	}
	repaired := c.Snapshot(key("a"), page[0])
	defer repaired.Release()
	if v, err := repaired.Value(bg); err != nil || string(v) != "alpha" {
		t.Errorf("relisted with its true size: Value: %q, %v; want alpha", v, err)
	}
	if _, err := forged.Value(bg); !fault.Is(fault.Integrity, err) {
		t.Errorf("the snapshot listed with the forged size: Value: %v, want Integrity still", err)
	}
	// The inode of the forged size, pinned again (its snapshot dropped
	// and revived), must not read the value cut to 3 bytes.
	again := c.Snapshot(key("a"), forgedMeta)
	defer again.Release()
	if v, err := again.Value(bg); !fault.Is(fault.Integrity, err) {
		t.Errorf("pinned again with the forged size after the repair: Value: %q, %v; want Integrity", v, err)
	}
}

// Two revisions in a row that the keys cannot decrypt: the last value
// read is still served (the first new one, never read, replaced by the
// second, does not take its place).
func TestTwoNewRevisionsTheKeysCannotDecryptStillServeTheLastValueRead(t *testing.T) {
	f := newFake()
	f.set(key("a"), "read", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	read(t, c, key("a"))
	for v := store.Version(2); v <= 3; v++ {
		f.set(key("a"), "unread", v)
		clk.advance(ttl)
		f.failNext("Open", fault.E(fault.Unavailable, "KMS frozen"))
		e, err := c.Lookup(bg, key("a"))
		if err != nil || !e.Stale || e.Version != 1 {
			t.Fatalf("revision %d listed, the keys down: %+v, %v; want version 1, stale", v, e, err)
		}
		if got := readRevision(t, c, key("a"), e.Meta); got != "read" {
			t.Fatalf("the served revision reads %q", got)
		}
		clk.advance(retryDue)
	}
}

// A stale answer (the store cannot be asked) does not point the name at a
// revision learned from a listing and never decrypted, when the keys
// cannot decrypt it either and the last value read can be served.
func TestAStaleAnswerServesTheLastValueReadWhenTheNewerRevisionCannotBeDecrypted(t *testing.T) {
	f := newFake()
	f.set(key("a"), "read", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	read(t, c, key("a"))
	f.set(key("a"), "listed", 2)
	clk.advance(ttl)
	if _, _, err := c.List(bg, "app", "", 0); err != nil { // learns revision 2, decrypts nothing
		t.Fatal(err)
	}
	clk.advance(ttl)
	f.failNext("List", fault.E(fault.Unavailable, "store frozen"))
	f.failNext("Open", fault.E(fault.Unavailable, "KMS frozen"))
	e, err := c.Lookup(bg, key("a"))
	if err != nil || !e.Stale || e.Version != 1 {
		t.Fatalf("store and keys down: %+v, %v; want version 1, stale", e, err)
	}
	if m, ok := c.Known(key("a")); !ok || m.Version != 1 {
		t.Errorf("Known: %+v; want what the lookup answered", m)
	}
}

// A secret that appears in an application listed before is told, as a
// change is (a view of the whole application changes with it); the
// first listing of an application tells nothing.
func TestASecretAppearingElsewhereIsToldAfterTheTTL(t *testing.T) {
	f := newFake()
	f.set(key("a"), "one", 1)
	c, clk, _ := newCatalog(t, f, Options{})
	told := make(chan store.Key, 4)
	c.OnChange(func(k store.Key) { told <- k })
	if _, _, err := c.List(bg, "app", "", 0); err != nil {
		t.Fatal(err)
	}
	f.set(key("b"), "two", 1)
	clk.advance(ttl)
	if _, _, err := c.List(bg, "app", "", 0); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-told:
		if k != key("b") {
			t.Errorf("told of %s, want %s", k, key("b"))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the new secret was not told")
	}
	select {
	case k := <-told:
		t.Errorf("told of %s too: the first listing, or an unchanged secret, was told", k)
	case <-time.After(100 * time.Millisecond):
	}
}

// A revision whose item failed authentication is read again a TTL on,
// and decrypted again only if the store then holds other bytes under it
// (an item repaired in place, restored from a backup): then it reads.
// While the bytes are the same it is not unwrapped again.
func TestATamperedRevisionRepairedInPlaceReadsATTLOn(t *testing.T) {
	f, clk, s := tamperedRevision(t)
	if _, err := s.Value(bg); !fault.Is(fault.Integrity, err) {
		t.Fatalf("Value: %v, want Integrity", err)
	}
	clk.advance(ttl)
	if _, err := s.Value(bg); !fault.Is(fault.Integrity, err) {
		t.Fatalf("a TTL on, the same bytes: Value: %v, want Integrity", err)
	}
	if n := f.count("Open"); n != 1 {
		t.Fatalf("the same tampered bytes were unwrapped %d times, want once", n)
	}
	f.mu.Lock()
	f.items[key("a")].ProtectedDocumentKey = []byte("restored") // the same revision, other bytes
	f.mu.Unlock()
	if _, err := s.Value(bg); !fault.Is(fault.Integrity, err) {
		t.Fatalf("within the TTL of the last look: Value: %v, want Integrity", err)
	}
	clk.advance(ttl)
	got, err := s.Value(bg)
	if err != nil || string(got) != "alpha" {
		t.Fatalf("a TTL after the repair: Value: %q, %v; want alpha", got, err)
	}
	if n := f.count("Open"); n != 2 {
		t.Errorf("%d unwraps, want 2 (the tampered bytes, the repaired ones)", n)
	}
}

// An application that a listing of the applications younger than the
// TTL names holds secrets without a listing of its own: the kernel looks
// up every name `ls` of the root gives, and each cost a Query on top of
// the Scan. A TTL on, it is asked again.
func TestAnApplicationInAFreshRootListingNeedsNoListingOfItsOwn(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	f.set(store.Key{App: "billing", Name: "db"}, "x", 1)
	c, clk, _ := newCatalog(t, f, Options{})
	if apps, err := c.Apps(bg); err != nil || len(apps) != 2 {
		t.Fatalf("Apps: %v, %v", apps, err)
	}
	lists := f.count("List")
	for _, app := range []string{"app", "billing"} {
		if ok, err := c.HasSecrets(bg, app); !ok || err != nil {
			t.Errorf("HasSecrets(%s): %v, %v", app, ok, err)
		}
	}
	if n := f.count("List") - lists; n != 0 {
		t.Errorf("HasSecrets of the applications the root listing named cost %d listings, want 0", n)
	}
	if ok, err := c.HasSecrets(bg, "other"); ok || err != nil {
		t.Errorf("HasSecrets(other): %v, %v", ok, err)
	}
	clk.advance(ttl)
	lists = f.count("List")
	if ok, err := c.HasSecrets(bg, "billing"); !ok || err != nil {
		t.Errorf("HasSecrets(billing) a TTL on: %v, %v", ok, err)
	}
	if n := f.count("List") - lists; n != 1 {
		t.Errorf("HasSecrets a TTL after the root listing cost %d listings, want 1", n)
	}
}

// A plaintext wiped by the count bound to hold another is told of, once
// per plaintext so wiped, with the bound: reading it again costs a key
// unwrap. Plaintexts within the bound, and those wiped for idleness or
// removal, are not.
func TestAPlaintextWipedByTheCountBoundIsToldOf(t *testing.T) {
	f := newFake()
	for _, n := range []string{"a", "b", "c", "d"} {
		f.set(key(n), "value of "+n, 1)
	}
	c, _, rec := newCatalog(t, f, Options{Size: 2})
	count := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.crowded)
	}
	read(t, c, key("a"))
	read(t, c, key("b"))
	if err := c.Delete(bg, key("a"), lookup(t, c, key("a")).Revision()); err != nil {
		t.Fatal(err)
	}
	read(t, c, key("c"))
	if n := count(); n != 0 {
		t.Fatalf("within the bound (a removed): told %d times, want 0", n)
	}
	read(t, c, key("d")) // wipes b, the least recently read
	eventually(t, "the wipe is told of", func() bool { return count() == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.crowded[0] != 2 {
		t.Errorf("told of the bound %d, want 2", rec.crowded[0])
	}
}

// An application known to hold secrets only from a listing of the
// applications and the fetch of a secret of it (never listed on its own)
// still holds them, within the stale window, while the store cannot
// answer: it has no listing of its own to fall back on. (A read past the
// TTL during an outage failed with EIO.)
func TestAnApplicationNeverListedOnItsOwnIsServedStaleWhileTheStoreIsDown(t *testing.T) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	c, clk, _ := newCatalog(t, f, Options{StaleIfError: time.Hour})
	if _, err := c.Apps(bg); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.HasSecrets(bg, "app"); !ok || err != nil {
		t.Fatalf("HasSecrets: %v, %v", ok, err)
	}
	read(t, c, key("a"))
	clk.advance(ttl)
	f.failNext("List", fault.E(fault.Unavailable, "frozen"))
	if ok, err := c.HasSecrets(bg, "app"); !ok || err != nil {
		t.Errorf("HasSecrets with the store down, past the TTL: %v, %v; want true from what it knew", ok, err)
	}
	if e, err := c.Lookup(bg, key("a")); err != nil || !e.Stale {
		t.Errorf("Lookup with the store down, past the TTL: %+v, %v; want a stale answer", e, err)
	}
	clk.advance(ttl + time.Hour + time.Second)
	f.failNext("List", fault.E(fault.Unavailable, "frozen"))
	if _, err := c.HasSecrets(bg, "app"); !fault.Is(fault.Unavailable, err) {
		t.Errorf("past the stale window: %v, want Unavailable", err)
	}
}
