package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// appNode is "/<app>/": the secrets of one application.
type appNode struct{ dirNode }

var (
	_ gofs.NodeLookuper       = (*appNode)(nil)
	_ gofs.NodeOpendirHandler = (*appNode)(nil)
	_ gofs.NodeCreater        = (*appNode)(nil)
	_ gofs.NodeUnlinker       = (*appNode)(nil)
	_ gofs.NodeRenamer        = (*appNode)(nil)
	_ gofs.NodeMkdirer        = (*appNode)(nil)
	_ gofs.NodeMknoder        = (*appNode)(nil)
	_ gofs.NodeLinker         = (*appNode)(nil)
	_ gofs.NodeSymlinker      = (*appNode)(nil)
)

func (a *appNode) key(name string) store.Key { return store.Key{App: a.app, Name: name} }

// Lookup points the name at its current revision, fresh within the TTL,
// or at the inode of a secret being created here. On a read-only mount,
// which has no opens, a lookup is the sign that a reader is back (the
// kernel looks a name up again once its entry expires).
//
// The lookup before the kernel's retry of a reader's open that was sent
// to look the name up again returns a revision whose value it holds
// (heldForRetry), looking again if the secret was replaced meanwhile.
func (a *appNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	k := a.key(name)
	for attempt := 1; ; attempt++ {
		e, err := a.m.vfs.Lookup(ctx, k)
		in, errno := a.m.entry(ctx, &a.Inode, k, e, err, lookup, out)
		if errno != 0 {
			return nil, errno
		}
		if w := a.m.writerInode(ctx, &a.Inode, in, out); w != nil {
			return w, 0
		}
		if attempt == retryLookups || a.m.heldForRetry(ctx, k, in) {
			return in, 0
		}
	}
}

func (a *appNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{a: a, list: a.m.vfs.List(a.app)}, 0, 0
}

// Create makes a new secret, or opens an existing one the kernel did not
// know of, for writing (see vfs.FS.Create), on an inode of the writer's
// own (writer.go). Its descriptor bypasses the page cache.
func (a *appNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	k := a.key(name)
	h, e, err := a.m.vfs.Create(ctx, a.m.caller(ctx, maker), k, flags)
	inode, errno := a.m.entry(ctx, &a.Inode, k, e, err, creation, out)
	switch {
	case errno != 0:
		if h != nil {
			h.Discard() // opened for nothing: it commits nothing
		}
		return nil, nil, 0, errno
	case e.Created != nil:
		return inode, a.m.writeHandle(h), fuse.FOPEN_DIRECT_IO, 0
	}
	w := a.m.writeHandle(h)
	if n, ok := inode.Operations().(*immutableNode); ok && n.rev != nil {
		// The writer's own inode, not the revision's (see writer.go).
		return a.m.newWriterInode(ctx, &a.Inode, n, out), w, fuse.FOPEN_DIRECT_IO, 0
	}
	return inode, w, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE, 0
}

// Unlink deletes a secret (see vfs.FS.Unlink).
func (a *appNode) Unlink(ctx context.Context, name string) syscall.Errno {
	return a.m.errno("unlink", a.key(name).Path(), a.m.vfs.Unlink(ctx, a.m.caller(ctx, audited), a.key(name)))
}

// Rename moves a secret, within its application or into another (see
// vfs.FS.Rename); anywhere else is not an application.
func (a *appNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to := store.Key{Name: newName}
	if dst, ok := newParent.(*appNode); ok {
		to.App = dst.app
	}
	return a.m.errno("rename", a.key(name).Path(), a.m.vfs.Rename(ctx, a.m.caller(ctx, mover), a.key(name), to, flags))
}

// Mkdir refuses: applications hold secrets, not directories.
func (a *appNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, a.m.errno("mkdir", fault.Path(a.app+"/"+name), a.m.vfs.MkdirInApp(a.app, name))
}

// Mknod of a regular file creates it empty (see vfs.FS.Mknod); of a
// special file, as Link and Symlink, makes what an application cannot
// hold: refused, with EROFS on a read-only mount (see vfs.FS.NotOffered).
func (a *appNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	k := a.key(name)
	if err := a.m.vfs.Mknod(ctx, a.m.caller(ctx, maker), k, mode); err != nil {
		return nil, a.m.errno("mknod", k.Path(), err)
	}
	e, err := a.m.vfs.Lookup(ctx, k)
	return a.m.entry(ctx, &a.Inode, k, e, err, lookup, out)
}

func (a *appNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, a.m.errno("link", a.key(name).Path(), a.m.vfs.NotOffered(a.key(name).Path(), "hard links"))
}

func (a *appNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, a.m.errno("symlink", a.key(name).Path(), a.m.vfs.NotOffered(a.key(name).Path(), "symbolic links"))
}

// dirHandle lists one application a page at a time (vfs.Listing), and
// answers the lookups of READDIRPLUS from the page it just listed: `ls -l`
// of an application costs its listing pages and nothing per file.
//
// What it lists is kept in the handle, not made per entry: go-fuse copies
// the entry Readdirent returns before it asks for the next, and `ls -l`
// of a large application makes one of each per secret.
type dirHandle struct {
	a    *appNode
	list *vfs.Listing
	dots int           // "." and ".." emitted
	ent  fuse.DirEntry // what Readdirent returns
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileLookuper     = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.dots < 2 {
		h.dots++
		h.ent = fuse.DirEntry{Name: ".."[:h.dots], Mode: syscall.S_IFDIR}
		return &h.ent, 0
	}
	meta, ok, err := h.list.Next(ctx)
	if err != nil || !ok {
		return nil, h.a.m.errno("readdir", fault.Path(h.a.app), err)
	}
	h.ent = fuse.DirEntry{Name: meta.Name, Mode: syscall.S_IFREG, Ino: h.a.m.listedIno(meta)}
	return &h.ent, 0
}

// Lookup answers READDIRPLUS's lookup of the name just listed from the
// listing (see vfs.Listing.Lookup). Returning no entry is not an error
// for the kernel: the listing keeps the name, and a stat looks it up.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, listed, err := h.list.Lookup(ctx, name)
	if !listed {
		return h.a.Lookup(ctx, name, out)
	}
	return h.a.m.entry(ctx, &h.a.Inode, h.a.key(name), e, err, listing, out)
}

// Seekdir moves to off, a position Readdirent's entries were given
// (go-fuse numbers them 1, 2, ... as it gives them, "." and ".." first; 0
// is the start): past the dots, the listing's own position (see
// vfs.Listing.Seek). go-fuse replays an interrupted read itself, without
// asking.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.dots = int(min(off, 2))
	return h.a.m.errno("seekdir", fault.Path(h.a.app), h.list.Seek(ctx, off-min(off, 2)))
}
