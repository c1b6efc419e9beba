package fs

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/internal/inotable"
	"github.com/secretfs/secretfs/internal/proc"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// immutable is what the inode of a revision (vfs.Revision) or of a
// view's rendering (vfs.ViewRevision) serves: neither ever changes.
type immutable interface {
	Key() store.Key
	Attr() vfs.Attr
	// Touch records a read the kernel served from its page cache.
	Touch()
	Open(ctx context.Context, c vfs.Caller, flags uint32) (*vfs.Handle, error)
	Read(ctx context.Context, dest []byte, off int64) (int, error)
	// Unpin lets go of what it holds (a revision's snapshot, a
	// rendering and its inputs' snapshots) until its next use.
	Unpin()
}

// immutableNode is the inode of one committed revision of a secret (rev)
// or of one rendering of a view (view): its content and attributes never
// change, so the kernel may cache both. A writer that opens one is sent
// to an inode of its own (writerNode, writer.go); one that cannot be (an
// open not by path), and the mount's own change signal on a view's, gets
// a descriptor here that bypasses the page cache (writeHandle). A commit
// makes a new revision, a new inode.
type immutableNode struct {
	gofs.Inode
	fileOps
	inotable.Entry // its number, and what mount.table has it as
	m              *mount
	serves         immutable         // rev or view
	rev            *vfs.Revision     // the revision served, or nil
	view           *vfs.ViewRevision // the rendering served, or nil
	// writers counts the writers' descriptors open on this inode (see
	// attrTimeout).
	writers atomic.Int32
}

var (
	_ gofs.NodeGetattrer   = (*immutableNode)(nil)
	_ gofs.NodeSetattrer   = (*immutableNode)(nil)
	_ gofs.NodeOpener      = (*immutableNode)(nil)
	_ gofs.NodeReader      = (*immutableNode)(nil)
	_ gofs.NodeWriter      = (*immutableNode)(nil)
	_ gofs.NodeFlusher     = (*immutableNode)(nil)
	_ gofs.NodeFsyncer     = (*immutableNode)(nil)
	_ gofs.NodeOnForgetter = (*immutableNode)(nil)
)

// id is what the node is now: the revision it serves (which a rename can
// change: see mount.renamedInPlace), or its rendering.
func (n *immutableNode) id() inotable.ID {
	if n.view != nil {
		return inotable.ID{Key: n.view.Key(), IV: n.view.Digest()}
	}
	return inotable.Of(n.rev.Key(), n.rev.Meta().Revision())
}

// OnForget unpins (a rendering is wiped): the kernel holds no reference,
// so nobody can read it through this inode any more (but see
// mount.revive).
func (n *immutableNode) OnForget() {
	n.serves.Unpin()
	n.m.forgot(n)
}

// Getattr answers with the revision's attributes, a writer's descriptor
// too: the kernel keeps one size per inode, which readers of the revision
// read by (see attrTimeout). The kernel refreshes attributes through a
// descriptor when a read finds them expired: a read the page cache served,
// which counts as a read of the plaintext (Touch), unless it is the
// mount's own change signal.
func (n *immutableNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if n.m.requests.viaHandle(ctx) && !n.m.isOwnSignal(ctx) {
		n.serves.Touch()
	}
	fill(&out.Attr, n.serves.Attr())
	out.SetTimeout(n.attrTimeout())
	return 0
}

// attrTimeout is how long the kernel may keep this revision's attributes:
// the TTL (they never change), but no time while a writer has the inode
// open: a writer's write past the revision's end raises the size the
// kernel keeps for the inode, which would let a reader whose pages are
// cached read the zeros after the revision's end; asked again, the mount
// sets it back (and the kernel then drops the pages). Readers that open
// meanwhile bypass the page cache (Open).
func (n *immutableNode) attrTimeout() time.Duration {
	if n.writers.Load() > 0 {
		return noAttrCache
	}
	return kernelTime(n.m.opts.TTL)
}

// Open on a read-only mount answers ENOSYS: the kernel then stops
// sending OPEN and FLUSH for the whole mount, and keeps the pages of every
// inode cached (safe: they never change). Elsewhere a reader of the
// revision the name points at keeps the kernel's pages (FOPEN_KEEP_CACHE)
// and closes without a FLUSH (FOPEN_NOFLUSH): one request per open. A
// writer's descriptor bypasses the page cache, whose pages stay those of
// this revision (FOPEN_KEEP_CACHE: do not drop them at this open).
func (n *immutableNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.m.noOpen.Load() {
		return nil, 0, syscall.ENOSYS
	}
	h := n.m.takeTurn(ctx, n.serves.Key(), flags) // a bounced open's retry that came back here
	var err error
	if h == nil {
		h, err = n.m.open(ctx, n.serves, flags)
		if err == nil && n.m.bounceWriter(ctx, n, h) {
			return nil, 0, syscall.ESTALE // retried on a writer's inode (writer.go)
		}
	}
	fh, fuseFlags, errno := n.m.opened(n.serves.Key(), h, err, fuse.FOPEN_KEEP_CACHE)
	switch w, ok := fh.(*writeHandle); {
	case ok:
		w.countOn(n)
	case errno == 0 && n.writers.Load() > 0:
		// A reader while a writer has the inode open reads past the
		// page cache and the kernel's size, which the writer's writes
		// move (attrTimeout): what it reads is what the mount answers,
		// the revision's bytes and no more.
		fuseFlags = fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH
	}
	return fh, fuseFlags, errno
}

// open opens what serves for flags. An open sent to look the name up
// again (vfs.ErrLookUpAgain, ESTALE) is retried by the kernel once, from
// the same thread; that retry is told so (vfs.Caller.Again).
func (m *mount) open(ctx context.Context, serves interface {
	Key() store.Key
	Open(context.Context, vfs.Caller, uint32) (*vfs.Handle, error)
}, flags uint32) (*vfs.Handle, error) {
	c := m.caller(ctx, openFor(flags))
	k := serves.Key()
	c.Again = m.retries.Retrying(c.Thread, k)
	h, err := serves.Open(ctx, c, flags)
	if errors.Is(err, vfs.ErrLookUpAgain) && !c.Again {
		m.retries.SentAgain(c.Thread, k)
	}
	return h, err
}

// opened answers an open of k that vfs answered with h (a writer's
// session; nil for a reader) or err. A reader keeps the kernel's pages
// and closes without a FLUSH; a writer's descriptor bypasses the page
// cache, whose pages stay if keep is FOPEN_KEEP_CACHE.
func (m *mount) opened(k store.Key, h *vfs.Handle, err error, keep uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	switch {
	case err != nil:
		return nil, 0, m.errno("open", k.Path(), err)
	case h != nil:
		return m.writeHandle(h), fuse.FOPEN_DIRECT_IO | keep, 0
	}
	return m.readerFile(), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// Flush commits a writer's session. On a read-only mount it answers
// ENOSYS, so that the kernel stops sending it (no descriptor there can
// have anything to commit).
func (n *immutableNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	if h, ok := fh.(*writeHandle); ok {
		return h.Flush(ctx)
	}
	if n.m.noOpen.Load() {
		return syscall.ENOSYS
	}
	return 0
}

// Fsync commits a writer's session; a reader has nothing to sync.
func (n *immutableNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := fh.(*writeHandle); ok {
		return h.Fsync(ctx, flags)
	}
	return 0
}

func (n *immutableNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return n.m.read(ctx, fh, n.serves, dest, off)
}

// read serves a READ of a writer's descriptor (fh) from its buffer, and a
// reader's from what the inode serves.
func (m *mount) read(ctx context.Context, fh gofs.FileHandle, serves immutable, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := fh.(*writeHandle); ok {
		return h.Read(ctx, dest, off)
	}
	got, err := serves.Read(ctx, dest, off)
	if err != nil {
		return nil, m.errno("read", serves.Key().Path(), err)
	}
	return wipingResult(dest[:got]), 0
}

// Write through a descriptor this file system gave no handle for comes
// only from an open the kernel made without asking (a read-only mount:
// see Open): refused, EROFS, and the kernel drops the pages it wrote
// into, so readers read this revision still.
func (n *immutableNode) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if h, ok := fh.(*writeHandle); ok {
		return h.Write(ctx, data, off)
	}
	clear(data)
	return 0, n.m.errno("write", n.serves.Key().Path(), n.m.vfs.WriteWithoutOpen(n.serves.Key()))
}

// Setattr refuses what the mount options fix (and a view, anything), and
// truncates (see vfs.FS.Setattr). The reply describes this revision,
// unchanged (a truncate(2) by path commits a new one, an ftruncate goes to
// the writer's buffer): the kernel sets the inode's size from it, and
// readers of this revision share that size.
func (n *immutableNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.m.setattr(ctx, n.serves.Key(), fh, in); errno != 0 {
		return errno
	}
	fill(&out.Attr, n.serves.Attr())
	out.SetTimeout(n.attrTimeout())
	out.Ino = n.Ino // go-fuse fills it in a GETATTR's reply, not a SETATTR's
	return 0
}

// setattr asks vfs for the change a SETATTR of k through fh asks for. A
// size may commit (truncate(2) by path), which the audit log records.
func (m *mount) setattr(ctx context.Context, k store.Key, fh gofs.FileHandle, in *fuse.SetAttrIn) syscall.Errno {
	need := proc.Want(0)
	if _, ok := in.GetSize(); ok {
		need = audited
	}
	return m.errno("setattr", k.Path(), m.vfs.Setattr(ctx, m.caller(ctx, need), k, handleOf(fh), change(in)))
}

// createdNode is the inode of a secret created through this mount
// (vfs.Secret): what the name points at from create(2) until its first
// commit, when the name is pointed at the committed revision. The creator
// keeps writing through it; its later commits are new revisions too.
// While nothing is committed the name exists only for this mount, and
// reading it finds nothing.
type createdNode struct {
	gofs.Inode
	fileOps
	m *mount
	s *vfs.Secret
}

var (
	_ gofs.NodeGetattrer   = (*createdNode)(nil)
	_ gofs.NodeSetattrer   = (*createdNode)(nil)
	_ gofs.NodeOpener      = (*createdNode)(nil)
	_ gofs.NodeOnForgetter = (*createdNode)(nil)
)

func (d *createdNode) OnForget() { d.m.forgotCreated(d) }

// Getattr never waits: the closing writer may be the caller itself (a
// program's first fstat of the stdout its shell redirected).
func (d *createdNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return d.attr(fh, d.m.requests.viaHandle(ctx), out)
}

// attr fills out with the attributes of the writer's buffer, for a
// request through its descriptor (writer), or else the secret's. They
// change as it is written: the kernel keeps them for no time.
func (d *createdNode) attr(fh gofs.FileHandle, writer bool, out *fuse.AttrOut) syscall.Errno {
	fillWriting(out, fh, writer, d.s.Attr(), d.StableAttr().Ino, kernelTime(0))
	return 0
}

// fillWriting answers a GETATTR or SETATTR of an inode a writer writes
// (a secret being created, a writer's own inode): the attributes of the
// writer's buffer behind fh, for the writer (writer), else others, kept
// for timeout; with the inode's number ino, which go-fuse fills in a
// GETATTR's reply but not in a SETATTR's.
func fillWriting(out *fuse.AttrOut, fh gofs.FileHandle, writer bool, others vfs.Attr, ino uint64, timeout time.Duration) {
	if h := handleOf(fh); h != nil && writer {
		fill(&out.Attr, h.Attr())
	} else {
		fill(&out.Attr, others)
	}
	out.SetTimeout(timeout)
	out.Ino = ino
}

// Open gives a writer a session of its own (see vfs.Secret.Open).
func (d *createdNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	h, err := d.s.Open(ctx, d.m.caller(ctx, openFor(flags)), flags)
	return d.m.opened(d.s.Key(), h, err, 0)
}

// Setattr: a truncation through the writer's descriptor answers with its
// buffer's attributes.
func (d *createdNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := d.m.setattr(ctx, d.s.Key(), fh, in); errno != 0 {
		return errno
	}
	_, truncated := in.GetSize()
	return d.attr(fh, truncated, out)
}

// writeHandle is one open descriptor of a writer: a vfs.Handle.
type writeHandle struct {
	m *mount
	h *vfs.Handle // also the open file its locks go with (lock.go)
	// writers is the count of writers of the revision's inode it was
	// opened on (nil on a secret being created), which Release
	// decrements.
	writers *atomic.Int32
}

var (
	_ gofs.FileReader   = (*writeHandle)(nil)
	_ gofs.FileWriter   = (*writeHandle)(nil)
	_ gofs.FileFlusher  = (*writeHandle)(nil)
	_ gofs.FileFsyncer  = (*writeHandle)(nil)
	_ gofs.FileReleaser = (*writeHandle)(nil)
)

// handleOf returns the writer's handle behind fh, or nil.
func handleOf(fh gofs.FileHandle) *vfs.Handle {
	if w, ok := fh.(*writeHandle); ok {
		return w.h
	}
	return nil
}

// path names the secret the handle writes, for a log line.
func (w *writeHandle) path() store.Key { return w.h.Meta().Key }

func (w *writeHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := w.h.Read(ctx, dest, off)
	if err != nil {
		return nil, w.m.errno("read", w.path().Path(), err)
	}
	return wipingResult(dest[:n]), 0
}

func (w *writeHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := w.h.Write(w.m.caller(ctx, 0), data, off)
	clear(data) // go-fuse's request buffer, which it reuses: the bytes are in the session now
	if err != nil {
		return 0, w.m.errno("write", w.path().Path(), err)
	}
	return uint32(n), 0
}

// writeHandle is a new writer's handle of h.
func (m *mount) writeHandle(h *vfs.Handle) *writeHandle {
	return &writeHandle{m: m, h: h}
}

// Flush commits, then releases the closer's record locks (vfs.Handle.Flush).
func (w *writeHandle) Flush(ctx context.Context) syscall.Errno {
	return w.m.errno("close", w.path().Path(), w.h.Flush(ctx, w.m.caller(ctx, closer)))
}

func (w *writeHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return w.m.errno("fsync", w.path().Path(), w.h.Fsync(ctx, w.m.caller(ctx, audited)))
}

// countOn counts the handle among the writers of n until its release.
func (w *writeHandle) countOn(n *immutableNode) {
	n.writers.Add(1)
	w.writers = &n.writers
}

// Release commits what no close committed, then releases the open file's
// locks (vfs.Handle.Release); its failure can only be logged.
func (w *writeHandle) Release(ctx context.Context) syscall.Errno {
	w.m.errno("release", w.path().Path(), w.h.Release(ctx))
	if w.writers != nil {
		w.writers.Add(-1)
	}
	return 0
}

// wipingResult is a READ reply that zeroes its buffer (go-fuse's, from a
// pool it reuses) once the kernel has the bytes: plaintext must not
// linger in memory the mount does not track.
//
// It is written with one writev (Slices). go-fuse tries to splice any
// other reply that is not a file's: it writes the header into a pipe
// from a pool, finds no file to splice from, and drains the pipe into
// /dev/null, three system calls wasted on every READ, and a pipe pair
// per concurrent reply and /dev/null held open for the process's life.
type wipingResult []byte

// go-fuse writes a reply with this method in one writev (its withSlice).
var _ interface {
	Slices() ([][]byte, fuse.Status)
} = wipingResult(nil)

func (r wipingResult) Bytes(buf []byte) ([]byte, fuse.Status) { return r, fuse.OK }
func (r wipingResult) Slices() ([][]byte, fuse.Status)        { return [][]byte{r}, fuse.OK }
func (r wipingResult) Size() int                              { return len(r) }
func (r wipingResult) Done()                                  { clear(r) }
