package fs

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// secretNode is "/<app>/<secret>".
type secretNode struct {
	gofs.Inode
	m *mount

	mu         sync.Mutex
	key        store.Key            // changes on rename
	meta       store.Meta           // last known; attributes come from here
	writers    map[*handle]struct{} // open writable handles
	closing    int                  // handles in the closing state (see handle.Flush)
	committing int                  // commits in flight
	changed    chan struct{}        // closed and replaced when closing or committing changes
}

var (
	_ gofs.NodeGetattrer = (*secretNode)(nil)
	_ gofs.NodeSetattrer = (*secretNode)(nil)
	_ gofs.NodeOpener    = (*secretNode)(nil)
)

// settleTimeout bounds how long a request waits for a closing writer: a
// RELEASE follows the last close within moments, so only a process that
// holds a truncated file open without writing makes others wait this
// long, after which they see the committed value. A commit in flight is
// waited for until it ends: the backend's deadline bounds it.
const settleTimeout = time.Second

func (n *secretNode) current() store.Key {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.key
}

func (n *secretNode) update(meta store.Meta) {
	n.mu.Lock()
	n.key, n.meta = meta.Key, meta
	n.mu.Unlock()
}

// createdHere reports whether n is being created through this mount: an
// open handle made it and nothing has been committed yet.
func (n *secretNode) createdHere() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meta.Version == store.Absent && len(n.writers) > 0
}

// busy adds d closing handles and c commits in flight. n.mu must not be
// held.
func (n *secretNode) busy(d, c int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closing += d
	n.committing += c
	if n.changed != nil {
		close(n.changed)
		n.changed = nil
	}
}

// settle waits until no handle of n is closing and no commit of n is in
// flight, so that `touch f && cat f`, `: > f && cat f` or vim's
// create-close-unlink of its swap file act on what the first step
// committed. Operations that read or change the secret through the store
// settle first; attributes never wait (see Getattr).
func (n *secretNode) settle(ctx context.Context) {
	deadline := time.Now().Add(settleTimeout)
	for {
		n.mu.Lock()
		closing, committing := n.closing, n.committing
		if n.changed == nil {
			n.changed = make(chan struct{})
		}
		changed := n.changed
		n.mu.Unlock()
		if closing == 0 && committing == 0 {
			return
		}
		wait := time.Until(deadline)
		if committing > 0 {
			wait = time.Hour // the commit's own deadline ends it long before
		} else if wait <= 0 {
			n.m.log.WithField("secret", n.current().String()).Debug("stopped waiting for a writer that closed a descriptor without writing")
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// closingMetadata describes what a closing handle of n is about to
// commit: the answer to a stat while it does.
func (n *secretNode) closingMetadata() (store.Meta, bool) {
	for _, h := range n.openWriters() {
		h.mu.Lock()
		closing := h.closing
		h.mu.Unlock()
		if closing {
			return h.metadata(), true
		}
	}
	return store.Meta{}, false
}

// openWriters returns n's open writable handles. Callers lock each handle
// themselves, after n.mu is released: a handle locks its node while
// holding its own lock, never the other way round.
func (n *secretNode) openWriters() []*handle {
	n.mu.Lock()
	defer n.mu.Unlock()
	hs := make([]*handle, 0, len(n.writers))
	for h := range n.writers {
		hs = append(hs, h)
	}
	return hs
}

// orphan detaches n's open writers from the store: the secret was removed
// under them, and as with any unlinked file their writes succeed and
// vanish instead of bringing it back.
func (n *secretNode) orphan() {
	for _, h := range n.openWriters() {
		h.mu.Lock()
		h.orphaned = true
		h.pending = false
		h.setClosing(false)
		h.mu.Unlock()
	}
}

// moved records that n now lives at meta (a rename of the item that was
// old). Open writers follow the file, as on any file system: those that
// expected old now expect the new item. Those that expected an earlier
// write were already stale, and fail as they would have in place.
func (n *secretNode) moved(old store.Revision, meta store.Meta) {
	n.update(meta)
	for _, h := range n.openWriters() {
		h.mu.Lock()
		if h.expected.Equal(old) {
			h.expected = meta.Revision()
		} else if h.writable && !h.orphaned {
			h.fail(fault.E(meta.Path(), fault.Conflict, "renamed after another writer changed it"))
		}
		h.mu.Unlock()
	}
}

// gone turns "not in the store" for a node the kernel still holds into
// ESTALE: the kernel then looks the name up again and retries the open,
// creating the file if O_CREAT asks for it.
func (n *secretNode) gone(err error) error {
	if fault.Is(fault.NotFound, err) {
		return fault.E(n.current().Path(), fault.Conflict, "removed elsewhere; looking it up again", err)
	}
	return err
}

// attr fills out from the last known metadata.
func (n *secretNode) attr(out *fuse.Attr) {
	n.mu.Lock()
	meta := n.meta
	n.mu.Unlock()
	n.m.fileAttr(meta, out)
}

func (n *secretNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	// A GETATTR that comes through a descriptor is answered from that
	// handle: a reader sees its snapshot's size, a writer its buffer's.
	// (The kernel sends one only to refresh its cache, e.g. for lseek to
	// the end; fstat is mostly answered from the kernel's inode cache.)
	// A stat by path gets some open handle from go-fuse too, and must not
	// see another process's buffer.
	if h, ok := fh.(*handle); ok && n.m.requests.viaHandle(ctx) {
		n.m.fileAttr(h.metadata(), &out.Attr)
		return 0
	}
	// No waiting here: the closing writer may be the caller itself (a
	// program's first fstat of the stdout its shell redirected). A
	// closing handle describes what it is about to commit.
	if meta, ok := n.closingMetadata(); ok {
		n.m.fileAttr(meta, &out.Attr)
		return 0
	}
	k := n.current()
	meta, err := n.m.src.Stat(ctx, k, false)
	switch {
	case fault.Is(fault.NotFound, err) && n.createdHere():
		// Created through this mount and not committed yet (touch sets
		// the times of its new file before closing it).
		n.attr(&out.Attr)
		return 0
	case err != nil:
		return n.m.errno("getattr", err)
	}
	n.m.learnSize(ctx, &meta)
	n.update(meta)
	n.attr(&out.Attr)
	out.SetTimeout(n.m.timeout(k))
	return 0
}

// Setattr truncates (through the handle's private buffer when there is
// one, else with an immediate conditional write); owners, modes and times
// are mount-wide (see checkSetattr).
func (n *secretNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	const op = "truncate"
	if err := n.m.checkSetattr(n.current().Path(), in, n.m.opts.FileMode); err != nil {
		return n.m.errno("setattr", err)
	}
	size, ok := in.GetSize()
	if !ok {
		return n.Getattr(ctx, fh, out)
	}
	if err := n.m.writable(n.current().Path()); err != nil {
		return n.m.errno(op, err)
	}
	if int64(size) > n.m.src.MaxValueSize() {
		return n.m.errno(op, n.tooLarge(int64(size)))
	}
	if h, ok := fh.(*handle); ok && h.writable {
		h.truncate(ctx, int64(size))
		n.m.fileAttr(h.metadata(), &out.Attr)
		return 0
	}
	n.settle(ctx)
	k := n.current()
	s, err := n.m.src.Get(ctx, k, true)
	if err != nil {
		return n.m.errno(op, n.gone(err))
	}
	v := resize(s.Value, int64(size))
	meta, err := n.m.src.Put(context.WithoutCancel(ctx), k, v, s.Revision())
	v.Wipe()
	if err != nil {
		return n.m.errno(op, err)
	}
	n.update(meta)
	n.attr(&out.Attr)
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
	k := n.current()
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if write {
		if err := n.m.writable(k.Path()); err != nil {
			return nil, 0, n.m.errno(op, err)
		}
	}
	// A write-only host can replace a value, never read one: not for
	// reading, not to append to it, not to edit it in place.
	readsValue := flags&syscall.O_ACCMODE != syscall.O_WRONLY || flags&syscall.O_TRUNC == 0
	if n.m.opts.WriteOnly && readsValue {
		return nil, 0, n.m.errno(op, fault.E(k.Path(), fault.Permission, "this mount holds only a public key: it can replace secrets, not read them"))
	}
	n.settle(ctx)
	k = n.current()
	switch {
	case !write:
		s, err := n.m.src.Get(ctx, k, false)
		if fault.Is(fault.NotFound, err) && n.createdHere() {
			return nil, 0, n.m.errno(op, fault.E(k.Path(), fault.NotFound, "being created; nothing committed yet"))
		}
		if err != nil {
			return nil, 0, n.m.errno(op, n.gone(err))
		}
		n.learned(s.Meta)
		return &handle{n: n, data: s.Value, meta: s.Meta}, fuse.FOPEN_DIRECT_IO, 0
	case flags&syscall.O_TRUNC != 0:
		meta, err := n.m.src.Stat(ctx, k, true)
		switch {
		case fault.Is(fault.NotFound, err) && n.createdHere():
			// Another handle of this mount is creating it: race it.
			meta = n.metadata()
		case err != nil:
			return nil, 0, n.m.errno(op, n.gone(err))
		default:
			n.update(meta)
		}
		return n.newWriteHandle(ctx, nil, meta, true, flags), fuse.FOPEN_DIRECT_IO, 0
	default:
		s, err := n.m.src.Get(ctx, k, true)
		switch {
		case fault.Is(fault.NotFound, err) && n.createdHere():
			s.Meta = n.metadata()
		case err != nil:
			return nil, 0, n.m.errno(op, n.gone(err))
		default:
			n.learned(s.Meta)
		}
		return n.newWriteHandle(ctx, s.Value, s.Meta, false, flags), fuse.FOPEN_DIRECT_IO, 0
	}
}

// committed records a commit of n's item, unless n was renamed while it
// ran: then n already describes its new place.
func (n *secretNode) committed(meta store.Meta) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.key == meta.Key {
		n.meta = meta
	}
}

func (n *secretNode) metadata() store.Meta {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meta
}

// learned records metadata that came with a decrypted value. When it
// is not what n described (another host wrote the secret, or a legacy
// item listed without a size), the kernel's copy of the attributes and
// pages is dropped before the open returns: a program that opens, fstats
// and reads st_size bytes must be told the size of the value its handle
// serves.
func (n *secretNode) learned(meta store.Meta) {
	n.mu.Lock()
	changed := n.meta.Size != meta.Size || !n.meta.Revision().Equal(meta.Revision())
	n.key, n.meta = meta.Key, meta
	n.mu.Unlock()
	if changed {
		invalidateBeforeReply(&n.Inode)
	}
}

// newWriteHandle opens a writable handle on n, which takes ownership of
// data. A handle for a new or truncated secret starts pending: closed
// without a write, it commits an empty value, as `: > file` expects.
func (n *secretNode) newWriteHandle(ctx context.Context, data crypto.Plaintext, meta store.Meta, pending bool, flags uint32) *handle {
	h := &handle{n: n, data: data, meta: meta, writable: true, append: flags&syscall.O_APPEND != 0,
		expected: meta.Revision(), pending: pending, writers: map[uint64]bool{}, opener: process(ctx)}
	n.mu.Lock()
	if n.writers == nil {
		n.writers = map[*handle]struct{}{}
	}
	n.writers[h] = struct{}{}
	n.mu.Unlock()
	return h
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
// FLUSH from a process that did not write commits nothing: see requests.
type handle struct {
	n *secretNode

	mu       sync.Mutex
	data     crypto.Plaintext
	meta     store.Meta // of the snapshot (reader), or of what the buffer replaces (writer)
	writable bool
	append   bool            // O_APPEND: every write goes to the end of the buffer
	expected store.Revision  // what the commit's condition expects in the store
	pending  bool            // data differs from what is committed
	writers  map[uint64]bool // lock owners that wrote since the last commit
	closing  bool            // a descriptor closed with only a truncation or creation pending
	orphaned bool            // the secret was removed: nothing is committed any more
	failed   error           // a write or commit failed for good: nothing more is committed, closes report it
	unsure   bool            // a commit failed without an answer: it may have landed after all
	opener   uint32          // the process that opened it (see process)
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileWriter   = (*handle)(nil)
	_ gofs.FileFlusher  = (*handle)(nil)
	_ gofs.FileFsyncer  = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
)

// metadata describes what the caller of this handle sees: the snapshot it
// reads, or its own private buffer.
func (h *handle) metadata() store.Meta {
	h.mu.Lock()
	defer h.mu.Unlock()
	meta := h.meta
	meta.Size = int64(len(h.data))
	return meta
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
		return 0, h.n.m.errno("write", fault.E(h.n.current().Path(), fault.Invalid, "not open for writing"))
	}
	if h.append {
		off = int64(len(h.data))
	}
	end := off + int64(len(data))
	if end > h.n.m.src.MaxValueSize() {
		// What the writer meant cannot be stored; what it wrote so far
		// is a part, and must not be committed at its close.
		h.fail(h.n.tooLarge(end))
		return 0, h.n.m.errno("write", h.failed)
	}
	if end > int64(len(h.data)) {
		h.data = resize(h.data, end)
	}
	copy(h.data[off:], data)
	h.changedBy(h.n.m.requests.owner(ctx))
	return uint32(len(data)), 0
}

// truncate resizes the private buffer on behalf of the caller of ctx.
func (h *handle) truncate(ctx context.Context, size int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.data = resize(h.data, size)
	h.changedBy(h.n.m.requests.owner(ctx))
}

// changedBy records that owner changed the buffer. h.mu must be held.
func (h *handle) changedBy(owner uint64) {
	if h.orphaned || h.failed != nil {
		return
	}
	h.pending = true
	h.writers[owner] = true
	h.setClosing(false)
}

// fail discards the buffer for good: the handle will not commit, and
// every later close or fsync reports err. h.mu must be held.
func (h *handle) fail(err error) {
	h.pending, h.failed = false, err
	clear(h.writers)
	h.setClosing(false)
}

// Flush runs on every close(2) of a descriptor of this handle.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	owner := h.n.m.requests.owner(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.failed != nil:
		return h.n.m.errno("close", h.failed)
	case !h.pending:
		return 0
	}
	wrote := h.writers[owner] || h.writers[anyOwner]
	truncatedOnly := len(h.writers) == 0 // a truncation or creation, no write yet
	if !wrote && !truncatedOnly {
		return 0 // a child closing an inherited copy says nothing of another's write
	}
	c := callerOf(ctx)
	if sig := c.killedBy(); sig != 0 {
		// Killed by a signal: the writer itself, mid-write, or, before
		// anyone wrote, the child a shell ran to fill a redirection
		// (`cmd > file`). What is pending is a part of a value or a
		// truncation nobody filled: commit nothing, so the value stays
		// whole.
		h.fail(fault.E(h.n.current().Path(), "a process writing it was killed by signal "+strconv.Itoa(int(sig))+
			" ("+sig.String()+") before it closed the file; nothing written through this file is committed"))
		return h.n.m.errno("close", h.failed)
	}
	switch {
	case wrote:
		return h.commit(ctx, "close")
	case c.process == h.opener:
		// Only a truncation or creation is pending, and the process
		// that opened the file closed a descriptor of it. Either this is
		// its last close and RELEASE follows, or it is a shell that
		// closed its copy of a redirection and is about to write. Until
		// one of the two happens, others wait (secretNode.settle) rather
		// than act on a state that is about to change. A child closing
		// an inherited copy says nothing about either.
		h.setClosing(true)
	}
	return 0
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.failed != nil:
		return h.n.m.errno("fsync", h.failed)
	case !h.pending:
		return 0
	}
	return h.commit(ctx, "fsync")
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending {
		if h.commit(ctx, "release") != 0 && h.pending {
			h.n.m.log.WithField("secret", h.n.current().String()).Error("the last close could not commit; the value written is lost")
		}
	}
	h.setClosing(false)
	h.data.Wipe()
	h.data = nil
	h.n.mu.Lock()
	delete(h.n.writers, h)
	h.n.mu.Unlock()
	return 0
}

// commit writes the private buffer with one conditional write. It is not
// interruptible: once started, the store decides it whole or not at all,
// and the caller learns which (the backend's own deadline still applies).
//
// A commit that failed for good (a concurrent writer won, the value is
// too large, the key refused) discards the buffer and keeps reporting the
// error at every later flush or fsync: reopen to try again. One that may
// succeed later (the backend did not answer) stays pending, so a retried
// fsync, or the last close, tries again. h.mu must be held.
func (h *handle) commit(ctx context.Context, when string) syscall.Errno {
	k := h.n.current()
	if h.orphaned {
		return 0
	}
	h.n.busy(0, 1)
	defer h.n.busy(0, -1)
	ctx = context.WithoutCancel(ctx)
	meta, err := h.n.m.src.Put(ctx, k, h.data, h.expected)
	if h.unsure && (fault.Is(fault.Conflict, err) || fault.Is(fault.Exist, err)) {
		// A commit that got no answer may have landed once the backend
		// came back: if the store holds exactly this buffer, it did.
		if s, gerr := h.n.m.src.Get(ctx, k, true); gerr == nil {
			if bytes.Equal(s.Value, h.data) {
				meta, err = s.Meta, nil
			}
			s.Value.Wipe()
		}
	}
	if fault.Is(fault.Exist, err) {
		// It was created while this handle was creating it: the other
		// writer won, as for any concurrent writer.
		err = fault.E(k.Path(), fault.Conflict, "created concurrently", err)
	}
	if err != nil {
		if permanent(err) {
			h.fail(err)
			h.n.m.log.WithField("secret", k.String()).Warn("the value written through this file was not committed and is discarded")
		} else {
			h.unsure = true
		}
		return h.n.m.errno("commit at "+when, err)
	}
	h.pending, h.unsure = false, false
	clear(h.writers)
	h.setClosing(false)
	h.expected, h.meta = meta.Revision(), meta
	h.n.committed(meta)
	invalidateContent(&h.n.Inode)
	h.n.m.log.WithFields(logrus.Fields{"secret": k.String(), "version": int64(meta.Version), "size": meta.Size, "at": when}).Info("secret written")
	return 0
}

// permanent reports whether a failed commit would fail the same way if
// retried.
func permanent(err error) bool {
	switch fault.KindOf(err) {
	case fault.Unavailable, fault.Other:
		return false
	}
	return true
}

// setClosing moves the handle in or out of the closing state, which
// others wait out. h.mu must be held.
func (h *handle) setClosing(closing bool) {
	if h.closing == closing {
		return
	}
	h.closing = closing
	if closing {
		h.n.busy(1, 0)
	} else {
		h.n.busy(-1, 0)
	}
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
