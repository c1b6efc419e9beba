package vfs

import (
	"context"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// Attr is what a stat shows of a file or directory. Owner, group and
// mode come from the mount options, for every file and directory alike.
type Attr struct {
	Dir      bool
	Perm     uint32 // permission bits
	Nlink    uint32
	UID, GID uint32
	Size     int64
	Modified time.Time
}

// DirAttr is the attributes of the root and of every application: made
// when the mount was.
func (v *FS) DirAttr() Attr {
	return Attr{Dir: true, Perm: v.opts.DirMode, Nlink: 2, UID: v.opts.UID, GID: v.opts.GID, Modified: v.started}
}

// fileAttr is the attributes of a secret of the given metadata, with
// nlink links (0 for a revision no name points at any more). A legacy
// item without a Modified attribute shows the Unix epoch: unknown,
// honestly.
func (v *FS) fileAttr(meta store.Meta, nlink uint32) Attr {
	t := meta.Modified
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return Attr{Perm: v.opts.FileMode, Nlink: nlink, UID: v.opts.UID, GID: v.opts.GID, Size: max(meta.Size, 0), Modified: t}
}

// Change is what a chmod, chown, utimes or truncate asks: each field is
// nil unless asked. Times are not in it: they are accepted and ignored.
type Change struct {
	Mode, UID, GID *uint32
	Size           *int64
}

// check refuses changes of owner and mode, which come from mount options
// for the whole file system. Setting them to what they already are, and
// setting times, is accepted (and times ignored), so that touch(1),
// cp(1) and install(1) work.
func (v *FS) check(p fault.Path, ch Change, perm uint32) error {
	if ch.Mode != nil && *ch.Mode&07777 != perm {
		return fault.E(p, fault.NotPermitted, "modes come from --file-mode and --dir-mode")
	}
	if (ch.UID != nil && *ch.UID != v.opts.UID) || (ch.GID != nil && *ch.GID != v.opts.GID) {
		return fault.E(p, fault.NotPermitted, "owners come from --uid and --gid")
	}
	return nil
}

// SetattrApp is a change of an application directory's attributes (or
// the root's): only to what they are.
func (v *FS) SetattrApp(app string, ch Change) error {
	return v.check(fault.Path(app), ch, v.opts.DirMode)
}

// Setattr is a change of the secret k's attributes, through the handle h
// if the request came through a descriptor open for writing (nil
// otherwise). Owner and mode can only be set to what they are. A size
// truncates: h's buffer (which is also how the O_TRUNC of an open
// arrives, without a handle, from the thread that opened: c.Thread), or
// else the stored value at once (truncate -s). The revision a reader
// holds never changes.
func (v *FS) Setattr(ctx context.Context, c Caller, k store.Key, h *Handle, ch Change) error {
	if err := v.check(k.Path(), ch, v.opts.FileMode); err != nil {
		return err
	}
	switch {
	case ch.Size == nil:
		return nil
	case h != nil:
		return h.Truncate(ctx, *ch.Size)
	}
	return v.truncate(ctx, c, k, *ch.Size)
}
