// Package retry keeps, per calling thread, the opens a FUSE mount answered
// ESTALE and whose retry by the kernel it awaits. The kernel answers an
// open's ESTALE by walking the path once more from the same thread,
// revalidating the name (a LOOKUP) and opening what that lookup returned;
// it does so at once and only once. The mount uses that retry twice:
//
//   - a write open of an existing secret's revision is bounced: its
//     session is made, then kept here (Bounce) while the kernel looks the
//     name up again; that lookup (Bounced) is answered with a writer's
//     own inode, whose open takes the session (Take);
//   - an open sent to look the name up again (vfs.ErrLookUpAgain) is
//     recorded (SentAgain), so that the lookup before the retry can hold
//     the value it finds (Awaits) and the retry is told it is one
//     (Retrying; vfs.Caller.Again).
//
// It is not package vfs's: vfs gives the file semantics of one request
// from a plain Caller and never knows of the kernel's walk, its retry or
// its inodes (vfs.Caller.Again is this package's answer, handed to it).
// It is not package fs's either, whose go-fuse nodes only carry a
// request's thread here and back: what a thread awaits, and when that
// ends, is a state machine (Table, its states named below) tested here
// without the kernel. It never imports go-fuse, never knows what a
// session or a key is (the Table is generic in both), and never keeps a
// retry past Window.
//
// # Lock order
//
// Table.mu guards the threads' entries alone: no other lock of secretfs
// is taken while it is held, and it is never held across the discard
// function (which ends a session, under locks of package vfs). The clock
// is read under it, so its AfterFunc must not call back before it returns.
package retry

import (
	"sync"
	"time"
)

// Window is how long a retry is awaited: the kernel retries at once, so
// this only bounds how long what a retry that never came (a signal) left
// is kept. A bounced session is then discarded, committing nothing.
const Window = time.Second

// sweepAt is how many threads' entries make SentAgain drop the stale ones:
// a thread that ended leaves its last entry, which no expiry removes.
const sweepAt = 64

// state is what a thread awaits.
type state uint8

const (
	// idle: nothing; a thread without an entry is in it.
	idle state = iota
	// bounced: a write open of key was answered ESTALE; its session
	// awaits the retry (Take) until Window ends it (discarded).
	bounced
	// sentAgain: an open of key was sent to look the name up again at
	// at; the retry is told so (Retrying) within Window.
	sentAgain
)

func (s state) String() string {
	switch s {
	case bounced:
		return "bounced"
	case sentAgain:
		return "sentAgain"
	}
	return "idle"
}

// entry is one thread's awaited retry.
type entry[K comparable, S any] struct {
	state   state
	key     K
	session S           // bounced
	stop    func() bool // bounced: stops its expiry
	at      time.Time   // sentAgain
}

// Table is a mount's awaited retries, by thread id (as the kernel sends
// it; 0, a request without one, never has an entry). A thread makes one
// request at a time, so it awaits at most one retry: a new entry replaces
// its last, whose retry can no longer come, and a bounced session so
// replaced is discarded. K is what was opened; S a bounced open's
// session, which the Table either hands to Take or discards, once.
type Table[K comparable, S any] struct {
	discard func(S)
	clock   Clock

	mu      sync.Mutex
	threads map[uint32]*entry[K, S] // the threads not idle
}

// Clock is the time a Table reads: the real one, or a test's.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless the
	// returned stop is called first (it then reports true).
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// New returns an empty Table on the real clock that calls discard, with
// no lock held, on each bounced session whose retry never came.
func New[K comparable, S any](discard func(S)) *Table[K, S] {
	return newTable[K](discard, realClock{})
}

func newTable[K comparable, S any](discard func(S), c Clock) *Table[K, S] {
	return &Table[K, S]{discard: discard, clock: c, threads: map[uint32]*entry[K, S]{}}
}

// Bounce records that thread tid's write open of k made session s and is
// answered ESTALE, and reports whether it may be: not without a thread,
// whose retry could not be told from anyone's. s then awaits Take, for
// Window at most.
func (t *Table[K, S]) Bounce(tid uint32, k K, s S) bool {
	if tid == 0 {
		return false
	}
	e := &entry[K, S]{state: bounced, key: k, session: s}
	t.mu.Lock()
	old := t.replace(tid, e)
	e.stop = t.clock.AfterFunc(Window, func() { t.expire(tid, e) })
	t.mu.Unlock()
	t.end(old)
	return true
}

// expire discards the session of e, thread tid's bounced open, unless a
// retry took it or another entry replaced it.
func (t *Table[K, S]) expire(tid uint32, e *entry[K, S]) {
	t.mu.Lock()
	mine := t.threads[tid] == e
	if mine {
		delete(t.threads, tid)
	}
	t.mu.Unlock()
	if mine {
		t.discard(e.session)
	}
}

// Bounced reports whether thread tid has a write open of k bounced,
// awaiting its retry: its lookup is answered with a writer's inode.
func (t *Table[K, S]) Bounced(tid uint32, k K) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.threads[tid]
	return e != nil && e.state == bounced && e.key == k
}

// Take returns the session of thread tid's bounced write open of k, for
// its retry, which ends the wait; ok is false, and nothing changes, if
// the thread has none of k.
func (t *Table[K, S]) Take(tid uint32, k K) (s S, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.threads[tid]
	if e == nil || e.state != bounced || e.key != k {
		return s, false
	}
	delete(t.threads, tid)
	e.stop()
	return e.session, true
}

// SentAgain records that thread tid's open of k was sent to look the
// name up again, at once.
func (t *Table[K, S]) SentAgain(tid uint32, k K) {
	if tid == 0 {
		return
	}
	t.mu.Lock()
	if len(t.threads) >= sweepAt {
		t.sweep()
	}
	old := t.replace(tid, &entry[K, S]{state: sentAgain, key: k, at: t.clock.Now()})
	t.mu.Unlock()
	t.end(old)
}

// Awaits reports whether thread tid had an open of k sent to look the
// name up again within Window, and has not retried it yet: its lookup is
// the one before the retry.
func (t *Table[K, S]) Awaits(tid uint32, k K) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fresh(t.threads[tid], k)
}

// Retrying reports whether thread tid's open of k is the retry of one sent
// to look the name up again within Window. Any open ends that wait, so a
// later open is no retry: the kernel retries once.
func (t *Table[K, S]) Retrying(tid uint32, k K) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.threads[tid]
	if e == nil || e.state != sentAgain {
		return false
	}
	delete(t.threads, tid)
	return t.fresh(e, k)
}

// fresh reports whether e is an open of k sent again within Window.
// Call with t.mu held.
func (t *Table[K, S]) fresh(e *entry[K, S], k K) bool {
	return e != nil && e.state == sentAgain && e.key == k && t.clock.Now().Sub(e.at) < Window
}

// sweep drops the stale sentAgain entries (bounced ones expire by
// themselves). Call with t.mu held.
func (t *Table[K, S]) sweep() {
	now := t.clock.Now()
	for tid, e := range t.threads {
		if e.state == sentAgain && now.Sub(e.at) >= Window {
			delete(t.threads, tid)
		}
	}
}

// replace makes e thread tid's entry and returns the one it replaces, or
// nil. Call with t.mu held, and end what it returns once it is released.
func (t *Table[K, S]) replace(tid uint32, e *entry[K, S]) *entry[K, S] {
	old := t.threads[tid]
	t.threads[tid] = e
	return old
}

// end ends a replaced entry: a bounced session whose retry can no longer
// come is discarded. Call without t.mu.
func (t *Table[K, S]) end(old *entry[K, S]) {
	if old != nil && old.state == bounced {
		old.stop()
		t.discard(old.session)
	}
}
