// Package touch makes the inotify events of changes a FUSE daemon learns
// of by itself. inotify events come from the kernel's VFS when a change
// goes through it; a daemon that learns of a change on its own (a secret
// changed on another host, a view's input changed) raises none by telling
// the kernel to forget what it cached (libfuse's wiki, "Fsnotify and
// FUSE"). So the daemon makes a change of its own, through its own mount
// point, that changes nothing: it opens a file for writing, truncates it
// to the size it has (IN_MODIFY) and closes it (IN_CLOSE_WRITE).
// inotifywait, Go's fsnotify and systemd's PathChanged= all see one of
// those events.
//
// The touches are made from threads the Signaller registers (Own), so
// that the daemon answers the requests they cause without a session, a
// commit or an audit record. They run on a goroutine of their own, never
// in a request handler, holding no lock: their syscalls are requests the
// same daemon serves. Changes are gathered for a moment first
// (Debounce), so that a rotation, or a view whose inputs changed in one
// listing, is one event.
//
// The daemon says what to touch for a change (Signaller's signal
// function); this package owns the queue, the threads and the syscalls.
//
// # Lock order
//
// Signaller.mu guards the queue and the mount point alone; it is never
// held across a touch or the signal function.
package touch

import (
	"crypto/rand"
	"encoding/hex"
	"runtime"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/store"
)

// Debounce is how long changes are gathered before they are signalled.
const Debounce = 20 * time.Millisecond

// Scope is what the signal of a change must reach.
type Scope uint8

const (
	// Replaced is a change the kernel saw: a write through the mount,
	// which it told the watchers of the name's directory of, but before
	// the change was committed; the inodes of the revisions it replaced,
	// which programs watching the file watch, have heard nothing. The
	// kernel has already forgotten the name.
	Replaced Scope = iota + 1
	// Changed is a change the mount learnt of by itself (from the store,
	// or a view's input): nobody has heard of it.
	Changed
)

// Signaller makes the change signals of one mount, once started.
type Signaller struct {
	log     logrus.FieldLogger
	signal  func(k store.Key, scope Scope, t *Tree)
	dirName string   // the marker directory's name, random: no application can be named so by chance
	own     sync.Map // uint32 ids of the signalling threads

	refusedOnce sync.Once // the warning that signals are refused

	mu      sync.Mutex
	dir     string // the mount point, once started
	pending map[store.Key]Scope
	wake    chan struct{}
	done    chan struct{}
}

// New returns a Signaller that, for each change queued once it started,
// calls signal on a signalling thread with the mount opened as t. signal
// touches what the watchers of the change's scope may watch
// (Tree.Touch); it runs holding no lock of this package.
func New(log logrus.FieldLogger, signal func(k store.Key, scope Scope, t *Tree)) *Signaller {
	b := make([]byte, 8)
	rand.Read(b)
	return &Signaller{log: log, signal: signal, dirName: ".secretfs-signal-" + hex.EncodeToString(b),
		pending: map[store.Key]Scope{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// DirName is the name of a directory at the mount's root that the mount
// must show to signalling threads (Own) and to nobody else: it is how a
// Tree knows that the mount point shows this mount (see Tree), and where
// the daemon may let them reach inodes no name points at any more.
func (s *Signaller) DirName() string { return s.dirName }

// Own reports whether thread id tid is a signalling thread of s, whose
// requests are the signaller's own changes.
func (s *Signaller) Own(tid uint32) bool {
	_, own := s.own.Load(tid)
	return own
}

// Start begins signalling changes through the mount point dir, now
// served.
func (s *Signaller) Start(dir string) {
	s.mu.Lock()
	s.dir = dir
	s.mu.Unlock()
	go s.run()
}

// Stop ends the signalling and any Every loop: the mount is gone.
func (s *Signaller) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// Every calls f every interval, on a goroutine of its own, until Stop.
func (s *Signaller) Every(interval time.Duration, f func()) {
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			f()
		}
	}()
}

// Queue asks for k's change to be signalled to scope; nothing, if s has
// not started. Changes of one name queued together are signalled once, to
// the widest scope asked.
func (s *Signaller) Queue(k store.Key, scope Scope) {
	s.mu.Lock()
	if s.dir == "" {
		s.mu.Unlock()
		return
	}
	s.pending[k] = max(s.pending[k], scope)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Signaller) run() {
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		time.Sleep(Debounce)
		s.mu.Lock()
		pending := s.pending
		s.pending = map[store.Key]Scope{}
		dir := s.dir
		s.mu.Unlock()
		for k, scope := range pending {
			s.signalOne(dir, k, scope)
		}
	}
}

// signalOne calls signal for k on a signalling thread: locked to this
// goroutine and registered for as long as the call lasts.
func (s *Signaller) signalOne(dir string, k store.Key, scope Scope) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := uint32(unix.Gettid())
	s.own.Store(tid, struct{}{})
	defer s.own.Delete(tid)
	t := &Tree{s: s, dir: dir, key: k, fd: -1}
	defer t.close()
	s.signal(k, scope, t)
}

// Tree is the mount, for the signal of one change: opened at its first
// Touch, closed when the signal function returns.
//
// As root, it is a private clone of the mount (open_tree), made
// writable: a read-only mount that signals is read-only per mount
// (MOUNT_ATTR_RDONLY), and its file system is not. The clone is closed
// after each signal, so that it never keeps the file system alive once
// the mount is released. As anyone else, it is the mount point itself,
// which can be written through only on a read-write mount.
//
// The mount point may show another mount: while a successor's mount
// waits beneath this one, the successor's signals must not reach this
// mount, and once this mount stepped down and was detached, its signals
// must not reach the successor's. Only this mount shows its signalling
// threads DirName, so a tree without it touches nothing.
type Tree struct {
	s      *Signaller
	dir    string
	key    store.Key // for the log
	fd     int
	failed bool
}

func (t *Tree) open() bool {
	if t.fd >= 0 || t.failed {
		return t.fd >= 0
	}
	t.failed = true
	log := t.s.log.WithField("secret", t.key.String())
	fd, err := unix.OpenTree(unix.AT_FDCWD, t.dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	clone := err == nil
	if !clone {
		fd, err = unix.Open(t.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		log.WithError(err).Debug("the mount point cannot be opened: no change signal")
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, t.s.dirName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(fd)
		if t.s.refused(err, log) {
			return false
		}
		log.WithError(err).Debug("the mount point shows another mount: no change signal")
		return false
	}
	if clone {
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}); err != nil {
			unix.Close(fd)
			log.WithError(err).Warn("the mount's clone cannot be made writable: no change signal")
			return false
		}
	}
	t.fd, t.failed = fd, false
	return true
}

// refused reports whether err is the kernel refusing this process the
// mount's modes (default_permissions applies them to root too: root
// without CAP_DAC_OVERRIDE may not open a file shown as 0400 for writing,
// nor any view, nor search a root shown as 0500 owned by another user),
// and warns of it once per mount: no watcher hears of any change then,
// which an operator must learn of, but not once per change.
func (s *Signaller) refused(err error, log logrus.FieldLogger) bool {
	if err != unix.EACCES && err != unix.EPERM {
		return false
	}
	s.refusedOnce.Do(func() {
		log.WithError(err).Warn("the kernel refuses this process the mount's file modes, so change signals cannot be made and watchers hear nothing: run it as root with CAP_DAC_OVERRIDE (the unit keeps it), or without --uid, --gid and modes that keep root out")
	})
	return true
}

func (t *Tree) close() {
	if t.fd >= 0 {
		unix.Close(t.fd)
	}
}

// Touch opens rel, a path below the mount point, for writing, truncates
// it to its size and closes it: IN_OPEN, IN_MODIFY and IN_CLOSE_WRITE,
// and no change. It reports whether it did.
func (t *Tree) Touch(rel string) bool {
	if !t.open() {
		return false
	}
	log := t.s.log.WithField("secret", t.key.String())
	fd, err := unix.Openat(t.fd, rel, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if !t.s.refused(err, log) {
			log.WithError(err).Debug("no change signal") // gone
		}
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	if err := unix.Ftruncate(fd, st.Size); err != nil {
		log.WithError(err).Debug("no change signal")
		return false
	}
	log.WithField("inode", st.Ino).Debug("change signalled")
	return true
}
