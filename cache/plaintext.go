// Package cache keeps decrypted secrets in memory for a short while, so
// that a hot read costs no backend call and concurrent cold reads of one
// secret cost one store read and one key unwrap between them.
//
// Plaintext is a secrets.Source in front of an Origin (secrets.Keeper). It
// owns every value it holds and wipes it the moment it leaves the cache: on
// expiry, on eviction, on replacement and on invalidation. It must never
// log, never put a value in an error, and never answer from an entry older
// than its TTL.
package cache

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// DefaultSize is the number of secrets kept when Options.Size is not set:
// more than the hot set of most hosts. The bound counts secrets, not
// bytes: secrets are usually small, but at the store's largest values
// (400 KB on DynamoDB) this is 400 MB, so hosts with large secrets should
// set a smaller Size.
const DefaultSize = 1024

// minTTL keeps expirable's cleanup ticker (TTL/100) positive and sane.
const minTTL = time.Millisecond

// maxAttempts bounds how often Get retries when its freshly loaded value
// left the cache before it could be copied (a concurrent write or
// eviction won the race); after that it asks the origin directly.
const maxAttempts = 3

// Options configures a Plaintext cache.
type Options struct {
	// TTL is how long an entry may answer without asking the origin. Zero
	// (or negative) disables caching: every call goes to the origin and
	// no plaintext is kept. A TTL under a millisecond counts as one.
	TTL time.Duration
	// Size is the largest number of secrets kept; DefaultSize if <= 0.
	// The least recently used entry is evicted (and wiped) first.
	Size int
}

// Plaintext is a TTL- and size-bounded cache of decrypted secrets in
// front of an Origin. Safe for concurrent use.
type Plaintext struct {
	origin Origin
	lru    *expirable.LRU[store.Key, *entry] // nil: pass-through mode (TTL 0)
	ttl    time.Duration
	flight singleflight.Group

	// mu serialises every change to lru, so that filing an entry can wipe
	// the one it replaces (expirable's Add on an existing key does not
	// call the eviction callback), and guards gens. Lock order: mu, then
	// lru's own lock, then an entry's lock; never the other way round.
	mu   sync.Mutex
	gens map[store.Key]*generation
}

var _ secrets.Source = (*Plaintext)(nil)

// generation lets a load or a write that started before a write (or an
// invalidation) of the same key finished notice that it was overtaken, so
// that its older result is not filed over the newer one. A record exists
// only while some call holds a token for the key, so the map stays as
// small as the number of keys in flight.
type generation struct {
	n     uint64 // bumped by every write or invalidation of the key
	users int    // calls holding a token
}

// New returns a cache in front of origin.
func New(origin Origin, opts Options) *Plaintext {
	c := &Plaintext{origin: origin, gens: make(map[store.Key]*generation)}
	if opts.TTL <= 0 {
		return c
	}
	if opts.Size <= 0 {
		opts.Size = DefaultSize
	}
	opts.TTL = max(opts.TTL, minTTL)
	c.ttl = opts.TTL
	// The callback runs for expiry, LRU eviction, Remove and Purge; a
	// replacement is always a Remove then an Add (see file).
	//
	// expirable v2.0.7 cannot stop its cleanup goroutine: each cache keeps
	// one for the life of the process.
	c.lru = expirable.NewLRU(opts.Size, func(_ store.Key, e *entry) { e.wipe() }, opts.TTL)
	return c
}

// Stat answers from the cache unless fresh; a miss reads the protected
// item once, and keeps it so that the open that usually follows a stat
// needs no second store read.
func (c *Plaintext) Stat(ctx context.Context, k store.Key, fresh bool) (store.Meta, error) {
	if c.lru == nil {
		return c.origin.Stat(ctx, k, fresh)
	}
	if !fresh {
		if e, ok := c.lru.Get(k); ok {
			return e.metadata(), nil
		}
	}
	e, err := c.share(ctx, "cache.Stat", fetchFlight, k, func(ctx context.Context) (*entry, error) {
		return c.fetch(ctx, k)
	})
	if err != nil {
		return store.Meta{}, err
	}
	return e.metadata(), nil
}

// Get returns a copy of k's value, which the caller owns. A miss opens the
// cached protected item if there is one, else fetches and opens it: the
// same one store read and one key unwrap as origin.Get, but the item is
// kept, so a later fresh Get can recognise an unchanged secret by its
// Version and IV and skip the unwrap. Concurrent misses of one key share
// one load.
func (c *Plaintext) Get(ctx context.Context, k store.Key, fresh bool) (secrets.Secret, error) {
	if c.lru == nil {
		return c.origin.Get(ctx, k, fresh)
	}
	if !fresh {
		if e, ok := c.lru.Get(k); ok {
			if s, ok := e.secret(); ok {
				return s, nil
			}
		}
	}
	for range maxAttempts {
		kind := getFlight
		if fresh {
			kind = freshFlight
		}
		want := fresh
		e, err := c.share(ctx, "cache.Get", kind, k, func(ctx context.Context) (*entry, error) {
			return c.load(ctx, k, want)
		})
		if err != nil {
			return secrets.Secret{}, err
		}
		if s, ok := e.secret(); ok {
			return s, nil
		}
		// The value was wiped before we copied it: a write, an
		// invalidation or an eviction came after our load began, so
		// whatever the cache holds now is no older than this call and a
		// retry need not fetch again.
		fresh = false
	}
	return c.origin.Get(ctx, k, true)
}

// Put writes through the origin. On success the cache holds a copy of
// value (the caller keeps its slice); when the store says the cached entry
// is stale, it is dropped; other failures leave the cache alone.
func (c *Plaintext) Put(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error) {
	if c.lru == nil {
		return c.origin.Put(ctx, k, value, expected)
	}
	gen := c.begin(k)
	defer c.end(k)
	item, err := c.origin.Write(ctx, k, value, expected)
	var meta store.Meta
	if err == nil {
		meta = item.Meta
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil && c.current(k, gen):
		c.file(k, &entry{meta: meta, item: item, value: crypto.Plaintext(value).Clone(), decrypted: true})
	case err == nil || stale(err):
		// Either another write of k finished while ours ran, and we cannot
		// tell which of the two is newer, or the store disagrees with
		// what we cached. Let the next read find out.
		c.lru.Remove(k)
	default:
		return meta, err
	}
	c.overtake(k)
	return meta, err
}

// Delete deletes through the origin and drops the entry unless the store
// refused for reasons that say nothing about it.
func (c *Plaintext) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	err := c.origin.Delete(ctx, k, expected)
	if err == nil || fault.Is(fault.NotFound, err) || fault.Is(fault.Conflict, err) {
		c.Invalidate(k)
	}
	return err
}

// List passes through to the origin and uses the page as a cheap
// freshness signal: a cached entry whose Revision or Modified differs from
// the listing, or whose name falls in the page's range but is not listed
// (deleted elsewhere), is dropped.
func (c *Plaintext) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	page, next, err := c.origin.List(ctx, app, after, limit)
	if err != nil || c.lru == nil {
		return page, next, err
	}
	listed := make(map[string]store.Meta, len(page))
	for _, m := range page {
		listed[m.Name] = m
	}
	for _, k := range c.lru.Keys() {
		// The page covers the names in (after, next], or all after
		// `after` when it is the last.
		if k.App != app || k.Name <= after || (next != "" && k.Name > next) {
			continue
		}
		e, ok := c.lru.Peek(k)
		if !ok {
			continue
		}
		m, found := listed[k.Name]
		cached := e.metadata()
		if !found || !m.Revision().Equal(cached.Revision()) || !m.Modified.Equal(cached.Modified) {
			c.Invalidate(k)
		}
	}
	return page, next, nil
}

// Remaining is how much longer the cache answers for k without asking
// the origin: the rest of its entry's TTL, or 0 when it holds none. The
// file system tells the kernel to keep what it learns of k no longer, so
// that the two caches together never answer with something older than
// one TTL.
func (c *Plaintext) Remaining(k store.Key) time.Duration {
	if c.lru == nil {
		return 0
	}
	e, ok := c.lru.Peek(k)
	if !ok || e.isGone() {
		return 0
	}
	return max(time.Until(e.expires), 0)
}

// Apps passes through to the origin.
func (c *Plaintext) Apps(ctx context.Context) ([]string, error) { return c.origin.Apps(ctx) }

// MaxValueSize passes through to the origin.
func (c *Plaintext) MaxValueSize() int64 { return c.origin.MaxValueSize() }

// Invalidate drops and wipes k's entry, and makes loads of k already in
// flight neither file their result nor be joined by later calls.
func (c *Plaintext) Invalidate(k store.Key) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(k)
	c.overtake(k)
}

// Purge drops and wipes every entry, e.g. at unmount. Loads in flight do
// not file their results afterwards.
func (c *Plaintext) Purge() {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.gens {
		g.n++
	}
	c.lru.Purge()
}

// fetch reads k's protected item and files it.
func (c *Plaintext) fetch(ctx context.Context, k store.Key) (*entry, error) {
	gen := c.begin(k)
	defer c.end(k)
	item, err := c.origin.Fetch(ctx, k)
	if fault.Is(fault.NotFound, err) {
		// Removed elsewhere: whatever is cached for it is stale.
		c.Invalidate(k)
	}
	if err != nil {
		return nil, err
	}
	e := &entry{meta: item.Meta, item: item}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.current(k, gen) {
		// Overtaken by a write: not filed, so a Get retries; the Meta
		// still answers the Stat that asked, as of when it asked.
		e.gone = true
		return e, nil
	}
	// A value decrypted from the very same ciphertext stays. The Version
	// alone is no proof (every legacy item has Version 0), but the IV is
	// fresh on every write.
	if old, ok := c.lru.Peek(k); ok && old.sameCiphertext(item) {
		if meta, value, ok := old.take(); ok {
			e.meta, e.value, e.decrypted = meta, value, true
		}
	}
	c.file(k, e)
	return e, nil
}

// load finds or makes an entry with k's value: from the cache unless
// fresh, else from a fetch (shared with concurrent Stats), then decrypted
// with Open if it has no value yet. The entry it returns may be gone (its
// value wiped) if something overtook the load; Get then retries.
func (c *Plaintext) load(ctx context.Context, k store.Key, fresh bool) (*entry, error) {
	e, ok := c.lru.Peek(k)
	if fresh || !ok || e.isGone() {
		var err error
		e, err = c.share(ctx, "cache.Get", fetchFlight, k, func(ctx context.Context) (*entry, error) {
			return c.fetch(ctx, k)
		})
		if err != nil {
			return nil, err
		}
	}
	if !e.needsOpen() {
		return e, nil
	}
	s, err := c.origin.Open(ctx, e.item)
	if err != nil {
		return nil, err
	}
	if !e.fill(s) {
		// The entry left the cache while Open ran: nobody owns this value.
		s.Value.Wipe()
	}
	return e, nil
}

// Singleflight kinds: a fetch of the protected item (Stat, and the first
// half of a fresh Get), a Get that may use the cached item, a fresh Get.
const (
	fetchFlight byte = 's'
	getFlight   byte = 'g'
	freshFlight byte = 'f'
)

// flightKey is unambiguous even for keys the origin will reject as
// invalid (a '/' inside App), so two keys never share a call.
func flightKey(kind byte, k store.Key) string {
	return string(kind) + strconv.Itoa(len(k.App)) + ":" + k.App + "/" + k.Name
}

// share runs load once for all concurrent callers of the same kind and
// key. The shared work must not die with the first caller's context, so
// it runs under context.WithoutCancel (the origin bounds each call with
// its own deadline); each caller still returns as soon as its own ctx is
// done.
func (c *Plaintext) share(ctx context.Context, op fault.Op, kind byte, k store.Key, load func(context.Context) (*entry, error)) (*entry, error) {
	shared := context.WithoutCancel(ctx)
	ch := c.flight.DoChan(flightKey(kind, k), func() (any, error) { return load(shared) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*entry), nil
	case <-ctx.Done():
		return nil, fault.E(op, k.Path(), ctx.Err())
	}
}

// file makes e k's entry and wipes the one it replaces. c.mu must be held.
func (c *Plaintext) file(k store.Key, e *entry) {
	c.lru.Remove(k)
	// Set before Add, which publishes e; expirable takes its own clock
	// reading a moment later, so e never expires after the LRU drops it.
	e.expires = time.Now().Add(c.ttl)
	c.lru.Add(k, e)
}

// overtake marks every call in flight for k as overtaken, and makes later
// calls start their own loads rather than join older ones. c.mu must be
// held.
func (c *Plaintext) overtake(k store.Key) {
	if g := c.gens[k]; g != nil {
		g.n++
	}
	for _, kind := range []byte{fetchFlight, getFlight, freshFlight} {
		c.flight.Forget(flightKey(kind, k))
	}
}

// begin returns a token to check with current before filing a result.
func (c *Plaintext) begin(k store.Key) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.gens[k]
	if g == nil {
		g = &generation{}
		c.gens[k] = g
	}
	g.users++
	return g.n
}

// end returns the token taken by begin.
func (c *Plaintext) end(k store.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.gens[k]; g != nil {
		if g.users--; g.users == 0 {
			delete(c.gens, k)
		}
	}
}

// current reports whether nothing overtook the call holding token gen.
// c.mu must be held.
func (c *Plaintext) current(k store.Key, gen uint64) bool {
	g := c.gens[k]
	return g != nil && g.n == gen
}

// stale reports whether a failed write shows the cached entry to be stale.
func stale(err error) bool {
	switch fault.KindOf(err) {
	case fault.Conflict, fault.Exist, fault.NotFound:
		return true
	}
	return false
}
