package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// Advisory locks: the kernel sends every fcntl, lockf and flock request
// on a file here (fuse.MountOptions.EnableLocks), and vfs keeps them, by
// secret, with the open file each was taken through (vfs/lockfs.go: a
// writer's vfs.Handle, which releases them after the commit its close
// or release makes, a reader's vfs.ReaderOpen, at its release). This file translates:
// the kernel's lock to a vfs.Lock and back, and a handle to its open file.
// A directory's locks the kernel keeps itself: FUSE sends none. A mount
// that answers no OPEN (skipOpens) gets no RELEASE either, and so leaves
// locks to the kernel, per inode, as before: nothing can write through
// it.

// readHandle is a reader's open file. It holds nothing to read: a reader
// reads its node's revision. But a lock goes with the open file it was
// taken through, and is released with it.
type readHandle struct{ open *vfs.ReaderOpen }

var _ gofs.FileReleaser = (*readHandle)(nil)

// readerFile is the handle of a reader's open file: none where the
// kernel keeps the locks (see above).
func (m *mount) readerFile() gofs.FileHandle {
	if m.skipOpens() {
		return nil
	}
	return &readHandle{open: m.vfs.OpenReader()}
}

func (r *readHandle) Release(ctx context.Context) syscall.Errno {
	r.open.Release()
	return 0
}

// openOf is the open file of f, or nil for none.
func openOf(f gofs.FileHandle) vfs.OpenFile {
	switch f := f.(type) {
	case *readHandle:
		return f.open
	case *writeHandle:
		return f.h
	}
	return nil
}

// fileOps answers what every kind of file node answers alike: the lock
// requests (on the secret, or view, of), and statfs.
type fileOps struct {
	mnt *mount
	of  interface{ Key() store.Key }
}

// fileNode is what fileOps gives each file node.
type fileNode interface {
	gofs.NodeGetlker
	gofs.NodeSetlker
	gofs.NodeSetlkwer
	gofs.NodeStatfser
}

var (
	_ fileNode = (*immutableNode)(nil)
	_ fileNode = (*writerNode)(nil)
	_ fileNode = (*createdNode)(nil)
)

func (o fileOps) Getlk(ctx context.Context, f gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return o.mnt.getlk(o.of.Key(), f, owner, lk, flags, out)
}

func (o fileOps) Setlk(ctx context.Context, f gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return o.mnt.setlk(ctx, o.of.Key(), f, owner, lk, flags, false)
}

func (o fileOps) Setlkw(ctx context.Context, f gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return o.mnt.setlk(ctx, o.of.Key(), f, owner, lk, flags, true)
}

func (fileOps) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return statfs(out) }

// getlk answers F_GETLK on k: the lock that keeps lk from being taken,
// or F_UNLCK.
func (m *mount) getlk(k store.Key, f gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	held := m.vfs.TestLock(k, lockOf(owner, lk, flags), openOf(f))
	*out = fuse.FileLock{Start: held.Start, End: held.End, Typ: fcntlType[held.Type], Pid: held.Pid}
	if held.Type == vfs.Unlock {
		*out = fuse.FileLock{Typ: syscall.F_UNLCK}
	}
	return 0
}

// setlk takes or releases lk on k, through the open file f; wait says
// whether to wait for a lock another holds (F_SETLKW, flock without
// LOCK_NB).
func (m *mount) setlk(ctx context.Context, k store.Key, f gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, wait bool) syscall.Errno {
	set := m.vfs.SetLock
	if wait {
		set = m.vfs.WaitLock
	}
	return m.errno("lock", k.Path(), set(ctx, k, lockOf(owner, lk, flags), openOf(f)))
}

// lockOf is the lock a request asks for: lk, from owner.
func lockOf(owner uint64, lk *fuse.FileLock, flags uint32) vfs.Lock {
	l := vfs.Lock{Start: lk.Start, End: lk.End, Owner: owner, Pid: lk.Pid,
		Flock: flags&fuse.FUSE_LK_FLOCK != 0}
	switch lk.Typ {
	case syscall.F_RDLCK:
		l.Type = vfs.ReadLock
	case syscall.F_WRLCK:
		l.Type = vfs.WriteLock
	default:
		l.Type = vfs.Unlock
	}
	return l
}

// fcntlType is the kernel's type of each vfs.LockType.
var fcntlType = [...]uint32{vfs.Unlock: syscall.F_UNLCK, vfs.ReadLock: syscall.F_RDLCK, vfs.WriteLock: syscall.F_WRLCK}
