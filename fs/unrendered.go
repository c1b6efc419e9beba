package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/secretfs/secretfs/store"
)

// unrenderedNode is what the change signal's look at a view finds when
// the view cannot be rendered any more (an input changed elsewhere into
// something it cannot read): a file of one byte, which the kernel keeps
// for no time, so that the signal's touch reaches the view's name and
// the watchers of its directory hear that it changed. A reader's look
// asks the mount again, and gets EIO; but the kernel keeps an entry for at
// least a tick of its clock, so a reader woken by the event may find this
// node: it has one byte, which every read answers with the view's
// failure, EIO, logged as a reader's failed look would be (of no bytes,
// the kernel would read nothing and not ask), and every other request
// but the signal's is that failure too.
type unrenderedNode struct {
	gofs.Inode
	m   *mount
	k   store.Key
	err error // why the view cannot be rendered
}

var (
	_ gofs.NodeGetattrer = (*unrenderedNode)(nil)
	_ gofs.NodeSetattrer = (*unrenderedNode)(nil)
	_ gofs.NodeOpener    = (*unrenderedNode)(nil)
	_ gofs.NodeReader    = (*unrenderedNode)(nil)
)

// unrendered makes an unrenderedNode in parent, for the signal's look,
// under a number counted out for it.
func (m *mount) unrendered(ctx context.Context, parent *gofs.Inode, k store.Key, err error, out *fuse.EntryOut) *gofs.Inode {
	n := &unrenderedNode{m: m, k: k, err: err}
	in := parent.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: m.ino.Created()})
	n.attr(&out.Attr)
	out.SetEntryTimeout(kernelTime(0))
	out.SetAttrTimeout(kernelTime(0))
	return in
}

// attr is a regular file of one byte, owned by the mount (the signal
// touches it as root).
func (n *unrenderedNode) attr(out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = 1
	out.Nlink = 1
	out.Uid, out.Gid = n.m.opts.UID, n.m.opts.GID
}

func (n *unrenderedNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.attr(&out.Attr)
	out.SetTimeout(kernelTime(0))
	return 0
}

// Open lets the signal's open through, changing nothing.
func (n *unrenderedNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if !n.m.isOwnSignal(ctx) {
		return nil, 0, n.failed("open")
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

// Read is the view's failure: it cannot be rendered.
func (n *unrenderedNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return nil, n.failed("read")
}

// failed is the errno of the view's failure, logged for the request op.
func (n *unrenderedNode) failed(op string) syscall.Errno { return n.m.errno(op, n.k.Path(), n.err) }

// Setattr takes the signal's truncation to the size it has, changing
// nothing.
func (n *unrenderedNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.m.isOwnSignal(ctx) {
		return n.failed("setattr")
	}
	n.attr(&out.Attr)
	out.SetTimeout(kernelTime(0))
	return 0
}
