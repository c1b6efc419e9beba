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
//     StaleIfError past the TTL, at once, while the store is asked again
//     in the background every RetryAfter; when the keys cannot decrypt a
//     newer revision of a secret being read, the last value read is
//     served. An answer is not an error: NotFound and AccessDenied take
//     effect at once. (That a backend that did not answer is not asked
//     again for a moment is the rule of package breaker, which wraps the
//     store and the keys behind the Origin.)
//   - Bounded plaintext: a revision's plaintext is wiped when it has not
//     been read for Idle, when more than Size are held (least recently
//     read first), when nothing pins the revision any more, and at Close.
//     Its protected item stays while pinned, so a wiped revision can be
//     decrypted again, exactly as it was.
//
// The files follow those concerns: index.go (what the catalog knows of
// each application and secret, and how it changes), flight.go (the calls
// to the origin, shared by every caller at the time), lookup.go (the
// answers), stale.go (stale-if-error), write.go (writes through the
// catalog), residency.go (plaintext held, and the sweeper) and
// snapshot.go (one revision's content).
//
// Lock order: Catalog.mu, then a snapshot's vmu (taken by the residency
// LRU's eviction callback, which wipes the value, and which golang-lru
// runs after it released its own lock, within calls the catalog makes
// only with Catalog.mu held); never the other way round. golang-lru's own
// lock is a leaf, taken inside its calls. Catalog.mu guards
// the index and the bookkeeping fields of every snapshot (pins, item,
// listeners, failures); vmu guards only a snapshot's value, so that reads
// copy it out without Catalog.mu. No lock
// is held while the catalog calls the origin or an observer, or runs a
// wipe listener (which notifies the kernel). Methods documented "c.mu
// must be held" are called with it.
//
// The package never logs and never puts a value in an error.
package cache

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

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
	// List returns one page of app's listing, of at most limit entries
	// after the name after, in one call.
	List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error)
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
	// RetryAfter is how long a stale answer stands, and how often an
	// application whose revalidation got no answer is listed again in the
	// background. DefaultRetryAfter if <= 0.
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
	// store could not be asked, or of an older revision because the keys
	// could not decrypt the current one; first is true for the first
	// such answer about k since the store (or the keys) last answered.
	Stale(k store.Key, cause error, first bool)
	// Recovered is called when the store answers about k again after
	// stale answers.
	Recovered(k store.Key)
}

// CrowdObserver is implemented by an Observer that wants to hear when
// the count bound (Options.Size, --cache-size) wiped a plaintext to make
// room for another: more secrets are read than it holds, and reading the
// one wiped again costs a key unwrap (a KMS Decrypt), so key unwraps
// then grow with the read rate. Called once per plaintext so wiped.
type CrowdObserver interface {
	Crowded(size int)
}

// RollbackObserver is implemented by an Observer that wants to hear of
// a secret whose Version went down while the catalog watched it: an old
// item restored whole by someone who can write the store (which the
// format cannot tell from a legitimate restore), or a secret removed and
// created again elsewhere between two looks.
type RollbackObserver interface {
	RolledBack(k store.Key, from, to store.Version)
}

// Catalog implements secrets.Catalog. Safe for concurrent use.
type Catalog struct {
	origin Origin
	opts   Options
	obs    Observer

	mu   sync.Mutex
	apps map[string]*appIndex
	root rootIndex
	// absent holds the applications a listing found empty, and when:
	// within the TTL a lookup of one asks nobody. It is bounded (an LRU),
	// so that probing many names that are not applications (a `stat` of
	// each) costs one listing each and no lasting memory; their indexes
	// are dropped.
	absent   *lru.Cache[string, time.Time]
	snaps    map[snapKey]*snapshot // every snapshot pinned by the index or a caller
	resident *residency            // the snapshots holding plaintext
	watchers []func(store.Key)

	stop  chan struct{}
	done  chan struct{}
	after func(time.Duration, func()) // time.AfterFunc; tests drive it by their clock
}

var _ secrets.Catalog = (*Catalog)(nil)

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
		apps: map[string]*appIndex{}, snaps: map[snapKey]*snapshot{},
		stop: make(chan struct{}), done: make(chan struct{}),
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
	c.resident = newResidency(opts.Size)
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
	told := c.resident.purge()
	c.mu.Unlock()
	tell(told)
}

// Held returns how many secrets the catalog holds decrypted.
func (c *Catalog) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resident.len()
}

// MaxValueSize implements secrets.Catalog.
func (c *Catalog) MaxValueSize() int64 { return c.origin.MaxValueSize() }

func (c *Catalog) now() time.Time { return c.opts.Now() }

// OnChange registers f, called from its own goroutine with every secret
// whose current revision the catalog learned from the store has changed
// or gone, or that appeared in an application listed before (not for
// changes made through the catalog itself).
func (c *Catalog) OnChange(f func(store.Key)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchers = append(c.watchers, f)
}

// changed tells the watchers of keys, from goroutines of their own.
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

type nopObserver struct{}

func (nopObserver) Looked(bool)                  {}
func (nopObserver) Revalidated(string, int)      {}
func (nopObserver) Stale(store.Key, error, bool) {}
func (nopObserver) Recovered(store.Key)          {}
