// Package cache is the mount's read path in memory: which secrets exist
// and which revision of each is current (revalidated against the store at
// most once per TTL, a whole application with one listing), and the
// plaintext of each revision, decrypted once and kept while it is read.
//
// Catalog implements secrets.Catalog in front of an Origin
// (secrets.Keeper). Its rules, in the order a reader meets them:
//
//   - Fresh: an answer older than the TTL is never given while the store
//     can be asked. Revalidating asks for metadata only (revision: Version
//     and IV) and decrypts nothing: an unchanged secret keeps its
//     plaintext, so steady reads of unchanged secrets cost no key unwrap.
//   - Stale if error: when the store cannot answer (down, frozen,
//     throttling, out of time), the last answer is served for up to
//     StaleIfError past the TTL, at once and without asking again more
//     often than RetryAfter. An answer is not an error: NotFound and
//     AccessDenied take effect at once.
//   - Bounded plaintext: a revision's plaintext is wiped when it has not
//     been read for Idle, when more than Size are held (least recently
//     read first), when nothing pins the revision any more, and at Close.
//     Its protected item stays while pinned, so a wiped revision can be
//     decrypted again, exactly as it was.
//
// The package never logs, never puts a value in an error, and holds no
// lock while it calls the origin.
package cache

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Origin is what a Catalog fronts: the store and the keys, always asked.
// secrets.Keeper is one. Every method bounds its own backend calls with a
// deadline; the catalog runs shared calls without its callers' contexts.
type Origin interface {
	// Fetch reads k's protected item, strongly consistent.
	Fetch(ctx context.Context, k store.Key) (*store.Item, error)
	// Open decrypts item without modifying it. The returned Meta has the
	// true plaintext Size; the caller owns the Value.
	Open(ctx context.Context, item *store.Item) (secrets.Secret, error)
	// Write seals and commits value, returning the item as stored.
	Write(ctx context.Context, k store.Key, value []byte, expected store.Revision) (*store.Item, error)
	Delete(ctx context.Context, k store.Key, expected store.Revision) error
	// ListAll lists app whole, each page one call under its own
	// deadline, and stops with an error at a listing that would not end.
	ListAll(ctx context.Context, app string) ([]store.Meta, error)
	Apps(ctx context.Context) ([]string, error)
	MaxValueSize() int64
}

// absentApps is how many applications found empty the catalog
// remembers (see Catalog.absent): about 100 bytes each.
const absentApps = 4096

// Defaults of Options.
const (
	DefaultSize       = 1024
	DefaultIdle       = 5 * time.Minute
	DefaultRetryAfter = time.Second
)

// Options configures a Catalog.
type Options struct {
	// TTL is how long an answer of the store stands before the catalog
	// asks again. Zero: every lookup asks.
	TTL time.Duration
	// StaleIfError is how long past its TTL an answer may still be given
	// while the store cannot be asked (RFC 5861's stale-if-error). Zero
	// disables it.
	StaleIfError time.Duration
	// Idle is how long a plaintext that nobody reads is kept;
	// DefaultIdle if <= 0.
	Idle time.Duration
	// Size is the most plaintexts kept at once; DefaultSize if <= 0.
	Size int
	// RetryAfter is how soon an origin that could not answer is asked
	// again; meanwhile lookups fail (or serve stale) at once, so that one
	// outage costs a syscall at most one deadline. DefaultRetryAfter if
	// <= 0.
	RetryAfter time.Duration
	// WriteOnly keeps no plaintext of what is written through the
	// catalog: a mount that may not read must not serve it either.
	WriteOnly bool
	// Observer is told what the catalog does (metrics, logs). Optional.
	Observer Observer
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Observer is told what a Catalog does. Its methods are called without
// the catalog's locks held, must return quickly and must not call back
// into the catalog. Nothing passed to it holds a value.
type Observer interface {
	// Looked is called once per Lookup answered: hit means from memory,
	// without waiting for the store.
	Looked(hit bool)
	// Revalidated is called when a listing of app has revalidated what
	// the catalog knew of it; changed counts the secrets found changed
	// or removed.
	Revalidated(app string, changed int)
	// Stale is called for each answer given past its TTL because the
	// store could not be asked; first is true for the first such answer
	// about k since the store last answered.
	Stale(k store.Key, cause error, first bool)
	// Recovered is called when the store answers about k again after
	// stale answers.
	Recovered(k store.Key)
}

// Catalog implements secrets.Catalog. Safe for concurrent use.
type Catalog struct {
	origin Origin
	opts   Options
	obs    Observer

	// mu guards everything below and the bookkeeping fields of every
	// snapshot (pins, item, listeners); a snapshot's value has its own
	// lock, taken after mu, never before.
	mu   sync.Mutex
	apps map[string]*appIndex
	root rootIndex
	// absent holds the applications a listing found empty, and when:
	// within the TTL a lookup of one asks nobody. It is bounded (an LRU),
	// so that probing many names that are not applications (a `stat` of
	// each) costs one listing each and no lasting memory; their indexes
	// are dropped.
	absent   *lru.Cache[string, time.Time]
	snaps    map[snapKey]*snapshot  // every snapshot pinned by the index or a caller
	held     map[*snapshot]struct{} // snapshots holding plaintext
	watchers []func(store.Key)
	// storeDown and keysDown are the last calls to the store and to the
	// key service that got no answer, until one gets an answer: within
	// RetryAfter of one, every call of that kind fails at once. An outage
	// then costs a syscall one deadline, not one per request the kernel
	// makes for it (a lookup, a revalidation, the read that follows).
	storeDown, keysDown *failure

	stop  chan struct{}
	done  chan struct{}
	after func(time.Duration, func()) // time.AfterFunc; tests drive it by their clock
}

var _ secrets.Catalog = (*Catalog)(nil)

// listingState is what the catalog knows of one listing: an
// application's, or the root's (the applications).
type listingState struct {
	listedAt time.Time // when the last complete listing began; zero if none
	listing  *flight   // a listing in flight
	failed   *failure  // the last listing got no answer
}

// appIndex is what the catalog knows of one application.
type appIndex struct {
	listingState
	keys     map[string]*keyState
	used     time.Time // when a caller last asked about the application (see sweep)
	retrying bool      // a retry of a failed listing is scheduled (see retryListing)
}

// rootIndex is what the catalog knows of the applications: the last
// listing of them (a Scan on DynamoDB, the costliest call there is), kept
// for the TTL like an application's.
type rootIndex struct {
	listingState
	names []string // sorted
}

// state returns what the index knows of name, making it.
func (a *appIndex) state(name string) *keyState {
	ks := a.keys[name]
	if ks == nil {
		ks = &keyState{}
		a.keys[name] = ks
	}
	return ks
}

// keyState is what the catalog knows of one secret.
type keyState struct {
	verified time.Time // when the store said so (a fetch, a listing, a write through the catalog)
	// recheck is when a write through the catalog failed: what the
	// catalog knows may be wrong (a concurrent writer, or a write whose
	// outcome is unknown), so it asks the store before answering from
	// memory again. What it knew still stands for stale-if-error: a
	// failed write must not make the next lookups fail while the store
	// cannot be asked. Zero when nothing needs checking.
	recheck time.Time
	present bool      // false: the store said there is no such secret
	snap    *snapshot // the current revision (present only), pinned by the index
	// refused, when set, is why the current revision is not served: its
	// clear metadata is impossible (a Size over the store's limit). The
	// name lists; a lookup fails with it.
	refused error
	// prev is the revision snap replaced while its plaintext was held
	// (it was being read), pinned by the index until snap is decrypted:
	// while the keys cannot decrypt snap, prev is served (stale-if-error
	// for the key service). prevSince is when snap replaced it.
	prev      *snapshot
	prevSince time.Time
	fetch     *flight  // a fetch in flight
	failed    *failure // the last fetch got no answer
	stale     bool     // answered stale since the store last answered
	prevStale bool     // prev served since the keys last answered
}

// failure is a call that got no answer: when it ended and why.
type failure struct {
	at  time.Time
	err error
}

// flight is a backend call that callers share. err is set before done is
// closed; its result is applied to the catalog by the flight itself.
type flight struct {
	started time.Time // what it tells is true as of then
	done    chan struct{}
	err     error
}

// New returns a Catalog in front of origin. Close it to stop its idle
// sweeper and wipe what it holds.
func New(origin Origin, opts Options) *Catalog {
	if opts.Size <= 0 {
		opts.Size = DefaultSize
	}
	if opts.Idle <= 0 {
		opts.Idle = DefaultIdle
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	absent, err := lru.New[string, time.Time](absentApps)
	if err != nil {
		panic(err) // only for a size below 1
	}
	c := &Catalog{
		origin: origin, opts: opts, obs: opts.Observer, absent: absent,
		apps: map[string]*appIndex{}, snaps: map[snapKey]*snapshot{}, held: map[*snapshot]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{}),
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	go c.sweep()
	return c
}

// Close stops the idle sweeper and wipes every plaintext held. Snapshots
// still pinned can decrypt again if read.
func (c *Catalog) Close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	c.mu.Lock()
	var told []func()
	for s := range c.held {
		told = append(told, c.unhold(s)...)
	}
	c.mu.Unlock()
	c.tell(told)
}

// Held returns how many secrets the catalog holds decrypted.
func (c *Catalog) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

func (c *Catalog) now() time.Time { return c.opts.Now() }

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

// app returns app's index, making it. c.mu must be held.
func (c *Catalog) app(app string) *appIndex {
	a := c.apps[app]
	if a == nil {
		a = &appIndex{keys: map[string]*keyState{}}
		c.apps[app] = a
	}
	a.used = c.now()
	return a
}

// OnChange registers f, called from its own goroutine with every secret
// whose current revision the catalog learned from the store has changed
// or gone (not for changes made through the catalog itself).
func (c *Catalog) OnChange(f func(store.Key)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchers = append(c.watchers, f)
}

func (c *Catalog) changed(keys []store.Key) {
	if len(keys) == 0 {
		return
	}
	c.mu.Lock()
	ws := c.watchers
	c.mu.Unlock()
	for _, w := range ws {
		go func() {
			for _, k := range keys {
				w(k)
			}
		}()
	}
}

// Lookup implements secrets.Catalog.
func (c *Catalog) Lookup(ctx context.Context, k store.Key) (secrets.Entry, error) {
	const op fault.Op = "cache.Lookup"
	if err := k.Validate(); err != nil {
		return secrets.Entry{}, fault.E(op, err)
	}
	hit := true
	defer func() { c.obs.Looked(hit) }()
	var asOf time.Time  // once a call was waited for: what it told stands, whatever the TTL
	var tried *snapshot // the revision this lookup tried to decrypt (see mustTry)
	for {
		c.mu.Lock()
		now := c.now()
		if c.absentSince(k.App, now, asOf) {
			c.mu.Unlock()
			return secrets.Entry{}, fault.E(op, k.Path(), fault.NotFound, "no such application")
		}
		a := c.app(k.App)
		ks := a.keys[k.Name]
		if fresh, until := c.fresh(a, ks, now, asOf); fresh {
			if ks == nil || !ks.present {
				c.mu.Unlock()
				return secrets.Entry{}, fault.E(op, k.Path(), fault.NotFound)
			}
			if ks.refused != nil {
				c.mu.Unlock()
				return secrets.Entry{}, ks.refused
			}
			if e, ok := c.prevAnswer(ks, k, now); ok {
				c.mu.Unlock()
				return e, nil
			}
			if c.mustTry(ks, tried) {
				tried, hit = c.try(ctx, k, ks), false
				continue
			}
			e := secrets.Entry{Meta: ks.snap.meta, Fresh: until.Sub(now)}
			if ks.snap.item != nil {
				c.mu.Unlock()
				return e, nil
			}
			// Fresh, but known only from a listing: read the item now,
			// so that the revision the name is bound to can be read
			// (see Snapshot.Bind).
			f, fail := c.fetchFlight(a, k, now)
			c.mu.Unlock()
			if fail != nil {
				return e, nil // the name stands; a read will report the failure
			}
			hit = false
			<-f.done
			if f.err != nil && !fault.Answered(f.err) {
				return e, nil
			}
			asOf = f.started
			continue
		}
		f, fail, outage := c.revalidation(a, ks, k, now)
		if fail != nil || outage {
			// The store did not answer the last time it was asked: give
			// the last answer at once, if it may be given, while f (if
			// any) asks again in the background.
			cause := f.errOr(fail)
			if e, ok := c.staleAnswer(ks, k, cause); ok {
				if c.mustTry(ks, tried) && e.Revision().Equal(ks.snap.meta.Revision()) {
					tried, hit = c.try(ctx, k, ks), false
					continue
				}
				c.mu.Unlock()
				return e, nil
			}
		}
		c.mu.Unlock()
		if fail != nil {
			return secrets.Entry{}, fault.E(op, k.Path(), fail.err)
		}
		hit = false
		<-f.done // never abandoned: each backend call has its own deadline
		asOf = f.started
		switch {
		case f.err == nil:
		case fault.Answered(f.err) && !fault.Is(fault.NotFound, f.err):
			return secrets.Entry{}, fault.E(op, k.Path(), f.err)
		case !fault.Answered(f.err):
			c.mu.Lock()
			ks = a.keys[k.Name]
			e, ok := c.staleAnswer(ks, k, f.err)
			if ok && c.mustTry(ks, tried) && e.Revision().Equal(ks.snap.meta.Revision()) {
				tried, hit = c.try(ctx, k, ks), false
				continue
			}
			c.mu.Unlock()
			if ok {
				return e, nil
			}
			return secrets.Entry{}, fault.E(op, k.Path(), f.err)
		}
	}
}

// mustTry reports whether a lookup must try to decrypt k's current
// revision before it answers with it: a revision read before (ks.prev)
// could be served instead, the current one is not held, and the lookup
// has not tried it yet (tried). Whatever the answer (fresh or stale), a
// name is not pointed at a revision that cannot be read while the last
// value read could be served. c.mu must be held.
func (c *Catalog) mustTry(ks *keyState, tried *snapshot) bool {
	return ks != nil && ks.present && ks.refused == nil && ks.prev != nil && ks.snap != tried && !c.holds(ks.snap)
}

// try decrypts ks's current revision, which replaced one being read, and
// returns it. c.mu must be held; it is released. A failure for want of an
// answer leaves ks.prev to be served (see fallback); any other outcome
// lets it go.
func (c *Catalog) try(ctx context.Context, k store.Key, ks *keyState) *snapshot {
	snap := ks.snap
	c.mu.Unlock()
	c.settlePrev(k, snap, snap.decrypt(ctx))
	return snap
}

// prevAnswer answers with the revision a newer one replaced, while the
// newer one cannot be decrypted (see fallback): stale-if-error for the
// keys. c.mu must be held.
func (c *Catalog) prevAnswer(ks *keyState, k store.Key, now time.Time) (secrets.Entry, bool) {
	prev, cause := c.fallback(ks, now)
	if prev == nil {
		return secrets.Entry{}, false
	}
	first := !ks.prevStale
	ks.prevStale = true
	go c.obs.Stale(k, cause, first)
	return secrets.Entry{Meta: prev.meta, Fresh: c.opts.RetryAfter, Stale: true}, true
}

// fallback returns the revision kept from before (ks.prev), and why, when
// it is what k must be answered with now: the current revision cannot be
// decrypted for want of an answer (the key service, or the store for its
// item, did not answer a moment ago), and the kept one is held and within
// the stale window. Every answer about k (Lookup, a stale answer, Known)
// goes through it, so that they agree: an open checks the revision it
// was looked up as against Known. c.mu must be held.
func (c *Catalog) fallback(ks *keyState, now time.Time) (*snapshot, error) {
	if ks.prev == nil {
		return nil, nil
	}
	if c.holds(ks.snap) || !c.holds(ks.prev) {
		// The newer one was decrypted meanwhile, or the older one's
		// plaintext was wiped (idle): it has nothing left to offer.
		c.dropPrev(ks)
		return nil, nil
	}
	cause := c.keysFailing(ks.snap, now)
	if cause == nil || !c.withinStale(ks.prevSince, now) {
		return nil, nil
	}
	return ks.prev, cause
}

// keysFailing returns why s could not be decrypted a moment ago for want
// of an answer, or nil. c.mu must be held.
func (c *Catalog) keysFailing(s *snapshot, now time.Time) error {
	switch {
	case c.recent(s.failed, now):
		return s.failed.err
	case c.recent(c.keysDown, now):
		return c.keysDown.err
	case s.item == nil && c.recent(c.storeDown, now):
		return c.storeDown.err
	}
	return nil
}

// settlePrev applies the outcome of decrypting snap, the current revision
// of k that replaced a held one: decrypted, or refused with an answer (a
// tampered item, a key that refuses), the replaced one is let go; for
// want of an answer, it stays to be served (see prevAnswer).
func (c *Catalog) settlePrev(k store.Key, snap *snapshot, err error) {
	if err != nil && !fault.Answered(err) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.apps[k.App]; a != nil {
		if ks := a.keys[k.Name]; ks != nil && ks.snap == snap {
			c.dropPrev(ks)
		}
	}
}

// holds reports whether s's plaintext is in memory. c.mu must be held.
func (c *Catalog) holds(s *snapshot) bool {
	_, ok := c.held[s]
	return ok
}

// errOr returns the failure's error, or for a flight in flight after an
// earlier failure, an error saying so.
func (f *flight) errOr(fail *failure) error {
	if fail != nil {
		return fail.err
	}
	return fault.E(fault.Unavailable, "the store did not answer the last time it was asked")
}

// fresh reports whether what the catalog knows of the key (ks, or its
// absence from a listing of a) still stands, and until when: it is
// younger than the TTL, or no older than asOf (the start of a call the
// caller waited for, which answers it even with a TTL of zero). c.mu must
// be held.
func (c *Catalog) fresh(a *appIndex, ks *keyState, now, asOf time.Time) (bool, time.Time) {
	at := a.listedAt
	if ks != nil && !ks.verified.IsZero() {
		at = ks.verified
	}
	until := at.Add(c.opts.TTL)
	if ks != nil && !ks.recheck.IsZero() && (asOf.IsZero() || asOf.Before(ks.recheck)) {
		return false, until // a write failed since: ask first
	}
	return !at.IsZero() && (now.Before(until) || (!asOf.IsZero() && !at.Before(asOf))), until
}

// revalidation returns the flight that will tell what k is now, starting
// it if need be, or the failure of a recent attempt if the origin was
// asked less than RetryAfter ago. outage reports that the last attempt
// got no answer. A known secret is revalidated with its whole application
// (one listing); an unknown one, in an application never listed, with a
// fetch of its item. c.mu must be held.
func (c *Catalog) revalidation(a *appIndex, ks *keyState, k store.Key, now time.Time) (f *flight, fail *failure, outage bool) {
	if (ks != nil && ks.present) || !a.listedAt.IsZero() {
		f, fail = c.listingFlight(a, k.App, now)
		return f, fail, a.failed != nil
	}
	f, fail = c.fetchFlight(a, k, now)
	return f, fail, ks != nil && ks.failed != nil
}

// staleAnswer returns the last answer the store gave about k, past its
// TTL, when the store cannot answer now (cause), if it is still within
// the stale window. c.mu must be held.
func (c *Catalog) staleAnswer(ks *keyState, k store.Key, cause error) (secrets.Entry, bool) {
	if ks == nil || !ks.present || c.opts.StaleIfError <= 0 || fault.Answered(cause) ||
		c.now().After(ks.verified.Add(c.opts.TTL+c.opts.StaleIfError)) {
		return secrets.Entry{}, false
	}
	first := !ks.stale
	ks.stale = true
	go c.obs.Stale(k, cause, first)
	meta := ks.snap.meta
	if prev, _ := c.fallback(ks, c.now()); prev != nil {
		meta = prev.meta // the current one cannot be read either
	}
	return secrets.Entry{Meta: meta, Fresh: c.opts.RetryAfter, Stale: true}, true
}

// recent reports whether f failed less than RetryAfter before now. c.mu
// must be held.
func (c *Catalog) recent(f *failure, now time.Time) bool {
	return f != nil && now.Before(f.at.Add(c.opts.RetryAfter))
}

// outcome is what storeDown or keysDown becomes after a call that
// returned err: any answer clears it; silence sets it. c.mu must be held.
func (c *Catalog) outcome(err error) *failure {
	if err == nil || fault.Answered(err) {
		return nil
	}
	return &failure{at: c.now(), err: err}
}

// fetchFlight returns the fetch of k's item in flight, starting one, or
// the recent failure that stops it. c.mu must be held.
func (c *Catalog) fetchFlight(a *appIndex, k store.Key, now time.Time) (*flight, *failure) {
	ks := a.keys[k.Name]
	if ks != nil && ks.fetch != nil {
		return ks.fetch, nil
	}
	if ks != nil && c.recent(ks.failed, now) {
		return nil, ks.failed
	}
	if c.recent(c.storeDown, now) {
		return nil, c.storeDown
	}
	if ks == nil {
		ks = a.state(k.Name)
	}
	f := &flight{started: now, done: make(chan struct{})}
	ks.fetch = f
	go c.runFetch(k, f, now)
	return f, nil
}

// runFetch reads k's item and applies what the store said.
func (c *Catalog) runFetch(k store.Key, f *flight, started time.Time) {
	item, err := c.origin.Fetch(context.Background(), k)
	c.mu.Lock()
	c.storeDown = c.outcome(err)
	a := c.app(k.App)
	ks := a.state(k.Name)
	if ks.fetch == f {
		ks.fetch = nil
	}
	var changed []store.Key
	var told []func()
	switch {
	case err == nil:
		if ks.verified.After(started) && ks.present && !ks.snap.meta.Revision().Equal(item.Revision()) {
			// A write through the catalog finished after this fetch
			// began: it is newer. The fetched item may still bind a
			// snapshot of its own revision.
			c.attach(item)
			break
		}
		if c.setCurrent(k, ks, item.Meta, item, started) {
			changed = append(changed, k)
		}
	case fault.Is(fault.NotFound, err):
		if !ks.verified.After(started) {
			if ks.present {
				changed = append(changed, k)
			}
			c.setAbsent(k, ks, started)
		}
	case fault.Is(fault.Permission, err):
		// An answer, not an outage: not remembered as a failure, so that
		// access granted again works at the next lookup.
		told = c.refuse(a, k.Name)
	case !fault.Answered(err):
		ks.failed = &failure{at: c.now(), err: err}
	}
	c.mu.Unlock()
	c.tell(told)
	c.changed(changed)
	f.err = err
	close(f.done)
}

// listingFlight returns app's listing in flight, starting one, or the
// recent failure that stops it. c.mu must be held.
func (c *Catalog) listingFlight(a *appIndex, app string, now time.Time) (*flight, *failure) {
	return c.flightOf(&a.listingState, now, func(f *flight) { go c.runListing(app, f, f.started) })
}

// flightOf returns l's listing in flight, or the recent failure that
// stops one, or starts one with run. c.mu must be held.
func (c *Catalog) flightOf(l *listingState, now time.Time, run func(*flight)) (*flight, *failure) {
	if l.listing != nil {
		return l.listing, nil
	}
	if c.recent(l.failed, now) {
		return nil, l.failed
	}
	if c.recent(c.storeDown, now) {
		return nil, c.storeDown
	}
	f := &flight{started: now, done: make(chan struct{})}
	l.listing = f
	run(f)
	return f, nil
}

// runListing lists app whole and applies it.
func (c *Catalog) runListing(app string, f *flight, started time.Time) {
	metas, err := c.origin.ListAll(context.Background(), app)
	c.mu.Lock()
	c.storeDown = c.outcome(err)
	a := c.app(app)
	a.listing = nil
	var changed []store.Key
	var told []func()
	switch {
	case err == nil:
		a.failed = nil
		a.listedAt = started
		changed = c.applyListing(a, app, metas, "", "", started)
		c.noteListed(app, a, started)
	case fault.Is(fault.Permission, err):
		a.listedAt = time.Time{} // nothing it listed stands
		for name := range a.keys {
			told = append(told, c.refuse(a, name)...)
		}
	default:
		a.failed = &failure{at: c.now(), err: err}
		c.scheduleRetry(app, a)
	}
	c.mu.Unlock()
	c.tell(told)
	if err == nil {
		c.obs.Revalidated(app, len(changed))
	}
	c.changed(changed)
	f.err = err
	close(f.done)
}

// noteListed records what a complete listing of app at started told of
// the application itself: an application with no names left is
// forgotten (its index dropped) and remembered as absent for the TTL.
// c.mu must be held.
func (c *Catalog) noteListed(app string, a *appIndex, started time.Time) {
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

// scheduleRetry asks the store again about app, in the background,
// RetryAfter after its revalidation got no answer (see retryListing).
// c.mu must be held.
func (c *Catalog) scheduleRetry(app string, a *appIndex) {
	if a.retrying {
		return
	}
	a.retrying = true
	c.after(c.opts.RetryAfter, func() { c.retryListing(app) })
}

// retryListing lists app again while its revalidations get no answer and
// the catalog holds answers about it that it may still serve (within the
// stale window). A lookup during an outage is answered at once and asks
// again only in the background; were nothing else to ask, the first read
// after the store came back would get the stale answer. With these
// retries the catalog learns that the store is back within RetryAfter,
// and the next read is fresh.
func (c *Catalog) retryListing(app string) {
	c.mu.Lock()
	a := c.apps[app]
	if a == nil {
		c.mu.Unlock()
		return
	}
	a.retrying = false
	now := c.now()
	select {
	case <-c.stop:
		c.mu.Unlock()
		return
	default:
	}
	if a.failed == nil || a.listing != nil || !c.mayServeStale(a, now) {
		c.mu.Unlock()
		return
	}
	f := &flight{started: now, done: make(chan struct{})}
	a.listing = f
	c.mu.Unlock()
	c.runListing(app, f, now)
}

// mayServeStale reports whether the index holds an answer about a secret
// that may still be given while the store cannot answer. c.mu must be
// held.
func (c *Catalog) mayServeStale(a *appIndex, now time.Time) bool {
	for _, ks := range a.keys {
		if ks.present && c.withinStale(ks.verified, now) {
			return true
		}
	}
	return false
}

// holdsAny reports whether the index knows of a secret present.
func (a *appIndex) holdsAny() bool {
	for _, ks := range a.keys {
		if ks.present {
			return true
		}
	}
	return false
}

// applyListing learns from metas, the listing of app's names in (after,
// through] (through "" meaning to the end) as the store gave it at
// started: what changed, what appeared, and what went. Keys the catalog
// learned of after started are left alone. It returns the keys found
// changed or gone. c.mu must be held.
func (c *Catalog) applyListing(a *appIndex, app string, metas []store.Meta, after, through string, started time.Time) (changed []store.Key) {
	listed := make(map[string]bool, len(metas))
	for _, m := range metas {
		listed[m.Name] = true
		ks := a.state(m.Name)
		if ks.verified.After(started) {
			continue
		}
		k := store.Key{App: app, Name: m.Name}
		if c.setCurrent(k, ks, m, nil, started) {
			changed = append(changed, k)
		}
	}
	for name, ks := range a.keys {
		if listed[name] || name <= after || (through != "" && name > through) || ks.verified.After(started) {
			continue
		}
		k := store.Key{App: app, Name: name}
		if ks.present {
			changed = append(changed, k)
		}
		if ks.fetch == nil {
			c.dropSnap(ks)
			delete(a.keys, name)
		} else {
			c.setAbsent(k, ks, started)
		}
	}
	return changed
}

// setCurrent records that the store holds meta (and item, when fetched)
// for k since at. It reports whether that is another revision than the
// current one the catalog knew. c.mu must be held.
func (c *Catalog) setCurrent(k store.Key, ks *keyState, meta store.Meta, item *store.Item, at time.Time) bool {
	ks.verified, ks.failed = at, nil
	if !at.Before(ks.recheck) {
		ks.recheck = time.Time{}
	}
	if ks.stale {
		ks.stale = false
		go c.obs.Recovered(k)
	}
	same := ks.present && ks.snap != nil && ks.snap.meta.Revision().Equal(meta.Revision())
	ks.present = true
	if same {
		if item != nil {
			c.attach(item)
		}
		return false
	}
	meta, ks.refused = c.checkMeta(k, meta)
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

// checkMeta checks the clear metadata of a revision, which the store
// holds unauthenticated, against what a value may be: a Size over the
// store's limit is refused (a file must never claim more bytes than a
// value may hold), and the revision is kept with its size unknown. The
// size a revision is read with is checked when it is decrypted.
func (c *Catalog) checkMeta(k store.Key, meta store.Meta) (store.Meta, error) {
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
// decrypted (see prevAnswer). A revision replaced before anyone read it
// leaves ks.prev as it was: the last value read, which a newer revision
// than the one that first replaced it must not make unservable. A revision whose Version went down is told
// to the observer: a rollback of the item, or its removal and creation
// elsewhere. c.mu must be held.
func (c *Catalog) replaced(k store.Key, ks *keyState, old *snapshot, at time.Time) {
	if from, to := old.meta.Version, ks.snap.meta.Version; from > store.Unversioned && to < from {
		if rb, ok := c.obs.(RollbackObserver); ok {
			go rb.RolledBack(k, from, to)
		}
	}
	if c.holds(old) && ks.refused == nil {
		// The newest revision that was being read: served while the
		// current one cannot be decrypted.
		c.dropPrev(ks)
		ks.prev, ks.prevSince = old, at
		return
	}
	// A revision nobody read replaced: the one kept from before, if any,
	// is still the last value read, and stays.
	c.unpin(old)
	if ks.refused != nil || ks.prev == ks.snap {
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
	if ks.prevStale {
		ks.prevStale = false
	}
}

// setAbsent records that the store holds nothing for k since at. c.mu
// must be held.
func (c *Catalog) setAbsent(k store.Key, ks *keyState, at time.Time) {
	ks.verified, ks.failed, ks.present, ks.stale = at, nil, false, false
	if !at.Before(ks.recheck) {
		ks.recheck = time.Time{}
	}
	c.dropSnap(ks)
}

// dropSnap releases the index's pins on the current snapshot and on the
// one it replaced. c.mu must be held.
func (c *Catalog) dropSnap(ks *keyState) {
	c.dropPrev(ks)
	if ks.snap != nil {
		c.unpin(ks.snap)
		ks.snap = nil
	}
	ks.refused = nil
}

// refuse forgets what the catalog knew of app/name after the store
// refused to tell (AccessDenied) and wipes its plaintext even where it is
// pinned: a host that lost access must stop serving the value. It
// returns the wiped snapshots. c.mu must be held.
func (c *Catalog) refuse(a *appIndex, name string) []func() {
	ks := a.keys[name]
	if ks == nil {
		return nil
	}
	var told []func()
	for _, s := range []*snapshot{ks.snap, ks.prev} {
		if s != nil && c.holds(s) {
			told = append(told, c.unhold(s)...)
		}
	}
	c.dropSnap(ks)
	ks.present, ks.verified, ks.stale = false, time.Time{}, false
	return told
}

// Known implements secrets.Catalog: the revision a lookup would answer
// with now, without asking anyone.
func (c *Catalog) Known(k store.Key) (store.Meta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.apps[k.App]
	if a == nil {
		return store.Meta{}, false
	}
	ks := a.keys[k.Name]
	if ks == nil || !ks.present || ks.refused != nil {
		return store.Meta{}, false
	}
	if prev, _ := c.fallback(ks, c.now()); prev != nil {
		return prev.meta, true
	}
	return ks.snap.meta, true
}

// HasSecrets implements secrets.Catalog: from a listing no older than the
// TTL, else from a new one (stale if the store cannot answer).
func (c *Catalog) HasSecrets(ctx context.Context, app string) (bool, error) {
	const op fault.Op = "cache.HasSecrets"
	absent, err := c.listed(app)
	if err != nil {
		return false, fault.E(op, fault.Path(app), err)
	}
	if absent {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.app(app).holdsAny() {
		return true, nil
	}
	c.noteApp(app, false) // its last secret was removed through the catalog
	return false, nil
}

// listPage is how many names a page of List holds when the caller lets
// the catalog choose.
const listPage = 1000

// List implements secrets.Catalog: a page of the application's listing,
// no older than the TTL. The listing is the one revalidation makes, so a
// listing of an application is one more only when the TTL has passed;
// while the store cannot answer, it is the last one, within the stale
// window.
func (c *Catalog) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	const op fault.Op = "cache.List"
	absent, err := c.listed(app)
	if err != nil {
		return nil, "", fault.E(op, fault.Path(app), err)
	}
	if absent {
		return nil, "", nil
	}
	if limit <= 0 {
		limit = listPage
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for name, ks := range c.app(app).keys {
		if ks.present && name > after {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	next := ""
	if len(names) > limit {
		names = names[:limit]
		next = names[limit-1]
	}
	page := make([]store.Meta, len(names))
	for i, name := range names {
		page[i] = c.apps[app].keys[name].snap.meta
	}
	return page, next, nil
}

// listed makes sure the catalog holds a listing of app no older than the
// TTL (see await). It reports absent for an application a listing found
// empty within the TTL: such an application has no index (see absent).
func (c *Catalog) listed(app string) (absent bool, err error) {
	if err := store.ValidName(app); err != nil {
		return false, err
	}
	err = c.await(func(now, asOf time.Time) (*listingState, bool) {
		if c.absentSince(app, now, asOf) {
			return nil, true
		}
		a := c.app(app)
		a.used = now
		return &a.listingState, false
	}, func(f *flight) { go c.runListing(app, f, f.started) })
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apps[app] == nil, nil
}

// await makes sure the listing that state returns (under c.mu; done
// true: nothing needs listing) is no older than the TTL: from memory,
// else from a new listing started with run (which every caller at the
// time shares), else, while the store cannot answer, the last one if it
// is within the stale window. Like every call of the catalog to its
// origin, it runs without the caller's cancellation: a mount's request is
// cancelled when the process that made it catches a signal, and must not
// fail for that (only a fatal signal interrupts a read).
func (c *Catalog) await(state func(now, asOf time.Time) (l *listingState, done bool), run func(*flight)) error {
	var asOf time.Time
	for {
		c.mu.Lock()
		now := c.now()
		l, done := state(now, asOf)
		if done || l.fresh(c.opts.TTL, now, asOf) {
			c.mu.Unlock()
			return nil
		}
		f, fail := c.flightOf(l, now, run)
		stale := c.withinStale(l.listedAt, now)
		if fail != nil || l.failed != nil {
			if cause := f.errOr(fail); stale && !fault.Answered(cause) {
				c.mu.Unlock()
				return nil
			}
		}
		c.mu.Unlock()
		if fail != nil {
			return fail.err
		}
		<-f.done
		asOf = f.started
		if f.err != nil {
			if stale && !fault.Answered(f.err) {
				return nil
			}
			return f.err
		}
	}
}

// fresh reports whether the listing is younger than the TTL, or no older
// than asOf (the start of a listing the caller waited for).
func (l *listingState) fresh(ttl time.Duration, now, asOf time.Time) bool {
	at := l.listedAt
	return !at.IsZero() && (now.Before(at.Add(ttl)) || (!asOf.IsZero() && !at.Before(asOf)))
}

// withinStale reports whether an answer the store gave at (zero: none)
// may still be given while the store cannot answer.
func (c *Catalog) withinStale(at, now time.Time) bool {
	return c.opts.StaleIfError > 0 && !at.IsZero() && !now.After(at.Add(c.opts.TTL+c.opts.StaleIfError))
}

// Apps implements secrets.Catalog: the applications from a listing no
// older than the TTL, as an application's secrets are (see await).
func (c *Catalog) Apps(ctx context.Context) ([]string, error) {
	const op fault.Op = "cache.Apps"
	err := c.await(func(time.Time, time.Time) (*listingState, bool) { return &c.root.listingState, false },
		func(f *flight) { go c.runApps(f) })
	if err != nil {
		return nil, fault.E(op, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.root.names), nil
}

// runApps lists the applications and applies the listing.
func (c *Catalog) runApps(f *flight) {
	names, err := c.origin.Apps(context.Background())
	c.mu.Lock()
	c.storeDown = c.outcome(err)
	r := &c.root
	r.listing = nil
	switch {
	case err == nil:
		r.names, r.listedAt, r.failed = names, f.started, nil
		for _, n := range names {
			c.absent.Remove(n)
		}
	case fault.Answered(err):
		r.names, r.listedAt = nil, time.Time{} // nothing it listed stands
	default:
		r.failed = &failure{at: c.now(), err: err}
	}
	c.mu.Unlock()
	f.err = err
	close(f.done)
}

// noteApp records in the root listing what the catalog learned of app
// since: it holds secrets (exists), or a listing found none. c.mu must
// be held.
func (c *Catalog) noteApp(app string, exists bool) {
	r := &c.root
	if r.listedAt.IsZero() {
		return
	}
	i, found := slices.BinarySearch(r.names, app)
	switch {
	case exists && !found:
		r.names = slices.Insert(r.names, i, app)
	case !exists && found:
		r.names = slices.Delete(r.names, i, i+1)
	}
}

// MaxValueSize implements secrets.Catalog.
func (c *Catalog) MaxValueSize() int64 { return c.origin.MaxValueSize() }

// Verify implements secrets.Catalog: a fetch of its own, never shared
// with one that began before the caller asked.
func (c *Catalog) Verify(ctx context.Context, k store.Key) (store.Meta, error) {
	const op fault.Op = "cache.Verify"
	if err := k.Validate(); err != nil {
		return store.Meta{}, fault.E(op, err)
	}
	started := c.now()
	item, err := c.origin.Fetch(context.WithoutCancel(ctx), k)
	c.mu.Lock()
	c.storeDown = c.outcome(err)
	a := c.app(k.App)
	ks := a.state(k.Name)
	var changed []store.Key
	switch {
	case err == nil && !ks.verified.After(started):
		if c.setCurrent(k, ks, item.Meta, item, started) {
			changed = append(changed, k)
		}
	case err == nil:
		c.attach(item)
	case fault.Is(fault.NotFound, err) && !ks.verified.After(started):
		if ks.present {
			changed = append(changed, k)
		}
		c.setAbsent(k, ks, started)
	}
	meta := store.Meta{}
	if err == nil {
		meta = item.Meta
		if s := c.snaps[keyOf(k, item.Meta)]; s != nil {
			meta = s.meta
		}
	}
	c.mu.Unlock()
	c.changed(changed)
	return meta, err
}

// Put implements secrets.Catalog.
func (c *Catalog) Put(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error) {
	item, err := c.origin.Write(context.WithoutCancel(ctx), k, value, expected)
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.app(k.App)
	ks := a.state(k.Name)
	if err != nil {
		// Whatever the failure, what the catalog knows of k may be
		// wrong (a concurrent writer, or a write whose outcome is
		// unknown): ask the store next time.
		ks.recheck = c.now()
		return store.Meta{}, err
	}
	c.setCurrent(k, ks, item.Meta, item, c.now())
	c.absent.Remove(k.App)
	c.noteApp(k.App, true)
	if !c.opts.WriteOnly {
		// The value just sealed is this revision's plaintext: reading it
		// back needs no unwrap. The caller keeps its own slice.
		defer c.tell(c.fill(ks.snap, crypto.Plaintext(value).Clone()))
		c.dropPrev(ks) // the new value is held: nothing to fall back on is needed
	}
	return item.Meta, nil
}

// Delete implements secrets.Catalog.
func (c *Catalog) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	err := c.origin.Delete(context.WithoutCancel(ctx), k, expected)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.storeDown = c.outcome(err)
	ks := c.app(k.App).keys[k.Name]
	switch {
	case ks == nil:
	case err == nil:
		c.setAbsent(k, ks, c.now())
	default:
		ks.recheck = c.now()
	}
	return err
}

// sweep wipes plaintexts left unread for Idle, and forgets absences the
// store told of more than a TTL ago, until Close.
func (c *Catalog) sweep() {
	defer close(c.done)
	t := time.NewTicker(max(c.opts.Idle/8, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		now := c.now()
		cutoff := now.Add(-c.opts.Idle).UnixNano()
		var told []func()
		for s := range c.held {
			if s.read.Load() <= cutoff {
				told = append(told, c.unhold(s)...)
			}
		}
		for app, a := range c.apps {
			for name, ks := range a.keys {
				if !ks.present && ks.fetch == nil && !now.Before(ks.verified.Add(c.opts.TTL)) &&
					(ks.failed == nil || !now.Before(ks.failed.at.Add(c.opts.RetryAfter))) {
					delete(a.keys, name)
				}
			}
			if c.unused(a, now) {
				for _, ks := range a.keys {
					c.dropSnap(ks)
				}
				delete(c.apps, app)
			}
		}
		emptied := len(told) > 0 && len(c.held) == 0
		c.mu.Unlock()
		c.tell(told)
		if emptied {
			// The wiped plaintexts' memory goes back to the system now,
			// not when the runtime next scavenges: a mount that served a
			// burst of secrets and went idle holds little.
			debug.FreeOSMemory()
		}
	}
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

// RollbackObserver is implemented by an Observer that wants to hear of
// a secret whose Version went down while the catalog watched it: an old
// item restored whole by someone who can write the store (which the
// format cannot tell from a legitimate restore), or a secret removed and
// created again elsewhere between two looks.
type RollbackObserver interface {
	RolledBack(k store.Key, from, to store.Version)
}

type nopObserver struct{}

func (nopObserver) Looked(bool)                  {}
func (nopObserver) Revalidated(string, int)      {}
func (nopObserver) Stale(store.Key, error, bool) {}
func (nopObserver) Recovered(store.Key)          {}
