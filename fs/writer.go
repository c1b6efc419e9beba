package fs

import (
	"context"
	"errors"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// A writer of an existing secret gets an inode of its own (writerNode),
// not the revision's (immutableNode) that readers share. The kernel keeps
// one size per inode, and a writer moves it: its writes past the end
// raise it, its truncations set it. On the revision's inode that would
// let readers read a value cut short or padded with the zeros after its
// end from their cached pages; on its own, the writer's fstat and
// lseek(SEEK_END) give what it has written, as a program expects.
//
// The kernel opens the inode its path walk found, the revision's. So the
// first open for writing there makes its session as any open does, and is
// then answered ESTALE (bounceWriter), which the kernel retries once,
// revalidating the name: that LOOKUP, from the same thread, is answered
// with a writer's inode (writerInode), whose open takes the session
// (takeTurn). Everyone else's lookup of the name still gives the revision:
// the writer's entry is kept for no time. Should the retry land on the
// revision's inode again (an open not by path), it takes the session
// there, as before this file (immutableNode.Open: the writer is counted,
// and readers that open meanwhile read past the page cache).

// retryWindow is how long the mount waits for the kernel's retry of an
// open it answered ESTALE (a bounced writer's, whose session waits to be
// taken; a reader's sent to look the name up again): the kernel retries
// at once, so this only bounds how long what a retry that never came (a
// signal) left is kept. A bounced writer's session is then discarded,
// committing nothing.
const retryWindow = time.Second

// writerTurn is a write open of key bounced for its thread to retry: the
// session the open made, which the retry takes (takeTurn).
type writerTurn struct {
	key    store.Key
	h      *vfs.Handle
	expiry *time.Timer
}

// bounceWriter reports whether the write open of n that made h is to be
// answered ESTALE, so that the kernel retries it on a writer's inode; h
// then waits for that retry. The open was made (and checked, and
// audited) as any other: the retry only takes it.
func (m *mount) bounceWriter(ctx context.Context, n *immutableNode, h *vfs.Handle) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 || n.rev == nil || h == nil || m.isOwnSignal(ctx) {
		return false
	}
	tid := fc.Caller.Pid
	t := &writerTurn{key: n.rev.Key(), h: h}
	m.turnsMu.Lock()
	old := m.writerTurns[tid]
	m.writerTurns[tid] = t
	t.expiry = time.AfterFunc(retryWindow, func() { m.expireTurn(tid, t) })
	m.turnsMu.Unlock()
	if old != nil { // a thread has one open at a time: that retry never came
		old.expiry.Stop()
		old.h.Discard()
	}
	return true
}

// expireTurn discards the session of turn t of thread tid, if no retry
// took it.
func (m *mount) expireTurn(tid uint32, t *writerTurn) {
	m.turnsMu.Lock()
	mine := m.writerTurns[tid] == t
	if mine {
		delete(m.writerTurns, tid)
	}
	m.turnsMu.Unlock()
	if mine {
		t.h.Discard()
	}
}

// hasTurn reports whether the thread behind ctx has a write open of k
// bounced, waiting for its retry.
func (m *mount) hasTurn(ctx context.Context, k store.Key) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return false
	}
	m.turnsMu.Lock()
	defer m.turnsMu.Unlock()
	t := m.writerTurns[fc.Caller.Pid]
	return t != nil && t.key == k
}

// takeTurn returns the session of the write open of k that the thread
// behind ctx had bounced, for its retry (flags: a write open), or nil.
func (m *mount) takeTurn(ctx context.Context, k store.Key, flags uint32) *vfs.Handle {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 || !vfs.Writes(flags) {
		return nil
	}
	m.turnsMu.Lock()
	defer m.turnsMu.Unlock()
	t := m.writerTurns[fc.Caller.Pid]
	if t == nil || t.key != k {
		return nil
	}
	delete(m.writerTurns, fc.Caller.Pid)
	t.expiry.Stop()
	return t.h
}

// writerInode answers a LOOKUP in parent that found in, by a thread whose
// write open of that secret was bounced: a new writer's inode, of the
// revision found (a removal or a change elsewhere since the bounce is
// answered as for anyone: a missing name lets O_CREAT create it), or nil
// for any other lookup. A new one each time: the kernel forgets the one
// its revalidation found before it looks the name up once more.
func (m *mount) writerInode(ctx context.Context, parent *gofs.Inode, in *gofs.Inode, out *fuse.EntryOut) *gofs.Inode {
	n, ok := in.Operations().(*immutableNode)
	if !ok || n.rev == nil {
		return nil
	}
	if !m.hasTurn(ctx, n.rev.Key()) {
		return nil
	}
	return m.newWriterInode(ctx, parent, n, out)
}

// newWriterInode makes in parent a writer's inode of the revision of n,
// and fills out: the kernel keeps
// neither the entry nor the attributes.
//
// It has n's inode number: programs that compare the file they opened
// with the one at the path (vim before it writes over a file, cp) must see
// one file. go-fuse and the kernel tell the two inodes apart by the
// generation, a number counted out for each.
func (m *mount) newWriterInode(ctx context.Context, parent *gofs.Inode, n *immutableNode, out *fuse.EntryOut) *gofs.Inode {
	rev := n.rev
	w := &writerNode{m: m, rev: rev}
	parent.NewInode(ctx, w, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: n.ino, Gen: m.ino.Created()})
	fill(&out.Attr, rev.Attr()) // the owner and mode the open is checked against
	out.SetEntryTimeout(0)      // the next look by anyone finds the revision again
	out.SetAttrTimeout(noAttrCache)
	return &w.Inode
}

// writerNode is a writer's own inode of an existing secret (see above).
// Its attributes are the writer's buffer's; what it opens for writing is
// the revision the writer's lookup found (rev), as the revision's own
// inode would. A reader that reaches it reads the revision, past the page
// cache.
type writerNode struct {
	gofs.Inode
	m   *mount
	rev *vfs.Revision
}

var (
	_ gofs.NodeGetattrer = (*writerNode)(nil)
	_ gofs.NodeSetattrer = (*writerNode)(nil)
	_ gofs.NodeOpener    = (*writerNode)(nil)
	_ gofs.NodeReader    = (*writerNode)(nil)
	_ gofs.NodeStatfser  = (*writerNode)(nil)
)

func (w *writerNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	rev := w.rev
	if h := w.m.takeTurn(ctx, rev.Key(), flags); h != nil {
		return w.m.opened(rev.Key(), h, nil, 0)
	}
	h, err := w.m.open(ctx, rev, flags)
	if err == nil && h == nil {
		return w.m.readerFile(), fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
	}
	return w.m.opened(rev.Key(), h, err, 0)
}

// Read serves a writer's descriptor from its buffer, and a reader's from
// the revision.
func (w *writerNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return w.m.read(ctx, fh, w.rev, dest, off)
}

// Getattr describes the writer's buffer (go-fuse hands over the inode's
// first open file, the writer's), or the revision before it opened. It
// changes with every write: the kernel keeps it for no time.
func (w *writerNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillWriting(out, fh, true, w.rev.Attr(), w.StableAttr().Ino, noAttrCache)
	return 0
}

// Setattr truncates the writer's buffer (the kernel's O_TRUNC, ftruncate)
// and refuses what the mount options fix, as on the revision's inode.
func (w *writerNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := w.m.setattr(ctx, w.rev.Key(), fh, in); errno != 0 {
		return errno
	}
	return w.Getattr(ctx, fh, out)
}

func (w *writerNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return statfs(out)
}

// sentAgain records that thread tid's open of k was sent to look the name
// up again; retrying reports (once) whether an open is that retry.
func (m *mount) sentAgain(tid uint32, k store.Key) {
	if tid == 0 {
		return
	}
	m.turnsMu.Lock()
	defer m.turnsMu.Unlock()
	if len(m.retries) >= 64 { // threads that ended leave their last one
		for tid, r := range m.retries {
			if time.Since(r.at) >= retryWindow {
				delete(m.retries, tid)
			}
		}
	}
	m.retries[tid] = sentOpen{key: k, at: time.Now()}
}

func (m *mount) retrying(tid uint32, k store.Key) bool {
	m.turnsMu.Lock()
	defer m.turnsMu.Unlock()
	r, ok := m.retries[tid]
	if !ok {
		return false
	}
	delete(m.retries, tid)
	return r.key == k && time.Since(r.at) < retryWindow
}

// retryLookups bounds how many times the lookup before a retried open
// looks the name up again because the revision it found was replaced
// before its value was held: each time is a replacement that landed
// within one lookup, so more than a few means the secret is rewritten
// faster than it can be read, and the retry then fails as it would have.
const retryLookups = 4

// heldForRetry reports whether in may answer a lookup of k: unless the
// lookup comes from a thread whose reader's open of k was sent to look the
// name up again (the kernel's retry is next, and opens what this returns),
// or in is no revision, at once; else once the revision's value is held
// (vfs.Revision.Hold), so that the retry can read it even if the secret is
// replaced again before it opens. A revision replaced before that is not:
// its inode, which the kernel never saw, leaves the table, and the name is
// looked up again. An error of the backend is left to the open to report.
func (m *mount) heldForRetry(ctx context.Context, k store.Key, in *gofs.Inode) bool {
	n, ok := in.Operations().(*immutableNode)
	if !ok || n.rev == nil || !m.awaitsRetry(ctx, k) {
		return true
	}
	if err := n.rev.Hold(ctx); !errors.Is(err, vfs.ErrLookUpAgain) {
		return true
	}
	if in.Forgotten() {
		m.forgot(n) // a lookup that found it meanwhile revives it (mount.revive)
	}
	return false
}

// awaitsRetry reports whether the thread behind ctx had an open of k sent
// to look the name up again, and has not retried it yet.
func (m *mount) awaitsRetry(ctx context.Context, k store.Key) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return false
	}
	m.turnsMu.Lock()
	defer m.turnsMu.Unlock()
	r, ok := m.retries[fc.Caller.Pid]
	return ok && r.key == k && time.Since(r.at) < retryWindow
}

// sentOpen is an open sent to look the name up again.
type sentOpen struct {
	key store.Key
	at  time.Time
}
