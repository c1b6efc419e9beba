package retry

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when a test advances it, calling
// the functions then due in the advancing goroutine: the tests need no
// sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	f    func()
	done bool // fired or stopped
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		stopped := !t.done
		t.done = true
		return stopped
	}
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// session stands for a bounced open's session.
type session struct{ name string }

// fixture is a Table on a fake clock that records the sessions it
// discards.
type fixture struct {
	*Table[string, *session]
	clock     *fakeClock
	mu        sync.Mutex
	discarded map[*session]int
}

func newFixture() *fixture {
	f := &fixture{clock: &fakeClock{now: time.Unix(1e9, 0)}, discarded: map[*session]int{}}
	f.Table = newTable[string](func(s *session) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.discarded[s]++
	}, f.clock)
	return f
}

// timesDiscarded is how many times s was discarded.
func (f *fixture) timesDiscarded(s *session) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.discarded[s]
}

func (f *fixture) stateOf(tid uint32) state {
	f.Table.mu.Lock()
	defer f.Table.mu.Unlock()
	if e := f.threads[tid]; e != nil {
		return e.state
	}
	return idle
}

func (f *fixture) wantState(t *testing.T, tid uint32, want state) {
	t.Helper()
	if got := f.stateOf(tid); got != want {
		t.Fatalf("thread %d is %v, want %v", tid, got, want)
	}
}

func (f *fixture) wantTake(t *testing.T, tid uint32, k string, want *session) {
	t.Helper()
	got, ok := f.Take(tid, k)
	if got != want || ok != (want != nil) {
		t.Fatalf("Take(%d, %q) = %v, %v; want %v", tid, k, got, ok, want)
	}
}

func TestABouncedOpensRetryTakesItsSession(t *testing.T) {
	f := newFixture()
	s := &session{"s"}
	if !f.Bounce(7, "a", s) {
		t.Fatal("a bounce from a thread is refused")
	}
	f.wantState(t, 7, bounced)
	if !f.Bounced(7, "a") || !f.Bounced(7, "a") {
		t.Fatal("the retry's lookup is not told of the bounce (twice: it consumes nothing)")
	}
	f.wantTake(t, 7, "a", s)
	f.wantState(t, 7, idle)
	if f.Bounced(7, "a") {
		t.Error("a taken session is still bounced")
	}
	f.wantTake(t, 7, "a", nil)
	f.clock.advance(Window)
	if n := f.timesDiscarded(s); n != 0 {
		t.Errorf("a taken session was discarded %d times", n)
	}
}

func TestABounceWithoutAThreadIsRefused(t *testing.T) {
	f := newFixture()
	if f.Bounce(0, "a", &session{"s"}) {
		t.Error("a bounce without a thread is accepted: its retry could not be told apart")
	}
	f.SentAgain(0, "a")
	if len(f.threads) != 0 || f.Bounced(0, "a") || f.Awaits(0, "a") || f.Retrying(0, "a") {
		t.Error("a request without a thread has an entry")
	}
}

func TestABouncedSessionWhoseRetryNeverCameIsDiscarded(t *testing.T) {
	f := newFixture()
	s := &session{"s"}
	f.Bounce(7, "a", s)
	f.clock.advance(Window - time.Nanosecond)
	if f.timesDiscarded(s) != 0 || !f.Bounced(7, "a") {
		t.Fatal("the session did not wait the whole window")
	}
	f.clock.advance(time.Nanosecond)
	if n := f.timesDiscarded(s); n != 1 {
		t.Fatalf("after the window the session was discarded %d times, want 1", n)
	}
	f.wantState(t, 7, idle)
	f.wantTake(t, 7, "a", nil)
}

func TestASecondBounceOfAThreadDiscardsTheFirst(t *testing.T) {
	for _, k := range []string{"a", "b"} {
		t.Run("then "+k, func(t *testing.T) {
			f := newFixture()
			first, second := &session{"first"}, &session{"second"}
			f.Bounce(7, "a", first)
			f.clock.advance(Window / 2)
			f.Bounce(7, k, second)
			if n := f.timesDiscarded(first); n != 1 {
				t.Fatalf("the first session, whose retry can no longer come, was discarded %d times", n)
			}
			if k != "a" && f.Bounced(7, "a") {
				t.Error("the first key is still bounced")
			}
			f.clock.advance(Window / 2) // the first one's window ends: nothing to do
			if f.timesDiscarded(first) != 1 || f.timesDiscarded(second) != 0 {
				t.Fatal("the first one's expiry discarded something")
			}
			f.wantTake(t, 7, k, second)
		})
	}
}

func TestOnlyTheBouncedThreadsRetryOfItsKeyTakesTheSession(t *testing.T) {
	f := newFixture()
	s := &session{"s"}
	f.Bounce(7, "a", s)
	if f.Bounced(8, "a") || f.Bounced(7, "b") {
		t.Error("another thread, or another key, is told of the bounce")
	}
	f.wantTake(t, 8, "a", nil)
	f.wantTake(t, 7, "b", nil)
	f.wantState(t, 7, bounced)
	f.wantTake(t, 7, "a", s)
}

func TestAnOpenSentAgainIsRetriedOnce(t *testing.T) {
	f := newFixture()
	f.SentAgain(7, "a")
	f.wantState(t, 7, sentAgain)
	if !f.Awaits(7, "a") || !f.Awaits(7, "a") {
		t.Fatal("the lookup before the retry is not told of it (twice: it consumes nothing)")
	}
	if f.Awaits(8, "a") || f.Awaits(7, "b") {
		t.Error("another thread, or another key, awaits the retry")
	}
	if f.Retrying(8, "a") {
		t.Error("another thread's open is told it is the retry")
	}
	if !f.Retrying(7, "a") {
		t.Fatal("the retry is not told it is one")
	}
	f.wantState(t, 7, idle)
	if f.Retrying(7, "a") || f.Awaits(7, "a") {
		t.Error("a second open is told it is the retry: the kernel retries once")
	}
}

func TestAnyOpenOfTheThreadEndsTheWaitForItsRetry(t *testing.T) {
	f := newFixture()
	f.SentAgain(7, "a")
	if f.Retrying(7, "b") {
		t.Fatal("an open of another key is told it is the retry")
	}
	f.wantState(t, 7, idle)
	if f.Retrying(7, "a") {
		t.Error("an open after another is told it is the retry")
	}
}

func TestARetryAfterTheWindowIsNone(t *testing.T) {
	f := newFixture()
	f.SentAgain(7, "a")
	f.clock.advance(Window - time.Nanosecond)
	if !f.Awaits(7, "a") {
		t.Fatal("the retry is not awaited for the whole window")
	}
	f.clock.advance(time.Nanosecond)
	if f.Awaits(7, "a") {
		t.Error("a retry is awaited after the window")
	}
	if f.Retrying(7, "a") {
		t.Error("an open after the window is told it is the retry")
	}
	f.wantState(t, 7, idle)
}

// A thread awaits one retry: a bounce and an open sent again replace each
// other, and neither is taken for the other.
func TestABounceAndAnOpenSentAgainAreToldApart(t *testing.T) {
	f := newFixture()
	f.SentAgain(7, "a")
	if f.Bounced(7, "a") {
		t.Error("an open sent again counts as bounced")
	}
	f.wantTake(t, 7, "a", nil)
	f.wantState(t, 7, sentAgain)

	s := &session{"s"}
	f.Bounce(7, "a", s)
	if f.Awaits(7, "a") || f.Retrying(7, "a") {
		t.Error("a bounced open counts as sent again")
	}
	f.wantState(t, 7, bounced)

	f.SentAgain(7, "a")
	if n := f.timesDiscarded(s); n != 1 {
		t.Fatalf("a bounced session replaced by an open sent again was discarded %d times, want 1", n)
	}
	f.wantState(t, 7, sentAgain)
	f.clock.advance(Window)
	if n := f.timesDiscarded(s); n != 1 {
		t.Errorf("its expiry discarded it again (%d times)", n)
	}
}

// Threads that ended leave their last open sent again, which no expiry
// removes: once 64 threads have an entry, the next open sent again drops
// the stale ones, and nothing else.
func TestOpensSentAgainThatWentStaleAreDroppedAt64Threads(t *testing.T) {
	f := newFixture()
	for tid := uint32(1); tid <= sweepAt-2; tid++ {
		f.SentAgain(tid, "a")
	}
	f.clock.advance(Window)
	s := &session{"s"}
	f.Bounce(200, "a", s)
	f.SentAgain(100, "a") // 63 entries before it: none dropped
	if n := len(f.threads); n != sweepAt {
		t.Fatalf("%d entries, want %d: stale ones were dropped below the bound", n, sweepAt)
	}
	f.SentAgain(101, "a") // 64 before it: the stale ones go
	if n := len(f.threads); n != 3 {
		t.Fatalf("%d entries, want 3 (the bounce and two fresh opens sent again)", n)
	}
	if !f.Bounced(200, "a") || !f.Awaits(100, "a") || !f.Awaits(101, "a") {
		t.Error("a live entry was dropped")
	}
	if f.timesDiscarded(s) != 0 {
		t.Error("the live bounce's session was discarded")
	}
}

// However a bounced open's retry races its expiry, its session is either
// taken or discarded, once.
func TestABouncedSessionIsTakenOrDiscardedOnce(t *testing.T) {
	f := newFixture()
	const threads = 200
	sessions := make([]*session, threads)
	for i := range sessions {
		sessions[i] = &session{}
		f.Bounce(uint32(i+1), "a", sessions[i])
	}
	taken := make([]bool, threads)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, ok := f.Take(uint32(i+1), "a")
			if ok && s != sessions[i] {
				t.Errorf("thread %d took another's session", i+1)
			}
			taken[i] = ok
		}()
	}
	f.clock.advance(Window)
	wg.Wait()
	for i, s := range sessions {
		n := f.timesDiscarded(s)
		if taken[i] && n != 0 || !taken[i] && n != 1 {
			t.Fatalf("thread %d: taken %v, discarded %d times", i+1, taken[i], n)
		}
	}
}

// The real clock: a bounced session's retry takes it, and its expiry,
// stopped, discards nothing.
func TestNewTakesABouncedSessionOnTheRealClock(t *testing.T) {
	discarded := make(chan *session, 1)
	tab := New[string](func(s *session) { discarded <- s })
	s := &session{"s"}
	tab.Bounce(7, "a", s)
	if got, ok := tab.Take(7, "a"); !ok || got != s {
		t.Fatalf("Take = %v, %v", got, ok)
	}
	tab.SentAgain(7, "a")
	if !tab.Retrying(7, "a") {
		t.Error("the retry is not told it is one")
	}
	select {
	case s := <-discarded:
		t.Errorf("%v discarded", s)
	default:
	}
}
