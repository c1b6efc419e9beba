package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// createdNode is the inode of a secret created through this mount: what
// the name points at from create(2) until its first commit, when the name
// is pointed at the committed revision. The creator keeps writing through
// it; its later commits are new revisions too. While nothing is committed
// the name exists only for this mount, and reading it finds nothing.
type createdNode struct {
	gofs.Inode
	m *mount
	s *secretState
}

var (
	_ gofs.NodeGetattrer   = (*createdNode)(nil)
	_ gofs.NodeSetattrer   = (*createdNode)(nil)
	_ gofs.NodeOpener      = (*createdNode)(nil)
	_ gofs.NodeStatfser    = (*createdNode)(nil)
	_ gofs.NodeOnForgetter = (*createdNode)(nil)
)

// createdInode returns s's created inode in parent, making it.
func (s *secretState) createdInode(ctx context.Context, parent *gofs.Inode) *createdNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created == nil {
		s.created = &createdNode{m: s.m, s: s}
		parent.NewInode(ctx, s.created, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: s.m.createdIno()})
	}
	return s.created
}

// entry fills out for a lookup or create that returns the inode. Its
// attributes change as it is written, so the kernel keeps them for no
// time at all.
func (d *createdNode) entry(out *fuse.EntryOut) {
	d.m.fileAttr(d.metadata(), 1, &out.Attr)
	out.SetEntryTimeout(kernelTime(0))
	out.SetAttrTimeout(kernelTime(0))
}

// metadata answers a stat by path: what a closing or creating session is
// about to commit, else what was committed.
func (d *createdNode) metadata() store.Meta {
	if m, ok := d.s.closingMetadata(); ok {
		return m
	}
	if m, ok := d.s.creating(); ok {
		return m
	}
	k := d.s.currentKey()
	if m, ok := d.m.cat.Known(k); ok {
		return m
	}
	return store.Meta{Key: k, Version: store.Absent, Modified: time.Now()}
}

func (d *createdNode) OnForget() {
	d.s.mu.Lock()
	if d.s.created == d {
		d.s.created = nil
	}
	d.s.mu.Unlock()
	d.s.forget()
}

// Getattr never waits: the closing writer may be the caller itself (a
// program's first fstat of the stdout its shell redirected).
func (d *createdNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*writeHandle); ok && d.m.requests.viaHandle(ctx) {
		d.m.fileAttr(h.ss.metadata(), 1, &out.Attr)
	} else {
		d.m.fileAttr(d.metadata(), 1, &out.Attr)
	}
	out.SetTimeout(kernelTime(0))
	return 0
}

// Open gives a writer a session of its own. A reader waits for a writer
// that is closing, then is sent to look the name up again (to the
// committed revision), or finds nothing while nothing is committed.
func (d *createdNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := d.open(ctx, flags)
	k := d.s.currentKey()
	version := store.Version(0)
	if m, ok := d.m.cat.Known(k); ok {
		version = m.Version
	}
	d.m.audit(ctx, "open", k, store.Key{}, version, errno)
	return fh, fuseFlags, errno
}

func (d *createdNode) open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	const op = "open"
	k := d.s.currentKey()
	if !isWrite(flags) {
		d.s.settle()
		if _, committed := d.m.cat.Known(k); !committed {
			return nil, 0, d.m.errno(op, k.Path(), fault.E(k.Path(), fault.NotFound, "being created; nothing committed yet"))
		}
		return nil, 0, d.m.relookup(op, k.Path(), "a reader reached the inode of a creation since committed")
	}
	if err := d.m.writable(k.Path()); err != nil {
		return nil, 0, d.m.errno(op, k.Path(), err)
	}
	if _, committed := d.m.cat.Known(k); committed && needsValue(flags) {
		if err := d.m.readable(k.Path()); err != nil {
			return nil, 0, d.m.errno(op, k.Path(), err)
		}
	}
	meta, err := d.m.cat.Verify(ctx, k)
	h, err := d.m.openWriter(ctx, d.s, flags, meta, err)
	if err != nil {
		return nil, 0, d.m.errno(op, k.Path(), err)
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

func (d *createdNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	k := d.s.currentKey()
	if err := d.m.checkSetattr(k.Path(), in, d.m.opts.FileMode); err != nil {
		return d.m.errno("setattr", k.Path(), err)
	}
	if size, ok := in.GetSize(); ok {
		if h, ok := fh.(*writeHandle); ok {
			if err := h.ss.truncate(ctx, int64(size), d.m.cat.MaxValueSize()); err != nil {
				return d.m.errno("truncate", k.Path(), err)
			}
			d.m.fileAttr(h.ss.metadata(), 1, &out.Attr)
			out.SetTimeout(kernelTime(0))
			return 0
		}
		if errno := d.m.truncateByPath(ctx, d.s, k, int64(size)); errno != 0 {
			return errno
		}
	}
	return d.Getattr(ctx, fh, out)
}

func (d *createdNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return d.m.statfs(out)
}
