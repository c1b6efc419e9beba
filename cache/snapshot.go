package cache

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// snapKey names one revision of one secret: its Version and its IV,
// which is fresh on every write (the Version alone repeats when an item
// is deleted and written again, and every legacy item has Version 0).
type snapKey struct {
	key     store.Key
	version store.Version
	iv      string
}

func keyOf(k store.Key, m store.Meta) snapKey {
	return snapKey{key: k, version: m.Version, iv: string(m.InitialisationVector)}
}

// snapshot implements secrets.Snapshot: one revision, its protected item
// once read, and its plaintext while it is held.
//
// Locking: the bookkeeping fields are guarded by the catalog's mu; the
// value by vmu, taken after mu (never before), so that reads copy out
// without touching the catalog's lock.
type snapshot struct {
	c  *Catalog
	id snapKey

	// Guarded by c.mu.
	meta      store.Meta  // Size is learned on the first decryption of a legacy item
	listed    int64       // meta's Size when pinned: the size the kernel was told
	item      *store.Item // nil until bound
	pins      int         // the index (while current) and every caller of Snapshot
	opening   *flight     // a decryption in flight
	failed    *failure    // the last decryption got no answer
	broken    error       // the item failed authentication (at brokenAt): it will until the store holds other bytes under its revision
	brokenAt  time.Time
	listeners map[int]func()
	nextID    int

	vmu   sync.RWMutex
	value crypto.Plaintext // owned; wiped when dropped
	has   bool             // value holds the plaintext (an empty secret has none to hold)

	read atomic.Int64 // unix nanoseconds of the last read
}

var _ secrets.Snapshot = (*snapshot)(nil)

// Snapshot implements secrets.Catalog.
func (c *Catalog) Snapshot(k store.Key, meta store.Meta) secrets.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pin(k, meta)
}

// pin returns the snapshot of meta's revision of k, registering it, with
// one more pin. c.mu must be held.
func (c *Catalog) pin(k store.Key, meta store.Meta) *snapshot {
	id := keyOf(k, meta)
	s := c.snaps[id]
	if s == nil || s.sizeDiffers(meta) {
		fresh := &snapshot{c: c, id: id, meta: meta, listed: meta.Size}
		fresh.meta.Key = k
		if s == nil || s.broken != nil {
			// New, or relisted (see relisted): c.snaps names this one
			// from now on, and the other stays with those that pin it.
			c.snaps[id] = fresh
		}
		// Else the revision as another listing gave it, with another
		// size: an inode the kernel holds with the size that listing
		// gave (the one before a repair of a forged Size). It must never
		// read the other's value under its size, which would cut it
		// short: its snapshot is its own, which c.snaps does not name
		// (it binds its item itself: Bind), and fails as its listing's
		// did.
		s = fresh
	}
	s.pins++
	return s
}

// sizeDiffers reports whether meta lists s's revision with another size
// than s was pinned with, both known (a legacy item lists none). c.mu
// must be held.
func (s *snapshot) sizeDiffers(meta store.Meta) bool {
	return meta.Size >= 0 && s.listed >= 0 && meta.Size != s.listed
}

// relisted reports whether meta lists s's revision with another size
// than s was pinned with, after s failed authentication: a Size forged
// before the revision was first read (the read then failed: the listing
// and the read gave two sizes, or the value has not the size listed) and
// repaired in place since, under the same Version and IV. The kernel
// keeps the size it was told for the inode of s, so the revision so
// relisted is another file (vfs.Revision.Shows), read from a snapshot of
// its own; else it would stay EIO until a restart. A store writer gains
// nothing by it that a new IV would not give them. c.mu must be held.
func (s *snapshot) relisted(meta store.Meta) bool {
	return s.broken != nil && s.sizeDiffers(meta)
}

// unpin takes one pin away; the last one wipes and forgets the snapshot.
// c.mu must be held.
func (c *Catalog) unpin(s *snapshot) {
	if s.pins--; s.pins > 0 {
		return
	}
	c.resident.remove(s) // nobody pins it: there are no listeners to tell
	s.item = nil
	if c.snaps[s.id] == s {
		delete(c.snaps, s.id)
	}
}

// attach gives item to the snapshot of its revision, if one is pinned
// and has none yet. c.mu must be held.
func (c *Catalog) attach(item *store.Item) {
	if s := c.snaps[keyOf(item.Key, item.Meta)]; s != nil {
		s.take(item)
	}
}

// take gives item to s, if it is s's revision and s has none yet. c.mu
// must be held.
func (s *snapshot) take(item *store.Item) {
	if s.item != nil || keyOf(item.Key, item.Meta) != s.id {
		return
	}
	s.item = item
	if s.meta.Size < 0 && item.Size >= 0 && item.Size <= s.c.origin.MaxValueSize() {
		s.meta.Size = item.Size
	}
}

// setValue makes s hold value, which it owns from then on. c.mu must be
// held (see residency.hold).
func (s *snapshot) setValue(value crypto.Plaintext) {
	s.vmu.Lock()
	defer s.vmu.Unlock()
	s.value.Wipe()
	s.value, s.has = value, true
}

// wipe zeroes s's plaintext and returns the listeners to tell. c.mu must
// be held (the residency calls it when it drops s).
func (s *snapshot) wipe() []func() {
	s.vmu.Lock()
	s.value.Wipe()
	s.value, s.has = nil, false
	s.vmu.Unlock()
	told := make([]func(), 0, len(s.listeners))
	for _, f := range s.listeners {
		told = append(told, f)
	}
	return told
}

func (s *snapshot) touch(now int64) { s.read.Store(now) }

// Touch implements secrets.Snapshot: a read, for the idle and count
// bounds.
func (s *snapshot) Touch() {
	s.touch(s.c.now().UnixNano())
	s.c.resident.touch(s)
}

// Meta implements secrets.Snapshot.
func (s *snapshot) Meta() store.Meta {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.meta
}

// Release implements secrets.Snapshot.
func (s *snapshot) Release() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.unpin(s)
}

// OnWipe implements secrets.Snapshot.
func (s *snapshot) OnWipe(f func()) (cancel func()) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.listeners == nil {
		s.listeners = map[int]func(){}
	}
	id := s.nextID
	s.nextID++
	s.listeners[id] = f
	return func() {
		s.c.mu.Lock()
		defer s.c.mu.Unlock()
		delete(s.listeners, id)
	}
}

// Bind implements secrets.Snapshot. The fetch is the catalog's, shared
// with lookups of the same secret.
func (s *snapshot) Bind(ctx context.Context) error {
	const op fault.Op = "cache.Bind"
	c := s.c
	k := s.id.key
	for range 2 {
		c.mu.Lock()
		if s.item != nil {
			c.mu.Unlock()
			return nil
		}
		f := c.fetchFlight(c.app(k.App), k, c.now())
		c.mu.Unlock()
		<-f.done
		c.mu.Lock()
		if f.item != nil {
			s.take(f.item) // a snapshot c.snaps does not name (pin) is bound by no one else
		}
		bound := s.item != nil
		var now store.Meta
		ks := c.app(k.App).keys[k.Name]
		present := ks.holds()
		if present {
			now = ks.snap.meta
		}
		c.mu.Unlock()
		switch {
		case bound:
			return nil
		case f.err != nil && !fault.Is(fault.NotFound, f.err):
			return fault.E(op, k.Path(), f.err)
		case !present:
			return fault.E(op, k.Path(), fault.NotFound, "removed since it was listed")
		case f.err == nil && !now.Revision().Equal(s.id.revision()):
			return fault.E(op, k.Path(), fault.Conflict, &secrets.Superseded{Key: k, Now: now})
		}
		// The fetch began before this snapshot was asked for: ask again.
	}
	return fault.E(op, k.Path(), fault.Unavailable, "the item could not be read")
}

func (id snapKey) revision() store.Revision {
	return store.Revision{Version: id.version, IV: []byte(id.iv)}
}

// decrypt makes s hold its plaintext: it binds s, then opens its item,
// sharing one unwrap among concurrent callers. It never gives up for a
// caller's cancellation: the origin's deadline bounds it.
func (s *snapshot) decrypt(ctx context.Context) error {
	c := s.c
	for {
		c.mu.Lock()
		s.vmu.RLock()
		has := s.has
		s.vmu.RUnlock()
		switch {
		case has:
			c.mu.Unlock()
			return nil
		case s.opening != nil:
			f := s.opening
			c.mu.Unlock()
			<-f.done
			if f.err != nil {
				return f.err
			}
			continue
		case s.broken != nil && c.now().Before(s.brokenAt.Add(c.opts.TTL)):
			// A tampered item is not unwrapped again: that would cost a
			// KMS call per read, and count again against the v1 limit.
			c.mu.Unlock()
			return s.broken
		case s.broken != nil:
			if err := s.repaired(ctx); err != nil {
				return err
			}
			continue
		case s.item == nil:
			c.mu.Unlock()
			if err := s.Bind(ctx); err != nil {
				s.noAnswer(err)
				return err
			}
			continue
		case s.meta.Size >= 0 && s.item.Size != s.meta.Size:
			// The file's size is the one listed, which the kernel reads
			// up to; the item read gives another for the same revision
			// (the listing and the read saw two versions of a forged
			// item). The decryption would check the item's own Size, not
			// the file's: no value may be served under a size it does
			// not have. Decided on clear metadata alone, before any
			// unwrap, so it tells nothing of a v1 item's padding.
			s.broken, s.brokenAt = fault.E(fault.Op("cache.Read"), s.id.key.Path(), fault.Integrity,
				"the store gave two sizes for one revision, "+strconv.FormatInt(s.meta.Size, 10)+" bytes when listed and "+
					strconv.FormatInt(s.item.Size, 10)+" when read: the item was modified"), c.now()
			c.mu.Unlock()
			return s.broken
		}
		f := newFlight(c.now())
		s.opening = f
		item := s.item
		c.mu.Unlock()
		if err := s.open(ctx, item, f); err != nil {
			return err
		}
	}
}

// open decrypts item, the opening flight f's, and applies the outcome:
// the plaintext held, or the failure remembered (an integrity failure for
// good: the revision never changes).
func (s *snapshot) open(ctx context.Context, item *store.Item, f *flight) error {
	c := s.c
	secret, err := c.origin.Open(context.WithoutCancel(ctx), item)
	var told []func()
	c.mu.Lock()
	s.opening, s.failed = nil, nil
	switch {
	case err != nil && !fault.Answered(err):
		s.failed = &failure{at: c.now(), err: err}
	case fault.Is(fault.Integrity, err) && !secrets.IsV1Refused(err):
		s.broken, s.brokenAt = err, c.now()
	case err == nil && s.pins > 0:
		if s.meta.Size < 0 {
			s.meta.Size = secret.Size // a legacy item: now its size is known
		}
		told = c.fill(s, secret.Value)
	case err == nil:
		secret.Value.Wipe() // released meanwhile: nobody may read it
	}
	c.mu.Unlock()
	tell(told)
	f.err = err
	close(f.done)
	return err
}

// repaired reads the item of a broken revision again, a TTL after it
// failed (c.mu held, and released): an operator may have repaired it in
// place, under the same revision (restored from a backup). It reports
// nil if the store now holds other bytes under it, which are then
// decrypted as a new item; else the failure, and the same bytes stay
// broken for another TTL, unwrapped no more (each unwrap would count
// again against the v1 limit).
func (s *snapshot) repaired(ctx context.Context) error {
	c := s.c
	was := s.item
	s.item, s.brokenAt = nil, c.now() // meanwhile, other readers get s.broken
	c.mu.Unlock()
	err := s.Bind(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil || s.item == nil:
		if s.item == nil {
			s.item = was
		}
		return s.broken
	case sameBytes(s.item, was):
		return s.broken
	}
	s.broken = nil
	return nil
}

// sameBytes reports whether two items of one revision hold the same
// protected bytes and the clear fields decryption reads.
func sameBytes(a, b *store.Item) bool {
	return a.MasterKeyID == b.MasterKeyID && a.Format == b.Format && a.Size == b.Size &&
		bytes.Equal(a.ProtectedDocumentKey, b.ProtectedDocumentKey) && bytes.Equal(a.ProtectedSecretValue, b.ProtectedSecretValue)
}

// noAnswer records that s could not be read for want of an answer (its
// item could not be fetched), for fallback.
func (s *snapshot) noAnswer(err error) {
	if fault.Answered(err) {
		return
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.failed = &failure{at: s.c.now(), err: err}
}

// maxCopyAttempts bounds how often a read retries when the plaintext it
// had decrypted was wiped (evicted by others' reads) before it could be
// copied.
const maxCopyAttempts = 3

// ReadAt implements secrets.Snapshot.
func (s *snapshot) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n := 0
	err := s.withValue(ctx, func(v crypto.Plaintext) {
		if off < int64(len(v)) {
			n = copy(p, v[off:])
		}
	})
	return n, err
}

// Value implements secrets.Snapshot.
func (s *snapshot) Value(ctx context.Context) (crypto.Plaintext, error) {
	var out crypto.Plaintext
	err := s.withValue(ctx, func(v crypto.Plaintext) { out = append(crypto.Plaintext{}, v...) })
	return out, err
}

// Size implements secrets.Snapshot.
func (s *snapshot) Size(ctx context.Context) (int64, error) {
	if m := s.Meta(); m.Size >= 0 {
		return m.Size, nil
	}
	if err := s.withValue(ctx, func(crypto.Plaintext) {}); err != nil {
		return 0, err
	}
	return s.Meta().Size, nil
}

// withValue calls use with the plaintext, under its read lock.
func (s *snapshot) withValue(ctx context.Context, use func(crypto.Plaintext)) error {
	const op fault.Op = "cache.Read"
	for range maxCopyAttempts {
		s.vmu.RLock()
		if s.has {
			use(s.value)
			s.vmu.RUnlock()
			s.Touch()
			return nil
		}
		s.vmu.RUnlock()
		if err := s.decrypt(ctx); err != nil {
			return err
		}
	}
	return fault.E(op, s.id.key.Path(), fault.Unavailable,
		"the value was wiped again before it could be read: more secrets are being read than --cache-size holds")
}
