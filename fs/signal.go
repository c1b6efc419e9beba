package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// Change signals. inotify events come from the kernel's VFS when a
// change goes through it; a FUSE daemon that learns of a change by itself
// (a secret changed on another host, a view's input changed) raises none
// by telling the kernel to forget what it cached (libfuse's wiki,
// "Fsnotify and FUSE"). So the mount makes a change of its own, through
// its own mount point, that changes nothing: it opens the file for
// writing, truncates it to the size it has (IN_MODIFY) and closes it
// (IN_CLOSE_WRITE), from a thread it registers first, so that it answers
// those requests (vfs.Caller.Own) without a session, a commit or an audit
// record, also on a read-only mount and on a view. inotifywait, Go's
// fsnotify and systemd's PathChanged= all see one of those events.
//
// Before it, the kernel is told to forget the name, so that the program
// an event wakes finds the new revision when it opens the name: the
// event never comes before the change (provider-aws #260).
//
// inotify watches an inode, and each revision is an inode of its own: a
// program watching the file (rather than its directory) watches the
// revision it found when it began, which the kernel keeps while it
// watches. So the change is made on every inode of the name the kernel
// still holds, each reached through the signal directory (signalDir), a
// directory at the root that only the signalling thread finds, whose
// entries nobody watches; and then once through the name itself, which
// tells the watchers of the application's directory, once.
//
// The signalling runs on a goroutine of its own, never in a request
// handler, holding no lock: its syscalls are requests this daemon serves.
// Changes are gathered for a moment first, so that a rotation, or a view
// whose inputs changed in one listing, is one event.
//
// A mount makes change signals only when its configuration file lists
// applications to watch (Options.Watched). The changes are made through a
// private clone of the mount (ownTree), writable even when the mount
// users see is read-only (Options.MountReadOnly).

// signalDebounce is how long changes are gathered before they are
// signalled.
const signalDebounce = 20 * time.Millisecond

// signaller makes the change signals of a mount, and lists the watched
// applications once per TTL (Options.Watched), once started: only a
// mount with Options.Watched starts it.
type signaller struct {
	m       *mount
	dirName string   // of the signal directory, random: no application can be named so by chance
	own     sync.Map // uint32 thread ids of signalling threads

	mu      sync.Mutex
	dir     string // the mount point, once served
	pending map[store.Key]struct{}
	wake    chan struct{}
	done    chan struct{}
}

func newSignaller(m *mount) *signaller {
	b := make([]byte, 8)
	rand.Read(b)
	return &signaller{m: m, dirName: ".secretfs-signal-" + hex.EncodeToString(b),
		pending: map[store.Key]struct{}{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// start begins signalling changes through the mount point dir, now
// served.
func (s *signaller) start(dir string) {
	s.mu.Lock()
	s.dir = dir
	s.mu.Unlock()
	go s.run()
	go s.poll()
}

// stop ends the signalling: the mount is gone.
func (s *signaller) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// queue asks for k's change to be signalled, once the signaller runs.
func (s *signaller) queue(k store.Key) {
	s.mu.Lock()
	if s.dir == "" {
		s.mu.Unlock()
		return // not started: no change signals on this mount
	}
	s.pending[k] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *signaller) run() {
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		time.Sleep(signalDebounce)
		s.mu.Lock()
		keys := make([]store.Key, 0, len(s.pending))
		for k := range s.pending {
			keys = append(keys, k)
		}
		clear(s.pending)
		s.mu.Unlock()
		for _, k := range keys {
			s.signal(k)
		}
	}
}

// signal makes the change signal of k, if the kernel holds its
// application (else nothing can be watching it).
func (s *signaller) signal(k store.Key) {
	app := s.m.root.GetChild(k.App)
	if app == nil {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := uint32(unix.Gettid())
	s.own.Store(tid, struct{}{})
	defer s.own.Delete(tid)
	tree, ok := s.ownTree()
	if !ok {
		return
	}
	defer unix.Close(tree)

	app.NotifyEntry(k.Name) // the name first: the next open finds what the mount holds now
	for _, ino := range s.m.heldInodes(k) {
		name := strconv.FormatUint(ino, 16)
		s.touch(tree, filepath.Join(s.dirName, name), k)
		if d := s.m.root.GetChild(s.dirName); d != nil {
			d.RmChild(name)
			d.NotifyEntry(name)
		}
	}
	s.touch(tree, filepath.Join(k.App, k.Name), k)
}

// ownTree returns a descriptor of this mount's root to make changes
// through, if the mount point shows this mount now: only this mount finds
// its signal directory. The path may show another: while a successor's
// mount waits beneath this one, the successor's signals must not reach
// this mount, and once this mount stepped down and was detached, its
// signals must not reach the successor's.
//
// As root, the descriptor is a private clone of the mount (open_tree),
// made writable: a read-only mount is read-only per mount
// (Options.MountReadOnly), and its file system is not. The clone is
// closed after each signal, so that it never keeps the file system alive
// once the mount is released. As anyone else, it is the mount point
// itself, which the signaller can write through only on a read-write
// mount. It must run on a signalling thread.
func (s *signaller) ownTree() (int, bool) {
	s.mu.Lock()
	dir := s.dir
	s.mu.Unlock()
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	clone := err == nil
	if !clone {
		tree, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		s.m.log.WithError(err).Debug("the mount point cannot be opened: no change signal")
		return -1, false
	}
	var st unix.Stat_t
	if err := unix.Fstatat(tree, s.dirName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(tree)
		s.m.log.WithError(err).Debug("the mount point shows another mount: no change signal")
		return -1, false
	}
	if clone {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}); err != nil {
			unix.Close(tree)
			s.m.log.WithError(err).Warn("the mount's clone cannot be made writable: no change signal")
			return -1, false
		}
	}
	return tree, true
}

// touch opens rel, a path in the mount below tree, for writing, truncates
// it to its size and closes it: IN_OPEN, IN_MODIFY and IN_CLOSE_WRITE, and
// no change. It must run on a signalling thread.
func (s *signaller) touch(tree int, rel string, k store.Key) {
	log := s.m.log.WithField("secret", k.String())
	fd, err := unix.Openat(tree, rel, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		// Gone (ENOENT), or this process may not write it (EACCES: the
		// mount runs as a user without write permission on the file).
		log.WithError(err).Debug("no change signal")
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return
	}
	if err := unix.Ftruncate(fd, st.Size); err != nil {
		log.WithError(err).Debug("no change signal")
		return
	}
	log.WithField("inode", st.Ino).Debug("change signalled")
}

// isOwn reports whether the request behind ctx comes from a signalling
// thread.
func (s *signaller) isOwn(ctx context.Context) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return false
	}
	_, own := s.own.Load(fc.Caller.Pid)
	return own
}

// signalDirIno is the signal directory's inode number: the last of the
// range of numbers counted out (by createdIno, and by go-fuse for the
// applications' directories, both from 1<<63 up), which neither count
// reaches.
const signalDirIno = ^uint64(0) - 1

// dirFor returns the signal directory, for a lookup of name at the root
// r by a signalling thread; nil for anyone else or any other name.
func (s *signaller) dirFor(ctx context.Context, r *rootNode, name string, out *fuse.EntryOut) *gofs.Inode {
	if name != s.dirName || !s.isOwn(ctx) {
		return nil
	}
	fill(&out.Attr, vfs.Attr{Dir: true, Perm: 0o500, Nlink: 2, UID: uint32(unix.Geteuid()), GID: uint32(unix.Getegid())})
	out.SetEntryTimeout(kernelTime(0)) // looked up again at every use: only the signaller finds it
	out.SetAttrTimeout(kernelTime(0))
	return r.NewInode(ctx, &signalDir{m: s.m}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: signalDirIno})
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
	if err != nil || !d.m.signals.isOwn(ctx) {
		return nil, syscall.ENOENT
	}
	d.m.mu.Lock()
	v, w := d.m.versions[ino], d.m.views[ino]
	d.m.mu.Unlock()
	switch {
	case v != nil:
		fill(&out.Attr, v.rev.Attr())
		out.SetEntryTimeout(kernelTime(0))
		out.SetAttrTimeout(kernelTime(d.m.opts.TTL))
		return &v.Inode, 0
	case w != nil:
		fill(&out.Attr, w.rev.Attr())
		out.SetEntryTimeout(kernelTime(0))
		out.SetAttrTimeout(kernelTime(d.m.opts.TTL))
		return &w.Inode, 0
	}
	return nil, syscall.ENOENT
}

// heldInodes returns the numbers of the inodes the kernel holds of k's
// revisions (or renderings, for a view) other than the one its name
// points at now: those a program watching the file may watch.
func (m *mount) heldInodes(k store.Key) []uint64 {
	current, _ := m.vfs.Current(k)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint64
	for ino, n := range m.versions {
		if n.registered.key == k && (n.registered.version != current.Version || n.registered.iv != string(current.InitialisationVector)) {
			out = append(out, ino)
		}
	}
	for ino, n := range m.views {
		if n.rev.Key() == k {
			out = append(out, ino)
		}
	}
	return out
}

// poll lists each watched application the kernel holds once per TTL
// (vfs.FS.Revalidate lists only what is older), so that a change made
// elsewhere is learnt, and signalled, within the TTL (plus this tick)
// even when nobody reads. Under a TTL of a second (0: ask at every open)
// it lists once a second.
func (s *signaller) poll() {
	every := min(max(s.m.opts.TTL/4, 100*time.Millisecond), 500*time.Millisecond)
	if s.m.opts.TTL < time.Second {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		for name, child := range s.m.root.Children() {
			if _, ok := child.Operations().(*appNode); ok && s.m.opts.Watched(name) {
				if err := s.m.vfs.Revalidate(context.Background(), name); err != nil {
					s.m.log.WithFields(logrus.Fields{"app": name}).WithError(err).Debug("a watched application could not be listed")
				}
			}
		}
	}
}
