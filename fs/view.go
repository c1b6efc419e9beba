package fs

import (
	"context"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/secretfs/secretfs/internal/inotable"
	"github.com/secretfs/secretfs/vfs"
)

// The inode of one rendering of a view (vfs.ViewRevision) is an
// immutableNode, as immutable as a revision's: the kernel keeps its pages
// and attributes, and a rendering from other revisions of the inputs is
// another inode. It is never written: an open for writing is EROFS, but
// for the mount's own change signal.

// viewInode returns the inode of the rendering in describes, in parent,
// taking in over: the inode the kernel already has for that rendering
// (then in is released), or a new one, rendered first, so that its size
// is known and a view that cannot be rendered makes no inode.
func (m *mount) viewInode(ctx context.Context, parent *gofs.Inode, in *vfs.ViewInputs) (*immutableNode, error) {
	k, digest := in.Key(), in.Digest()
	// addView takes in over, whatever comes of it: what it returns is the
	// answer, never passed over for another attempt that would need in.
	added := false
	n, err := m.numbered(k, "rendering",
		func(attempt int) uint64 { return m.ino.View(k, digest, attempt) },
		func(n *immutableNode) bool { return added || n.view != nil && n.view.Is(k, digest) },
		func(ino uint64) (*immutableNode, error) {
			added = true
			return m.addView(ctx, parent, in, ino)
		})
	if !added {
		in.Release()
	}
	return n, err
}

// addView makes the inode of the rendering in, number ino, renders it,
// and enters it in the table, unless another request entered one for ino
// first: then that one is returned.
func (m *mount) addView(ctx context.Context, parent *gofs.Inode, in *vfs.ViewInputs, ino uint64) (*immutableNode, error) {
	n := &immutableNode{m: m, Entry: inotable.Entry{Ino: ino}}
	n.view = m.vfs.NewViewRevision(in, func() { m.revive(n) }, func() { notifyContent(&n.Inode) })
	n.serves = n.view
	n.fileOps = fileOps{m, n.view}
	if err := n.view.Prepare(ctx); err != nil {
		n.view.Unpin()
		return nil, err
	}
	held, mine := m.add(ctx, parent, n, n.id())
	if !mine {
		n.view.Unpin()
	}
	return held, nil
}
