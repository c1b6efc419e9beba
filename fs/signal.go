package fs

import (
	"context"
	"path/filepath"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/internal/inonum"
	"github.com/secretfs/secretfs/internal/inotable"
	"github.com/secretfs/secretfs/internal/touch"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// Change signals (package touch makes them): when vfs learns that a name
// changed, the mount tells the kernel to forget the name, so that the
// program an event wakes finds the new revision when it opens it (the
// event never comes before the change: provider-aws #260), and then
// touches the file through its own mount point.
//
// inotify watches an inode, and each revision is an inode of its own: a
// program watching the file (rather than its directory) watches the
// revision it found when it began, which the kernel keeps while it
// watches. So every inode of the name the kernel still holds is touched,
// each reached through the signal directory (signalDir), a directory at
// the root that only the signalling threads find, whose entries nobody
// watches; and then the name itself, which tells the watchers of the
// application's directory, once.
//
// A mount signals changes made elsewhere only when --watch or its
// configuration file lists applications to watch (Options.Watched), which
// it lists once per TTL (pollWatched) so that such a change is learnt even
// when nobody reads; it signals its own commits whenever it is read-write
// (below).
//
// A change written through the mount is seen by the kernel, which tells
// the watchers of the name's directory, but through the writer's own
// inode (writer.go), and before its close commits it: a program watching
// the file watches the revision it replaced, and hears nothing; one that
// reads the file at each IN_MODIFY of the directory (Go's fsnotify
// Write) reads the old value every time. So every read-write mount
// signals its own commits too (touch.Replaced): to the inodes of the
// revisions they replaced (the kernel holds one only while something
// holds it, such as an inotify watch or an open descriptor), and to the
// name, once the new revision is what an open reads.

// signal makes the change signal of k to scope, on a signalling thread,
// if the kernel holds its application (else nothing can be watching it).
func (m *mount) signal(k store.Key, scope touch.Scope, t *touch.Tree) {
	app := m.root.GetChild(k.App)
	if app == nil {
		return
	}
	if scope == touch.Changed {
		// The name first: the next open finds what the mount holds now.
		// This goes to this mount's own connection whatever the mount
		// point shows (the touches below check that: touch.Tree), and
		// only makes the kernel forget a name of this mount.
		app.NotifyEntry(k.Name)
	}
	dirName := m.signals.DirName()
	for _, ino := range m.heldInodes(k) {
		name := strconv.FormatUint(ino, 16)
		t.Touch(filepath.Join(dirName, name))
		if d := m.root.GetChild(dirName); d != nil {
			d.RmChild(name)
			d.NotifyEntry(name)
		}
	}
	t.Touch(filepath.Join(k.App, k.Name))
}

// isOwnSignal reports whether the request behind ctx comes from a
// signalling thread.
func (m *mount) isOwnSignal(ctx context.Context) bool {
	tid := thread(ctx)
	return tid != 0 && m.signals.Own(tid)
}

// signalDirFor returns the signal directory, for a lookup of name at the
// root by a signalling thread; nil for anyone else or any other name.
func (m *mount) signalDirFor(ctx context.Context, name string, out *fuse.EntryOut) *gofs.Inode {
	if name != m.signals.DirName() || !m.isOwnSignal(ctx) {
		return nil
	}
	fill(&out.Attr, vfs.Attr{Dir: true, Perm: 0o500, Nlink: 2, UID: uint32(unix.Geteuid()), GID: uint32(unix.Getegid())})
	out.SetEntryTimeout(kernelTime(0)) // looked up again at every use: only the signaller finds it
	out.SetAttrTimeout(kernelTime(0))
	return m.root.NewInode(ctx, &signalDir{m: m}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inonum.SignalDir})
}

// signalDir is where the signalling thread reaches an inode the kernel
// holds by its number, in hexadecimal: the revisions of a name that
// programs watching the file watch (see the comment at the top). It
// lists nothing, and finds nothing for anyone else.
type signalDir struct {
	gofs.Inode
	m *mount
}

var _ gofs.NodeLookuper = (*signalDir)(nil)

func (d *signalDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ino, err := strconv.ParseUint(name, 16, 64)
	if err != nil || !d.m.isOwnSignal(ctx) {
		return nil, syscall.ENOENT
	}
	n := d.m.table.Get(ino)
	if n == nil {
		return nil, syscall.ENOENT
	}
	fill(&out.Attr, n.serves.Attr())
	out.SetEntryTimeout(kernelTime(0))
	out.SetAttrTimeout(kernelTime(d.m.opts.TTL))
	return &n.Inode, 0
}

// heldInodes returns the numbers of the inodes the kernel holds of k's
// revisions (or renderings, for a view) other than the one its name
// points at now: those a program watching the file may watch.
func (m *mount) heldInodes(k store.Key) []uint64 {
	current, _ := m.vfs.Current(k) // none for a view: every rendering is held
	return m.table.Held(k, inotable.Of(k, current.Revision()))
}

// pollWatched revalidates each watched application the kernel holds as
// often as vfs says (vfs.FS.RevalidateEvery), so that a change made
// elsewhere is learnt, and signalled, within the TTL (plus that tick)
// even when nobody reads.
func (m *mount) pollWatched() {
	m.signals.Every(m.vfs.RevalidateEvery(), func() {
		for name, child := range m.root.Children() {
			if _, ok := child.Operations().(*appNode); ok && m.opts.Watched(name) {
				if err := m.vfs.Revalidate(context.Background(), name); err != nil {
					m.log.WithFields(logrus.Fields{"app": name}).WithError(err).Debug("a watched application could not be listed")
				}
			}
		}
	})
}
