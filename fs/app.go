package fs

import (
	"context"
	"syscall"

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
	_ gofs.NodeStatfser       = (*appNode)(nil)
)

func (a *appNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a.m.dirAttr(&out.Attr)
	return 0
}

func (a *appNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := a.m.checkSetattr(fault.Path(a.app), in, a.m.opts.DirMode); err != nil {
		return a.m.errno("setattr", fault.Path(a.app), err)
	}
	a.m.dirAttr(&out.Attr)
	return 0
}

func (a *appNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return a.m.statfs(out)
}

func (a *appNode) key(name string) store.Key { return store.Key{App: a.app, Name: name} }

// settleAll waits out the closing writers of every secret of a (see
// secretState.settle).
func (a *appNode) settleAll() {
	for _, s := range a.m.secretsOf(a.app) {
		s.settle()
	}
}

// Lookup points the name at its current revision, fresh within the TTL,
// or at the inode of a secret being created here.
func (a *appNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	const op = "lookup"
	k := a.key(name)
	if err := k.Validate(); err != nil {
		return nil, a.m.errno(op, k.Path(), err)
	}
	s := a.m.secret(k)
	if s != nil {
		s.settle()
	}
	e, err := a.m.cat.Lookup(ctx, k)
	switch {
	case fault.Is(fault.NotFound, err) && s != nil:
		if _, ok := s.creating(); ok {
			d := s.createdInode(ctx, &a.Inode)
			d.entry(out)
			return &d.Inode, 0
		}
		return nil, a.m.errno(op, k.Path(), err)
	case err != nil:
		return nil, a.m.errno(op, k.Path(), err)
	}
	n, err := a.m.versionInode(ctx, &a.Inode, k, e.Meta, &out.Attr)
	if err != nil {
		return nil, a.m.errno(op, k.Path(), err)
	}
	if e.Meta.Size < 0 {
		n.learnSize(ctx)
		n.attr(&out.Attr)
	}
	if a.m.noOpen {
		// Without opens, a lookup is the sign that a reader is back
		// (the kernel looks a name up again once its entry expires).
		n.snapshot().Touch()
	}
	out.SetEntryTimeout(kernelTime(e.Fresh))
	out.SetAttrTimeout(kernelTime(a.m.opts.TTL))
	return &n.Inode, 0
}

func (a *appNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	a.settleAll() // a listing right after `touch new` must show it
	return &dirHandle{a: a}, 0, 0
}

// Create makes a new secret, or opens an existing one the kernel did not
// know of, for writing. Nothing is stored until the session commits: the
// new value is committed whole, on the condition that no secret of that
// name appeared in the meantime.
func (a *appNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fuseFlags, errno := a.create(ctx, name, flags, out)
	version := store.Version(0)
	if h, ok := fh.(*writeHandle); ok && errno == 0 {
		version = max(h.ss.metadata().Version, 0)
	}
	a.m.audit(ctx, "open", a.key(name), store.Key{}, version, errno)
	return inode, fh, fuseFlags, errno
}

func (a *appNode) create(ctx context.Context, name string, flags uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	const op = "create"
	k := a.key(name)
	if err := a.m.writable(k.Path()); err != nil {
		return nil, nil, 0, a.m.errno(op, k.Path(), err)
	}
	if err := k.Validate(); err != nil {
		return nil, nil, 0, a.m.errno(op, k.Path(), err)
	}
	// The kernel calls Create when it believes the name is free; another
	// host may have made it since. Ask the store.
	meta, err := a.m.cat.Verify(ctx, k)
	if err == nil && flags&syscall.O_EXCL != 0 {
		return nil, nil, 0, a.m.errno(op, k.Path(), fault.E(k.Path(), fault.Exist))
	}
	if err == nil && needsValue(flags) {
		if rerr := a.m.readable(k.Path()); rerr != nil {
			return nil, nil, 0, a.m.errno(op, k.Path(), rerr)
		}
	}
	s, done := a.m.opener(k)
	defer done()
	h, err := a.m.openWriter(ctx, s, flags|syscall.O_CREAT, meta, err)
	if err != nil {
		return nil, nil, 0, a.m.errno(op, k.Path(), err)
	}
	if h.ss.metadata().Version != store.Absent {
		// It existed after all: the writer opens its current revision.
		n, err := a.m.versionInode(ctx, &a.Inode, k, meta, &out.Attr)
		if err != nil {
			h.ss.release() // opened for nothing: it commits nothing
			s.remove(h.ss)
			return nil, nil, 0, a.m.errno(op, k.Path(), err)
		}
		out.SetEntryTimeout(kernelTime(0))
		out.SetAttrTimeout(kernelTime(a.m.opts.TTL))
		return &n.Inode, h, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE, 0
	}
	d := s.createdInode(ctx, &a.Inode)
	d.entry(out)
	return &d.Inode, h, fuse.FOPEN_DIRECT_IO, 0
}

// Unlink deletes a secret, on the condition that it is still the revision
// just read: a secret rewritten meanwhile is not deleted blind. Sessions
// still open on it are orphaned, as on any file system: their writes
// vanish instead of bringing it back. Files open for reading keep reading
// the revision they opened.
func (a *appNode) Unlink(ctx context.Context, name string) syscall.Errno {
	version, errno := a.unlink(ctx, name)
	a.m.audit(ctx, "unlink", a.key(name), store.Key{}, version, errno)
	return errno
}

func (a *appNode) unlink(ctx context.Context, name string) (store.Version, syscall.Errno) {
	const op = "unlink"
	k := a.key(name)
	if err := a.m.writable(k.Path()); err != nil {
		return 0, a.m.errno(op, k.Path(), err)
	}
	s := a.m.secret(k)
	if s != nil {
		s.settle()
	}
	meta, err := a.m.cat.Verify(ctx, k)
	version := max(meta.Version, 0)
	switch {
	case fault.Is(fault.NotFound, err) && s != nil && isCreating(s):
		// Created here and never committed: nothing is stored.
	case err != nil:
		return 0, a.m.errno(op, k.Path(), err)
	default:
		if err := a.m.cat.Delete(context.WithoutCancel(ctx), k, meta.Revision()); err != nil {
			return 0, a.m.errno(op, k.Path(), err)
		}
	}
	if s != nil {
		s.orphan()
	}
	a.m.log.WithField("secret", k.String()).Info("secret removed")
	return version, 0
}

func isCreating(s *secretState) bool {
	_, ok := s.creating()
	return ok
}

// Rename re-encrypts: the ciphertext is bound to its application and name,
// so the value is written under the new name with a fresh document key,
// then the old item is deleted. The new item is written first, so a
// failure in between leaves two copies, never none; and once begun, the
// two writes are not interrupted.
func (a *appNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	version, errno := a.rename(ctx, name, newParent, newName, flags)
	to := store.Key{Name: newName}
	if dst, ok := newParent.(*appNode); ok {
		to.App = dst.app
	}
	a.m.audit(ctx, "rename", a.key(name), to, version, errno)
	return errno
}

// rename returns the revision written under the new name.
func (a *appNode) rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) (store.Version, syscall.Errno) {
	const op = "rename"
	from := a.key(name)
	if err := a.m.writable(from.Path()); err != nil {
		return 0, a.m.errno(op, from.Path(), err)
	}
	dst, ok := newParent.(*appNode)
	if !ok {
		return 0, a.m.errno(op, from.Path(), fault.E(from.Path(), fault.NotPermitted, "a secret can only move into an application directory"))
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return 0, a.m.errno(op, from.Path(), fault.E(from.Path(), fault.NotSupported, "exchanging two secrets"))
	}
	to := dst.key(newName)
	if err := to.Validate(); err != nil {
		return 0, a.m.errno(op, to.Path(), err)
	}
	if from == to {
		return 0, 0
	}
	src, replaced := a.m.secret(from), a.m.secret(to)
	for _, s := range []*secretState{src, replaced} {
		if s != nil {
			s.settle()
		}
	}
	expected := store.NoItem
	if flags&unix.RENAME_NOREPLACE == 0 {
		meta, err := a.m.cat.Verify(ctx, to)
		switch {
		case err == nil:
			expected = meta.Revision()
		case !fault.Is(fault.NotFound, err):
			return 0, a.m.errno(op, to.Path(), err)
		}
	}

	old, err := a.m.cat.Verify(ctx, from)
	if fault.Is(fault.NotFound, err) && src != nil && isCreating(src) {
		// Being created and not committed yet: the sessions follow the
		// name and will commit it at its new place.
		a.m.move(src, from, to, store.NoItem, store.Meta{Key: to, Version: expected.Version, InitialisationVector: expected.IV})
		a.m.renamed(dst, to)
		return 0, 0
	}
	if err != nil {
		return 0, a.m.errno(op, from.Path(), err)
	}
	snap := a.m.cat.Snapshot(from, old)
	value, err := snap.Value(ctx)
	snap.Release()
	if err != nil {
		return 0, a.m.errno(op, from.Path(), err)
	}
	defer value.Wipe()
	ctx = context.WithoutCancel(ctx)
	meta, err := a.m.cat.Put(ctx, to, value, expected)
	if err != nil {
		return 0, a.m.errno(op, to.Path(), err)
	}
	if err := a.m.cat.Delete(ctx, from, old.Revision()); err != nil {
		// One line says both what happened and why: the value is now
		// under both names.
		return 0, a.m.failure(op, from.Path(), err, "written under its new name "+to.String()+", but the old name could not be removed: both hold the value")
	}
	if replaced != nil {
		replaced.orphan()
	}
	if src != nil {
		a.m.move(src, from, to, old.Revision(), meta)
	}
	a.m.renamed(dst, to)
	a.m.log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("secret renamed")
	return meta.Version, 0
}

// move re-keys the writers of a renamed secret: open files follow a
// rename, as on any file system.
func (m *mount) move(s *secretState, from, to store.Key, old store.Revision, meta store.Meta) {
	m.mu.Lock()
	if m.secrets[from] == s {
		delete(m.secrets, from)
	}
	if prev := m.secrets[to]; prev != nil && prev != s {
		// The replaced secret's writers were orphaned; their state
		// lives on only as long as their descriptors.
		prev.mu.Lock()
		prev.key = store.Key{}
		prev.mu.Unlock()
	}
	m.secrets[to] = s
	m.mu.Unlock()
	s.mu.Lock()
	s.key = to
	s.mu.Unlock()
	for _, ss := range s.all() {
		ss.moved(old, meta)
	}
}

// renamed makes the kernel look the new name up again once the rename
// returns: it moved the old name's inode there, which describes the old
// name's revision, not the new item.
func (m *mount) renamed(dst *appNode, to store.Key) {
	// Not waited for: the kernel takes it once RENAME has returned and
	// it has moved the entry (it holds the directory's lock until then),
	// so it drops the moved entry, not the one RENAME replaces.
	m.notify.entry(&dst.Inode, to.Name)
}

// Mkdir refuses: applications hold secrets, not directories.
func (a *appNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := fault.Path(a.app + "/" + name)
	if err := a.m.writable(p); err != nil {
		return nil, a.m.errno("mkdir", p, err)
	}
	return nil, a.m.errno("mkdir", p, fault.E(p, fault.NotPermitted, "applications hold secrets, not directories"))
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
		page, next, err := h.a.m.cat.List(context.WithoutCancel(ctx), h.a.app, h.next, 0)
		if err != nil {
			return nil, h.a.m.errno("readdir", fault.Path(h.a.app), err)
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
		return nil, h.a.m.errno("readdirplus", h.last.Path(), fault.E(h.last.Path(), fault.NotFound, "a legacy item lists without its size; a lookup will learn it"))
	}
	if s := h.a.m.secret(h.last.Key); s != nil {
		return h.a.Lookup(ctx, name, out) // it has writers here: let Lookup decide
	}
	n, err := h.a.m.versionInode(ctx, &h.a.Inode, h.last.Key, *h.last, &out.Attr)
	if err != nil {
		return nil, h.a.m.errno("readdirplus", h.last.Path(), err)
	}
	out.SetAttrTimeout(kernelTime(h.a.m.opts.TTL))
	out.SetEntryTimeout(kernelTime(h.a.m.opts.TTL))
	return &n.Inode, 0
}

// Seekdir supports rewinding (offset 0), which is all that readdir(3)
// users such as ls do; go-fuse itself replays interrupted reads.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off != 0 {
		return h.a.m.errno("seekdir", fault.Path(h.a.app), fault.E(fault.Path(h.a.app), fault.NotSupported, "seeking a listing other than to its start"))
	}
	*h = dirHandle{a: h.a}
	return 0
}
