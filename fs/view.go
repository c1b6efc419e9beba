package fs

import (
	"context"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/inonum"
	"github.com/secretfs/secretfs/vfs"
)

// viewNode is the inode of one rendering of a view (vfs.ViewRevision):
// as immutable as a revision's, so the kernel keeps its pages and
// attributes, and a rendering from other revisions of the inputs is
// another inode. It is never written: an open for writing is EROFS, but
// for the mount's own change signal.
type viewNode struct {
	immutableNode
	rev *vfs.ViewRevision
}

var _ gofs.NodeOnForgetter = (*viewNode)(nil)

// viewInode returns the inode of the rendering in describes, in parent,
// taking in over: the inode the kernel already has for that rendering
// (then in is released), or a new one, rendered first, so that its size
// is known and a view that cannot be rendered makes no inode.
func (m *mount) viewInode(ctx context.Context, parent *gofs.Inode, in *vfs.ViewInputs) (*viewNode, error) {
	k, digest := in.Key(), in.Digest()
	for attempt := range inonum.MaxAttempts {
		ino := m.ino.View(k, digest, attempt)
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
	return nil, fault.E(k.Path(), "no free inode number for this rendering after "+strconv.Itoa(inonum.MaxAttempts)+" tries")
}

// addView makes the inode of the rendering in, number ino, renders it,
// and registers it, unless another request registered one for ino first:
// then that one is returned.
func (m *mount) addView(ctx context.Context, parent *gofs.Inode, in *vfs.ViewInputs, ino uint64) (*viewNode, error) {
	n := &viewNode{immutableNode: immutableNode{m: m, ino: ino}}
	n.rev = m.vfs.NewViewRevision(in, func() { m.reviveView(n) }, func() { m.notify.content(&n.Inode) })
	n.serves = n.rev
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
