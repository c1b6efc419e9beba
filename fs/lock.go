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
// here (fuse.MountOptions.EnableLocks), and the mount keeps the locks by
// secret in a vfs.Locks (vfs/locks.go says why: each revision and each
// writer is an inode of its own). Every node a program can open takes
// them: a revision's, a writer's, a secret being created, a directory.
//
// A lock is released at the owner's FLUSH of the open file it was taken
// through, and at that open file's RELEASE (requests.Flush, Release); a
// reader's close sends no FLUSH (FOPEN_NOFLUSH). A mount that answers no
// OPEN (skipOpens) gets no RELEASE either, and so leaves locks to the
// kernel, per inode, as before: nothing can write through it.

// readHandle is a reader's open file. It holds nothing: a reader reads
// its node's revision. But go-fuse numbers only the open files that have
// a handle, and a lock goes with the open file it was taken through, so
// where locks come here a reader gets one (readerFile).
type readHandle struct{}

// readerFile is the handle of a reader's open file: none where the
// kernel keeps the locks (see above).
func (m *mount) readerFile() gofs.FileHandle {
	if m.skipOpens() {
		return nil
	}
	return readHandle{}
}

var (
	_ gofs.NodeGetlker  = (*immutableNode)(nil)
	_ gofs.NodeSetlker  = (*immutableNode)(nil)
	_ gofs.NodeSetlkwer = (*immutableNode)(nil)
	_ gofs.NodeGetlker  = (*writerNode)(nil)
	_ gofs.NodeSetlker  = (*writerNode)(nil)
	_ gofs.NodeSetlkwer = (*writerNode)(nil)
	_ gofs.NodeGetlker  = (*createdNode)(nil)
	_ gofs.NodeSetlker  = (*createdNode)(nil)
	_ gofs.NodeSetlkwer = (*createdNode)(nil)
	_ gofs.NodeGetlker  = (*dirNode)(nil)
	_ gofs.NodeSetlker  = (*dirNode)(nil)
	_ gofs.NodeSetlkwer = (*dirNode)(nil)
)

func (n *immutableNode) Getlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return n.m.getlk(ctx, n.serves.Key(), owner, lk, flags, out)
}

func (n *immutableNode) Setlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return n.m.setlk(ctx, n.serves.Key(), owner, lk, flags, false)
}

func (n *immutableNode) Setlkw(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return n.m.setlk(ctx, n.serves.Key(), owner, lk, flags, true)
}

func (w *writerNode) Getlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return w.m.getlk(ctx, w.rev.Key(), owner, lk, flags, out)
}

func (w *writerNode) Setlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return w.m.setlk(ctx, w.rev.Key(), owner, lk, flags, false)
}

func (w *writerNode) Setlkw(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return w.m.setlk(ctx, w.rev.Key(), owner, lk, flags, true)
}

func (d *createdNode) Getlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return d.m.getlk(ctx, d.s.Key(), owner, lk, flags, out)
}

func (d *createdNode) Setlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return d.m.setlk(ctx, d.s.Key(), owner, lk, flags, false)
}

func (d *createdNode) Setlkw(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return d.m.setlk(ctx, d.s.Key(), owner, lk, flags, true)
}

func (d *dirNode) Getlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return d.m.getlk(ctx, store.Key{App: d.app}, owner, lk, flags, out)
}

func (d *dirNode) Setlk(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return d.m.setlk(ctx, store.Key{App: d.app}, owner, lk, flags, false)
}

func (d *dirNode) Setlkw(ctx context.Context, _ gofs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return d.m.setlk(ctx, store.Key{App: d.app}, owner, lk, flags, true)
}

// getlk answers F_GETLK on k: the lock that keeps lk from being taken,
// or F_UNLCK.
func (m *mount) getlk(ctx context.Context, k store.Key, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	held := m.locks.TestLock(k, m.lockOf(ctx, owner, lk, flags))
	*out = fuse.FileLock{Start: held.Start, End: held.End, Typ: fcntlType[held.Type], Pid: held.Pid}
	if held.Type == vfs.Unlock {
		*out = fuse.FileLock{Typ: syscall.F_UNLCK}
	}
	return 0
}

// setlk takes or releases lk on k; wait says whether to wait for a lock
// another holds (F_SETLKW, flock without LOCK_NB).
func (m *mount) setlk(ctx context.Context, k store.Key, owner uint64, lk *fuse.FileLock, flags uint32, wait bool) syscall.Errno {
	l := m.lockOf(ctx, owner, lk, flags)
	var err error
	if wait {
		err = m.locks.WaitLock(ctx, k, l)
	} else {
		err = m.locks.SetLock(k, l)
	}
	return m.errno("lock", k.Path(), err)
}

// lockOf is the lock a request asks for: lk, from owner, through the
// open file the request names (requests.open).
func (m *mount) lockOf(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) vfs.Lock {
	l := vfs.Lock{Start: lk.Start, End: lk.End, Owner: owner, Pid: lk.Pid,
		Flock: flags&fuse.FUSE_LK_FLOCK != 0, Open: m.requests.of(ctx).open}
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
