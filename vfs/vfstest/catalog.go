// Package vfstest is a fake secrets.Catalog for tests of package vfs (and
// of anything else that serves a catalog), in memory, with no store, no
// keys and no kernel: values are kept as given, every revision a Put or a
// test's Store makes is kept, and tests can make calls fail or wait and
// count them.
package vfstest

import (
	"context"
	"encoding/binary"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Fresh is how long every Lookup's answer stands (secrets.Entry.Fresh).
const Fresh = time.Minute

// Catalog is a fake secrets.Catalog. Its zero value is not usable: call
// New. Safe for concurrent use.
type Catalog struct {
	// PageSize is how many secrets a List page holds (a limit of 0).
	PageSize int
	// Limit is MaxValueSize.
	Limit int64

	mu       sync.Mutex
	stored   map[store.Key]store.Meta // what the store holds now
	known    map[store.Key]store.Meta // what the catalog last learned (Known)
	values   map[string][]byte        // the value of every revision, by revKey
	bound    map[string]bool          // revisions whose item is in memory: Bind succeeds for them
	wipers   map[string][]func()      // OnWipe callbacks of pinned snapshots, by revKey
	pins     int
	pinsOf   map[string]int // pins of each revision: its item is dropped with the last (see Release)
	bindHook func(k store.Key)
	lookHook func(k store.Key)
	calls    map[string]int
	ivs      uint64
	putErr   func(k store.Key) error
	putHook  func(k store.Key)
	valueErr error
	watchers []func(store.Key)
}

var _ secrets.Catalog = (*Catalog)(nil)
var _ secrets.Watcher = (*Catalog)(nil)

// New returns an empty catalog with pages of 100 and a limit of 1 MiB.
func New() *Catalog {
	return &Catalog{PageSize: 100, Limit: 1 << 20,
		stored: map[store.Key]store.Meta{}, known: map[store.Key]store.Meta{},
		values: map[string][]byte{}, bound: map[string]bool{}, pinsOf: map[string]int{}, wipers: map[string][]func(){}, calls: map[string]int{}}
}

func revKey(k store.Key, rev store.Revision) string {
	return k.String() + "#" + rev.Version.String() + "#" + string(rev.IV)
}

// Store makes value the stored revision of k, as another host would: the
// catalog learns of it only when it asks (Lookup, List, Verify). It
// returns the new revision.
func (c *Catalog) Store(k store.Key, value string) store.Meta {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.storeLocked(k, []byte(value))
}

func (c *Catalog) storeLocked(k store.Key, value []byte) store.Meta {
	c.ivs++
	iv := binary.BigEndian.AppendUint64(nil, c.ivs)
	meta := store.Meta{Key: k, Version: c.stored[k].Version.Next(), InitialisationVector: iv,
		Size: int64(len(value)), Modified: time.Unix(int64(c.ivs), 0)}
	if _, ok := c.stored[k]; !ok {
		meta.Version = 1
	}
	c.stored[k] = meta
	c.values[revKey(k, meta.Revision())] = slices.Clone(value)
	return meta
}

// Remove deletes k from the store, as another host would.
func (c *Catalog) Remove(k store.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.stored, k)
}

// Tamper makes every later read of the stored revision of k give value
// instead of what was stored: a revision that decrypts to other bytes
// than before, which only a bug or an unauthenticated (legacy v1) item
// could make, for tests of what never serves such bytes.
func (c *Catalog) Tamper(k store.Key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.values[revKey(k, c.stored[k].Revision())] = []byte(value)
}

// Value returns the stored value of k, and whether there is one.
func (c *Catalog) Value(k store.Key) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	meta, ok := c.stored[k]
	if !ok {
		return "", false
	}
	return string(c.values[revKey(k, meta.Revision())]), true
}

// Stored returns the stored revision of k, and whether there is one.
func (c *Catalog) Stored(k store.Key) (store.Meta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	meta, ok := c.stored[k]
	return meta, ok
}

// Calls returns how many times the method named was called: "Lookup",
// "Verify", "Put", "Delete", "List", "Value" (a snapshot's plaintext
// read whole, or its size learnt), "ReadAt", "Touch".
func (c *Catalog) Calls(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// Pins returns how many snapshots are pinned (made and not released).
func (c *Catalog) Pins() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pins
}

// FailPuts makes every Put fail with what f returns for its key (nil:
// the Put goes on), until FailPuts(nil).
func (c *Catalog) FailPuts(f func(k store.Key) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putErr = f
}

// BeforePut has every Put call f first, without the catalog's lock (f
// may block to hold the Put), until BeforePut(nil).
func (c *Catalog) BeforePut(f func(k store.Key)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putHook = f
}

// BeforeBind has every snapshot's Bind call f first, without the
// catalog's lock (f may block to hold the Bind), until BeforeBind(nil).
func (c *Catalog) BeforeBind(f func(k store.Key)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bindHook = f
}

// BeforeLookup has every Lookup call f first, without the catalog's
// lock (f may change the store, as another host would between a listing
// and a lookup), until BeforeLookup(nil).
func (c *Catalog) BeforeLookup(f func(k store.Key)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookHook = f
}

// FailValues makes every read of a value fail with err (nil: succeed).
func (c *Catalog) FailValues(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.valueErr = err
}

// Wipe wipes the plaintext of revision meta of k, as the catalog's idle
// bound does, telling the OnWipe callbacks of its pinned snapshots.
func (c *Catalog) Wipe(k store.Key, meta store.Meta) {
	c.mu.Lock()
	fs := slices.Clone(c.wipers[revKey(k, meta.Revision())])
	c.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// Change tells the catalog's watchers that k changed, as the catalog
// does when a listing shows it.
func (c *Catalog) Change(k store.Key) {
	c.mu.Lock()
	ws := slices.Clone(c.watchers)
	c.mu.Unlock()
	for _, w := range ws {
		w(k)
	}
}

// OnChange implements secrets.Watcher.
func (c *Catalog) OnChange(f func(store.Key)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchers = append(c.watchers, f)
}

// learn records what the store said of k: the catalog knows it, and holds
// its item. c.mu must be held.
func (c *Catalog) learn(k store.Key) (store.Meta, error) {
	meta, ok := c.stored[k]
	if !ok {
		c.dropReplaced(k, store.NoItem)
		delete(c.known, k)
		return store.Meta{}, fault.E(k.Path(), fault.NotFound)
	}
	c.dropReplaced(k, meta.Revision())
	c.known[k] = meta
	c.bound[revKey(k, meta.Revision())] = true
	return meta, nil
}

// dropReplaced lets go of the item of the revision the catalog held for
// k's current, now that it learned that now is (store.NoItem: nothing),
// unless a snapshot pins it: the real catalog keeps only what is pinned
// of a replaced revision, so a later Bind of it reads the store, and is
// Superseded. c.mu must be held.
func (c *Catalog) dropReplaced(k store.Key, now store.Revision) {
	old, ok := c.known[k]
	if !ok || old.Revision().Equal(now) {
		return
	}
	if rev := revKey(k, old.Revision()); c.pinsOf[rev] == 0 {
		delete(c.bound, rev)
	}
}

// Lookup implements secrets.Catalog: always what the store holds.
func (c *Catalog) Lookup(ctx context.Context, k store.Key) (secrets.Entry, error) {
	c.mu.Lock()
	hook := c.lookHook
	c.mu.Unlock()
	if hook != nil {
		hook(k)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["Lookup"]++
	meta, err := c.learn(k)
	if err != nil {
		return secrets.Entry{}, err
	}
	return secrets.Entry{Meta: meta, Fresh: Fresh}, nil
}

// Fresh implements secrets.Catalog: every answer stands for Fresh.
func (c *Catalog) Fresh(k store.Key) time.Duration { return Fresh }

// Known implements secrets.Catalog.
func (c *Catalog) Known(k store.Key) (store.Meta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	meta, ok := c.known[k]
	return meta, ok
}

// Verify implements secrets.Catalog.
func (c *Catalog) Verify(ctx context.Context, k store.Key) (store.Meta, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["Verify"]++
	return c.learn(k)
}

// HasSecrets implements secrets.Catalog.
func (c *Catalog) HasSecrets(ctx context.Context, app string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.stored {
		if k.App == app {
			return true, nil
		}
	}
	return false, nil
}

// List implements secrets.Catalog: PageSize secrets a page (or limit).
func (c *Catalog) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["List"]++
	if limit <= 0 {
		limit = c.PageSize
	}
	var all []store.Meta
	for k, meta := range c.stored {
		if k.App == app && k.Name > after {
			all = append(all, meta)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	next := ""
	if len(all) > limit {
		all, next = all[:limit], all[limit-1].Name
	}
	for _, meta := range all {
		c.dropReplaced(meta.Key, meta.Revision())
		c.known[meta.Key] = meta
	}
	return all, next, nil
}

// Apps implements secrets.Catalog: sorted, each name once, as
// secrets.Source.Apps.
func (c *Catalog) Apps(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	apps := make([]string, 0, len(c.stored))
	for k := range c.stored {
		apps = append(apps, k.App)
	}
	return store.SortApps(apps), nil
}

// Put implements secrets.Catalog, with the store's conditions: NoItem
// expects nothing stored (fault.Exist otherwise), any other revision
// expects that one (fault.Conflict otherwise).
func (c *Catalog) Put(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error) {
	c.mu.Lock()
	hook, fail := c.putHook, c.putErr
	c.calls["Put"]++
	c.mu.Unlock()
	if hook != nil {
		hook(k)
	}
	if fail != nil {
		if err := fail(k); err != nil {
			return store.Meta{}, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if int64(len(value)) > c.Limit {
		return store.Meta{}, fault.E(k.Path(), fault.TooLarge)
	}
	cur, ok := c.stored[k]
	switch {
	case expected.Version == store.Absent && ok:
		return store.Meta{}, fault.E(k.Path(), fault.Exist)
	case expected.Version != store.Absent && (!ok || !cur.Revision().Equal(expected)):
		return store.Meta{}, fault.E(k.Path(), fault.Conflict, "the stored revision is not the one expected")
	}
	meta := c.storeLocked(k, value)
	c.dropReplaced(k, meta.Revision())
	c.known[k] = meta
	c.bound[revKey(k, meta.Revision())] = true
	return meta, nil
}

// Delete implements secrets.Catalog, on the condition that k holds
// expected.
func (c *Catalog) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["Delete"]++
	cur, ok := c.stored[k]
	switch {
	case !ok:
		return fault.E(k.Path(), fault.NotFound)
	case !cur.Revision().Equal(expected):
		return fault.E(k.Path(), fault.Conflict, "the stored revision is not the one expected")
	}
	delete(c.stored, k)
	c.dropReplaced(k, store.NoItem)
	delete(c.known, k)
	return nil
}

// MaxValueSize implements secrets.Catalog.
func (c *Catalog) MaxValueSize() int64 { return c.Limit }

// Snapshot implements secrets.Catalog.
func (c *Catalog) Snapshot(k store.Key, meta store.Meta) secrets.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pins++
	c.pinsOf[revKey(k, meta.Revision())]++
	return &snapshot{c: c, key: k, meta: meta}
}

// snapshot is one pinned revision.
type snapshot struct {
	c        *Catalog
	key      store.Key
	meta     store.Meta
	released bool
}

func (s *snapshot) rev() string { return revKey(s.key, s.meta.Revision()) }

func (s *snapshot) Meta() store.Meta { return s.meta }

// Bind succeeds for a revision whose item the catalog holds (it was put,
// looked up or bound, and has not since lost its last pin while not the
// current one, nor been replaced while nothing pinned it: see Release and
// dropReplaced) or that the store holds now; else the error says what the
// store holds instead.
func (s *snapshot) Bind(ctx context.Context) error {
	s.c.mu.Lock()
	hook := s.c.bindHook
	s.c.mu.Unlock()
	if hook != nil {
		hook(s.key)
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.bindLocked()
}

func (s *snapshot) bindLocked() error {
	if s.c.bound[s.rev()] {
		return nil
	}
	now, ok := s.c.stored[s.key]
	switch {
	case !ok:
		return fault.E(s.key.Path(), fault.NotFound)
	case !now.Revision().Equal(s.meta.Revision()):
		// A *fault.Error, as every error of a catalog: the store's
		// answer that another revision is stored (as the real one).
		return fault.E(s.key.Path(), fault.Conflict, &secrets.Superseded{Key: s.key, Now: now})
	}
	s.c.bound[s.rev()] = true
	return nil
}

func (s *snapshot) value(method string) ([]byte, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.calls[method]++
	if err := s.bindLocked(); err != nil {
		return nil, err
	}
	if s.c.valueErr != nil {
		return nil, s.c.valueErr
	}
	return s.c.values[s.rev()], nil
}

func (s *snapshot) Size(ctx context.Context) (int64, error) {
	v, err := s.value("Value")
	return int64(len(v)), err
}

func (s *snapshot) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	v, err := s.value("ReadAt")
	if err != nil || off >= int64(len(v)) {
		return 0, err
	}
	return copy(p, v[off:]), nil
}

func (s *snapshot) Value(ctx context.Context) (crypto.Plaintext, error) {
	v, err := s.value("Value")
	if err != nil {
		return nil, err
	}
	return crypto.Plaintext(v).Clone(), nil
}

func (s *snapshot) Touch() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.calls["Touch"]++
}

func (s *snapshot) OnWipe(f func()) (cancel func()) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	rev := s.rev()
	s.c.wipers[rev] = append(s.c.wipers[rev], f)
	i := len(s.c.wipers[rev]) - 1
	return func() {
		s.c.mu.Lock()
		defer s.c.mu.Unlock()
		s.c.wipers[rev][i] = func() {}
	}
}

func (s *snapshot) Release() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if !s.released {
		s.released = true
		s.c.pins--
		// As the real catalog does, the last pin of a revision drops its
		// item, unless the catalog holds that revision for current (the
		// real one's index pins it: see secrets.Catalog.Lookup; it is
		// dropped when a replacement is learnt of, dropReplaced): a later
		// Bind reads the store again, and finds it only if the store
		// still holds that revision.
		if s.c.pinsOf[s.rev()]--; s.c.pinsOf[s.rev()] == 0 {
			delete(s.c.pinsOf, s.rev())
			if known, ok := s.c.known[s.key]; !ok || !known.Revision().Equal(s.meta.Revision()) {
				delete(s.c.bound, s.rev())
			}
		}
	}
}
