package vfs

import (
	"context"
	"sync"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Revision is one committed revision of a secret as a file: its content
// and attributes never change, so whoever caches them (the kernel) may
// keep them. Readers read the revision; a writer that opens it gets a
// session (a private buffer), whose commit makes a new revision: this one
// never changes.
//
// It pins the revision's snapshot (its content, decrypted once) from its
// first use until Unpin: the adapter unpins when nothing can read it any
// more (the kernel forgot the inode), and a later use pins it again.
type Revision struct {
	v      *FS
	onPin  func() // told of every new pin (see NewRevision)
	onWipe func() // told when the pinned plaintext is wiped

	mu   sync.Mutex // see the lock order in the package comment
	key  store.Key  // where the revision was committed (see Rekey)
	meta store.Meta // of the revision it serves
	snap secrets.Snapshot
	stop func() // unregisters onWipe from snap
	read bool   // content was served: the revision may no longer change (see adopt)
	// reading counts the Reads in flight; retired holds the pins that
	// Rekey, adopt or Unpin replaced while one was: a Read uses the
	// snapshot it began with to its end, so that one is released only
	// once no Read is in flight (see use).
	reading int
	retired []pin

	verified bool // decrypted once, which proved its size (see Verify)
}

// NewRevision returns the file of the revision of k that meta describes.
// onPin is called (holding no lock) each time the revision pins its
// snapshot anew: at its first use, and at the first use after an Unpin,
// which the adapter may have to undo (package fs revives an inode the
// kernel looked up again). onWipe is called, from a goroutine of its
// own, whenever the pinned plaintext is wiped, so that copies of it (the
// kernel's page cache) can be dropped.
func (v *FS) NewRevision(k store.Key, meta store.Meta, onPin, onWipe func()) *Revision {
	return &Revision{v: v, key: k, meta: meta, onPin: onPin, onWipe: onWipe}
}

// Key returns the secret the revision is of.
func (r *Revision) Key() store.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.key
}

// Rekey makes the file the revision meta of k, which holds the same
// bytes as the one it was: a rename wrote this revision's value under k
// (see Event's Renamed). Its readers read on, the same bytes, now from
// meta's revision: the one it was may be gone from the store.
func (r *Revision) Rekey(k store.Key, meta store.Meta) {
	r.mu.Lock()
	old := pin{r.snap, r.stop}
	r.key, r.meta, r.snap, r.stop, r.verified = k, meta, nil, nil, false
	release := r.retireLocked(old)
	r.mu.Unlock()
	release.release()
	if old.snap != nil {
		r.snapshot() // pinned it was, pinned it stays
	}
}

// pin is a pinned snapshot and the cancel of its OnWipe registration.
type pin struct {
	snap secrets.Snapshot
	stop func()
}

// pins are pins to release.
type pins []pin

func (ps pins) release() {
	for _, p := range ps {
		p.stop()
		p.snap.Release()
	}
}

// retireLocked returns p (none, if p holds no snapshot) to be released
// now by the caller, holding no lock, or nothing if a Read is in flight:
// then the last Read to end releases it (see use). r.mu is held.
func (r *Revision) retireLocked(p pin) pins {
	if p.snap == nil {
		return nil
	}
	if r.reading > 0 {
		r.retired = append(r.retired, p)
		return nil
	}
	return pins{p}
}

// use returns the pinned snapshot, pinning it if it is not, for a Read
// that calls done when it ended: until then no snapshot this revision
// pins is released, so a Rekey of a rename (after which the old revision
// may be gone from the store) cannot pull the bytes from under the read.
func (r *Revision) use() (snap secrets.Snapshot, done func()) {
	for {
		snap = r.snapshot()
		r.mu.Lock()
		if r.snap == snap {
			r.reading++
			r.mu.Unlock()
			return snap, r.used
		}
		r.mu.Unlock() // replaced meanwhile: take the one that replaced it
	}
}

// used ends a use.
func (r *Revision) used() {
	r.mu.Lock()
	r.reading--
	var release pins
	if r.reading == 0 {
		release, r.retired = r.retired, nil
	}
	r.mu.Unlock()
	release.release()
}

// Meta returns the revision's metadata.
func (r *Revision) Meta() store.Meta {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta
}

// Is reports whether r is revision rev of k: one application, name and
// revision, never matched by anything less.
func (r *Revision) Is(k store.Key, rev store.Revision) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.key == k && r.meta.Revision().Equal(rev)
}

// Shows reports whether r is the revision meta lists of k, as the
// kernel was told it: Is, and the same size where both are known. A
// revision whose Size was forged before its first read and repaired in
// place since, with the same Version and IV, is listed with another size
// than the kernel holds for r's inode: it is another file (see the
// catalog's relisted), which would otherwise be read from r, failed, for
// as long as the kernel kept r.
func (r *Revision) Shows(k store.Key, meta store.Meta) bool {
	r.mu.Lock()
	size := r.meta.Size
	r.mu.Unlock()
	return r.Is(k, meta.Revision()) && (size < 0 || meta.Size < 0 || size == meta.Size)
}

// Attr is the revision's attributes: nlink is 1 while the name still
// points at this revision as far as the catalog knows, 0 once it was
// replaced or removed.
func (r *Revision) Attr() Attr {
	meta := r.Meta()
	nlink := uint32(0)
	if cur, ok := r.v.cat.Known(meta.Key); ok && cur.Revision().Equal(meta.Revision()) {
		nlink = 1
	}
	return r.v.fileAttr(meta, nlink)
}

// snapshot returns the pinned snapshot, pinning it if it is not. The
// catalog is asked without r.mu held; of two pins made at once, one is
// kept.
func (r *Revision) snapshot() secrets.Snapshot {
	for {
		r.mu.Lock()
		snap, meta, k := r.snap, r.meta, r.key
		r.mu.Unlock()
		if snap != nil {
			return snap
		}
		fresh := r.v.cat.Snapshot(k, meta)
		stop := fresh.OnWipe(r.onWipe)
		r.mu.Lock()
		if r.snap == nil && r.key == k && r.meta.Revision().Equal(meta.Revision()) {
			r.snap, r.stop = fresh, stop
			r.mu.Unlock()
			r.onPin()
			return fresh
		}
		r.mu.Unlock()
		stop()
		fresh.Release()
	}
}

// Touch records a read the kernel served from its page cache (the
// adapter learns of one from a lookup or a getattr through a
// descriptor): the plaintext is not idle.
func (r *Revision) Touch() { r.snapshot().Touch() }

// Unpin releases the snapshot: nothing can read this revision through
// the adapter any more, until its next use pins it again.
func (r *Revision) Unpin() {
	r.mu.Lock()
	release := r.retireLocked(pin{r.snap, r.stop})
	r.snap, r.stop = nil, nil
	r.mu.Unlock()
	release.release()
}

// Verify proves by decrypting what the kernel would otherwise take on
// trust from the store's clear metadata, and learns the size of a
// legacy item, which records none. The kernel reads a file only up to
// the size it was told: it never asks for the content of a file of 0
// bytes, so nothing would ever check that such an item decrypts, and a
// store writer who set an item's Size to 0 would empty the file. So a
// revision that lists 0 bytes, or no size, is decrypted once, at its
// first lookup; a larger one is checked by its first read (the catalog
// refuses a value whose length is not the size listed). A failure is
// the lookup's, and the snapshot is unpinned: the catalog remembers a
// tampered item, so asking again costs no unwrap. A write-only mount
// cannot decrypt and does not try; it shows such a revision as 0 bytes,
// and reads nothing anyway.
func (r *Revision) Verify(ctx context.Context) error {
	r.mu.Lock()
	size, trusted := r.meta.Size, r.meta.Size > 0 || r.verified
	r.mu.Unlock()
	if trusted || r.v.opts.WriteOnly {
		return nil
	}
	snap := r.snapshot()
	var err error
	if size < 0 {
		size, err = snap.Size(ctx) // decrypts a legacy item
	}
	if err == nil && size == 0 {
		_, err = snap.ReadAt(ctx, nil, 0) // decrypts, into nothing
	}
	if err != nil {
		r.Unpin()
		return err
	}
	r.mu.Lock()
	r.meta.Size, r.verified = size, true
	r.mu.Unlock()
	return nil
}

// Open opens the revision with flags for c (Thread, Process, and the
// audit fields). For writing it returns a handle: a session on the
// secret's current value. For reading it returns none: a reader of the
// revision the name still points at reads it (Read); one of a revision
// replaced or removed since is sent to look the name up again
// (ErrLookUpAgain), unless this is the kernel's retry (c.Again). A writer
// that closed and whose commit is coming (`: > f && cat f`) is waited for
// first.
//
// The mount's own change signal (c.Own) gets a handle that changes
// nothing, unaudited.
func (r *Revision) Open(ctx context.Context, c Caller, flags uint32) (*Handle, error) {
	if c.Own && Writes(flags) {
		return r.v.signalHandle(r.Key()), nil
	}
	var h *Handle
	var err error
	if Writes(flags) {
		h, err = r.openWriter(ctx, c, flags)
	} else {
		err = r.openReader(ctx, c.Again)
	}
	r.v.audit(c, "open", r.Key(), store.Key{}, r.Meta().Version, err)
	return h, err
}

// Hold binds the revision's value now, for the lookup that precedes the
// kernel's retry of an open sent to look the name up again, and keeps it
// bound until release is called: the kernel retries only once, and opens
// what that lookup returned, so a value replaced again before the retry
// opened would otherwise be gone by then (the catalog keeps only what is
// pinned of a replaced revision). The pin is the caller's own, apart from
// the revision's, which the adapter drops when the kernel forgets the
// inode: and the kernel forgets the inode its first lookup of a retry
// found, when that differs from the one it had, just as it looks the
// name up again. It returns ErrLookUpAgain, and holds nothing, if the
// revision was replaced or removed before it could be bound.
func (r *Revision) Hold(ctx context.Context) (release func(), err error) {
	snap := r.v.cat.Snapshot(r.Key(), r.Meta())
	if err := snap.Bind(ctx); err != nil {
		snap.Release()
		if secrets.AsSuperseded(err) != nil || fault.Is(fault.NotFound, err) {
			return nil, lookUpAgain(r.Key().Path(), "replaced or removed before its value was held")
		}
		return nil, err
	}
	return sync.OnceFunc(snap.Release), nil
}

func (r *Revision) openReader(ctx context.Context, again bool) error {
	p := r.Key().Path()
	if err := r.v.readable(p); err != nil {
		return err
	}
	// A writer that closed may be about to commit (`: > f && cat f`):
	// read what it commits, not the revision it replaces.
	r.v.awaitClosingWritersOf(r.Key())
	if cur, ok := r.v.cat.Known(r.Key()); !ok || (!again && !cur.Revision().Equal(r.Meta().Revision())) {
		return lookUpAgain(p, "replaced or removed since it was looked up")
	}
	snap := r.snapshot()
	if err := snap.Bind(ctx); err != nil {
		if secrets.AsSuperseded(err) != nil || fault.Is(fault.NotFound, err) {
			return lookUpAgain(p, "replaced or removed since it was listed")
		}
		return err
	}
	snap.Touch()
	return nil
}

// openWriter opens a session on the secret's current value, which the
// store is asked for: a writer's commit must expect what is stored, not
// what the catalog last heard. A secret removed meanwhile is looked up
// again: the kernel's retry then creates it if the open asked for that
// (O_CREAT never reaches an open of an existing file), or finds nothing.
func (r *Revision) openWriter(ctx context.Context, c Caller, flags uint32) (*Handle, error) {
	v, p := r.v, r.Key().Path()
	if err := v.writable(p); err != nil {
		return nil, err
	}
	if needsValue(flags) {
		if err := v.readable(p); err != nil {
			return nil, err
		}
	}
	s, done := v.opener(r.Key())
	defer done()
	s.awaitClosingWriters()
	meta, err := v.cat.Verify(ctx, r.Key())
	if fault.Is(fault.NotFound, err) && !isCreating(s) {
		return nil, lookUpAgain(p, "removed elsewhere")
	}
	return v.openWriter(ctx, c, s, flags, meta, err)
}

// Read copies the revision's content at off into dest: n < len(dest)
// means the value ended.
func (r *Revision) Read(ctx context.Context, dest []byte, off int64) (int, error) {
	if err := r.v.readable(r.Key().Path()); err != nil {
		return 0, err
	}
	snap, done := r.use()
	defer done()
	if err := snap.Bind(ctx); err != nil {
		if snap, err = r.adopt(ctx, snap, err); err != nil {
			return 0, err
		}
	}
	n, err := snap.ReadAt(ctx, dest, off)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.read = true
	r.mu.Unlock()
	return n, nil
}

// adopt handles a revision that was gone before its content was first
// read (was, the snapshot that could not bind, with err): a file made
// from a listing (`ls -l`) whose secret changed before anything read it.
// On a read-only mount no open comes to send the reader elsewhere, so the
// file serves the revision that replaced it, if the kernel cannot tell:
// nothing was read through it yet, and the new value is no longer than the
// size the kernel holds (a short read then tells it the true size). A
// longer one would be cut short, so the read fails instead, and the name
// is looked up again by the next open (Changed).
func (r *Revision) adopt(ctx context.Context, was secrets.Snapshot, err error) (secrets.Snapshot, error) {
	sup := secrets.AsSuperseded(err)
	if sup == nil {
		return nil, err
	}
	r.mu.Lock()
	refuse := r.read || sup.Now.Size < 0 || sup.Now.Size > r.meta.Size
	r.mu.Unlock()
	if refuse {
		r.v.emit(Changed, r.Key())
		// The read's failure is logged once, by the read, with this.
		return nil, fault.E(r.Key().Path(), fault.Unavailable, "changed between its listing and its first read, and grew: the read fails, the next open gets the new value", err)
	}
	fresh := r.v.cat.Snapshot(r.Key(), sup.Now)
	stop := fresh.OnWipe(r.onWipe)
	r.mu.Lock()
	if r.snap != was {
		// Adopted (or unpinned) by another read meanwhile: read what
		// that one left.
		r.mu.Unlock()
		stop()
		fresh.Release()
		snap := r.snapshot()
		return snap, snap.Bind(ctx)
	}
	release := r.retireLocked(pin{r.snap, r.stop}) // nothing yet: this Read is in flight
	r.meta, r.snap, r.stop = sup.Now, fresh, stop
	r.mu.Unlock()
	release.release()
	if err := fresh.Bind(ctx); err != nil {
		return nil, err
	}
	return fresh, nil
}
