package vfs

import (
	"context"

	"github.com/secretfs/secretfs/store"
)

// The mount's advisory locks (locks.go says how they are kept) go with
// the open file they were taken through: a writer's (Handle) releases the
// closing owner's record locks at its Flush, once that close committed,
// and every lock taken through it at its Release, once the commit it may
// owe is made, so that the next holder reads what was written under the
// lock; a reader's (ReaderOpen) at its Release. Each open file is known
// by a number the FS counts out (FS.opens).

// OpenFile is an open file description a lock is taken through: a
// writer's *Handle or a reader's *ReaderOpen. Only this package makes
// one; nil stands for none (a lock then goes with no open file, and only
// its owner's F_UNLCK releases it).
type OpenFile interface {
	openNumber() uint64
}

var (
	_ OpenFile = (*Handle)(nil)
	_ OpenFile = (*ReaderOpen)(nil)
)

// ReaderOpen is a reader's open file. It holds nothing to read (a reader
// reads its revision); it is what the locks taken through it go with.
type ReaderOpen struct {
	v    *FS
	open uint64
}

// OpenReader counts out a reader's open file, whose Release the adapter
// calls at the kernel's release of it.
func (v *FS) OpenReader() *ReaderOpen { return &ReaderOpen{v: v, open: v.opens.Add(1)} }

func (r *ReaderOpen) openNumber() uint64 { return r.open }

// Release releases every lock taken through the reader's open file: it
// was closed for the last time (a reader's close tells the mount nothing
// before).
func (r *ReaderOpen) Release() { r.v.locks.ReleaseOpen(r.open) }

func (h *Handle) openNumber() uint64 { return h.open }

// through is l as taken through f.
func through(l Lock, f OpenFile) Lock {
	l.Open = 0
	if f != nil {
		l.Open = f.openNumber()
	}
	return l
}

// TestLock returns a lock that keeps l, asked through f, from being taken
// on k, or one of type Unlock if none does (F_GETLK).
func (v *FS) TestLock(k store.Key, l Lock, f OpenFile) Lock {
	return v.locks.TestLock(k, through(l, f))
}

// SetLock takes l on k through f, or releases its range (see
// Locks.SetLock). A writer granted a lock edits what the lock's last
// holder committed (Handle.Locked).
func (v *FS) SetLock(ctx context.Context, k store.Key, l Lock, f OpenFile) error {
	return v.setLock(ctx, k, l, f, false)
}

// WaitLock is SetLock that waits while another owner's lock conflicts
// (see Locks.WaitLock).
func (v *FS) WaitLock(ctx context.Context, k store.Key, l Lock, f OpenFile) error {
	return v.setLock(ctx, k, l, f, true)
}

func (v *FS) setLock(ctx context.Context, k store.Key, l Lock, f OpenFile, wait bool) error {
	l = through(l, f)
	var err error
	if wait {
		err = v.locks.WaitLock(ctx, k, l)
	} else {
		err = v.locks.SetLock(k, l)
	}
	if err == nil {
		v.granted(ctx, k, l, f)
	}
	return err
}

// granted rebases a writer f that was just granted l.
func (v *FS) granted(ctx context.Context, k store.Key, l Lock, f OpenFile) {
	h, ok := f.(*Handle)
	if !ok || l.Type == Unlock {
		return
	}
	// The lock is granted whatever this says: the writer then meets a
	// change made before it as a conflict at its commit.
	if err := h.Locked(ctx); err != nil {
		v.log.WithField("secret", k.String()).WithError(err).Warn("a writer granted a lock could not learn what is stored now: its commit expects what was stored at its open")
	}
}
