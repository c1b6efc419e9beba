// Package fs serves a secrets.Catalog as a FUSE file system: a thin
// adapter that translates the kernel's requests into calls of package
// vfs, which holds the file semantics (names, revisions, write sessions,
// the writers of a secret) and is tested without the kernel.
//
// What this package owns is what only the kernel needs:
//
//   - the inodes (inode.go): one per committed revision of a secret and
//     one per rendering of a view (view.go), both immutable
//     (immutableNode), one per secret being created here (createdNode),
//     and a writer's own (writerNode, writer.go: an open for writing of a
//     committed revision, bounced with ESTALE and looked up again), each
//     under a number package inonum gives (a revision's, a keyed hash
//     that nobody outside the mount can aim at), and what to do when a
//     number is held by another; the pins of the revisions and renderings
//     the kernel may read, and the guards go-fuse's OnForget contract asks
//     for (mount.revive, lostByTheTable);
//   - how the kernel may cache: a revision never changes, so the kernel
//     keeps its pages and attributes; on a read-only mount Open answers
//     ENOSYS, after which the kernel sends no OPEN or FLUSH and serves hot
//     reads itself; a writer's descriptor bypasses the page cache;
//   - change signals (signal.go): on every read-write mount, of its own
//     commits; with Options.Watched, also of every change the mount learns
//     of from the store. inotify watchers hear of them because the mount
//     makes a change (a truncation to the same size;
//     package touch) through a private clone of its mount, from a thread
//     the requests it causes are told apart by (vfs.Caller.Own). So a read-only mount
//     that signals is read-only per mount (MOUNT_ATTR_RDONLY), not per
//     file system: the kernel refuses every change through the mount
//     users see, and lets the signaller's clone write;
//   - the one mapping of errors to errnos, and the one log line per
//     failure (errno.go);
//   - kernel notifications, sent only from goroutines that hold no lock
//     (notify.go), when vfs says a name changed;
//   - who is calling: the request's facts go-fuse does not pass on, and
//     package proc's (request.go), as a vfs.Caller; and whether the
//     calling thread's request is the kernel's retry of an open answered
//     ESTALE, which package retry tells by thread (writer.go, mount.open).
//
// This package never logs a value.
//
// # Lock order
//
// mount.mu guards the inodes of secrets being created (mount.secrets),
// and the table's own lock (package inotable) the inodes of revisions and
// renderings; both are leaves: no other lock is taken while either is
// held, and neither is held across a call into go-fuse or vfs, nor
// across the change signal's touches (package touch).
package fs

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/internal/inonum"
	"github.com/secretfs/secretfs/internal/inotable"
	"github.com/secretfs/secretfs/internal/retry"
	"github.com/secretfs/secretfs/internal/touch"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// Options shape what the mount shows and allows.
type Options struct {
	// Options are the file semantics' (package vfs): read-only or
	// write-only (a public key: reads are refused with EACCES), the
	// applications, owners and modes, the views, the commit and audit
	// hooks. TTL is also how long the kernel may keep names and
	// attributes. Events and Errno are the mount's own: Mount sets them.
	// On a read-only mount, Audit turns opens back on, which the kernel
	// otherwise stops sending (see immutableNode.Open): one request per
	// open.
	vfs.Options
	AllowOther bool // let users other than the mounter in (needs user_allow_other for non-root)
	// Wrap, if set, is given the mount's requests as the kernel sends
	// them, and returns what serves them instead: a decorator that passes
	// each on (metrics.Registry.WrapRequests counts them).
	Wrap func(fuse.RawFileSystem) fuse.RawFileSystem
	// Mounted, if set, is the /dev/fd/N of a FUSE connection that is
	// mounted already (internal/handover makes one with the kernel's
	// mount API): Mount serves it, and mounts nothing at dir.
	Mounted string
	// Watched, if set, turns change signals of changes made elsewhere on
	// (signal.go; a read-write mount signals its own commits anyway):
	// inotify watchers hear of every change the mount learns of from the
	// store, and of views' changes. It says which applications the mount lists
	// once per TTL while the kernel holds them, even when nobody reads
	// them, so that a change made elsewhere is learnt within the TTL;
	// others are revalidated only when read, as always. With it, a
	// read-only mount is read-only per mount rather than per file
	// system (see MountReadOnly).
	Watched func(app string) bool
	// There is deliberately no switch for go-fuse's request debugging: it
	// prints the first bytes of every READ reply and WRITE payload, which
	// here are plaintext.
}

// mount is the state shared by all nodes of one mounted file system.
type mount struct {
	vfs      *vfs.FS
	opts     Options
	log      logrus.FieldLogger
	requests *requests
	root     *rootNode
	noOpen   atomic.Bool // Open answers ENOSYS: the kernel stops sending OPEN and FLUSH for the whole mount
	// ino gives the inode numbers, under a key drawn for this mount;
	// tests force collisions with inonum.WithVersionHash.
	ino *inonum.Numbers

	signals *touch.Signaller // makes inotify events of changes (signal.go)

	table   *inotable.Table[*immutableNode] // inodes of revisions and renderings the kernel may hold
	mu      sync.Mutex                      // guards secrets; see the package comment
	secrets map[*vfs.Secret]*createdNode    // the inodes of secrets being created here
	// The opens answered ESTALE whose retry the mount awaits, by thread:
	// write opens bounced for a writer's inode (writer.go), and opens sent
	// to look the name up again (mount.open). Every open consults it: it
	// has a lock of its own, not the inode table's.
	retries *retry.Table[store.Key, *vfs.Handle]
}

// Mount mounts cat at dir and serves it until the returned server is
// unmounted. The mount is ready when Mount returns.
func Mount(dir string, cat secrets.Catalog, opts Options) (*fuse.Server, error) {
	return newMount(cat, opts).serve(dir)
}

// serve mounts m at dir and serves it, as Mount.
func (m *mount) serve(dir string) (*fuse.Server, error) {
	opts := m.opts
	negative := time.Duration(0) // misses are answered by the catalog, fresh within the TTL
	// No default entry or attribute timeout: every reply sets its own,
	// and a timeout of 0 must reach the kernel as 0 (noAttrCache, a
	// writer's entry), which go-fuse would replace with the default.
	options := &gofs.Options{
		NegativeTimeout: &negative,
		NullPermissions: true, // our modes are exact; 0 must stay 0
		// The root's inode number, which go-fuse would leave 0: stat
		// shows it, and tools that walk the tree compare it.
		RootStableAttr: &gofs.StableAttr{Ino: fuse.FUSE_ROOT_ID},
		UID:            opts.UID,
		GID:            opts.GID,
		MountOptions: fuse.MountOptions{
			FsName:      "secretfs",
			Name:        "secretfs",
			AllowOther:  opts.AllowOther,
			DirectMount: true, // mount(2) directly when root; fusermount3 otherwise
			// The kernel checks permissions against the modes and owners
			// we report, so --file-mode and --uid mean what they say.
			Options: mountOptions(opts),
			// No CAP_ATOMIC_O_TRUNC: with it, the kernel empties its copy
			// of an inode opened with O_TRUNC (its size, and so what every
			// reader of that revision sees) when the open succeeds.
			// Without it, the truncation comes as a SETATTR through the
			// new descriptor, which goes to the writer's buffer, and the
			// reply keeps the revision's size (see immutableNode.Setattr).
			DisableXAttrs: true,
			// Lock requests come here, to be kept by secret (lock.go),
			// unless no OPEN does: nothing would release them then.
			EnableLocks: !m.skipOpens(),
		},
	}
	raw := gofs.NewNodeFS(m.root, options)
	m.requests.RawFileSystem = raw
	var served fuse.RawFileSystem = m.requests
	if opts.Wrap != nil {
		served = opts.Wrap(m.requests)
	}
	mountPoint := dir
	if opts.Mounted != "" {
		// Not DirectMount: go-fuse would call mount(2) on /dev/fd/N.
		mountPoint, options.MountOptions.DirectMount = opts.Mounted, false
	}
	server, err := fuse.NewServer(served, mountPoint, &options.MountOptions)
	if err != nil {
		return nil, err
	}
	m.vfs.Watch()
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, err
	}
	if opts.MountReadOnly() && opts.Mounted == "" {
		// Mounted read-write by mount(2); until now every open came
		// here, where a change is refused (see skipOpens).
		if err := unix.MountSetattr(unix.AT_FDCWD, dir, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			server.Unmount()
			return nil, fmt.Errorf("making the mount read-only (mount_setattr MOUNT_ATTR_RDONLY): %w", err)
		}
	}
	m.noOpen.Store(m.skipOpens())
	switch {
	case opts.Watched != nil && opts.KernelReadOnly():
		m.log.Warn("a read-only mount makes change signals only when run as root (it writes through a clone of its mount): this one makes none")
	case opts.Watched != nil:
		m.signals.Start(dir)
		m.pollWatched()
	case !opts.ReadOnly:
		m.signals.Start(dir) // its own commits' (signal.go)
	}
	go func() {
		server.Wait()
		m.signals.Stop()
		m.vfs.Close() // wipe the views' renderings: nothing can read them now
	}()
	return server, nil
}

// mountOptions are the kernel's options for the mount (see
// KernelReadOnly).
func mountOptions(opts Options) []string {
	o := []string{"default_permissions"}
	if opts.KernelReadOnly() {
		o = append(o, "ro")
	}
	return o
}

// KernelReadOnly says whether the file system is read-only to the kernel
// ("ro"), and MountReadOnly whether, instead, the mount is
// (MOUNT_ATTR_RDONLY): a read-only mount is always one or the other, so
// that the kernel refuses every change through it, even one that never
// reaches the file system (a store to a shared writable mapping, after
// the kernel stopped sending opens: see skipOpens). A mount that makes
// change signals needs the file system writable, through the private
// clone of the mount the signaller writes through (signal.go); only root
// can clone a mount or change its attributes, so for anyone else a
// read-only mount makes no signals. A mount made elsewhere
// (Options.Mounted) must follow both.
func (opts Options) KernelReadOnly() bool {
	return opts.ReadOnly && !opts.MountReadOnly()
}

// MountReadOnly: see KernelReadOnly.
func (opts Options) MountReadOnly() bool {
	return opts.ReadOnly && opts.Watched != nil && os.Geteuid() == 0
}

// skipOpens says whether Open may answer ENOSYS once the mount is
// served and read-only to the kernel: the kernel then sends no OPEN,
// for reads or writes, and only the kernel's refusal stands between a
// writer and the page cache. Without writers nothing needs to see an
// open, and the kernel serves hot reads from its page cache without
// asking; with an audit log, every open is seen.
func (m *mount) skipOpens() bool {
	return m.opts.ReadOnly && m.opts.Audit == nil
}

func newMount(cat secrets.Catalog, opts Options) *mount {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	m := &mount{opts: opts, log: opts.Log, requests: &requests{},
		table: inotable.New[*immutableNode](), secrets: map[*vfs.Secret]*createdNode{}, retries: retry.New[store.Key]((*vfs.Handle).Discard), ino: inonum.New()}
	vopts := opts.Options
	vopts.Events, vopts.Errno = m.changed, errnoOf
	m.vfs = vfs.New(cat, vopts)
	m.signals = touch.New(m.log, m.signal)
	m.root = &rootNode{dirNode{m: m}}
	return m
}

// changed tells the kernel of a name vfs changed or learned had changed:
// it forgets the name and looks it up again at its next use; open files
// keep the revision they opened. A change the kernel did not see go
// through it (one learned from the store, or a view's) is also signalled
// to inotify watchers (signal.go).
func (m *mount) changed(e vfs.Event) {
	switch {
	case e.Kind == vfs.Changed && m.opts.Watched != nil:
		m.signals.Queue(e.Key, touch.Changed)
	case e.Kind == vfs.Committed:
		m.signals.Queue(e.Key, touch.Replaced) // see signal.go
	}
	child := m.root.GetChild(e.Key.App)
	if child == nil {
		return // the kernel holds nothing of that application
	}
	switch e.Kind {
	case vfs.Committed, vfs.CommitAtRelease:
		// The writer's next command, once this request returns, must
		// look the name up again and read what it wrote (or what its
		// release commits).
		notifyEntryBeforeReply(child, e.Key.Name)
	case vfs.Renamed:
		if m.renamedInPlace(e) {
			return
		}
		// Not waited for: the kernel takes it once RENAME has returned
		// and it has moved the entry (it holds the directory's lock
		// until then), so it drops the moved entry, which describes a
		// revision the new name does not hold.
		notifyEntry(child, e.Key.Name)
	case vfs.Changed:
		notifyEntry(child, e.Key.Name)
	case vfs.Removed:
		// The kernel dropped the name itself when UNLINK returned.
	}
}

// fill sets out from a's attributes.
func fill(out *fuse.Attr, a vfs.Attr) {
	out.Mode = syscall.S_IFREG | a.Perm
	if a.Dir {
		out.Mode = syscall.S_IFDIR | a.Perm
	}
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.UID, a.GID
	if !a.Dir {
		out.Size = uint64(a.Size)
		out.Blocks = (out.Size + 511) / 512
		out.Blksize = 4096
	}
	t := a.Modified
	out.SetTimes(&t, &t, &t)
}

// change is the vfs.Change a SETATTR asks for.
func change(in *fuse.SetAttrIn) vfs.Change {
	var ch vfs.Change
	if mode, ok := in.GetMode(); ok {
		ch.Mode = &mode
	}
	if uid, ok := in.GetUID(); ok {
		ch.UID = &uid
	}
	if gid, ok := in.GetGID(); ok {
		ch.GID = &gid
	}
	if size, ok := in.GetSize(); ok {
		s := int64(size)
		ch.Size = &s
	}
	return ch
}

// noAttrCache is an attribute timeout of 0: the kernel asks again at
// every use. (kernelTime(0), 1 ns, lets it keep them until its clock's
// next tick, a few milliseconds.)
const noAttrCache = time.Duration(0)

// kernelTime is d as an entry or attribute timeout: never 0, which
// go-fuse would replace by the mount's default.
func kernelTime(d time.Duration) time.Duration { return max(d, time.Nanosecond) }

// statfs reports ample room. Neither store has a capacity to report (a
// DynamoDB table grows on demand; the local store grows with its disk),
// and zeros would make tools that check for free space before writing
// (installers, package managers, some editors) refuse a file system that
// looks full. The limit that does exist is per value: EFBIG. Every node
// answers the same, as on any file system.
func statfs(out *fuse.StatfsOut) syscall.Errno {
	const blockSize, blocks, files = 4096, 1 << 32, 1 << 32
	out.Bsize, out.Frsize = blockSize, blockSize
	out.Blocks, out.Bfree, out.Bavail = blocks, blocks, blocks
	out.Files, out.Ffree = files, files
	out.NameLen = store.MaxNameLen
	return 0
}
