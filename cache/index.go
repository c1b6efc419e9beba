package cache

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/sorted"
	"github.com/secretfs/secretfs/store"
)

// listingState is what the catalog knows of one listing: an
// application's, or the root's (the applications).
type listingState struct {
	listedAt time.Time // when the last complete listing began; zero if none
	listing  *flight   // a listing in flight
	failed   *failure  // the last listing got no answer, or none about any one name (an outage)
}

// fresh reports whether the listing is younger than the TTL, or no older
// than asOf (the start of a listing the caller waited for).
func (l *listingState) fresh(ttl time.Duration, now, asOf time.Time) bool {
	at := l.listedAt
	return !at.IsZero() && (now.Before(at.Add(ttl)) || (!asOf.IsZero() && !at.Before(asOf)))
}

// appIndex is what the catalog knows of one application.
type appIndex struct {
	listingState
	keys     map[string]*keyState
	sorted   []string  // the names of keys, sorted; nil when a name came or went since (see names)
	used     time.Time // when a caller last asked about the application (see unused)
	retrying bool      // a retry of a failed listing is scheduled (see retryListing)
}

// rootIndex is what the catalog knows of the applications: the last
// listing of them (a Scan on DynamoDB, the costliest call there is), kept
// for the TTL like an application's.
type rootIndex struct {
	listingState
	names []string // sorted
	// emptied are the applications that a removal through the catalog
	// may have emptied since the listing (until a listing of the
	// application says): the listing no longer vouches that they hold
	// secrets (see inFreshRootListing).
	emptied map[string]time.Time // when
}

// vouchesFor reports whether the last listing of the applications names
// app, and no removal through the catalog may have emptied it since.
// c.mu must be held.
func (r *rootIndex) vouchesFor(app string) bool {
	_, named := slices.BinarySearch(r.names, app)
	return named && r.emptied[app].IsZero()
}

// keyStatus is what the store said of a secret, as the catalog last
// heard it.
type keyStatus uint8

const (
	// keyUnknown: nothing heard, or forgotten after the store refused to
	// tell (AccessDenied): ask.
	keyUnknown keyStatus = iota
	// keyPresent: the store holds the revision snap, as of verified.
	keyPresent
	// keyAbsent: the store holds nothing, as of verified.
	keyAbsent
	// keyRefused: the store holds the revision snap, as of verified, but
	// its clear metadata is impossible (see checkMeta): it lists, and a
	// lookup fails with refusal.
	keyRefused
)

// keyState is what the catalog knows of one secret. Its status says what
// the store holds; the other fields say how fresh that is, and what the
// catalog does meanwhile.
type keyState struct {
	status   keyStatus
	verified time.Time // when the store said so (a fetch, a listing, a write through the catalog)
	// recheck is when a write through the catalog failed: what the
	// catalog knows may be wrong (a concurrent writer, or a write whose
	// outcome is unknown), so it asks the store before answering from
	// memory again. What it knew still stands for stale-if-error: a
	// failed write must not make the next lookups fail while the store
	// cannot be asked. Zero when nothing needs checking.
	recheck time.Time
	snap    *snapshot // keyPresent, keyRefused: the current revision, pinned by the index
	refusal error     // keyRefused: why it is not served
	// prev is the revision snap replaced while its plaintext was held
	// (it was being read), pinned by the index until snap is decrypted:
	// while the keys cannot decrypt snap, prev is served (see fallback).
	// prevSince is when snap replaced it.
	prev       *snapshot
	prevSince  time.Time
	fetch      *flight  // a fetch in flight
	failed     *failure // the last fetch got no answer (an outage)
	warned     bool     // a stale answer was announced since the store last answered
	prevWarned bool     // prev was announced since the keys last answered
	// removed is the revision a Delete through the catalog removed. It
	// is never made current again (its IV was fresh: no later write can
	// be it): a fetch that read it before the Delete, or a write of it
	// whose answer came after, ends too late to say what the store holds.
	removed store.Revision
}

// holds reports whether the store holds an item for the key, as far as
// the catalog knows.
func (ks *keyState) holds() bool {
	return ks != nil && (ks.status == keyPresent || ks.status == keyRefused)
}

// served reports whether the key's current revision may be served.
func (ks *keyState) served() bool { return ks != nil && ks.status == keyPresent }

// failure is a call that got no answer: when it ended and why.
type failure struct {
	at  time.Time
	err error
}

// recent reports whether f failed less than RetryAfter before now. c.mu
// must be held.
func (c *Catalog) recent(f *failure, now time.Time) bool {
	return f != nil && now.Before(f.at.Add(c.opts.RetryAfter))
}

// withinStale reports whether an answer the store gave at (zero: none)
// may still be given while the store cannot answer.
func (c *Catalog) withinStale(at, now time.Time) bool {
	return c.opts.StaleIfError > 0 && !at.IsZero() && !now.After(at.Add(c.opts.TTL+c.opts.StaleIfError))
}

// app returns app's index, making it, and records that it is in use.
// c.mu must be held.
func (c *Catalog) app(app string) *appIndex {
	a := c.apps[app]
	if a == nil {
		a = &appIndex{keys: map[string]*keyState{}}
		c.apps[app] = a
	}
	a.used = c.now()
	return a
}

// state returns what the index knows of name, making it.
func (a *appIndex) state(name string) *keyState {
	ks := a.keys[name]
	if ks == nil {
		ks = &keyState{}
		a.keys[name] = ks
		a.sorted = nil
	}
	return ks
}

// forget drops name from the index.
func (a *appIndex) forget(name string) {
	delete(a.keys, name)
	a.sorted = nil
}

// names returns the names of the index, sorted: sorted once for every
// List page that follows until a name comes or goes.
func (a *appIndex) names() []string {
	if a.sorted == nil {
		a.sorted = slices.Sorted(maps.Keys(a.keys))
	}
	return a.sorted
}

// holdsAny reports whether the index knows of a secret the store holds.
func (a *appIndex) holdsAny() bool {
	for _, ks := range a.keys {
		if ks.holds() {
			return true
		}
	}
	return false
}

// absentSince reports whether a listing found app empty within the TTL,
// or no earlier than asOf (the start of a listing the caller waited for),
// and nothing was written to it since. c.mu must be held.
func (c *Catalog) absentSince(app string, now, asOf time.Time) bool {
	if c.apps[app] != nil {
		return false
	}
	at, ok := c.absent.Peek(app)
	if !ok {
		return false
	}
	if now.Before(at.Add(c.opts.TTL)) || (!asOf.IsZero() && !at.Before(asOf)) {
		return true
	}
	c.absent.Remove(app)
	return false
}

// noteApp records in the root listing what the catalog learned of app
// since: it holds secrets (exists), or a listing found none. c.mu must
// be held.
func (c *Catalog) noteApp(app string, exists bool) {
	r := &c.root
	if r.listedAt.IsZero() {
		return
	}
	r.names = sorted.Set(r.names, app, exists)
}

// noteListed records what a complete listing of app at started told of
// the application itself: an application with no names left is
// forgotten (its index dropped) and remembered as absent for the TTL.
// c.mu must be held.
func (c *Catalog) noteListed(app string, a *appIndex, started time.Time) {
	if at, ok := c.root.emptied[app]; ok && at.Before(started) {
		delete(c.root.emptied, app) // this listing began after the removal: it knows
	}
	if len(a.keys) == 0 {
		if c.apps[app] == a {
			delete(c.apps, app)
		}
		c.absent.Add(app, started)
		c.noteApp(app, false)
		return
	}
	c.absent.Remove(app)
	c.noteApp(app, a.holdsAny())
}

// applyListing learns from metas, the whole listing of app as the store
// gave it at started: what changed, what appeared, and what went. Keys
// the catalog learned of after started are left alone. It returns the
// keys found changed or gone, and those that appeared. c.mu must be held.
func (c *Catalog) applyListing(a *appIndex, app string, metas []store.Meta, started time.Time) (changed, appeared []store.Key) {
	listed := make(map[string]bool, len(metas))
	for _, m := range metas {
		listed[m.Name] = true
		ks := a.state(m.Name)
		if ks.verified.After(started) {
			continue
		}
		k := store.Key{App: app, Name: m.Name}
		held := ks.holds()
		if c.setCurrent(k, ks, m, nil, started) {
			changed = append(changed, k)
		} else if !held {
			appeared = append(appeared, k)
		}
	}
	for name, ks := range a.keys {
		if listed[name] || ks.verified.After(started) {
			continue
		}
		k := store.Key{App: app, Name: name}
		if ks.holds() {
			changed = append(changed, k)
		}
		if ks.fetch == nil {
			c.dropSnap(ks)
			a.forget(name)
		} else {
			c.setAbsent(ks, started)
		}
	}
	return changed, appeared
}

// setCurrent records that the store holds meta (and item, when fetched)
// for k since at. It reports whether that is another revision than the
// current one the catalog knew. c.mu must be held.
func (c *Catalog) setCurrent(k store.Key, ks *keyState, meta store.Meta, item *store.Item, at time.Time) bool {
	c.answeredAt(k, ks, at)
	if ks.holds() && ks.snap.meta.Revision().Equal(meta.Revision()) && !ks.snap.relisted(meta) {
		if item != nil {
			c.attach(item)
		}
		return false
	}
	meta, refusal := c.checkMeta(k, meta)
	ks.status, ks.refusal = keyPresent, refusal
	if refusal != nil {
		ks.status = keyRefused
	}
	old := ks.snap
	ks.snap = c.pin(k, meta)
	if old != nil {
		c.replaced(k, ks, old, at)
	}
	if item != nil {
		c.attach(item)
	}
	return old != nil
}

// setAbsent records that the store holds nothing for the key since at.
// c.mu must be held.
func (c *Catalog) setAbsent(ks *keyState, at time.Time) {
	ks.verified, ks.failed, ks.warned = at, nil, false
	if !at.Before(ks.recheck) {
		ks.recheck = time.Time{}
	}
	ks.status = keyAbsent
	c.dropSnap(ks)
}

// answeredAt records that the store answered about k at at. c.mu must be
// held.
func (c *Catalog) answeredAt(k store.Key, ks *keyState, at time.Time) {
	ks.verified = at
	if !at.Before(ks.recheck) {
		ks.recheck = time.Time{}
	}
	c.endOutage(k, ks)
}

// endOutage forgets an outage of k: the store answered about it. The
// observer hears of the recovery if it heard of the outage. c.mu must be
// held.
func (c *Catalog) endOutage(k store.Key, ks *keyState) {
	ks.failed = nil
	if ks.warned {
		ks.warned = false
		go c.obs.Recovered(k)
	}
}

// checkMeta checks the clear metadata of a revision, which the store
// holds unauthenticated, against what a value may be: a malformed item is
// refused, and so is a Size over the
// store's limit (a file must never claim more bytes than a
// value may hold), and the revision is kept with its size unknown. The
// size a revision is read with is checked when it is decrypted.
func (c *Catalog) checkMeta(k store.Key, meta store.Meta) (store.Meta, error) {
	if meta.Invalid != nil { // a malformed item (store.Meta.Invalid)
		meta.Size = -1
		return meta, fault.E(k.Path(), fault.Integrity, meta.Invalid)
	}
	if limit := c.origin.MaxValueSize(); meta.Size > limit {
		err := fault.E(k.Path(), fault.Integrity, fmt.Sprintf(
			"the store says the value is %d bytes, over the store's limit of %d: refused", meta.Size, limit))
		meta.Size = -1
		return meta, err
	}
	return meta, nil
}

// replaced lets go of old, the revision of k that the current one
// replaced at at, unless it was being read: its plaintext is held, so it
// stays (pinned by the index) as ks.prev until the current one is
// decrypted (see fallback). A revision replaced before anyone read it
// leaves ks.prev as it was: the last value read, which a newer revision
// than the one that first replaced it must not make unservable. A
// revision whose Version went down is told to the observer. c.mu must be
// held.
func (c *Catalog) replaced(k store.Key, ks *keyState, old *snapshot, at time.Time) {
	if from, to := old.meta.Version, ks.snap.meta.Version; from > store.Unversioned && to < from && ks.snap.meta.Invalid == nil {
		if rb, ok := c.obs.(RollbackObserver); ok {
			go rb.RolledBack(k, from, to)
		}
	}
	if c.resident.holds(old) && ks.status == keyPresent {
		c.dropPrev(ks)
		ks.prev, ks.prevSince = old, at
		return
	}
	c.unpin(old)
	if ks.status != keyPresent || ks.prev == ks.snap {
		c.dropPrev(ks)
	}
}

// dropPrev lets go of the revision kept for the keys' outages. c.mu must
// be held.
func (c *Catalog) dropPrev(ks *keyState) {
	if ks.prev != nil {
		c.unpin(ks.prev)
		ks.prev = nil
	}
	ks.prevWarned = false
}

// dropSnap releases the index's pins on the current snapshot and on the
// one it replaced. c.mu must be held.
func (c *Catalog) dropSnap(ks *keyState) {
	c.dropPrev(ks)
	if ks.snap != nil {
		c.unpin(ks.snap)
		ks.snap = nil
	}
	ks.refusal = nil
}

// refuse forgets what the catalog knew of app/name after the store
// refused to tell (AccessDenied) and wipes its plaintext even where it is
// pinned: a host that lost access must stop serving the value. It
// returns the listeners of the wiped snapshots. c.mu must be held.
func (c *Catalog) refuse(a *appIndex, name string) []func() {
	ks := a.keys[name]
	if ks == nil {
		return nil
	}
	var told []func()
	for _, s := range []*snapshot{ks.snap, ks.prev} {
		if s != nil {
			told = append(told, c.resident.remove(s)...)
		}
	}
	c.dropSnap(ks)
	ks.status, ks.verified, ks.warned = keyUnknown, time.Time{}, false
	return told
}

// mayServeStale reports whether the index holds an answer about a secret
// that may still be given while the store cannot answer. c.mu must be
// held.
func (c *Catalog) mayServeStale(a *appIndex, now time.Time) bool {
	for _, ks := range a.keys {
		if ks.served() && c.withinStale(ks.verified, now) {
			return true
		}
	}
	return false
}

// unused reports whether nobody asked about a's application for longer
// than the TTL and the idle bound, and nothing outside the index pins a
// revision of it: its index is then dropped, and rebuilt by one listing
// if it is asked about again. c.mu must be held.
func (c *Catalog) unused(a *appIndex, now time.Time) bool {
	if a.listing != nil || a.retrying || now.Sub(a.used) <= max(c.opts.TTL, c.opts.Idle) {
		return false
	}
	for _, ks := range a.keys {
		if ks.fetch != nil || (ks.snap != nil && ks.snap.pins > 1) || (ks.prev != nil && ks.prev.pins > 1) {
			return false
		}
	}
	return true
}
