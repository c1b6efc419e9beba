// Package fs presents a secrets.Catalog as a FUSE file system:
//
//	/                  the applications
//	/<app>/            the secrets of one application
//	/<app>/<secret>    one secret: read decrypts, write encrypts
//
// Each committed revision of a secret is its own immutable inode
// (versionNode): one application, name and revision, never another, whose
// number is a keyed hash of the three that nobody outside the mount can
// aim at (see versionIno). A name points at its current revision; when the catalog
// learns of another, the name is pointed at a new inode, and files already
// open keep reading the revision they opened. Because an inode's content
// never changes, the kernel may keep its pages and attributes: a hot read
// costs no request to this process at all on a read-only mount (where Open
// answers ENOSYS, and the kernel stops sending OPEN and FLUSH), and one
// OPEN on a read-write mount. The kernel's copy is dropped when the
// plaintext is wiped.
//
// A writer opens the same inode, but writes to a private buffer (a
// session) through a descriptor that bypasses the page cache; the buffer
// is committed with one conditional write when the process that wrote
// closes its descriptor, and becomes a new revision, a new inode, which
// the name then points at. A concurrent writer that committed first makes
// the commit fail with ESTALE instead of being overwritten. A secret
// created here has an inode of its own (createdNode) until its first
// commit.
//
// The nodes are thin adapters: what a session is and how it changes lives
// in session.go, what the mount knows of a secret's writers in secret.go,
// what is current in the catalog. This package never logs a value and
// maps errors to errnos in one place, errno.go. It sends kernel
// notifications only from goroutines that hold no lock (notify.go).
package fs

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Options shape what the mount shows and allows.
type Options struct {
	ReadOnly   bool
	WriteOnly  bool          // the key can only wrap (a public key): reads are refused with EACCES
	AllowOther bool          // let users other than the mounter in (needs user_allow_other for non-root)
	UID, GID   uint32        // owner of every file and directory
	FileMode   uint32        // permission bits of secrets, e.g. 0600
	DirMode    uint32        // permission bits of directories, e.g. 0700
	Apps       []string      // fixed list of applications; nil means discover them from the store
	TTL        time.Duration // how long the kernel may keep names and attributes
	Log        logrus.FieldLogger
	// Served, if set, is told of every request the mount served.
	Served func(op string, errno syscall.Errno, took time.Duration)
	// Committed, if set, is told of every commit of a writer's buffer
	// and its outcome (nil: committed).
	Committed func(err error)
	// Audit, if set, is told of every open of a secret, every commit,
	// unlink and rename, with who asked. On a read-only mount it turns
	// opens back on, which the kernel otherwise stops sending (see
	// versionNode.Open): one request per open.
	Audit func(Access)
	// There is deliberately no switch for go-fuse's request debugging: it
	// prints the first bytes of every READ reply and WRITE payload, which
	// here are plaintext.
}

// mount is the state shared by all nodes of one mounted file system.
type mount struct {
	cat      secrets.Catalog
	opts     Options
	log      logrus.FieldLogger
	started  time.Time
	requests *requests
	notify   notifier
	proc     procfs
	root     *rootNode
	noOpen   bool // Open answers ENOSYS: the kernel stops sending OPEN and FLUSH for the whole mount
	created  atomic.Uint64
	inoKey   []byte // the key of versionIno's hash, drawn at random for this mount
	// inoHash, if set, replaces versionIno's keyed hash: tests set it to
	// force collisions. Nothing else does.
	inoHash func(k store.Key, rev store.Revision, attempt int) uint64

	mu sync.Mutex
	// made holds applications created by mkdir. The store has no empty
	// applications (an item is a secret), so until its first secret an
	// application made here lives only in this mount.
	made     map[string]bool
	versions map[uint64]*versionNode // version inodes the kernel may hold, by inode number
	secrets  map[store.Key]*secretState
}

// Mount mounts cat at dir and serves it until the returned server is
// unmounted. The mount is ready when Mount returns.
func Mount(dir string, cat secrets.Catalog, opts Options) (*fuse.Server, error) {
	return newMount(cat, opts).serve(dir)
}

// serve mounts m at dir and serves it, as Mount.
func (m *mount) serve(dir string) (*fuse.Server, error) {
	opts, cat := m.opts, m.cat
	ttl := opts.TTL
	negative := time.Duration(0) // misses are answered by the catalog, fresh within the TTL
	options := &gofs.Options{
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &negative,
		NullPermissions: true, // our modes are exact; 0 must stay 0
		UID:             opts.UID,
		GID:             opts.GID,
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
			// reply keeps the revision's size (see versionNode.Setattr).
			DisableXAttrs: true,
		},
	}
	raw := gofs.NewNodeFS(m.root, options)
	m.requests.RawFileSystem = raw
	var served fuse.RawFileSystem = m.requests
	if opts.Served != nil {
		served = &observed{RawFileSystem: m.requests, served: opts.Served}
	}
	server, err := fuse.NewServer(served, dir, &options.MountOptions)
	if err != nil {
		return nil, err
	}
	m.notify = inodeNotifier{}
	if w, ok := cat.(secrets.Watcher); ok {
		w.OnChange(m.changed)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, err
	}
	return server, nil
}

func mountOptions(opts Options) []string {
	o := []string{"default_permissions"}
	if opts.ReadOnly {
		o = append(o, "ro")
	}
	return o
}

func newMount(cat secrets.Catalog, opts Options) *mount {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	m := &mount{cat: cat, opts: opts, log: opts.Log, started: time.Now(), requests: &requests{},
		made: map[string]bool{}, versions: map[uint64]*versionNode{}, secrets: map[store.Key]*secretState{},
		notify: inodeNotifier{}, proc: realProc{}, inoKey: make([]byte, inoKeySize)}
	rand.Read(m.inoKey) // never fails (crypto/rand, Go 1.24 and later)
	// Without writers, nothing needs to see an open: the kernel then
	// serves hot reads from its page cache without asking.
	m.noOpen = opts.ReadOnly && opts.Audit == nil
	m.root = &rootNode{m: m}
	return m
}

// changed points a name at its new revision: the catalog learned from the
// store that k changed or went. The kernel forgets the name and looks it
// up again at its next use; open files keep the revision they opened.
func (m *mount) changed(k store.Key) {
	if child := m.root.GetChild(k.App); child != nil {
		m.notify.entry(child, k.Name)
	}
}

// appExists reports whether app is an application: in the --apps list when
// one is given, made by mkdir here, or holding at least one secret.
func (m *mount) appExists(ctx context.Context, app string) (bool, error) {
	m.mu.Lock()
	made := m.made[app]
	m.mu.Unlock()
	if made {
		return true, nil
	}
	if m.opts.Apps != nil {
		for _, a := range m.opts.Apps {
			if a == app {
				return true, nil
			}
		}
		return false, nil
	}
	return m.cat.HasSecrets(ctx, app)
}

// apps lists the applications to show at the root, sorted.
func (m *mount) apps(ctx context.Context) ([]string, error) {
	var names []string
	if m.opts.Apps != nil {
		names = append(names, m.opts.Apps...)
	} else {
		var err error
		if names, err = m.cat.Apps(ctx); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	m.mu.Lock()
	for a := range m.made {
		if !seen[a] {
			names = append(names, a)
		}
	}
	m.mu.Unlock()
	sort.Strings(names)
	return names, nil
}

func (m *mount) dirAttr(out *fuse.Attr) {
	out.Mode = syscall.S_IFDIR | m.opts.DirMode
	out.Nlink = 2
	out.Uid, out.Gid = m.opts.UID, m.opts.GID
	t := m.started
	out.SetTimes(&t, &t, &t)
}

// fileAttr fills out for a secret of the given metadata, with nlink
// links (0 for a revision no name points at any more). A legacy item
// without a Modified attribute shows the Unix epoch: unknown, honestly.
func (m *mount) fileAttr(meta store.Meta, nlink uint32, out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | m.opts.FileMode
	out.Nlink = nlink
	out.Uid, out.Gid = m.opts.UID, m.opts.GID
	out.Size = uint64(max(meta.Size, 0))
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	t := meta.Modified
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	out.SetTimes(&t, &t, &t)
}

// kernelTime is d as an entry or attribute timeout: never 0, which
// go-fuse would replace by the mount's default.
func kernelTime(d time.Duration) time.Duration { return max(d, time.Nanosecond) }

// inoKeySize is the size of the key of versionIno's HMAC-SHA256: the
// hash's block-sized output needs no more, and a key of the hash's size
// is what RFC 2104 recommends.
const inoKeySize = sha256.Size

// versionIno is the inode number of one revision of a secret (a Version
// and an IV, which is fresh on every write) at attempt (0, then more for
// a number another revision holds; see versionInode). It is an
// HMAC-SHA256 of the application, the name, the revision and the attempt,
// each length-prefixed, under a key drawn at random for this mount:
// whoever writes the store chooses the IV, but cannot tell which numbers
// an IV gives without the key, so cannot aim at the number of another
// secret the kernel holds. The numbers change from mount to mount, as
// those of many FUSE file systems do; within a mount each revision keeps
// its own. The top bit is clear (created inodes have it set), and 0 and
// the root's number are never given.
func (m *mount) versionIno(k store.Key, rev store.Revision, attempt int) uint64 {
	var sum uint64
	if m.inoHash != nil {
		sum = m.inoHash(k, rev, attempt)
	} else {
		var b []byte
		for _, part := range [][]byte{[]byte(k.App), []byte(k.Name), rev.IV} {
			b = binary.AppendUvarint(b, uint64(len(part)))
			b = append(b, part...)
		}
		b = binary.AppendVarint(b, int64(rev.Version))
		b = binary.AppendUvarint(b, uint64(attempt))
		mac := hmac.New(sha256.New, m.inoKey)
		mac.Write(b)
		sum = binary.BigEndian.Uint64(mac.Sum(nil))
	}
	ino := sum &^ (1 << 63)
	if ino <= fuse.FUSE_ROOT_ID {
		ino += 2
	}
	return ino
}

// createdIno is a new inode number for a secret being created: the top
// bit set, and a count.
func (m *mount) createdIno() uint64 { return 1<<63 | m.created.Add(1) }

// statfs reports ample room. Neither store has a capacity to report (a
// DynamoDB table grows on demand; the local store grows with its disk),
// and zeros would make tools that check for free space before writing
// (installers, package managers, some editors) refuse a file system that
// looks full. The limit that does exist is per value: EFBIG. Every node
// answers the same, as on any file system.
func (m *mount) statfs(out *fuse.StatfsOut) syscall.Errno {
	const blockSize, blocks, files = 4096, 1 << 32, 1 << 32
	out.Bsize, out.Frsize = blockSize, blockSize
	out.Blocks, out.Bfree, out.Bavail = blocks, blocks, blocks
	out.Files, out.Ffree = files, files
	out.NameLen = store.MaxNameLen
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

// readable refuses to read values on a mount that holds only a public
// key: it can replace secrets, never read one.
func (m *mount) readable(p fault.Path) error {
	if m.opts.WriteOnly {
		return fault.E(p, fault.Permission, "this mount holds only a public key: it can replace secrets, not read them")
	}
	return nil
}
