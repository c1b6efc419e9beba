package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// appNode is "/<app>/": the secrets of one application.
type appNode struct {
	gofs.Inode
	m   *mount
	app string
}

var (
	_ gofs.NodeGetattrer      = (*appNode)(nil)
	_ gofs.NodeSetattrer      = (*appNode)(nil)
	_ gofs.NodeLookuper       = (*appNode)(nil)
	_ gofs.NodeOpendirHandler = (*appNode)(nil)
	_ gofs.NodeCreater        = (*appNode)(nil)
	_ gofs.NodeUnlinker       = (*appNode)(nil)
	_ gofs.NodeRenamer        = (*appNode)(nil)
	_ gofs.NodeMkdirer        = (*appNode)(nil)
)

func (a *appNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a.m.dirAttr(&out.Attr)
	return 0
}

func (a *appNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := a.m.checkSetattr(fault.Path(a.app), in, a.m.opts.DirMode); err != nil {
		return a.m.errno("setattr", err)
	}
	a.m.dirAttr(&out.Attr)
	return 0
}

func (a *appNode) key(name string) store.Key { return store.Key{App: a.app, Name: name} }

// secretChild returns the node of a secret this mount already knows.
func (a *appNode) secretChild(name string) *secretNode {
	if child := a.GetChild(name); child != nil {
		n, _ := child.Operations().(*secretNode)
		return n
	}
	return nil
}

// settleAll waits out the closing writers of every secret of a (see
// secretNode.settle).
func (a *appNode) settleAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout) // for all of them together
	defer cancel()
	for _, child := range a.Children() {
		if n, ok := child.Operations().(*secretNode); ok {
			n.settle(ctx)
		}
	}
}

func (a *appNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	const op = "lookup"
	k := a.key(name)
	if err := k.Validate(); err != nil {
		return nil, a.m.errno(op, err)
	}
	n := a.secretChild(name)
	if n != nil {
		n.settle(ctx)
	}
	meta, err := a.m.src.Stat(ctx, k, false)
	switch {
	case fault.Is(fault.NotFound, err) && n != nil && n.createdHere():
		n.attr(&out.Attr) // being created through this mount
		return &n.Inode, 0
	case err != nil:
		return nil, a.m.errno(op, err)
	}
	a.m.learnSize(ctx, &meta)
	inode := a.secretInode(ctx, meta, out)
	d := a.m.timeout(k)
	out.SetEntryTimeout(d)
	out.SetAttrTimeout(d)
	return inode, 0
}

// secretInode returns the inode for the secret described by meta, reusing
// the existing one so that open handles and the kernel agree on identity.
func (a *appNode) secretInode(ctx context.Context, meta store.Meta, out *fuse.EntryOut) *gofs.Inode {
	if n := a.secretChild(meta.Name); n != nil {
		n.update(meta)
		n.attr(&out.Attr)
		return &n.Inode
	}
	n := &secretNode{m: a.m, key: meta.Key, meta: meta}
	n.attr(&out.Attr)
	return a.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG})
}

func (a *appNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	a.settleAll(ctx) // a listing right after `touch new` must show it
	return &dirHandle{a: a}, 0, 0
}

// Create makes a new secret. Nothing is stored until the handle commits:
// the new value is committed whole, on the condition that no secret of
// that name appeared in the meantime.
func (a *appNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	const op = "create"
	k := a.key(name)
	if err := a.m.writable(k.Path()); err != nil {
		return nil, nil, 0, a.m.errno(op, err)
	}
	if err := k.Validate(); err != nil {
		return nil, nil, 0, a.m.errno(op, err)
	}
	// The kernel calls Create when it believes the name is free; another
	// host may have made it since. Ask the store, not the cache.
	meta, err := a.m.src.Stat(ctx, k, true)
	switch {
	case err == nil:
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, a.m.errno(op, fault.E(k.Path(), fault.Exist))
		}
		inode := a.secretInode(ctx, meta, out)
		fh, fuseFlags, errno := inode.Operations().(*secretNode).Open(ctx, flags)
		return inode, fh, fuseFlags, errno
	case fault.Is(fault.NotFound, err):
		meta = store.Meta{Key: k, Version: store.Absent, Modified: time.Now()}
		inode := a.secretInode(ctx, meta, out)
		h := inode.Operations().(*secretNode).newWriteHandle(ctx, nil, meta, true, flags)
		return inode, h, fuse.FOPEN_DIRECT_IO, 0
	default:
		return nil, nil, 0, a.m.errno(op, err)
	}
}

// Unlink deletes a secret, on the condition that it is still the version
// just read: a secret rewritten meanwhile is not deleted blind. Handles
// still open on it are orphaned, as on any file system: their writes
// vanish instead of bringing it back.
func (a *appNode) Unlink(ctx context.Context, name string) syscall.Errno {
	const op = "unlink"
	k := a.key(name)
	if err := a.m.writable(k.Path()); err != nil {
		return a.m.errno(op, err)
	}
	n := a.secretChild(name)
	if n != nil {
		n.settle(ctx)
	}
	meta, err := a.m.src.Stat(ctx, k, true)
	switch {
	case fault.Is(fault.NotFound, err) && n != nil && n.createdHere():
		// Created here and never committed: nothing is stored.
	case err != nil:
		return a.m.errno(op, err)
	default:
		if err := a.m.src.Delete(context.WithoutCancel(ctx), k, meta.Revision()); err != nil {
			return a.m.errno(op, err)
		}
	}
	if n != nil {
		n.orphan()
	}
	a.m.log.WithField("secret", k.String()).Info("secret removed")
	return 0
}

// Rename re-encrypts: the ciphertext is bound to its application and name,
// so the value is written under the new name with a fresh document key,
// then the old item is deleted. The new item is written first, so a
// failure in between leaves two copies, never none; and once begun, the
// two writes are not interrupted.
func (a *appNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	const op = "rename"
	from := a.key(name)
	if err := a.m.writable(from.Path()); err != nil {
		return a.m.errno(op, err)
	}
	dst, ok := newParent.(*appNode)
	if !ok {
		return a.m.errno(op, fault.E(from.Path(), fault.NotPermitted, "a secret can only move into an application directory"))
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return a.m.errno(op, fault.E(from.Path(), fault.NotSupported, "exchanging two secrets"))
	}
	to := dst.key(newName)
	if err := to.Validate(); err != nil {
		return a.m.errno(op, err)
	}
	if from == to {
		return 0
	}
	src, replaced := a.secretChild(name), dst.secretChild(newName)
	for _, n := range []*secretNode{src, replaced} {
		if n != nil {
			n.settle(ctx)
		}
	}
	expected := store.NoItem
	if flags&unix.RENAME_NOREPLACE == 0 {
		meta, err := a.m.src.Stat(ctx, to, true)
		switch {
		case err == nil:
			expected = meta.Revision()
		case !fault.Is(fault.NotFound, err):
			return a.m.errno(op, err)
		}
	}

	old, err := a.m.src.Get(ctx, from, true)
	if fault.Is(fault.NotFound, err) && src != nil && src.createdHere() {
		// Being created and not committed yet: the open handles follow
		// the name and will commit it at its new place.
		src.moved(store.NoItem, store.Meta{Key: to, Version: expected.Version, InitialisationVector: expected.IV, Modified: time.Now()})
		return 0
	}
	if err != nil {
		return a.m.errno(op, err)
	}
	defer old.Value.Wipe()
	ctx = context.WithoutCancel(ctx)
	meta, err := a.m.src.Put(ctx, to, old.Value, expected)
	if err != nil {
		return a.m.errno(op, err)
	}
	if err := a.m.src.Delete(ctx, from, old.Revision()); err != nil {
		a.m.log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).
			Error("rename: the secret was written under its new name but the old one could not be removed")
		return a.m.errno(op, err)
	}
	if replaced != nil {
		replaced.orphan()
	}
	if src != nil {
		src.moved(old.Revision(), meta)
	}
	a.m.log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("secret renamed")
	return 0
}

// Mkdir refuses: applications hold secrets, not directories.
func (a *appNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := fault.Path(a.app + "/" + name)
	if err := a.m.writable(p); err != nil {
		return nil, a.m.errno("mkdir", err)
	}
	return nil, a.m.errno("mkdir", fault.E(p, fault.NotPermitted, "applications hold secrets, not directories"))
}

// dirHandle lists one application a page at a time, and answers the
// lookups of READDIRPLUS from the page it just listed: `ls -l` of an
// application costs its listing pages and nothing per file.
type dirHandle struct {
	a    *appNode
	dots int // "." and ".." emitted
	page []store.Meta
	i    int
	next string
	done bool
	last *store.Meta
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileLookuper     = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.dots < 2 {
		h.dots++
		return &fuse.DirEntry{Name: ".."[:h.dots], Mode: syscall.S_IFDIR}, 0
	}
	for h.i >= len(h.page) {
		if h.done {
			return nil, 0
		}
		page, next, err := h.a.m.src.List(ctx, h.a.app, h.next, 0)
		if err != nil {
			return nil, h.a.m.errno("readdir", fault.E(fault.Path(h.a.app), err))
		}
		h.page, h.i, h.next, h.done = page, 0, next, next == ""
	}
	h.last = &h.page[h.i]
	h.i++
	return &fuse.DirEntry{Name: h.last.Name, Mode: syscall.S_IFREG}, 0
}

func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if h.last == nil || h.last.Name != name {
		return h.a.Lookup(ctx, name, out)
	}
	if h.last.Size < 0 {
		// A legacy item lists without its size. Returning no entry here
		// is not an error for the kernel: the listing keeps the name,
		// and a stat then looks it up, where decryption tells the size.
		return nil, h.a.m.errno("readdirplus", fault.E(h.last.Path(), fault.NotFound, "a legacy item lists without its size; a lookup will learn it"))
	}
	return h.a.secretInode(ctx, *h.last, out), 0
}

// Seekdir supports rewinding (offset 0), which is all that readdir(3)
// users such as ls do; go-fuse itself replays interrupted reads.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off != 0 {
		return h.a.m.errno("seekdir", fault.E(fault.Path(h.a.app), fault.NotSupported, "seeking a listing other than to its start"))
	}
	*h = dirHandle{a: h.a}
	return 0
}

// checkSetattr refuses changes of owner and mode, which come from mount
// options for the whole file system. Setting them to what they already
// are, and setting times, is accepted (and times ignored), so that
// touch(1), cp(1) and install(1) work.
func (m *mount) checkSetattr(p fault.Path, in *fuse.SetAttrIn, mode uint32) error {
	if mo, ok := in.GetMode(); ok && mo&07777 != mode {
		return fault.E(p, fault.NotPermitted, "modes come from --file-mode and --dir-mode")
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if (uok && uid != m.opts.UID) || (gok && gid != m.opts.GID) {
		return fault.E(p, fault.NotPermitted, "owners come from --uid and --gid")
	}
	return nil
}

// writable refuses changes on a read-only mount. The kernel refuses most
// of them already (the mount is "ro"); this is the same rule, kept where
// the file system decides.
func (m *mount) writable(p fault.Path) error {
	if m.opts.ReadOnly {
		return fault.E(p, fault.ReadOnly, "mounted read-only")
	}
	return nil
}
