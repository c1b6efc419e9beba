package breaker

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
	"github.com/secretfs/secretfs/store/storetest"
)

// The decorator keeps the Store contract.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return Store(memory.New(), &Breaker{Name: "the store"}) })
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// counting counts the calls that reach the backend and fails them with
// err.
type counting struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (c *counting) call() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.err
}

func (c *counting) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.calls }

func TestSilenceOpensItForRetryAfterThenOneCallProbes(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	b := &Breaker{Name: "the store", Now: clk.now}
	backend := &counting{err: fault.E(fault.Unavailable, "no answer")}
	ctx := context.Background()
	if err := b.Do(ctx, "test", backend.call); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("first call: %v", err)
	}
	for range 5 {
		if err := b.Do(ctx, "test", backend.call); !fault.Is(fault.Unavailable, err) {
			t.Fatalf("while open: %v", err)
		}
	}
	if n := backend.count(); n != 1 {
		t.Errorf("within RetryAfter of a call without an answer, %d calls reached the backend, want 1", n)
	}
	clk.advance(DefaultRetryAfter)
	backend.err = nil
	if err := b.Do(ctx, "test", backend.call); err != nil {
		t.Fatalf("the probe: %v", err)
	}
	if b.Open() {
		t.Error("an answer did not close the breaker")
	}
	if n := backend.count(); n != 2 {
		t.Errorf("%d calls reached the backend, want 2", n)
	}
}

func TestAnAnswerIsNotAnOutage(t *testing.T) {
	b := &Breaker{}
	for _, err := range []error{fault.E(fault.NotFound), fault.E(fault.Permission), fault.E(fault.Conflict), fault.E(fault.Integrity)} {
		b.Do(context.Background(), "test", func() error { return err })
		if b.Open() {
			t.Errorf("%v opened the breaker", err)
		}
	}
}

func TestOneProbeAtATime(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	b := &Breaker{Now: clk.now}
	b.Do(context.Background(), "test", func() error { return fault.E(fault.Unavailable) })
	clk.advance(DefaultRetryAfter)
	release := make(chan struct{})
	entered := make(chan struct{})
	go b.Do(context.Background(), "test", func() error { close(entered); <-release; return nil })
	<-entered
	reached := false
	err := b.Do(context.Background(), "test", func() error { reached = true; return nil })
	close(release)
	if reached || !fault.Is(fault.Unavailable, err) {
		t.Errorf("a call during the probe: reached %v, %v; want refused at once", reached, err)
	}
	// Past RetryAfter, the refusal says the backend is being asked, not
	// that it will not be before RetryAfter has passed.
	if msg := err.Error(); !strings.Contains(msg, "is being asked again now") || strings.Contains(msg, "not asked again") {
		t.Errorf("a call during the probe is refused with %q", msg)
	}
}

func TestACallerThatGaveUpSaysNothingOfTheBackend(t *testing.T) {
	b := &Breaker{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Do(ctx, "test", func() error { return fault.E(fault.Unavailable, ctx.Err()) })
	if b.Open() {
		t.Error("a cancelled caller opened the breaker")
	}
	dl, stop := context.WithTimeout(context.Background(), time.Nanosecond)
	defer stop()
	<-dl.Done()
	b.Do(dl, "test", func() error { return fault.E(fault.Unavailable, dl.Err()) })
	if !b.Open() {
		t.Error("a call that ran out of its deadline did not open the breaker")
	}
}

func TestAStoreKeepsItsSizeLimit(t *testing.T) {
	if _, ok := Store(memory.NewWithLimit(10), &Breaker{}).(store.Sizer); !ok {
		t.Error("a Sizer behind a breaker is not a Sizer")
	}
}

func TestAlwaysGoesThroughAnOpenBreaker(t *testing.T) {
	b := &Breaker{}
	b.Do(context.Background(), "test", func() error { return fault.E(fault.Unavailable) })
	reached := false
	if err := b.Do(Always(context.Background()), "test", func() error { reached = true; return nil }); err != nil || !reached {
		t.Errorf("a call marked Always: reached %v, %v", reached, err)
	}
	if b.Open() {
		t.Error("its answer did not close the breaker")
	}
}

// A call that ran out of its deadline is named by the --timeout callers
// give each call, not by what was left of it when the call reached the
// breaker: the log of an outage says "no answer within 2s".
func TestACallThatRanOutOfTimeIsNamedByTheTimeout(t *testing.T) {
	b := &Breaker{Name: "the store", Timeout: 2 * time.Second}
	dl, stop := context.WithTimeout(context.Background(), time.Millisecond)
	defer stop()
	<-dl.Done()
	b.Do(dl, "test", func() error { return fault.E(fault.Unavailable, dl.Err()) })
	err := b.Do(context.Background(), "test", func() error { return nil })
	if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "the store gave no answer within 2s ") {
		t.Errorf("a call while open: %v; want it to say the store gave no answer within 2s", err)
	}
}
