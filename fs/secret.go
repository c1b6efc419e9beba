package fs

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// secretNode is "/<app>/<secret>".
type secretNode struct {
	gofs.Inode
	m *mount

	mu      sync.Mutex
	key     store.Key     // changes on rename
	meta    store.Meta    // last known; attributes come from here
	closing int           // handles in the closing state (see handle.Flush)
	settled chan struct{} // closed when closing drops to zero
}

// settleTimeout bounds how long a reader waits for a closing writer: a
// RELEASE follows the last close within moments, so only a process that
// holds a truncated file open without writing makes readers wait this
// long, after which they see the committed value.
const settleTimeout = time.Second

func (n *secretNode) closingChanged(closing bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if closing {
		if n.closing++; n.closing == 1 {
			n.settled = make(chan struct{})
		}
		return
	}
	if n.closing--; n.closing == 0 {
		close(n.settled)
	}
}

// settle waits until no handle of n is closing, so that `touch f && cat f`
// or `: > f && cat f` reads what the first command committed.
func (n *secretNode) settle(ctx context.Context) {
	n.mu.Lock()
	ch := n.settled
	closing := n.closing > 0
	n.mu.Unlock()
	if !closing {
		return
	}
	t := time.NewTimer(settleTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

var (
	_ gofs.NodeGetattrer = (*secretNode)(nil)
	_ gofs.NodeSetattrer = (*secretNode)(nil)
	_ gofs.NodeOpener    = (*secretNode)(nil)
)

func (n *secretNode) current() store.Key {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.key
}

// createdHere reports whether n was created through this mount and has
// not been committed yet.
func (n *secretNode) createdHere() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meta.Version == store.Absent
}

func (n *secretNode) update(meta store.Meta) {
	n.mu.Lock()
	n.key, n.meta = meta.Key, meta
	n.mu.Unlock()
}

// attr fills out from the last known metadata, or from fh's private
// buffer when the caller asks about its own open handle (fstat after
// write sees what it wrote).
func (n *secretNode) attr(ctx context.Context, fh gofs.FileHandle, out *fuse.Attr) {
	n.mu.Lock()
	meta := n.meta
	n.mu.Unlock()
	if h, ok := fh.(*handle); ok && h.writable {
		meta.Size = h.size()
	}
	n.m.fileAttr(meta, out)
}

func (n *secretNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok && h.writable {
		n.attr(ctx, fh, &out.Attr)
		return 0
	}
	n.settle(ctx)
	k := n.current()
	meta, err := n.m.src.Stat(ctx, k, false)
	if fault.Is(fault.NotFound, err) && n.createdHere() {
		// Created through this mount and not committed yet (touch sets
		// the times of its new file before closing it).
		n.attr(ctx, fh, &out.Attr)
		return 0
	}
	if err != nil {
		return n.m.errno("getattr", err)
	}
	if meta.Size < 0 {
		// A legacy item does not record its size; only decryption tells.
		if s, err := n.m.src.Get(ctx, k, false); err == nil {
			meta.Size = s.Size
			s.Value.Wipe()
		}
	}
	n.update(meta)
	n.attr(ctx, fh, &out.Attr)
	return 0
}

// Setattr truncates (through the handle's private buffer when there is
// one, else with an immediate conditional write); owners, modes and times
// are mount-wide (see checkSetattr).
func (n *secretNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	const op = "truncate"
	if errno := n.m.checkSetattr("setattr "+n.current().String(), in, n.m.opts.FileMode); errno != 0 {
		return errno
	}
	size, ok := in.GetSize()
	if !ok {
		return n.Getattr(ctx, fh, out)
	}
	if n.m.opts.ReadOnly {
		return syscall.EROFS
	}
	if int64(size) > n.m.src.MaxValueSize() {
		return n.m.errno(op, n.tooLarge(int64(size)))
	}
	if h, ok := fh.(*handle); ok && h.writable {
		h.truncate(ctx, int64(size))
		return n.Getattr(ctx, fh, out)
	}
	k := n.current()
	s, err := n.m.src.Get(ctx, k, true)
	if err != nil {
		return n.m.errno(op, err)
	}
	v := resize(s.Value, int64(size))
	meta, err := n.m.src.Put(context.WithoutCancel(ctx), k, v, s.Version)
	v.Wipe()
	if err != nil {
		return n.m.errno(op, err)
	}
	n.update(meta)
	n.attr(ctx, nil, &out.Attr)
	return 0
}

func (n *secretNode) tooLarge(size int64) error {
	return fault.E(n.current().Path(), fault.TooLarge, "value would be "+strconv.FormatInt(size, 10)+
		" bytes; the limit is "+strconv.FormatInt(n.m.src.MaxValueSize(), 10))
}

// Open gives a reader a snapshot of the current value, and a writer a
// private buffer: empty for O_TRUNC, else a copy of the current value.
// A writer's expected Version is read from the store, not the cache, so
// that only a real concurrent writer can make its commit fail.
func (n *secretNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	const op = "open"
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if write && n.m.opts.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	// A write-only host can replace a value, never read one: not for
	// reading, not to append to it, not to edit it in place.
	readsValue := flags&syscall.O_ACCMODE != syscall.O_WRONLY || flags&syscall.O_TRUNC == 0
	if n.m.opts.WriteOnly && readsValue {
		n.m.log.WithField("secret", n.current().String()).Warn("open refused: this mount holds only a public key and cannot decrypt")
		return nil, 0, syscall.EACCES
	}
	n.settle(ctx)
	k := n.current()
	switch {
	case !write:
		s, err := n.m.src.Get(ctx, k, false)
		if err != nil {
			return nil, 0, n.m.errno(op, err)
		}
		n.update(s.Meta)
		return &handle{n: n, data: s.Value}, fuse.FOPEN_DIRECT_IO, 0
	case flags&syscall.O_TRUNC != 0:
		meta, err := n.m.src.Stat(ctx, k, true)
		if err != nil {
			return nil, 0, n.m.errno(op, err)
		}
		n.update(meta)
		return newWriteHandle(n, nil, meta.Version, true, flags), fuse.FOPEN_DIRECT_IO, 0
	default:
		s, err := n.m.src.Get(ctx, k, true)
		if err != nil {
			return nil, 0, n.m.errno(op, err)
		}
		n.update(s.Meta)
		return newWriteHandle(n, s.Value, s.Version, false, flags), fuse.FOPEN_DIRECT_IO, 0
	}
}

// handle is one open file. A read-only handle holds a snapshot of the
// value; a writable one holds a private buffer and the Version it expects
// to replace. Both own their bytes and wipe them on release.
//
// When a writable handle commits:
//   - on FLUSH (close) by a process that wrote through it since the last
//     commit, so close(2) reports a failed commit to the writer;
//   - on fsync(2), always;
//   - on RELEASE (the last close), if anything is still uncommitted: a
//     truncating or creating open that never wrote (`: > file`, touch),
//     whose failure can only be logged.
//
// FLUSH from a process that did not write commits nothing: see lockOwners.
type handle struct {
	n *secretNode

	mu       sync.Mutex
	data     crypto.Plaintext
	writable bool
	append   bool            // O_APPEND: every write goes to the end of the buffer
	expected store.Version   // what the commit's condition expects in the store
	pending  bool            // data differs from what is committed
	writers  map[uint64]bool // lock owners that wrote since the last commit
	closing  bool            // a descriptor closed with only a truncation or creation pending
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileWriter   = (*handle)(nil)
	_ gofs.FileFlusher  = (*handle)(nil)
	_ gofs.FileFsyncer  = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
)

// newWriteHandle takes ownership of data. A handle for a new or truncated
// secret starts pending: closed without a write, it commits an empty
// value, as `: > file` expects.
func newWriteHandle(n *secretNode, data crypto.Plaintext, expected store.Version, pending bool, flags uint32) *handle {
	return &handle{n: n, data: data, writable: true, append: flags&syscall.O_APPEND != 0,
		expected: expected, pending: pending, writers: map[uint64]bool{}}
}

func (h *handle) size() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.data))
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	// Copy out under the lock: the buffer may be wiped or reallocated by
	// a release or a write once we return.
	return fuse.ReadResultData(dest[:copy(dest, h.data[off:])]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.writable {
		return 0, syscall.EBADF
	}
	if h.append {
		off = int64(len(h.data))
	}
	end := off + int64(len(data))
	if end > h.n.m.src.MaxValueSize() {
		return 0, h.n.m.errno("write", h.n.tooLarge(end))
	}
	if end > int64(len(h.data)) {
		h.data = resize(h.data, end)
	}
	copy(h.data[off:], data)
	h.changedBy(h.n.m.owners.of(ctx))
	return uint32(len(data)), 0
}

// truncate resizes the private buffer on behalf of the caller of ctx.
func (h *handle) truncate(ctx context.Context, size int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.data = resize(h.data, size)
	h.changedBy(h.n.m.owners.of(ctx))
}

// changedBy records that owner changed the buffer. h.mu must be held.
func (h *handle) changedBy(owner uint64) {
	h.pending = true
	h.writers[owner] = true
	h.setClosing(false)
}

// Flush runs on every close(2) of a descriptor of this handle.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	owner := h.n.m.owners.of(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !h.pending:
		return 0
	case h.writers[owner] || h.writers[anyOwner]:
		return h.commit(ctx, "close")
	case len(h.writers) == 0:
		// Only a truncation or creation is pending. Either this is the
		// last close and RELEASE follows, or a shell closed its copy of
		// a redirection and is about to write. Until one of the two
		// happens, readers wait (secretNode.settle) rather than see a
		// state that is about to change.
		h.setClosing(true)
	}
	return 0
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.pending {
		return 0
	}
	return h.commit(ctx, "fsync")
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending {
		h.commit(ctx, "release") // its failure is logged; nobody waits for RELEASE
	}
	h.setClosing(false)
	h.data.Wipe()
	h.data = nil
	return 0
}

// commit writes the private buffer with one conditional write. It is not
// interruptible: once started, the store decides it whole or not at all,
// and the caller learns which (the backend's own deadline still applies).
// A failed commit discards the buffer: its error goes to the caller once,
// and a later close does not retry a write that would fail the same way.
// h.mu must be held.
func (h *handle) commit(ctx context.Context, when string) syscall.Errno {
	k := h.n.current()
	meta, err := h.n.m.src.Put(context.WithoutCancel(ctx), k, h.data, h.expected)
	h.pending = false
	clear(h.writers)
	h.setClosing(false)
	if err != nil {
		h.n.m.log.WithField("secret", k.String()).Warn("the value written through this file was not committed and is discarded")
		return h.n.m.errno("commit at "+when, err)
	}
	h.expected = meta.Version
	h.n.update(meta)
	notifyAttr(&h.n.Inode)
	h.n.m.log.WithFields(map[string]any{"secret": k.String(), "version": int64(meta.Version), "size": meta.Size, "at": when}).Info("secret written")
	return 0
}

// setClosing moves the handle in or out of the closing state, which
// readers of the node wait out. h.mu must be held.
func (h *handle) setClosing(closing bool) {
	if h.closing == closing {
		return
	}
	h.closing = closing
	h.n.closingChanged(closing)
}

// resize returns v with length size. Growing may move the bytes to a new
// array; the old one is wiped, so no stale copy of the value stays behind.
// Shrinking wipes the bytes cut off, so that growing again reads zeros.
func resize(v crypto.Plaintext, size int64) crypto.Plaintext {
	switch {
	case size <= int64(len(v)):
		v[size:].Wipe()
		return v[:size]
	case size <= int64(cap(v)):
		old := len(v)
		v = v[:size]
		v[old:].Wipe() // capacity we did not fill may hold anything
		return v
	}
	grown := make(crypto.Plaintext, size, max(size, 2*int64(cap(v))))
	copy(grown, v)
	v.Wipe()
	return grown
}
