package fs

import (
	"context"
	"strconv"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// versionNode is one committed revision of a secret: an inode whose
// content and attributes never change, so the kernel may cache both.
// Readers read the revision; a writer that opens it gets a session (a
// private buffer) through a descriptor that bypasses the page cache, and
// its commit makes a new revision: this one never changes.
type versionNode struct {
	gofs.Inode
	m   *mount
	key store.Key // where the revision was committed
	ino uint64

	mu   sync.Mutex
	meta store.Meta       // of the revision it serves
	snap secrets.Snapshot // pinned while the kernel may read it; nil until needed or after a forget
	stop func()           // unregisters the snapshot's wipe listener
	read bool             // content was served: the revision may no longer change (see adopt)
}

var (
	_ gofs.NodeGetattrer   = (*versionNode)(nil)
	_ gofs.NodeSetattrer   = (*versionNode)(nil)
	_ gofs.NodeOpener      = (*versionNode)(nil)
	_ gofs.NodeReader      = (*versionNode)(nil)
	_ gofs.NodeFlusher     = (*versionNode)(nil)
	_ gofs.NodeFsyncer     = (*versionNode)(nil)
	_ gofs.NodeStatfser    = (*versionNode)(nil)
	_ gofs.NodeOnForgetter = (*versionNode)(nil)
)

// maxInoAttempts bounds the numbers versionInode tries for one revision.
// With a keyed hash a single collision is already beyond chance (see
// versionIno); running out means the hash is broken, and the lookup fails
// rather than loop or share an inode.
const maxInoAttempts = 64

// versionInode returns the inode of the revision meta describes, in
// parent, and fills attr from it. The inode the kernel already has for
// it is reused only if it is that revision of that secret: a node is one
// application, name and revision, never matched by its number alone. A
// number held by another revision (a collision of the hash) is passed
// over for the next one versionIno gives, the same way every time.
func (m *mount) versionInode(ctx context.Context, parent *gofs.Inode, k store.Key, meta store.Meta, attr *fuse.Attr) (*versionNode, error) {
	rev := meta.Revision()
	for attempt := range maxInoAttempts {
		ino := m.versionIno(k, rev, attempt)
		m.mu.Lock()
		n := m.versions[ino]
		if n == nil {
			n = &versionNode{m: m, key: k, ino: ino, meta: meta}
			m.versions[ino] = n
			parent.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
		}
		m.mu.Unlock()
		if n.is(k, rev) {
			n.attr(attr)
			return n, nil
		}
		m.log.WithFields(logrus.Fields{"secret": k.String(), "holder": n.key.String(), "attempt": attempt}).
			Warn("the inode number of a revision is held by another; it gets the next")
	}
	return nil, fault.E(k.Path(), "no free inode number for this revision after "+strconv.Itoa(maxInoAttempts)+" tries")
}

// is reports whether n is revision rev of k.
func (n *versionNode) is(k store.Key, rev store.Revision) bool {
	return n.key == k && n.metadata().Revision().Equal(rev)
}

// metadata returns the revision's metadata.
func (n *versionNode) metadata() store.Meta {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meta
}

// attr fills out: nlink is 1 while the name still points at this
// revision as far as the catalog knows, 0 once it was replaced or removed.
func (n *versionNode) attr(out *fuse.Attr) {
	meta := n.metadata()
	nlink := uint32(0)
	if cur, ok := n.m.cat.Known(n.key); ok && cur.Revision().Equal(meta.Revision()) {
		nlink = 1
	}
	n.m.fileAttr(meta, nlink, out)
}

// snapshot returns the pinned snapshot, pinning it on first use (and
// again after a forget the kernel took back).
func (n *versionNode) snapshot() secrets.Snapshot {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.snap == nil {
		n.snap = n.m.cat.Snapshot(n.key, n.meta)
		n.stop = n.snap.OnWipe(func() { n.m.notify.content(&n.Inode) })
		n.m.mu.Lock()
		if n.m.versions[n.ino] == nil {
			n.m.versions[n.ino] = n // the kernel took it back after a forget
		}
		n.m.mu.Unlock()
	}
	return n.snap
}

// OnForget unpins: the kernel holds no reference, so nobody can read
// this revision through this inode any more.
func (n *versionNode) OnForget() {
	n.mu.Lock()
	snap, stop := n.snap, n.stop
	n.snap, n.stop = nil, nil
	n.mu.Unlock()
	if snap != nil {
		stop()
		snap.Release()
	}
	n.m.mu.Lock()
	if n.m.versions[n.ino] == n {
		delete(n.m.versions, n.ino)
	}
	n.m.mu.Unlock()
}

// learnSize fills in the size of a legacy item, which records none: only
// decrypting it tells. A write-only mount cannot decrypt and does not
// try; the size shows 0 there.
func (n *versionNode) learnSize(ctx context.Context) {
	n.mu.Lock()
	unknown := n.meta.Size < 0
	n.mu.Unlock()
	if !unknown || n.m.opts.WriteOnly {
		return
	}
	if size, err := n.snapshot().Size(ctx); err == nil {
		n.mu.Lock()
		n.meta.Size = size
		n.mu.Unlock()
	}
}

func (n *versionNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if n.m.requests.viaHandle(ctx) {
		// The kernel refreshes attributes through a descriptor when a
		// read finds them expired: a read the page cache served.
		n.snapshot().Touch()
	}
	n.attr(&out.Attr)
	out.SetTimeout(kernelTime(n.m.opts.TTL))
	return 0
}

// Open on a read-only mount answers ENOSYS: the kernel then stops
// sending OPEN and FLUSH for the whole mount, and keeps the pages of every
// inode cached (safe: they never change). Elsewhere a reader of a
// revision the name no longer points at is sent to look it up again
// (ESTALE, which the kernel retries once with a fresh lookup); a reader of
// the current one keeps the kernel's pages (FOPEN_KEEP_CACHE) and closes
// without a FLUSH (FOPEN_NOFLUSH): one request per open.
func (n *versionNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.open(ctx, flags)
	n.m.audit(ctx, "open", n.key, store.Key{}, n.metadata().Version, errno)
	return fh, fuseFlags, errno
}

func (n *versionNode) open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	const op = "open"
	if n.m.noOpen {
		return nil, 0, syscall.ENOSYS
	}
	p := n.key.Path()
	if isWrite(flags) {
		return n.openWriter(ctx, flags)
	}
	if err := n.m.readable(p); err != nil {
		return nil, 0, n.m.errno(op, n.key.Path(), err)
	}
	if s := n.m.secret(n.key); s != nil {
		// A writer that closed may be about to commit (`: > f && cat f`):
		// read what it commits, not the revision it replaces.
		s.settle()
	}
	meta := n.metadata()
	if cur, ok := n.m.cat.Known(n.key); !ok || !cur.Revision().Equal(meta.Revision()) {
		return nil, 0, n.m.relookup(op, p, "replaced or removed since it was looked up")
	}
	snap := n.snapshot()
	if err := snap.Bind(ctx); err != nil {
		if secrets.AsSuperseded(err) != nil || fault.Is(fault.NotFound, err) {
			return nil, 0, n.m.relookup(op, p, "replaced or removed since it was listed")
		}
		return nil, 0, n.m.errno(op, n.key.Path(), err)
	}
	snap.Touch()
	return nil, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// openWriter opens a session on the secret's current value, which the
// store is asked for: a writer's commit must expect what is stored, not
// what the catalog last heard. A secret removed meanwhile is looked up
// again (ESTALE): the kernel's retry then creates it if the open asked for
// that (O_CREAT never reaches OPEN), or finds nothing.
func (n *versionNode) openWriter(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	const op = "open"
	p := n.key.Path()
	if err := n.m.writable(p); err != nil {
		return nil, 0, n.m.errno(op, n.key.Path(), err)
	}
	if needsValue(flags) {
		if err := n.m.readable(p); err != nil {
			return nil, 0, n.m.errno(op, n.key.Path(), err)
		}
	}
	s, done := n.m.opener(n.key)
	defer done()
	s.settle()
	meta, err := n.m.cat.Verify(ctx, n.key)
	if fault.Is(fault.NotFound, err) && !isCreating(s) {
		return nil, 0, n.m.relookup(op, p, "removed elsewhere")
	}
	h, err := n.m.openWriter(ctx, s, flags, meta, err)
	if err != nil {
		return nil, 0, n.m.errno(op, n.key.Path(), err)
	}
	// The descriptor bypasses the page cache, whose pages stay those of
	// this revision (FOPEN_KEEP_CACHE: do not drop them at this open).
	return h, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE, 0
}

// Flush commits a writer's session. On a read-only mount it answers
// ENOSYS, so that the kernel stops sending it (no descriptor there can
// have anything to commit).
func (n *versionNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	if h, ok := fh.(*writeHandle); ok {
		return h.Flush(ctx)
	}
	if n.m.noOpen {
		return syscall.ENOSYS
	}
	return 0
}

// Fsync commits a writer's session; a reader has nothing to sync.
func (n *versionNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := fh.(*writeHandle); ok {
		return h.Fsync(ctx, flags)
	}
	return 0
}

func (n *versionNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	const op = "read"
	if h, ok := fh.(*writeHandle); ok {
		return h.Read(ctx, dest, off)
	}
	if err := n.m.readable(n.key.Path()); err != nil {
		return nil, n.m.errno(op, n.key.Path(), err)
	}
	snap := n.snapshot()
	if err := snap.Bind(ctx); err != nil {
		if snap, err = n.adopt(ctx, err); err != nil {
			return nil, n.m.errno(op, n.key.Path(), err)
		}
	}
	got, err := snap.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, n.m.errno(op, n.key.Path(), err)
	}
	n.mu.Lock()
	n.read = true
	n.mu.Unlock()
	return wipingResult(dest[:got]), 0
}

// adopt handles a revision that was gone before its content was first
// read: an inode made from a listing (`ls -l`) whose secret changed
// before anything read it. On a read-only mount no OPEN comes to send the
// reader elsewhere, so the inode serves the revision that replaced it, if
// the kernel cannot tell: nothing was read through it yet, and the new
// value is no longer than the size the kernel holds (a short read then
// tells it the true size). A longer one would be cut short, so the read
// fails instead, and the name is looked up again by the next open.
func (n *versionNode) adopt(ctx context.Context, err error) (secrets.Snapshot, error) {
	p := n.key.Path()
	sup := secrets.AsSuperseded(err)
	if sup == nil {
		return nil, err
	}
	n.mu.Lock()
	if n.read || sup.Now.Size < 0 || sup.Now.Size > n.meta.Size {
		n.mu.Unlock()
		if parent := n.m.root.GetChild(n.key.App); parent != nil {
			n.m.notify.entry(parent, n.key.Name)
		}
		// The read's failure is logged once, by the read, with this.
		return nil, fault.E(p, fault.Unavailable, "changed between its listing and its first read, and grew: the read fails, the next open gets the new value", err)
	}
	old, oldStop := n.snap, n.stop
	n.meta = sup.Now
	n.snap = n.m.cat.Snapshot(n.key, sup.Now)
	n.stop = n.snap.OnWipe(func() { n.m.notify.content(&n.Inode) })
	snap := n.snap
	n.mu.Unlock()
	if old != nil {
		oldStop()
		old.Release()
	}
	if err := snap.Bind(ctx); err != nil {
		return nil, err
	}
	return snap, nil
}

// Setattr refuses what the mount options fix, and truncates: a writer's
// buffer through its descriptor (also how O_TRUNC arrives), else by path
// (`truncate -s`) with an immediate commit. Either way the reply describes
// this revision, unchanged: the kernel sets the inode's size from it, and
// readers of this revision share that size.
func (n *versionNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := n.m.checkSetattr(n.key.Path(), in, n.m.opts.FileMode); err != nil {
		return n.m.errno("setattr", n.key.Path(), err)
	}
	if size, ok := in.GetSize(); ok {
		if h, ok := fh.(*writeHandle); ok {
			if err := h.ss.truncate(ctx, int64(size), n.m.cat.MaxValueSize()); err != nil {
				return n.m.errno("truncate", n.key.Path(), err)
			}
		} else if errno := n.m.truncateByPath(ctx, n.m.secret(n.key), n.key, int64(size)); errno != 0 {
			return errno
		}
	}
	n.attr(&out.Attr)
	out.SetTimeout(kernelTime(n.m.opts.TTL))
	return 0
}

func (n *versionNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return n.m.statfs(out)
}

// isWrite reports whether an open with flags may change the file.
func isWrite(flags uint32) bool {
	return flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
}

// needsValue reports whether an open for writing with flags surely needs
// the current value: to read it, or to append to it (which loads it at
// open: see mount.openWriter). Such an open on a mount that cannot read
// fails at once. (An open for writing only may also be an edit in place,
// which needs the value too, at its commit; but O_TRUNC does not reach
// OPEN, so such an open may as well replace the value whole, and only
// its commit can tell.)
func needsValue(flags uint32) bool {
	return flags&syscall.O_ACCMODE != syscall.O_WRONLY || flags&syscall.O_APPEND != 0
}

// wipingResult is a READ reply that zeroes its buffer (go-fuse's, from a
// pool it reuses) once the kernel has the bytes: plaintext must not
// linger in memory the mount does not track.
type wipingResult []byte

func (r wipingResult) Bytes(buf []byte) ([]byte, fuse.Status) { return r, fuse.OK }
func (r wipingResult) Size() int                              { return len(r) }
func (r wipingResult) Done()                                  { clear(r) }
