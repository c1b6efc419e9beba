package secrets

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// v1Count records what the v1 limit told its observer.
type v1Count struct {
	mu      sync.Mutex
	refused int
	tripped []time.Time
}

func (c *v1Count) V1Refused() { c.mu.Lock(); c.refused++; c.mu.Unlock() }
func (c *v1Count) V1Tripped(until time.Time) {
	c.mu.Lock()
	c.tripped = append(c.tripped, until)
	c.mu.Unlock()
}

func (c *v1Count) counts() (int, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused, append([]time.Time(nil), c.tripped...)
}

// v1Fixture is a Keeper that writes v1, with a settable clock, a log
// that records and an observer that counts.
type v1Fixture struct {
	k     *Keeper
	w     *cryptotest.Wrapper
	clock *testClock
	log   *logtest.Hook
	seen  *v1Count
}

func newV1Fixture(t *testing.T) *v1Fixture {
	t.Helper()
	f := &v1Fixture{clock: &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, seen: &v1Count{}}
	logger, hook := logtest.NewNullLogger()
	f.log = hook
	f.k, f.w = newKeeperWriting(t, memory.New(), crypto.FormatV1, Options{Now: f.clock.Now, Log: logger, V1Observer: f.seen})
	return f
}

// write stores a v1 item of a value shorter than one block.
func (f *v1Fixture) write(t *testing.T, name, value string) *store.Item {
	t.Helper()
	item, err := f.k.Write(context.Background(), store.Key{App: "app", Name: name}, []byte(value), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	if item.Format != "v1" || len(value) >= crypto.BlockSizeV1-1 {
		t.Fatalf("fixture: wrote %q in %s; want v1 and a value of one block", value, item.Format)
	}
	return item
}

// badPadding is item with the padding byte of its one block flipped
// (through the IV): the padding is then invalid.
func badPadding(item *store.Item) *store.Item {
	c := *item
	c.InitialisationVector = append([]byte(nil), item.InitialisationVector...)
	c.InitialisationVector[crypto.BlockSizeV1-1] ^= 0x80
	return &c
}

// forgedValidPadding is item with the first byte of its value flipped
// (through the IV): v1 cannot tell, and the padding stays valid.
func forgedValidPadding(item *store.Item) *store.Item {
	c := *item
	c.InitialisationVector = append([]byte(nil), item.InitialisationVector...)
	c.InitialisationVector[0] ^= 1
	return &c
}

func (f *v1Fixture) errorLines() []string {
	var lines []string
	for _, e := range f.log.AllEntries() {
		if e.Level <= logrus.ErrorLevel {
			lines = append(lines, e.Message)
		}
	}
	return lines
}

func isRefusal(err error) bool {
	return fault.Is(fault.Integrity, err) && strings.Contains(err.Error(), "v1 decryption refused")
}

// After V1FailureLimit integrity failures of v1 items, every v1
// decryption is refused — a forged item of valid padding and a genuine
// one alike — without asking the key wrapper, for one window; one error
// line is logged and the observer told. Other formats are not affected.
func TestV1LimitTripsAfterTenFailuresAndRefusesEveryV1Decryption(t *testing.T) {
	f := newV1Fixture(t)
	ctx := context.Background()
	genuine := f.write(t, "genuine", "pay alice")
	target := f.write(t, "target", "pay bob")
	for i := range V1FailureLimit {
		if len(f.errorLines()) != 0 {
			t.Fatalf("the limit tripped after %d failures", i)
		}
		_, err := f.k.Open(ctx, badPadding(f.write(t, "bad"+strconv.Itoa(i), "x")))
		if !fault.Is(fault.Integrity, err) || isRefusal(err) || !strings.Contains(err.Error(), "padding") {
			t.Fatalf("failure %d: %v; want the padding error itself", i+1, err)
		}
		f.clock.Advance(time.Minute)
	}
	lines := f.errorLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "refused") || !strings.Contains(lines[0], "secretfs migrate") {
		t.Fatalf("error lines after %d failures: %q; want one saying v1 is refused", V1FailureLimit, lines)
	}
	tripEntry := f.log.LastEntry()
	if tripEntry.Data["secret"] != "app/bad9" {
		t.Errorf("the trip line names %v, want the secret whose failure tripped it", tripEntry.Data["secret"])
	}
	tripped := f.clock.Now().Add(-time.Minute)
	_, trips := f.seen.counts()
	if len(trips) != 1 || !trips[0].Equal(tripped.Add(V1FailureWindow)) {
		t.Fatalf("observer told of trips %v; want one, until %v", trips, tripped.Add(V1FailureWindow))
	}

	unwraps := f.w.UnwrapCalls()
	forged := forgedValidPadding(target)
	for _, item := range []*store.Item{forged, genuine, target, badPadding(genuine)} {
		s, err := f.k.Open(ctx, item)
		if !isRefusal(err) || s.Value != nil {
			t.Fatalf("%s after the limit: %q, %v; want a refusal", item.Key, s.Value, err)
		}
		if !strings.Contains(err.Error(), item.Key.String()) {
			t.Errorf("the refusal does not name the secret: %v", err)
		}
	}
	if n := f.w.UnwrapCalls() - unwraps; n != 0 {
		t.Errorf("%d key unwraps for refused v1 decryptions", n)
	}
	if refused, _ := f.seen.counts(); refused != 4 {
		t.Errorf("observer told of %d refusals, want 4", refused)
	}
	// Other formats are read as ever: a v3 item under the same key.
	v3 := NewKeeper(memory.New(), mustEnvelope(t, f.w, crypto.FormatV3), Options{})
	other, err := v3.Write(ctx, store.Key{App: "app", Name: "v3"}, []byte("fine"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := f.k.Open(ctx, other); err != nil || string(s.Value) != "fine" {
		t.Fatalf("a v3 item while v1 is refused: %v", err)
	}

	// Refused until one window after the trip, then read again; no
	// further error line.
	f.clock.Advance(V1FailureWindow - 2*time.Minute)
	if _, err := f.k.Open(ctx, genuine); !isRefusal(err) {
		t.Fatalf("a minute before the window ends: %v, want a refusal", err)
	}
	f.clock.Advance(time.Minute)
	if s, err := f.k.Open(ctx, genuine); err != nil || string(s.Value) != "pay alice" {
		t.Fatalf("once the window has passed: %q, %v", s.Value, err)
	}
	if lines := f.errorLines(); len(lines) != 1 {
		t.Errorf("error lines: %q, want only the trip's", lines)
	}
}

func mustEnvelope(t *testing.T, w crypto.KeyWrapper, f crypto.Format) *crypto.Envelope {
	t.Helper()
	e, err := crypto.NewEnvelope(w, f)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Reading genuine v1 items never trips the limit: 200 reads of 20.
func TestV1LimitNeverTripsOnTwoHundredReadsOfValidItems(t *testing.T) {
	f := newV1Fixture(t)
	items := make([]*store.Item, 20)
	for i := range items {
		items[i] = f.write(t, "s"+strconv.Itoa(i), "value "+strconv.Itoa(i))
	}
	for round := range 10 {
		for i, item := range items {
			s, err := f.k.Open(context.Background(), item)
			if err != nil || string(s.Value) != "value "+strconv.Itoa(i) {
				t.Fatalf("round %d, item %d: %q, %v", round, i, s.Value, err)
			}
		}
	}
	refused, trips := f.seen.counts()
	if refused != 0 || len(trips) != 0 || len(f.errorLines()) != 0 {
		t.Fatalf("200 genuine reads: %d refused, %d trips, error lines %q", refused, len(trips), f.errorLines())
	}
}

// A v1 value whose length is not the recorded Size is an integrity failure
// like bad padding, and counts toward the limit: otherwise a store writer
// could learn the padding of a forged item from whether its Size holds.
func TestV1LimitCountsSizeMismatches(t *testing.T) {
	f := newV1Fixture(t)
	for i := range V1FailureLimit {
		c := *f.write(t, "s"+strconv.Itoa(i), "abc")
		c.Size = 2
		if _, err := f.k.Open(context.Background(), &c); !fault.Is(fault.Integrity, err) || isRefusal(err) {
			t.Fatalf("size mismatch %d: %v", i, err)
		}
	}
	if _, err := f.k.Open(context.Background(), f.write(t, "fine", "abc")); !isRefusal(err) {
		t.Fatalf("after %d size mismatches: %v, want a refusal", V1FailureLimit, err)
	}
}

// The window slides: failures older than V1FailureWindow no longer count.
func TestV1LimitForgetsFailuresOlderThanTheWindow(t *testing.T) {
	f := newV1Fixture(t)
	fail := func(n int, tag string) {
		t.Helper()
		for i := range n {
			if _, err := f.k.Open(context.Background(), badPadding(f.write(t, tag+strconv.Itoa(i), "x"))); isRefusal(err) {
				t.Fatalf("%s %d: refused", tag, i)
			}
		}
	}
	fail(V1FailureLimit-1, "early")
	f.clock.Advance(V1FailureWindow + time.Second)
	fail(V1FailureLimit-1, "late") // 9 within the window: not tripped
	if _, err := f.k.Open(context.Background(), f.write(t, "fine", "abc")); err != nil {
		t.Fatalf("with %d failures in the window: %v", V1FailureLimit-1, err)
	}
	fail(1, "last")
	if _, err := f.k.Open(context.Background(), f.write(t, "refused", "abc")); !isRefusal(err) {
		t.Fatalf("with %d failures in the window: %v, want a refusal", V1FailureLimit, err)
	}
}

// gatedWrapper holds every Unwrap until its gate opens, and counts how
// many are waiting.
type gatedWrapper struct {
	crypto.KeyWrapper
	gate    chan struct{}
	waiting atomic.Int64
}

func (g *gatedWrapper) Unwrap(ctx context.Context, id string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	g.waiting.Add(1)
	<-g.gate
	return g.KeyWrapper.Unwrap(ctx, id, wrapped, ec)
}

// Concurrent reads of forged items cannot get more answers than the
// limit: a decryption in flight counts as a failure until it ends, so at
// most V1FailureLimit run at once, and once they have failed every other
// one is refused.
func TestV1LimitHoldsForConcurrentReads(t *testing.T) {
	f := newV1Fixture(t)
	const readers = 3 * V1FailureLimit
	items := make([]*store.Item, readers)
	for i := range items {
		items[i] = badPadding(f.write(t, "s"+strconv.Itoa(i), "x"))
	}
	g := &gatedWrapper{KeyWrapper: f.w, gate: make(chan struct{})}
	f.k.envelope = mustEnvelope(t, g, crypto.FormatV1)
	errs := make(chan error, readers)
	for _, item := range items {
		go func() {
			_, err := f.k.Open(context.Background(), item)
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.waiting.Load() < V1FailureLimit {
		if time.Now().After(deadline) {
			t.Fatalf("only %d decryptions started", g.waiting.Load())
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for an eleventh to start, if the limit let it
	if n := g.waiting.Load(); n != V1FailureLimit {
		t.Fatalf("%d v1 decryptions ran at once, want at most %d", n, V1FailureLimit)
	}
	close(g.gate)
	answered, refused := 0, 0
	for range readers {
		switch err := <-errs; {
		case isRefusal(err):
			refused++
		case fault.Is(fault.Integrity, err):
			answered++
		default:
			t.Errorf("unexpected result: %v", err)
		}
	}
	if answered != V1FailureLimit || refused != readers-V1FailureLimit {
		t.Fatalf("%d forged items answered and %d refused; want %d and %d", answered, refused, V1FailureLimit, readers-V1FailureLimit)
	}
	if n := g.waiting.Load(); n != V1FailureLimit {
		t.Fatalf("%d unwraps in all, want %d", n, V1FailureLimit)
	}
}
