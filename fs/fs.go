// Package fs presents a secrets.Source as a FUSE file system:
//
//	/                  the applications
//	/<app>/            the secrets of one application
//	/<app>/<secret>    one secret: read decrypts, write encrypts
//
// What a reader can rely on: a read returns a whole committed value, never
// a torn, partial or empty one, because every open file handle serves its
// own snapshot and bypasses the kernel's page cache (FOPEN_DIRECT_IO).
// What a writer can rely on: bytes written through a handle stay private to
// it until flush (close) or fsync, which commits them with one conditional
// write; a concurrent writer that committed first makes that commit fail
// with ESTALE instead of being overwritten.
//
// This package never logs a value and maps errors to errnos in one place,
// errno.go.
package fs

import (
	"context"
	"sort"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

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
	// There is deliberately no switch for go-fuse's request debugging: it
	// prints the first bytes of every READ reply and WRITE payload, which
	// here are plaintext.
}

// mount is the state shared by all nodes of one mounted file system.
type mount struct {
	src      secrets.Source
	opts     Options
	log      logrus.FieldLogger
	started  time.Time
	requests *requests

	mu sync.Mutex
	// made holds applications created by mkdir. The store has no empty
	// applications (an item is a secret), so until its first secret an
	// application made here lives only in this mount.
	made map[string]bool
}

// Mount mounts src at dir and serves it until the returned server is
// unmounted. The mount is ready when Mount returns.
func Mount(dir string, src secrets.Source, opts Options) (*fuse.Server, error) {
	m := newMount(src, opts)
	ttl := opts.TTL
	negative := time.Duration(0) // a secret created elsewhere must show up at once
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
			// O_TRUNC arrives with OPEN instead of as a separate
			// truncate: otherwise the secret would be committed empty
			// before the new value is written.
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
			DisableXAttrs:     true,
		},
	}
	// As gofs.Mount, with the lock owner tracking between the kernel and
	// the node API.
	m.requests.RawFileSystem = gofs.NewNodeFS(&rootNode{m: m}, options)
	server, err := fuse.NewServer(m.requests, dir, &options.MountOptions)
	if err != nil {
		return nil, err
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

func newMount(src secrets.Source, opts Options) *mount {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	return &mount{src: src, opts: opts, log: opts.Log, started: time.Now(), requests: &requests{}, made: map[string]bool{}}
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
	return m.hasSecrets(ctx, app)
}

func (m *mount) hasSecrets(ctx context.Context, app string) (bool, error) {
	page, _, err := m.src.List(ctx, app, "", 1)
	return len(page) > 0, err
}

// apps lists the applications to show at the root, sorted.
func (m *mount) apps(ctx context.Context) ([]string, error) {
	var names []string
	if m.opts.Apps != nil {
		names = append(names, m.opts.Apps...)
	} else {
		var err error
		if names, err = m.src.Apps(ctx); err != nil {
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

// fileAttr fills out for a secret of the given metadata. A legacy item
// without a Modified attribute shows the Unix epoch: unknown, honestly.
func (m *mount) fileAttr(meta store.Meta, out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | m.opts.FileMode
	out.Nlink = 1
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

// remainer is implemented by a Source that answers from a cache
// (cache.Plaintext): how much longer its answer about k stays fresh.
type remainer interface {
	Remaining(k store.Key) time.Duration
}

// timeout is how long the kernel may keep what it is told of k now: the
// TTL, but no longer than the answer stays fresh in the source's cache.
// The kernel would otherwise keep for a whole TTL an answer that may
// already be most of a TTL old: the size of a secret changed elsewhere
// would then be stale for up to twice the TTL, and no longer describe the
// value that a read, once the cache expired, gets.
func (m *mount) timeout(k store.Key) time.Duration {
	r, ok := m.src.(remainer)
	if !ok {
		return m.opts.TTL
	}
	// Never 0: go-fuse would replace it by the mount's default.
	return max(min(m.opts.TTL, r.Remaining(k)), time.Nanosecond)
}

// learnSize fills in the size of a legacy item, which records none: only
// decrypting it tells. The cache keeps the value for the open that
// usually follows. A write-only mount cannot decrypt and does not try.
func (m *mount) learnSize(ctx context.Context, meta *store.Meta) {
	if meta.Size >= 0 || m.opts.WriteOnly {
		return
	}
	if s, err := m.src.Get(ctx, meta.Key, false); err == nil {
		meta.Size = s.Size
		s.Value.Wipe()
	}
}

// notifyWait bounds how long a request waits for the kernel to take an
// invalidation before it replies (see invalidateBeforeReply).
const notifyWait = 100 * time.Millisecond

// invalidateBeforeReply makes the kernel forget n's attributes and the
// pages it cached, and waits until it has, so that the caller's fstat
// right after the request being served asks again. The notification goes
// out from its own goroutine, holding no locks: one that the kernel could
// only take once this request ends would deadlock the mount if sent from
// the handler itself. The wait is bounded, so that even then the reply
// goes out, and the notification follows it.
func invalidateBeforeReply(n *gofs.Inode) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.NotifyContent(0, 0)
	}()
	t := time.NewTimer(notifyWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// invalidateContent makes the kernel forget n's attributes and any pages
// it cached of n: reads bypass the page cache (FOPEN_DIRECT_IO), but a
// private mmap is served from it. It runs in its own goroutine: dropping
// pages waits for page locks that a request in flight may hold, so a
// notification sent from inside a handler, or while holding a lock a
// handler needs, can deadlock the mount.
func invalidateContent(n *gofs.Inode) {
	go n.NotifyContent(0, 0)
}
