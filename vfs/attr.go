package vfs

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// Attr is what a stat shows of a file or directory. Owner, group and
// mode come from the owner rule its path matches (Options.OwnerOf), else
// from the mount options.
type Attr struct {
	Dir      bool
	Perm     uint32 // permission bits
	Nlink    uint32
	UID, GID uint32
	Size     int64
	Modified time.Time
}

// Owner is who owns a path and with which permission bits, as an owner
// rule says: each field nil where the rule leaves it to the mount options
// (UID, GID, FileMode or DirMode).
type Owner struct {
	UID, GID, Mode *uint32
}

// owner is who owns k (an application's directory for a Key with no
// Name, else a secret or a view) and its permission bits: the rule its
// path matches, or the mount options. perm is the mount options' bits for
// its kind.
func (v *FS) owner(k store.Key, perm uint32) (uid, gid, mode uint32) {
	uid, gid, mode = v.opts.UID, v.opts.GID, perm
	if v.owners == nil {
		return uid, gid, mode
	}
	o := v.owners.of(k)
	if o.UID != nil {
		uid = *o.UID
	}
	if o.GID != nil {
		gid = *o.GID
	}
	if o.Mode != nil {
		mode = *o.Mode
	}
	return uid, gid, mode
}

// owners answers Options.OwnerOf and keeps each answer: the rules never
// change while the file system lives, and `ls -l` asks them of every name
// of an application each time, which costs a path made of the name and a
// match of every rule's pattern in turn until one matches. It keeps at
// most maxOwners answers (a few large applications' names), then starts
// over.
type owners struct {
	rules func(path string) Owner
	kept  sync.Map // store.Key → Owner; an application's directory is its Key with no Name
	n     atomic.Int64
}

// maxOwners bounds the answers owners keeps.
const maxOwners = 1 << 14

func newOwners(rules func(string) Owner) *owners {
	if rules == nil {
		return nil
	}
	return &owners{rules: rules}
}

func (o *owners) of(k store.Key) Owner {
	if got, ok := o.kept.Load(k); ok {
		return got.(Owner)
	}
	p := k.App
	if k.Name != "" {
		p = k.String()
	}
	owner := o.rules(p)
	if o.n.Add(1) > maxOwners {
		o.kept.Clear()
		o.n.Store(1)
	}
	o.kept.Store(k, owner)
	return owner
}

// DirAttr is the attributes of the application app's directory, or of
// the root for "", owned as its owner rule says (the root, as the mount
// options say). Its time is when a name in it last changed as far as the
// mount knows (a secret written, removed or renamed, through the mount
// or learnt of from the store; an application made or removed, for the
// root), as a local directory's is when an entry is added, removed or
// replaced; the mount's start, before any.
func (v *FS) DirAttr(app string) Attr {
	uid, gid, mode := v.opts.UID, v.opts.GID, v.opts.DirMode
	if app != "" {
		uid, gid, mode = v.owner(store.Key{App: app}, v.opts.DirMode)
	}
	v.mu.Lock()
	modified, ok := v.dirTimes[app]
	v.mu.Unlock()
	if !ok {
		modified = v.started
	}
	return Attr{Dir: true, Perm: mode, Nlink: 2, UID: uid, GID: gid, Modified: modified}
}

// dirChanged records that a name in dir (an application, or "" for the
// root) changed now.
func (v *FS) dirChanged(dir string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.dirTimes == nil {
		v.dirTimes = map[string]time.Time{}
	}
	v.dirTimes[dir] = time.Now()
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
	uid, gid, mode := v.owner(meta.Key, v.opts.FileMode)
	return Attr{Perm: mode, Nlink: nlink, UID: uid, GID: gid, Size: max(meta.Size, 0), Modified: t}
}

// Change is what a chmod, chown, utimes or truncate asks: each field is
// nil unless asked. Times are not in it: they are accepted and ignored.
type Change struct {
	Mode, UID, GID *uint32
	Size           *int64
}

// check refuses changes of owner and mode, which come from the owner
// rules and mount options (a, what the path shows now). Setting them to
// what they already are, and setting times, is accepted (and times
// ignored), so that touch(1), cp(1) and install(1) work. A read-only
// mount refuses every change, times too: the kernel refuses them first
// (fs mounts it read-only, per file system or per mount), but the mount's
// own change signals reach the file system through a writable clone of
// the mount (see Caller.Own), so this refusal is the one for everyone
// else.
func (v *FS) check(p fault.Path, ch Change, a Attr) error {
	if err := v.writable(p); err != nil {
		return err
	}
	if ch.Mode != nil && *ch.Mode&07777 != a.Perm {
		return fault.E(p, fault.NotPermitted, "modes come from the owner rules of --config, else --file-mode and --dir-mode")
	}
	if (ch.UID != nil && *ch.UID != a.UID) || (ch.GID != nil && *ch.GID != a.GID) {
		return fault.E(p, fault.NotPermitted, "owners come from the owner rules of --config, else --uid and --gid")
	}
	return nil
}

// SetattrDir is a change of the attributes of app's directory, or of
// the root for "": only to what they are.
func (v *FS) SetattrDir(app string, ch Change) error {
	p := fault.Path(app)
	if app == "" {
		p = "/"
	}
	return v.check(p, ch, v.DirAttr(app))
}

// Setattr is a change of the secret k's attributes, through the handle h
// if the request came through a descriptor open for writing (nil
// otherwise). Owner and mode can only be set to what they are. A size
// truncates: h's buffer (which is also how the O_TRUNC of an open
// arrives, without a handle, from the thread that opened: c.Thread), or
// else the stored value at once (truncate -s). The revision a reader
// holds never changes.
//
// The mount's own change signal (c.Own) truncates to the size the file
// has, which changes nothing: it is answered at once, whatever the mount
// allows.
func (v *FS) Setattr(ctx context.Context, c Caller, k store.Key, h *Handle, ch Change) error {
	if c.Own || (h != nil && h.signal) {
		return nil
	}
	shown, view := v.fileAttr(store.Meta{Key: k}, 1), v.viewAt(k) != nil
	if view {
		shown.Perm &^= viewWriteBits // as ViewRevision.Attr shows it
	}
	if err := v.check(k.Path(), ch, shown); err != nil {
		return err
	}
	if ch.Size != nil && view {
		return viewReadOnly(k)
	}
	switch {
	case ch.Size == nil:
		return nil
	case h != nil:
		return h.Truncate(ctx, *ch.Size)
	}
	return v.truncate(ctx, c, k, *ch.Size)
}
