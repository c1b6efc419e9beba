package fs

import (
	"context"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// viewNode is the inode of one rendering of a view (vfs.ViewRevision):
// as immutable as a revision's, so the kernel keeps its pages and
// attributes, and a rendering from other revisions of the inputs is
// another inode. It is never written: an open for writing is EROFS, but
// for the mount's own change signal.
type viewNode struct {
	gofs.Inode
	m   *mount
	ino uint64
	rev *vfs.ViewRevision
}

var (
	_ gofs.NodeGetattrer   = (*viewNode)(nil)
	_ gofs.NodeSetattrer   = (*viewNode)(nil)
	_ gofs.NodeOpener      = (*viewNode)(nil)
	_ gofs.NodeReader      = (*viewNode)(nil)
	_ gofs.NodeWriter      = (*viewNode)(nil)
	_ gofs.NodeFlusher     = (*viewNode)(nil)
	_ gofs.NodeFsyncer     = (*viewNode)(nil)
	_ gofs.NodeStatfser    = (*viewNode)(nil)
	_ gofs.NodeOnForgetter = (*viewNode)(nil)
)

// viewIno is the inode number of the rendering of the view k named digest
// at attempt, as versionIno is a revision's, in the range of views: an
// HMAC-SHA256 of "view", the path and the digest (which names the inputs'
// revisions, whose IVs whoever writes the store chooses) under the
// mount's key.
func (m *mount) viewIno(k store.Key, digest string, attempt int) uint64 {
	return m.inoMAC([][]byte{[]byte("view"), []byte(k.App), []byte(k.Name), []byte(digest)}, int64(attempt))&^(3<<62) | 1<<62
}

// viewInode returns the inode of the rendering in describes, in parent,
// taking in over: the inode the kernel already has for that rendering
// (then in is released), or a new one, rendered first, so that its size
// is known and a view that cannot be rendered makes no inode.
func (m *mount) viewInode(ctx context.Context, parent *gofs.Inode, in *vfs.ViewInputs) (*viewNode, error) {
	k, digest := in.Key(), in.Digest()
	for attempt := range maxInoAttempts {
		ino := m.viewIno(k, digest, attempt)
		m.mu.Lock()
		n := m.views[ino]
		m.mu.Unlock()
		if n == nil {
			return m.addView(ctx, parent, in, ino)
		}
		if n.rev.Is(k, digest) {
			in.Release()
			return n, nil
		}
	}
	in.Release()
	return nil, fault.E(k.Path(), "no free inode number for this rendering after "+strconv.Itoa(maxInoAttempts)+" tries")
}

// addView makes the inode of the rendering in, number ino, renders it,
// and registers it, unless another request registered one for ino first:
// then that one is returned.
func (m *mount) addView(ctx context.Context, parent *gofs.Inode, in *vfs.ViewInputs, ino uint64) (*viewNode, error) {
	n := &viewNode{m: m, ino: ino}
	n.rev = m.vfs.NewViewRevision(in, func() { m.reviveView(n) }, func() { m.notify.content(&n.Inode) })
	if err := n.rev.Prepare(ctx); err != nil {
		n.rev.Unpin()
		return nil, err
	}
	parent.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	m.mu.Lock()
	defer m.mu.Unlock()
	if held := m.views[ino]; held != nil {
		n.rev.Unpin()
		return held, nil
	}
	m.views[ino] = n
	return n, nil
}

// reviveView is revive for a view's rendering.
func (m *mount) reviveView(n *viewNode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.views[n.ino] == nil {
		m.views[n.ino] = n
	}
}

// OnForget wipes the rendering and unpins its inputs: the kernel holds no
// reference to it any more (but see reviveView).
func (n *viewNode) OnForget() {
	n.rev.Unpin()
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	if n.m.views[n.ino] == n {
		delete(n.m.views, n.ino)
	}
}

func (n *viewNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.m.immutableGetattr(ctx, n.rev, out)
}

// Open is a revision's (see versionNode.Open): ENOSYS on a read-only
// mount, else one request per open, the pages kept. Writers are refused
// with EROFS, but for the mount's own change signal.
func (n *viewNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.m.noOpen.Load() {
		return nil, 0, syscall.ENOSYS
	}
	h, err := n.rev.Open(ctx, n.m.caller(ctx, audited), flags)
	switch {
	case err != nil:
		return nil, 0, n.m.errno("open", n.rev.Key().Path(), err)
	case h != nil:
		return &writeHandle{m: n.m, h: h}, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE, 0
	}
	return nil, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

func (n *viewNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	got, err := n.rev.Read(ctx, dest, off)
	if err != nil {
		return nil, n.m.errno("read", n.rev.Key().Path(), err)
	}
	return wipingResult(dest[:got]), 0
}

// Write comes only through a descriptor the kernel opened without asking
// (a read-only mount, see versionNode.Open): refused.
func (n *viewNode) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	clear(data)
	return 0, n.m.errno("write", n.rev.Key().Path(), n.m.vfs.WriteWithoutOpen(n.rev.Key()))
}

func (n *viewNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	if n.m.noOpen.Load() {
		return syscall.ENOSYS
	}
	return 0
}

// Fsync has nothing to sync: a view is never written.
func (n *viewNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

// Setattr refuses a truncation (EROFS) and owners and modes other than
// the view's, as vfs.FS.Setattr does for any file.
func (n *viewNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := n.m.vfs.Setattr(ctx, n.m.caller(ctx, 0), n.rev.Key(), handleOf(fh), change(in)); err != nil {
		return n.m.errno("setattr", n.rev.Key().Path(), err)
	}
	fill(&out.Attr, n.rev.Attr())
	out.SetTimeout(kernelTime(n.m.opts.TTL))
	return 0
}

func (n *viewNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return statfs(out) }
