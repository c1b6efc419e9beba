// Package vfs is secretfs's file semantics, without the kernel: what a
// name, a revision, a write session and the set of writers of a secret
// are, and how each operation of a file system (lookup, open, write,
// truncate, flush, fsync, release, unlink, rename, mkdir, rmdir, listing)
// changes them. Package fs translates kernel requests into calls of this
// one, as rclone's vfs sits beneath its mount and mountpoint-s3's
// fs.rs beneath its fuse.rs; the tests here drive it without FUSE.
//
// The layout it serves:
//
//	/                  the applications
//	/<app>/            the secrets of one application
//	/<app>/<secret>    one secret: read decrypts, write encrypts
//
// Each committed revision of a secret is immutable (Revision). A name
// points at its current revision, as the catalog says, no older than its
// TTL. A writer writes to a private buffer (a session: session.go) that is
// committed with one conditional write when the process that wrote closes
// its descriptor, and becomes a new revision the name then points at. A
// concurrent writer that committed first makes the commit fail with
// fault.Conflict instead of being overwritten. What the mount knows of a
// secret's writers is a Secret (secret.go).
//
// Who is calling is a plain argument (Caller), which the adapter fills
// from the request and /proc. Changes of names are told through one
// callback (Options.Events), every audited operation through one function
// (FS.audit), and errors are *fault.Error values: this package never
// returns an errno, never imports go-fuse, and never logs a value.
//
// # Lock order
//
// vfs has six kinds of lock, and never takes one while it holds another,
// but for the one exception below:
//
//   - FS.mu guards the mount's bookkeeping: the applications made here,
//     the secrets that have writers (FS.secrets), and the fields of every
//     Secret (its key, sessions, opens under way and holds), the views'
//     current renderings and those held (FS.renderings), the directories'
//     times (FS.dirTimes) and the root's names last shown (FS.shownApps);
//   - session.mu guards one write session;
//   - Revision.mu guards one revision's metadata, snapshot pin and the
//     Reads in flight that keep a replaced pin (Revision.use);
//   - ViewRevision.mu guards one rendering of a view. It is the
//     exception: FS.mu may be taken while it is held (to record a held
//     rendering, FS.held), never the other way round;
//   - Locks.mu guards the advisory locks (FS.locks, locks.go), and Changes.mu the
//     count of changes in flight and of handles open for writing
//     (changes.go): each taken alone.
//
// None is held across a call into the catalog (whose locks are package
// cache's), a load or a commit, or a callback of Options (Events, Audit,
// Committed). A session tells its secret that it became busy or idle
// (session.onChange) while it holds session.mu: that only swaps and
// closes a channel, without a lock (Secret.wake).
package vfs

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/audit"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Options shape what the file system shows and allows.
type Options struct {
	ReadOnly  bool
	WriteOnly bool          // the key can only wrap (a public key): values cannot be read
	Apps      []string      // fixed list of applications; nil means discover them from the store
	UID, GID  uint32        // owner of every file and directory
	FileMode  uint32        // permission bits of secrets, e.g. 0600
	DirMode   uint32        // permission bits of directories, e.g. 0700
	TTL       time.Duration // how long a name from a listing stands
	Log       logrus.FieldLogger
	// Events, if set, is told of every change of a name this file
	// system makes or learns of (see Event), holding no lock: from the
	// request that made or found the change, before it returns, or, for
	// a change the catalog learned from the store, from the catalog's
	// goroutine.
	Events func(Event)
	// Committed, if set, is told of every commit of a writer's buffer
	// and its outcome (nil: committed).
	Committed func(err error)
	// Changes, if set, counts the changes to the store in flight, so
	// that a stop can refuse new ones and let those begun finish.
	Changes *Changes
	// Audit, if set, is told of every open of a secret, every commit,
	// unlink and rename, with who asked and how it ended.
	Audit func(audit.Entry)
	// Errno gives the errno the caller sees for an error: the audit
	// log's result. It is the adapter's mapping (package fs); without
	// it every error is recorded as EIO.
	Errno func(error) syscall.Errno
	// OwnerOf, if set, says who owns a path ("app" for an application's
	// directory, "app/name" for a secret or a view) and with which mode,
	// as the owner rules of the config file do; what it leaves nil is
	// UID, GID, FileMode or DirMode. It must say the same of a path every
	// time: its answers are kept (see owners).
	OwnerOf func(path string) Owner
	// Views are the views the file system shows (see view.go), each at
	// its own path. Two views at one path are refused before (package
	// mountconfig); here the last one would win.
	Views []*render.View
	// Idle is how long a view's rendering nobody read is held before it
	// is wiped (the catalog's idle bound for plaintext); 5 minutes if 0.
	Idle time.Duration
}

// FS is one mounted file system's semantics over a catalog. Safe for
// concurrent use.
type FS struct {
	cat     secrets.Catalog
	opts    Options
	log     logrus.FieldLogger
	started time.Time

	mu sync.Mutex // see the lock order in the package comment
	// made holds applications created by mkdir. The store has no empty
	// applications (an item is a secret), so until its first secret an
	// application made here lives only in this mount.
	made    map[string]bool
	secrets map[store.Key]*Secret // the secrets with writers, or held by the adapter
	// currentViews holds, for each view, what is known of its current
	// rendering (adopt, ViewRevision.current).
	currentViews map[store.Key]*viewState
	renderings   map[*ViewRevision]struct{} // the renderings that hold their bytes, for Close
	// dirTimes holds when a name of each directory ("" the root) last
	// changed as far as this mount knows: its modification time
	// (DirAttr).
	dirTimes map[string]time.Time
	// shownApps is the root's names as the last listing of it gave them
	// (Apps), with those made or removed here since: a listing that
	// finds another set learnt of a change from the store, and moves
	// the root's time. rootListed says whether there was a listing (an
	// empty root's names are none, too).
	shownApps  []string
	rootListed bool

	views views // never changes
	// hiddenTold holds the views (store.Key) that a listing found hiding
	// a secret stored at their path, each logged once.
	hiddenTold sync.Map
	macKey     []byte  // keys viewMAC: random, this file system's own
	owners     *owners // Options.OwnerOf's answers; nil without it
	self       uint32  // this process's user, who may write the store itself

	locks Locks         // the advisory locks, by secret (lockfs.go)
	opens atomic.Uint64 // counts out the open files' numbers, which the locks go with

	// closingWriterWait bounds a request's wait for a closing writer
	// (Secret.awaitClosingWriters). New sets it to the constant of that
	// name, and nothing else in the product changes it. It is a field so
	// that a test of a wait that its writer's release ends can make the
	// bound the test's own hang bound: with the real second, a test
	// goroutine descheduled for a second (-race on a loaded machine) sees
	// the request give up before the release it is about. The test of the
	// wait given up keeps the real constant.
	closingWriterWait time.Duration
}

// New returns the file system of cat.
func New(cat secrets.Catalog, opts Options) *FS {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if opts.Errno == nil {
		opts.Errno = func(err error) syscall.Errno {
			if err == nil {
				return 0
			}
			return syscall.EIO
		}
	}
	if opts.Idle <= 0 {
		opts.Idle = defaultIdle
	}
	macKey := make([]byte, sha256.Size)
	if _, err := rand.Read(macKey); err != nil {
		panic("vfs: no randomness for the key of view hashes: " + err.Error())
	}
	return &FS{cat: cat, opts: opts, log: opts.Log, started: time.Now(), macKey: macKey,
		made: map[string]bool{}, secrets: map[store.Key]*Secret{},
		currentViews: map[store.Key]*viewState{}, renderings: map[*ViewRevision]struct{}{},
		views: newViews(opts.Views), owners: newOwners(opts.OwnerOf), self: uint32(os.Geteuid()),
		closingWriterWait: closingWriterWait}
}

// defaultIdle is Options.Idle when none is given: the catalog's default.
const defaultIdle = 5 * time.Minute

// Watch has the file system tell Options.Events when the catalog learns
// from the store that a secret changed or went (Changed), if the catalog
// says so (secrets.Watcher). A secret stored at a view's path is hidden
// by the view, and read by nothing the mount shows: its changes tell
// nothing.
func (v *FS) Watch() {
	if w, ok := v.cat.(secrets.Watcher); ok {
		w.OnChange(func(k store.Key) {
			if !v.IsView(k) {
				v.emit(Changed, k)
			}
		})
	}
}

// Caller is who makes a request, as the adapter learns it from the
// kernel's request and /proc. Each operation says which fields it reads;
// the rest may be left zero.
type Caller struct {
	Thread   uint32         // the calling thread, as the kernel sends it; 0 if it sent none
	Process  uint32         // its process (thread group), or 0 when it cannot be told
	Owner    uint64         // the request's lock owner (the calling process's file table), or AnyOwner
	KilledBy syscall.Signal // the signal killing the process as it closes a descriptor, or 0
	UID, GID uint32         // for the audit log, and the modes it checks itself (ownership.go)
	// Groups are the caller's supplementary groups, which the request
	// does not carry (the adapter reads them from /proc), for the modes
	// the file system checks itself where the kernel did not (making and
	// moving a secret, ownership.go); nil when not known.
	Groups  []uint32
	Command string // the process's command name, for the audit log; "" when not known
	// Own says the request is the mount's own change signal: a change
	// the mount makes through its own mount point, from a thread of its
	// own, so that the kernel tells inotify watchers (package fs makes
	// them, and tells them apart by thread). An open for writing, a
	// truncation to the same size and a close, by such a caller, change
	// nothing, commit nothing, are not audited, and are allowed on a
	// read-only mount and on a view.
	Own bool
	// Again says the request is the kernel's retry of an open that was
	// sent to look the name up again (ErrLookUpAgain): the kernel retries
	// only once, so a reader that meets another replacement then reads
	// the revision it reached, which was the name's a moment ago, if it
	// still can, rather than fail.
	Again bool
}

// AnyOwner stands for a writer whose lock owner the kernel did not send:
// then any flush commits, as the plain FUSE model would.
const AnyOwner uint64 = 0

// EventKind says how a name changed.
type EventKind int

const (
	// Committed: a commit through this file system made a new revision
	// the name's. Whoever caches the name must forget it before the
	// request that committed returns, so that the writer's next command
	// reads what it wrote.
	Committed EventKind = iota
	// Renamed: the name is the new name of a renamed secret (Event.From
	// its old one). Whoever moved its cached entry there holds the old
	// name's revision: Event.Was, whose value Event.Now now holds under
	// the new name, byte for byte (both zero for a secret being created,
	// which committed nothing yet).
	Renamed
	// Removed: the name was unlinked through this file system.
	Removed
	// Changed: the catalog learned from the store that the name
	// changed or went, or a reader found its revision replaced.
	Changed
	// CommitAtRelease: the process that created or truncated the name
	// closed a descriptor without writing (`touch f`, `: > f`, GNU truncate); its
	// release, which the kernel sends after close returned, commits.
	// Whoever caches the name must forget it before the close returns,
	// so that the next command looks it up, which waits for that commit
	// (see Secret.awaitClosingWriters), instead of describing what it
	// replaces.
	CommitAtRelease
)

// Event is one change of a name.
type Event struct {
	Kind EventKind
	Key  store.Key
	// Of a rename: the old name, the revision renamed, and the revision
	// it became under Key.
	From store.Key
	Was  store.Revision
	Now  store.Meta
}

// emit tells Options.Events that k changed as kind says, and that every
// view reading k whose bytes changed with it did.
func (v *FS) emit(kind EventKind, k store.Key) {
	v.tell(Event{Kind: kind, Key: k})
}

// tell tells Options.Events of e, then of the change of every view that
// reads e.Key (or e.From) and whose bytes changed with it: each is
// rendered again, from the current revisions of its inputs, before
// anything is told (adopt), so that a view's watcher hears of its change
// once, when an open reads it, and of nothing when its bytes are the same.
func (v *FS) tell(e Event) {
	v.dirChanged(e.Key.App)
	if e.From.App != "" {
		v.dirChanged(e.From.App)
	}
	readers := v.readersOf(e.Key)
	if e.From != (store.Key{}) {
		readers = append(readers, v.readersOf(e.From)...)
	}
	slices.SortFunc(readers, compareKeys)
	readers = slices.Compact(readers)
	var changed []store.Key
	for _, view := range readers {
		if v.inputChanged(view) {
			changed = append(changed, view)
		}
	}
	if v.opts.Events == nil {
		return
	}
	v.opts.Events(e)
	for _, view := range changed {
		v.opts.Events(Event{Kind: Changed, Key: view})
	}
}

// ErrLookUpAgain is in the chain of an open's error when what the caller
// reached is no longer what the name points at: a revision replaced or
// removed since the caller looked the name up, or a creation committed
// since. The caller should look the name up again and retry; package fs
// answers ESTALE, which the kernel retries once with a fresh lookup. It
// is routine, not a failure.
var ErrLookUpAgain = errors.New("look the name up again")

func lookUpAgain(p fault.Path, why string) error { return fault.E(p, why, ErrLookUpAgain) }

// Repeated is a failure reported again: a session's, which was returned
// (and logged by the caller) the first time it was reported (see
// session.failed). Log it for debugging only.
type Repeated struct{ Err error }

func (r Repeated) Error() string { return r.Err.Error() }
func (r Repeated) Unwrap() error { return r.Err }

// audit tells Options.Audit of one operation by c: what (op), on which
// secret (k, and to for a rename) and revision, and how it ended. Every
// audited operation records through here.
func (v *FS) audit(c Caller, op string, k, to store.Key, version store.Version, err error) {
	if v.opts.Audit == nil {
		return
	}
	v.opts.Audit(audit.Entry{Time: time.Now(), Op: op, App: k.App, Secret: k.Name, ToApp: to.App, To: to.Name,
		Version: int64(max(version, 0)), Errno: v.opts.Errno(err),
		UID: c.UID, GID: c.GID, PID: c.Process, TID: c.Thread, Command: c.Command})
}

// writable refuses changes on a read-only mount. The kernel refuses most
// of them already (the mount is "ro"); this is the same rule, kept where
// the file system decides.
func (v *FS) writable(p fault.Path) error {
	if v.opts.ReadOnly {
		return fault.E(p, fault.ReadOnly, "mounted read-only")
	}
	return nil
}

// readable refuses to read values on a mount that holds only a public
// key: it can replace secrets, never read one.
func (v *FS) readable(p fault.Path) error {
	if v.opts.WriteOnly {
		return fault.E(p, fault.Permission, "this mount holds only a public key: it can replace secrets, not read them")
	}
	return nil
}
