package vfs

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

var lockedKey = store.Key{App: "app", Name: "counter"}

func record(owner uint64, typ LockType, start, end uint64) Lock {
	return Lock{Type: typ, Start: start, End: end, Owner: owner, Pid: uint32(owner), Open: owner * 10}
}

func whole(owner uint64, typ LockType) Lock { return record(owner, typ, 0, ToEnd) }

func flockOf(open uint64, typ LockType) Lock {
	return Lock{Type: typ, Start: 0, End: ToEnd, Owner: open, Flock: true, Pid: uint32(open), Open: open}
}

// A write lock excludes every other owner from the secret, whoever asks
// and through whichever revision or writer's inode: the table is kept by
// secret. F_GETLK names the holder.
func TestAWriteLockExcludesOtherOwnersOfTheSecret(t *testing.T) {
	var locks Locks
	if err := locks.SetLock(lockedKey, whole(1, WriteLock)); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []LockType{ReadLock, WriteLock} {
		if err := locks.SetLock(lockedKey, whole(2, typ)); !errors.Is(err, ErrLocked) || fault.KindOf(err) != fault.Locked {
			t.Errorf("another owner's lock of type %d: %v, want ErrLocked", typ, err)
		}
	}
	if got := locks.TestLock(lockedKey, whole(2, ReadLock)); got.Type != WriteLock || got.Pid != 1 {
		t.Errorf("F_GETLK gives %+v, want owner 1's write lock", got)
	}
	if got := locks.TestLock(store.Key{App: "app", Name: "other"}, whole(2, WriteLock)); got.Type != Unlock {
		t.Errorf("another secret is locked: %+v", got)
	}
	if err := locks.SetLock(lockedKey, whole(1, WriteLock)); err != nil {
		t.Errorf("the owner locks again: %v", err)
	}
}

// Read locks share; a write lock waits for every reader.
func TestReadLocksShareAndAWriteLockIsRefusedWhileOneIsHeld(t *testing.T) {
	var locks Locks
	for _, owner := range []uint64{1, 2} {
		if err := locks.SetLock(lockedKey, whole(owner, ReadLock)); err != nil {
			t.Fatalf("owner %d's read lock: %v", owner, err)
		}
	}
	if err := locks.SetLock(lockedKey, whole(3, WriteLock)); !errors.Is(err, ErrLocked) {
		t.Errorf("a write lock while two read: %v", err)
	}
	if err := locks.SetLock(lockedKey, whole(1, WriteLock)); !errors.Is(err, ErrLocked) {
		t.Errorf("a reader's upgrade while another reads: %v", err)
	}
}

// Record locks span bytes: ranges that do not meet do not conflict, and
// unlocking the middle of a range keeps both ends.
func TestRecordLocksConflictOnlyWhereTheirRangesMeet(t *testing.T) {
	var locks Locks
	if err := locks.SetLock(lockedKey, record(1, WriteLock, 0, 99)); err != nil {
		t.Fatal(err)
	}
	if err := locks.SetLock(lockedKey, record(2, WriteLock, 100, ToEnd)); err != nil {
		t.Errorf("a range after: %v", err)
	}
	if err := locks.SetLock(lockedKey, record(1, Unlock, 10, 19)); err != nil {
		t.Fatal(err)
	}
	if err := locks.SetLock(lockedKey, record(3, WriteLock, 10, 19)); err != nil {
		t.Errorf("the range unlocked: %v", err)
	}
	for _, at := range []uint64{9, 20, 99} {
		if err := locks.SetLock(lockedKey, record(4, ReadLock, at, at)); !errors.Is(err, ErrLocked) {
			t.Errorf("byte %d, still locked by owner 1: %v", at, err)
		}
	}
}

// flock and record locks are two kinds that never conflict, as on Linux.
func TestFlockAndRecordLocksDoNotConflict(t *testing.T) {
	var locks Locks
	if err := locks.SetLock(lockedKey, flockOf(7, WriteLock)); err != nil {
		t.Fatal(err)
	}
	if err := locks.SetLock(lockedKey, whole(1, WriteLock)); err != nil {
		t.Errorf("a record lock beside a flock lock: %v", err)
	}
	if err := locks.SetLock(lockedKey, flockOf(8, ReadLock)); !errors.Is(err, ErrLocked) {
		t.Errorf("a second open file's flock: %v", err)
	}
}

// waited reports whether a request waits for a lock of k: it found
// another's lock in its way and took the channel the next release of one
// closes (Locks.changedLocked), which that release drops.
func waited(l *Locks, k store.Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.changed[k]
	return ok
}

// untilLockWaited yields until a request waits for a lock of k, failing t
// if none did within hangBound.
func untilLockWaited(t *testing.T, l *Locks, k store.Key) {
	t.Helper()
	until(t, "a request to wait for a lock of "+k.String(), func() bool { return waited(l, k) })
}

// A waiter gets the lock once the holder releases it, whichever way:
// unlocking, closing a descriptor it wrote through (FLUSH), or its open
// file's last close (RELEASE); or once the holder downgrades its write
// lock to a read lock, which the waiter's read lock shares.
func TestAWaiterGetsTheLockWhenTheHolderLetsGo(t *testing.T) {
	for _, c := range []struct {
		name  string
		letGo func(*Locks)
		keeps LockType // what the holder holds afterwards
	}{
		{"unlock", func(l *Locks) { l.SetLock(lockedKey, whole(1, Unlock)) }, Unlock},
		{"flush", func(l *Locks) { l.ReleaseOwner(10, 1) }, Unlock},
		{"release", func(l *Locks) { l.ReleaseOpen(10) }, Unlock},
		{"downgrade to a read lock", func(l *Locks) { l.SetLock(lockedKey, whole(1, ReadLock)) }, ReadLock},
	} {
		t.Run(c.name, func(t *testing.T) {
			var locks Locks
			if err := locks.SetLock(lockedKey, whole(1, WriteLock)); err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() { got <- locks.WaitLock(context.Background(), lockedKey, whole(2, ReadLock)) }()
			// It met the holder's lock, and without a context to end
			// it only a release ends its wait: what it returns is
			// checked once the holder let go.
			untilLockWaited(t, &locks, lockedKey)
			c.letGo(&locks)
			if err := await(t, "the waiter to return once the holder let go", got); err != nil {
				t.Errorf("the waiter: %v", err)
			}
			// What conflicts with a write lock of each owner is what the
			// other holds.
			if h := locks.TestLock(lockedKey, whole(1, WriteLock)); h.Owner != 2 || h.Type != ReadLock {
				t.Errorf("after the wait, the holder meets %+v; want the waiter's read lock", h)
			}
			if h := locks.TestLock(lockedKey, whole(2, WriteLock)); h.Type != c.keeps || (c.keeps != Unlock && h.Owner != 1) {
				t.Errorf("after the wait, the waiter meets %+v; want the holder's lock of type %d", h, c.keeps)
			}
		})
	}
}

// A signal to a waiting caller ends its wait with EINTR, and it holds
// nothing. The signal comes once the caller waits: the lock was held when
// it asked.
func TestAWaitForALockEndsWithEINTRWhenInterrupted(t *testing.T) {
	var locks Locks
	if err := locks.SetLock(lockedKey, whole(1, WriteLock)); err != nil {
		t.Fatal(err)
	}
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	got := make(chan error, 1)
	go func() { got <- locks.WaitLock(ctx, lockedKey, whole(2, WriteLock)) }()
	untilLockWaited(t, &locks, lockedKey)
	interrupt()
	err := await(t, "the interrupted wait to return", got)
	if fault.KindOf(err) != fault.Interrupted || fault.KindOf(err).Errno() != syscall.EINTR {
		t.Errorf("the interrupted wait: %v (%v), want EINTR", err, fault.KindOf(err))
	}
	locks.ReleaseOpen(10)
	if h := locks.TestLock(lockedKey, whole(3, WriteLock)); h.Type != Unlock {
		t.Errorf("after the holder let go, %+v holds the lock; the interrupted waiter must hold nothing", h)
	}
}

// Closing a descriptor releases only the closer's record locks taken
// through that open file; an open file's release, only what was locked
// through it.
func TestReleasesTakeOnlyWhatIsTheirs(t *testing.T) {
	var locks Locks
	other := store.Key{App: "app", Name: "other"}
	locks.SetLock(lockedKey, record(1, WriteLock, 0, 9)) // through open file 10
	locks.SetLock(other, record(1, WriteLock, 0, 9))
	elsewhere := record(1, WriteLock, 30, 39)
	elsewhere.Open = 11
	locks.SetLock(lockedKey, elsewhere)
	locks.SetLock(lockedKey, record(2, WriteLock, 10, 19))
	locks.SetLock(lockedKey, flockOf(10, WriteLock)) // open file 10's flock, owned by it
	locks.ReleaseOwner(10, 1)
	for _, k := range []store.Key{lockedKey, other} {
		if h := locks.TestLock(k, record(3, WriteLock, 0, 9)); h.Type != Unlock {
			t.Errorf("%v: owner 1's record lock through open file 10 survives its close: %+v", k, h)
		}
	}
	for _, c := range []struct {
		l    Lock
		want uint64
	}{
		{record(3, WriteLock, 30, 39), 1}, // through another open file
		{record(3, WriteLock, 10, 19), 2}, // another owner's
		{flockOf(9, WriteLock), 10},       // a flock lock: its open file's, until released
	} {
		if h := locks.TestLock(lockedKey, c.l); h.Owner != c.want {
			t.Errorf("%+v: held by %+v, want owner %d's lock kept", c.l, h, c.want)
		}
	}
	locks.ReleaseOpen(10)
	if h := locks.TestLock(lockedKey, flockOf(9, WriteLock)); h.Type != Unlock {
		t.Errorf("a flock lock survives the release of its open file: %+v", h)
	}
	locks.ReleaseOpen(20) // owner 2's open file
	if h := locks.TestLock(lockedKey, record(3, WriteLock, 10, 19)); h.Type != Unlock {
		t.Errorf("a lock survives the release of the open file it was taken through: %+v", h)
	}
}

// flock(2) converts a lock by removing it first: of two holders of a
// shared lock that both ask for it exclusive, one gets it at once and the
// other once the first lets go, rather than both waiting for ever.
func TestTwoSharedFlocksUpgradedAtOnceDoNotWaitForEachOther(t *testing.T) {
	var locks Locks
	for _, open := range []uint64{1, 2} {
		if err := locks.SetLock(lockedKey, flockOf(open, ReadLock)); err != nil {
			t.Fatal(err)
		}
	}
	first := make(chan error)
	go func() { first <- locks.WaitLock(context.Background(), lockedKey, flockOf(1, WriteLock)) }()
	select {
	case err := <-first:
		t.Fatalf("the first upgrade got %v while the other shared lock was held", err)
	case <-time.After(50 * time.Millisecond): // waiting, as it must
	}
	if err := locks.SetLock(lockedKey, flockOf(2, WriteLock)); err != nil {
		t.Fatalf("the second upgrade, once the first dropped its shared lock to wait: %v", err)
	}
	locks.SetLock(lockedKey, flockOf(2, Unlock))
	if err := <-first; err != nil {
		t.Errorf("the first upgrade, once the second let go: %v", err)
	}
}

// An owner's locks of one type that meet, through one open file, are one
// lock, as on Linux: F_GETLK names the whole range, and the table holds
// one lock, not one a record. Through another open file, or of another
// type, they stay apart.
func TestAnOwnersLocksThatMeetAreJoined(t *testing.T) {
	var locks Locks
	for at := uint64(0); at < 100; at += 10 {
		if err := locks.SetLock(lockedKey, record(1, WriteLock, at, at+9)); err != nil {
			t.Fatal(err)
		}
	}
	if err := locks.SetLock(lockedKey, record(1, WriteLock, 95, 119)); err != nil { // overlapping the last
		t.Fatal(err)
	}
	if h := locks.TestLock(lockedKey, record(2, ReadLock, 50, 50)); h.Start != 0 || h.End != 119 {
		t.Errorf("F_GETLK names %+v, want owner 1's lock of bytes 0 to 119", h)
	}
	elsewhere := record(1, WriteLock, 120, 129)
	elsewhere.Open = 11
	for _, l := range []Lock{elsewhere, record(1, ReadLock, 130, 139)} {
		if err := locks.SetLock(lockedKey, l); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(locks.held[lockedKey]); n != 3 {
		t.Errorf("the table holds %d locks: %+v; want 3, those that meet joined", n, locks.held[lockedKey])
	}
	locks.ReleaseOwner(11, 1)
	if h := locks.TestLock(lockedKey, record(2, ReadLock, 120, 129)); h.Type != Unlock {
		t.Errorf("the lock through open file 11 survives its close: %+v", h)
	}
	if h := locks.TestLock(lockedKey, record(2, WriteLock, 119, 119)); h.Type != WriteLock {
		t.Errorf("byte 119, locked through open file 10, is free after the close of open file 11: %+v", h)
	}
}

// fill has owner take a lock of every other byte from start on until k
// holds MaxLocks locks.
func fill(t *testing.T, locks *Locks, k store.Key, owner, start uint64) {
	t.Helper()
	for at := start; len(locks.held[k]) < MaxLocks; at += 2 {
		if err := locks.SetLock(k, record(owner, ReadLock, at, at)); err != nil {
			t.Fatalf("lock %d of the secret: %v", len(locks.held[k])+1, err)
		}
	}
}

// isENOLCK reports whether err is the refusal of a lock beyond the bound.
func isENOLCK(err error) bool {
	return fault.KindOf(err) == fault.NoLocks && fault.KindOf(err).Errno() == syscall.ENOLCK
}

// A secret holds at most MaxLocks locks: a request for one more, of the
// owner that filled it or another, waiting or not, record lock or flock,
// is refused with ENOLCK at once, and the table is as it was. Requests
// that add nothing are granted still; other secrets are not full.
func TestLocksBeyondTheBoundAreENOLCKAndChangeNothing(t *testing.T) {
	var locks Locks
	wide := record(1, ReadLock, 1<<30, 1<<30+2)
	if err := locks.SetLock(lockedKey, wide); err != nil {
		t.Fatal(err)
	}
	fill(t, &locks, lockedKey, 1, 0)
	was := slices.Clone(locks.held[lockedKey])
	for name, set := range map[string]func() error{
		"another byte":    func() error { return locks.SetLock(lockedKey, record(1, ReadLock, 1<<20, 1<<20)) },
		"another owner's": func() error { return locks.SetLock(lockedKey, record(2, ReadLock, 1<<21, 1<<21)) },
		"a wait": func() error { // for nobody: nothing else asks for the byte
			return locks.WaitLock(context.Background(), lockedKey, record(4, WriteLock, 1<<22, 1<<22))
		},
		"a flock": func() error { return locks.SetLock(lockedKey, flockOf(3, WriteLock)) },
		"a write lock of the middle of a read lock": func() error {
			return locks.SetLock(lockedKey, record(1, WriteLock, 1<<30+1, 1<<30+1))
		},
	} {
		if err := set(); !isENOLCK(err) {
			t.Errorf("%s: %v, want ENOLCK", name, err)
		}
		if got := locks.held[lockedKey]; !slices.Equal(got, was) {
			t.Errorf("%s: the refusal changed the table: %d locks", name, len(got))
		}
	}
	if err := locks.SetLock(lockedKey, record(1, WriteLock, 0, 0)); err != nil {
		t.Errorf("a lock in place of one held: %v", err)
	}
	if err := locks.SetLock(lockedKey, record(1, ReadLock, 3, 3)); err != nil {
		t.Errorf("a lock that joins two held (bytes 2 and 4): %v", err)
	}
	if err := locks.SetLock(lockedKey, record(2, ReadLock, 1<<20, 1<<20)); err != nil {
		t.Errorf("a lock once the join left room: %v", err)
	}
	if err := locks.SetLock(store.Key{App: "app", Name: "other"}, whole(1, WriteLock)); err != nil {
		t.Errorf("a lock of another secret: %v", err)
	}
	locks.ReleaseOpen(10)
	if err := locks.SetLock(lockedKey, record(3, WriteLock, 0, 1<<19)); err != nil {
		t.Errorf("a lock once the filler's open file was released: %v", err)
	}
}

// An unlock of the middle of a lock splits it, and so adds a lock: at the
// bound, it is granted to an owner holding a few locks, whoever filled
// the table, and never leaves held what it released; an owner holding
// many is refused it with ENOLCK, and keeps what it held. An owner splits
// its locks no further than fewLocks so.
func TestAnUnlockBeyondTheBoundIsRefusedOnlyToAnOwnerHoldingMany(t *testing.T) {
	var locks Locks
	const base = 1 << 40
	if err := locks.SetLock(lockedKey, record(2, WriteLock, base, base+99)); err != nil {
		t.Fatal(err)
	}
	wide := record(1, ReadLock, 1<<30, 1<<30+2)
	if err := locks.SetLock(lockedKey, wide); err != nil {
		t.Fatal(err)
	}
	fill(t, &locks, lockedKey, 1, 0)

	if err := locks.SetLock(lockedKey, record(2, Unlock, base+10, base+19)); err != nil {
		t.Fatalf("the few-locks owner's unlock of the middle of its lock: %v", err)
	}
	if h := locks.TestLock(lockedKey, record(3, WriteLock, base+10, base+19)); h.Type != Unlock {
		t.Errorf("the range unlocked is held: %+v", h)
	}
	for _, at := range []uint64{base + 9, base + 20} {
		if h := locks.TestLock(lockedKey, record(3, ReadLock, at, at)); h.Owner != 2 {
			t.Errorf("byte %d, kept by the unlock of the middle, is held by %+v", at-base, h)
		}
	}

	was := slices.Clone(locks.held[lockedKey])
	if err := locks.SetLock(lockedKey, record(1, Unlock, 1<<30+1, 1<<30+1)); !isENOLCK(err) {
		t.Errorf("the filler's unlock of the middle of its lock: %v, want ENOLCK", err)
	}
	if got := locks.held[lockedKey]; !slices.Equal(got, was) {
		t.Errorf("the refused unlock changed the table")
	}
	if err := locks.SetLock(lockedKey, record(1, Unlock, 1<<30, 1<<30+2)); err != nil {
		t.Errorf("the filler's unlock of a whole lock, which adds nothing: %v", err)
	}

	for at := uint64(base + 21); ; at += 2 {
		owned := len(slices.DeleteFunc(slices.Clone(locks.held[lockedKey]), func(h Lock) bool { return h.Owner != 2 }))
		err := locks.SetLock(lockedKey, record(2, Unlock, at, at))
		if owned < fewLocks && err != nil {
			t.Fatalf("the unlock of byte %d while holding %d locks: %v", at-base, owned, err)
		}
		if owned >= fewLocks {
			if !isENOLCK(err) {
				t.Errorf("the unlock of byte %d while holding %d locks: %v, want ENOLCK", at-base, owned, err)
			}
			break
		}
	}
}
