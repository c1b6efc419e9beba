package fs

import (
	"context"
	"errors"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/internal/retry"
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
// (takeTurn). Everyone else's lookup of the name still gives the
// revision: the writer's entry is kept for no time. Should the retry land
// on the revision's inode again (an open not by path), it takes the
// session there, as before this file (immutableNode.Open: the writer is
// counted, and readers that open meanwhile read past the page cache).
// Which thread awaits which retry, and for how long, is package retry's
// (mount.retries).

// bounceWriter reports whether the write open of n that made h is to be
// answered ESTALE, so that the kernel retries it on a writer's inode; h
// then waits for that retry (retry.Window at most: then it is discarded,
// committing nothing). The open was made (and checked, and
// audited) as any other: the retry only takes it.
func (m *mount) bounceWriter(ctx context.Context, n *immutableNode, h *vfs.Handle) bool {
	if n.rev == nil || h == nil || m.isOwnSignal(ctx) {
		return false
	}
	return m.retries.Bounce(thread(ctx), n.rev.Key(), h)
}

// takeTurn returns the session of the write open of k that the thread
// behind ctx had bounced, for its retry (flags: a write open), or nil.
func (m *mount) takeTurn(ctx context.Context, k store.Key, flags uint32) *vfs.Handle {
	if !vfs.Writes(flags) {
		return nil
	}
	h, _ := m.retries.Take(thread(ctx), k)
	return h
}

// writerInode answers a LOOKUP in parent that found in, by a thread whose
// write open of that secret was bounced: a new writer's inode, of the
// revision found (a removal or a change elsewhere since the bounce is
// answered as for anyone: a missing name lets O_CREAT create it), or nil
// for any other lookup. A new one each time: the kernel forgets the one
// its revalidation found before it looks the name up once more.
func (m *mount) writerInode(ctx context.Context, parent *gofs.Inode, in *gofs.Inode, out *fuse.EntryOut) *gofs.Inode {
	n, ok := in.Operations().(*immutableNode)
	if !ok || n.rev == nil || !m.retries.Bounced(thread(ctx), n.rev.Key()) {
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
	w := &writerNode{fileOps: fileOps{m, rev}, m: m, rev: rev}
	parent.NewInode(ctx, w, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: n.Ino, Gen: m.ino.Created()})
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
	fileOps
	m   *mount
	rev *vfs.Revision
}

var (
	_ gofs.NodeGetattrer = (*writerNode)(nil)
	_ gofs.NodeSetattrer = (*writerNode)(nil)
	_ gofs.NodeOpener    = (*writerNode)(nil)
	_ gofs.NodeReader    = (*writerNode)(nil)
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
	if !ok || n.rev == nil || !m.retries.Awaits(thread(ctx), k) {
		return true
	}
	release, err := n.rev.Hold(ctx)
	if err == nil {
		// The retry opens at once; the window only bounds how long a
		// retry that never came (a signal) keeps the value.
		time.AfterFunc(retry.Window, release)
	}
	if !errors.Is(err, vfs.ErrLookUpAgain) {
		return true
	}
	if in.Forgotten() {
		// As OnForget would, had the kernel seen it: its lookup may have
		// pinned the revision (Verify). A lookup that found it meanwhile
		// revives it (mount.revive), and pins it again at its next use.
		n.serves.Unpin()
		m.forgot(n)
	}
	return false
}
