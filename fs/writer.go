package fs

import (
	"context"
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
// first open for writing there is answered ESTALE (bounceWriter), which
// the kernel retries once, revalidating the name: that LOOKUP, from the
// same thread, is answered with a writer's inode (writerInode), which the
// retried open opens. Everyone else's lookup of the name still gives the
// revision: the writer's entry is kept for no time. Should the retry land
// on the revision's inode again (an open not by path), it is served there
// as before (immutableNode.Open: the writer is counted, and readers that
// open meanwhile read past the page cache).

// writerTurnWindow is how long a bounced open's thread has to look the
// name up again: the kernel retries at once, so this only bounds how long
// a turn whose retry never came (a signal) is kept.
const writerTurnWindow = time.Second

// writerTurn is a write open of key bounced for its thread to retry.
type writerTurn struct {
	key store.Key
	at  time.Time
}

// bounceWriter reports whether the open of n with flags is a write open
// to answer ESTALE, so that the kernel retries it on a writer's inode: a
// thread's first write open of a secret's revision. The retry that comes
// back to n anyway is not bounced again.
func (m *mount) bounceWriter(ctx context.Context, n *immutableNode, flags uint32) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 || n.rev == nil || !vfs.Writes(flags) || m.isOwnSignal(ctx) {
		return false
	}
	tid, k := fc.Caller.Pid, n.rev.Key()
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.writerTurns[tid]; t != nil && t.key == k && time.Since(t.at) < writerTurnWindow {
		delete(m.writerTurns, tid) // the retry came back here: served here
		return false
	}
	sweepTurns(m.writerTurns, func(t *writerTurn) time.Time { return t.at })
	m.writerTurns[tid] = &writerTurn{key: k, at: time.Now()}
	return true
}

// sweepTurns drops the expired turns of threads whose retry never came,
// once there are more than a few: turns are kept by thread, and a thread
// that ended leaves its last one.
func sweepTurns[T any](turns map[uint32]T, at func(T) time.Time) {
	if len(turns) < 64 {
		return
	}
	for tid, t := range turns {
		if time.Since(at(t)) >= writerTurnWindow {
			delete(turns, tid)
		}
	}
}

// turnOf returns the turn of the thread behind ctx to look k up as a
// writer, or nil.
func (m *mount) turnOf(ctx context.Context, k store.Key) *writerTurn {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.writerTurns[fc.Caller.Pid]
	switch {
	case t == nil || t.key != k:
		return nil
	case time.Since(t.at) >= writerTurnWindow:
		delete(m.writerTurns, fc.Caller.Pid)
		return nil
	}
	return t
}

// endTurn ends the turn t of the thread behind ctx: its open came.
func (m *mount) endTurn(ctx context.Context, t *writerTurn) {
	fc, ok := ctx.(*fuse.Context)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.writerTurns[fc.Caller.Pid] == t {
		delete(m.writerTurns, fc.Caller.Pid)
	}
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
	t := m.turnOf(ctx, n.rev.Key())
	if t == nil {
		return nil
	}
	return m.newWriterInode(ctx, parent, n, t, out)
}

// newWriterInode makes in parent a writer's inode of the revision of n,
// for the turn t (nil for a creation's), and fills out: the kernel keeps
// neither the entry nor the attributes.
//
// It has n's inode number: programs that compare the file they opened
// with the one at the path (vim before it writes over a file, cp) must see
// one file. go-fuse and the kernel tell the two inodes apart by the
// generation, a number counted out for each.
func (m *mount) newWriterInode(ctx context.Context, parent *gofs.Inode, n *immutableNode, t *writerTurn, out *fuse.EntryOut) *gofs.Inode {
	rev := n.rev
	w := &writerNode{m: m, rev: rev, turn: t}
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
	m    *mount
	rev  *vfs.Revision
	turn *writerTurn // the turn its open ends, or nil
}

var (
	_ gofs.NodeGetattrer = (*writerNode)(nil)
	_ gofs.NodeSetattrer = (*writerNode)(nil)
	_ gofs.NodeOpener    = (*writerNode)(nil)
	_ gofs.NodeReader    = (*writerNode)(nil)
	_ gofs.NodeStatfser  = (*writerNode)(nil)
)

func (w *writerNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	w.m.endTurn(ctx, w.turn)
	rev := w.rev
	h, err := w.m.open(ctx, rev, flags)
	if err == nil && h == nil {
		return nil, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
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
	if h := handleOf(fh); h != nil {
		fill(&out.Attr, h.Attr())
	} else {
		fill(&out.Attr, w.rev.Attr())
	}
	out.SetTimeout(noAttrCache)
	return 0
}

// Setattr truncates the writer's buffer (the kernel's O_TRUNC, ftruncate)
// and refuses what the mount options fix, as on the revision's inode.
func (w *writerNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := w.m.setattr(ctx, w.rev.Key(), fh, in); errno != 0 {
		return errno
	}
	w.Getattr(ctx, fh, out)
	out.Ino = w.StableAttr().Ino // go-fuse fills it in a GETATTR's reply, not a SETATTR's
	return 0
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
	m.mu.Lock()
	defer m.mu.Unlock()
	sweepTurns(m.retries, func(t writerTurn) time.Time { return t.at })
	m.retries[tid] = writerTurn{key: k, at: time.Now()}
}

func (m *mount) retrying(tid uint32, k store.Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.retries[tid]
	if !ok {
		return false
	}
	delete(m.retries, tid)
	return r.key == k && time.Since(r.at) < writerTurnWindow
}
