package vfs

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// Advisory locks (fcntl and lockf record locks, flock) are kept here, by
// secret.
//
// The kernel keeps a file's locks with its inode, and here every revision
// of a secret and every writer of one is an inode of its own: a lock
// taken on one revision would exclude nobody who opened the secret after
// it was rewritten, and a read-modify-write under flock(1) would lose
// updates (4 processes incrementing a counter 10 times each left 23 to 25
// of 40). So the mount has the kernel send it every lock request, and
// keeps the locks by secret (Locks).
//
// A record lock belongs to an owner, the kernel's id of a process's file
// table; an open file description lock (F_OFD_SETLK) and a flock lock
// belong to their open file. Record locks span bytes, flock locks the
// file; the two kinds never conflict with each other, as on Linux. A
// record lock is released by its owner, when the owner closes a
// descriptor of the open file it was taken through and the kernel tells
// the mount so (a FLUSH: a writer's descriptor; ReleaseOwner), and when
// that open file is released, by its last descriptor's close or its
// process's end (ReleaseOpen). The kernel tells nothing of the close of a
// reader's descriptor, which it sends no FLUSH for, to keep hot reads off
// the mount; and it names the open file a close was of, not the secret.
// So a process that locked through one descriptor and closes another of
// the same secret keeps its lock until it closes the first, or exits, as
// with an open file description lock, rather than losing it as POSIX
// says; and a record lock taken through a reader's descriptor that a
// child inherited lasts until the child closes it too. The kernel sends
// a release once close(2) has returned: a lock released by a last close
// is free a moment later, so a non-blocking attempt (flock -n, F_SETLK)
// made at once may still fail; a blocking one waits for it.
//
// Locks are kept by name: they stay with the name across a rename or an
// unlink of the secret, and each mount (a replaced one and its successor
// too) keeps its own. No deadlock between two waiting owners of record
// locks is detected (EDEADLK).

// LockType is what a lock lets others do.
type LockType uint8

const (
	// Unlock asks to release a range (F_UNLCK); as the answer of
	// TestLock it says that nothing conflicts.
	Unlock LockType = iota
	// ReadLock lets others read-lock the range, not write-lock it
	// (F_RDLCK).
	ReadLock
	// WriteLock lets others lock none of the range (F_WRLCK).
	WriteLock
)

// ToEnd is the End of a lock that reaches the end of the file, however
// far it grows (the kernel's OFFSET_MAX).
const ToEnd = 1<<63 - 1

// Lock is a lock, or a request for one.
type Lock struct {
	Type       LockType
	Start, End uint64 // the first and the last byte locked
	Owner      uint64 // the kernel's lock owner: a file table, or for flock an open file
	Flock      bool   // taken with flock(2): the whole file
	Pid        uint32 // the process that asked, for F_GETLK
	Open       uint64 // the open file description it was asked through (the adapter's number)
}

func (l Lock) overlaps(o Lock) bool { return l.Start <= o.End && o.Start <= l.End }

// conflicts reports whether held, another's lock of the same kind,
// keeps l from being taken.
func (l Lock) conflicts(held Lock) bool {
	return held.Owner != l.Owner && held.Flock == l.Flock && l.overlaps(held) &&
		(l.Type == WriteLock || held.Type == WriteLock)
}

// MaxLocks bounds the locks a secret holds, of every owner and kind
// together. A request that would add to a table already holding MaxLocks
// is refused with fault.NoLocks (ENOLCK, as Linux answers a lock it
// cannot allocate) and changes nothing. Real programs hold a handful (a
// flock lock; SQLite a few bytes of a file): the bound is there for a
// local user who may open a secret and takes a lock on every other byte
// of it, which grew the mount's memory, and the time of every request
// (each scans the secret's locks), without end. At 1024 locks of 48
// bytes a secret's table stays small, and its scan quick.
//
// An unlock of the middle of a lock splits it in two, and so may add to a
// full table too; Linux may refuse it so (ENOLCK). Here an owner holding
// fewer than fewLocks locks of the secret is never refused an unlock:
// whoever filled the table, a program holding a handful releases what it
// asks, and no lock it believes released stays held. Such unlocks are
// bounded too: while the table is full no owner takes its first lock, so
// the owners that may split are the at most MaxLocks that held one when
// it filled, and each grows to fewLocks at the most: the table never
// holds more than MaxLocks*fewLocks (16384, 768 KiB).
//
// The bound is by secret, not by owner: an owner is cheap to make (an
// open(2) for flock and open file description locks, a fork for record
// locks), so a bound by owner would stop nobody this one does not. A
// full table keeps others from locking the secret, as one lock of the
// whole file nearly does already: whoever may read it may take a read
// lock, which keeps every writer's lock out.
const (
	MaxLocks = 1024
	fewLocks = 16
)

// ErrLocked is in the chain of SetLock's error when another owner's lock
// conflicts (EAGAIN).
var ErrLocked = fault.E(fault.Locked, "held by another")

// Locks is the mount's table of advisory locks, by secret. Its methods
// may be called from many goroutines; its one lock, Locks.mu, is taken
// alone. The zero value is ready to use.
type Locks struct {
	mu      sync.Mutex
	held    map[store.Key][]Lock
	changed map[store.Key]chan struct{} // closed when a lock of the key is released
}

// TestLock returns a lock that keeps l from being taken on k, or one of
// type Unlock if none does (F_GETLK).
func (t *Locks) TestLock(k store.Key, l Lock) Lock {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.held[k] {
		if l.conflicts(h) {
			return h
		}
	}
	return Lock{Type: Unlock}
}

// SetLock takes l on k, or releases its range if l.Type is Unlock
// (F_SETLK, flock with LOCK_NB). A lock of another owner that conflicts
// refuses it with ErrLocked, at once.
func (t *Locks) SetLock(k store.Key, l Lock) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.setLocked(k, l)
	return err
}

// WaitLock is SetLock that waits while another owner's lock conflicts
// (F_SETLKW, flock without LOCK_NB): until the lock is taken, or until
// ctx is done (the kernel interrupted the request: a signal came to the
// caller), which it returns as fault.Interrupted (EINTR).
func (t *Locks) WaitLock(ctx context.Context, k store.Key, l Lock) error {
	for {
		t.mu.Lock()
		wait, err := t.setLocked(k, l)
		t.mu.Unlock()
		if wait == nil {
			return err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return fault.E(k.Path(), fault.Interrupted, "a signal came while waiting for a lock")
		}
	}
}

// setLocked takes (or releases) l on k. If another's lock conflicts, it
// returns ErrLocked and a channel closed at the next release of a lock
// of k. t.mu must be held.
func (t *Locks) setLocked(k store.Key, l Lock) (wait <-chan struct{}, err error) {
	held := t.held[k]
	before := len(held)
	if l.Flock && l.Type != Unlock {
		// flock(2) converts a lock by removing it first: two holders of
		// a shared lock that both ask for it exclusive do not wait for
		// each other for ever; one gets it.
		kept := slices.DeleteFunc(slices.Clone(held), func(h Lock) bool { return h.Flock && h.Owner == l.Owner })
		if len(kept) != len(held) {
			t.store(k, kept, true)
			held = kept
		}
	}
	if l.Type != Unlock && slices.ContainsFunc(held, l.conflicts) {
		return t.changedLocked(k), ErrLocked
	}
	kept, released := replaceRange(held, l)
	if len(kept) > MaxLocks && len(kept) > before && !mayExceed(held, l) {
		// A flock conversion, which dropped the lock held first, adds
		// nothing: it is never refused here, and so never loses its lock.
		return nil, fault.E(k.Path(), fault.NoLocks, fmt.Sprintf("the secret holds %d locks, and may hold %d", before, MaxLocks))
	}
	t.store(k, kept, released)
	return nil, nil
}

// mayExceed reports whether l may add to a full table held: an unlock by
// an owner that holds fewer than fewLocks locks (see MaxLocks).
func mayExceed(held []Lock, l Lock) bool {
	if l.Type != Unlock {
		return false
	}
	owned := 0
	for _, h := range held {
		if h.Owner == l.Owner && h.Flock == l.Flock {
			owned++
		}
	}
	return owned < fewLocks
}

// replaceRange returns held with l's owner's locks of l's range replaced
// by l (released, for Unlock): what lies outside the range is kept, split
// if need be, and a lock l meets (joins) becomes one with it. released
// says whether a lock was given up or weakened.
func replaceRange(held []Lock, l Lock) (kept []Lock, released bool) {
	for _, h := range held {
		if h.Owner != l.Owner || h.Flock != l.Flock || !h.overlaps(l) {
			kept = append(kept, h)
			continue
		}
		released = released || h.Type != l.Type
		if h.Start < l.Start {
			before := h
			before.End = l.Start - 1
			kept = append(kept, before)
		}
		if h.End > l.End {
			after := h
			after.Start = l.End + 1
			kept = append(kept, after)
		}
	}
	if l.Type != Unlock {
		kept = slices.DeleteFunc(kept, func(h Lock) bool {
			if !l.joins(h) {
				return false
			}
			l.Start, l.End = min(l.Start, h.Start), max(l.End, h.End)
			return true
		})
		kept = append(kept, l)
	}
	return kept, released
}

// joins reports whether l and h, which do not overlap, are one lock, as
// Linux joins a process's record locks: of one owner, kind and type, and
// one ending where the other starts. Those taken through other open files
// stay apart, as a close releases them apart (ReleaseOwner). So a program
// that locks a file's records one after the other holds one lock, not one
// a record.
func (l Lock) joins(h Lock) bool {
	return h.Owner == l.Owner && h.Flock == l.Flock && h.Type == l.Type && h.Open == l.Open &&
		(h.End < l.Start && h.End+1 == l.Start || l.End < h.Start && l.End+1 == h.Start)
}

// ReleaseOwner releases the record locks owner took through the open
// file open, of every secret: the owner closed a descriptor of it
// (FLUSH).
func (t *Locks) ReleaseOwner(open, owner uint64) {
	t.release(func(_ store.Key, h Lock) bool { return !h.Flock && h.Owner == owner && h.Open == open })
}

// ReleaseOpen releases the locks taken through the open file
// description open, of every secret: it was closed for the last time
// (the kernel's RELEASE), by its last descriptor or its process's end.
func (t *Locks) ReleaseOpen(open uint64) {
	t.release(func(_ store.Key, h Lock) bool { return h.Open == open })
}

// release drops every lock gone says is, and wakes those waiting on
// their secrets.
func (t *Locks) release(gone func(store.Key, Lock) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, held := range t.held { // most often none: every reader's release comes here
		var kept []Lock
		for _, h := range held {
			if !gone(k, h) {
				kept = append(kept, h)
			}
		}
		if len(kept) != len(held) {
			t.store(k, kept, true)
		}
	}
}

// store makes held the locks of k and, if released says a lock was
// given up or weakened, wakes those waiting on k. t.mu must be held.
func (t *Locks) store(k store.Key, held []Lock, released bool) {
	if t.held == nil {
		t.held = map[store.Key][]Lock{}
	}
	if len(held) == 0 {
		delete(t.held, k)
	} else {
		t.held[k] = held
	}
	if ch, ok := t.changed[k]; ok && released {
		close(ch)
		delete(t.changed, k)
	}
}

// changedLocked returns the channel closed at the next release of a lock
// of k. t.mu must be held.
func (t *Locks) changedLocked(k store.Key) <-chan struct{} {
	if t.changed == nil {
		t.changed = map[store.Key]chan struct{}{}
	}
	ch, ok := t.changed[k]
	if !ok {
		ch = make(chan struct{})
		t.changed[k] = ch
	}
	return ch
}
