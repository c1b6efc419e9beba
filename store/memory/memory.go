// Package memory is a store.Store held in a map, for tests of the layers
// above the store. It keeps the full contract (conditional writes, legacy
// items, byte-order listings, a size limit, error kinds) so that a test
// passing against it means something; it must never be used to hold real
// secrets, which it would lose on exit.
package memory

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// pageSize is the page length when the caller lets the store choose. It is
// small so that callers' tests walk several pages, as they must against
// DynamoDB.
const pageSize = 10

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	maxValue int64

	mu    sync.RWMutex
	items map[store.Key]*store.Item
}

var (
	_ store.Store = (*Store)(nil)
	_ store.Sizer = (*Store)(nil)
)

// New returns an empty Store with the default size limit.
func New() *Store { return NewWithLimit(store.DefaultMaxValueSize) }

// NewWithLimit returns an empty Store that refuses values whose plaintext
// could exceed maxValue bytes.
func NewWithLimit(maxValue int64) *Store {
	return &Store{maxValue: maxValue, items: make(map[store.Key]*store.Item)}
}

// MaxValueSize implements store.Sizer.
func (s *Store) MaxValueSize() int64 { return s.maxValue }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	const op fault.Op = "memory.Get"
	if err := ctx.Err(); err != nil {
		return nil, fault.E(op, k.Path(), fault.Unavailable, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.items[k]
	if !ok {
		return nil, fault.E(op, k.Path(), fault.NotFound)
	}
	return clone(it), nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, item *store.Item, expected store.Revision) error {
	const op fault.Op = "memory.Put"
	if err := store.CheckPut(item, expected); err != nil {
		return fault.E(op, err)
	}
	if err := ctx.Err(); err != nil {
		return fault.E(op, item.Path(), fault.Unavailable, err)
	}
	if n := int64(len(item.ProtectedSecretValue)); n > s.maxValue+store.ValueOverhead {
		return fault.E(op, item.Path(), fault.TooLarge,
			"protected value is "+strconv.FormatInt(n, 10)+" bytes; the limit is "+strconv.FormatInt(s.maxValue+store.ValueOverhead, 10))
	}
	it := clone(item)
	it.Modified = it.Modified.Truncate(time.Millisecond) // the precision every store keeps

	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.items[item.Key]
	// The condition: an item exactly when one is expected, and that one.
	if ok != (expected.Version != store.Absent) || ok && !cur.Revision().Equal(expected) {
		return store.PutRefused(op, item.Key, expected, revision(cur), ok)
	}
	s.items[item.Key] = it
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	const op fault.Op = "memory.Delete"
	if err := store.CheckExpected(expected); err != nil {
		return fault.E(op, k.Path(), err)
	}
	if err := ctx.Err(); err != nil {
		return fault.E(op, k.Path(), fault.Unavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.items[k]
	if !ok || !cur.Revision().Equal(expected) {
		return store.DeleteRefused(op, k, expected, revision(cur), ok)
	}
	delete(s.items, k)
	return nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, app string, after string, limit int) ([]store.Meta, string, error) {
	const op fault.Op = "memory.List"
	if err := ctx.Err(); err != nil {
		return nil, "", fault.E(op, fault.Path(app), fault.Unavailable, err)
	}
	if limit <= 0 {
		limit = pageSize
	}
	s.mu.RLock()
	var page []store.Meta
	for k, it := range s.items {
		if k.App == app && k.Name > after {
			m := it.Meta
			m.InitialisationVector = slices.Clone(m.InitialisationVector)
			page = append(page, m)
		}
	}
	s.mu.RUnlock()

	// Go compares strings byte by byte: DynamoDB's order of sort keys.
	slices.SortFunc(page, func(a, b store.Meta) int { return strings.Compare(a.Name, b.Name) })
	if len(page) <= limit {
		return page, "", nil
	}
	page = page[:limit]
	return page, page[limit-1].Name, nil
}

// Apps implements store.Store. Its pages are in order, so the cursor is
// the last name of the page before.
func (s *Store) Apps(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	const op fault.Op = "memory.Apps"
	if err := ctx.Err(); err != nil {
		return nil, "", fault.E(op, fault.Unavailable, err)
	}
	if limit <= 0 {
		limit = pageSize
	}
	s.mu.RLock()
	var apps []string
	for k := range s.items {
		if k.App > cursor {
			apps = append(apps, k.App)
		}
	}
	s.mu.RUnlock()
	apps = store.SortApps(apps)
	if len(apps) <= limit {
		return apps, "", nil
	}
	apps = apps[:limit]
	return apps, apps[limit-1], nil
}

// Close implements store.Store. The items stay: a test may still inspect
// them.
func (s *Store) Close() error { return nil }

// revision is it's Revision, or the zero Revision for no item.
func revision(it *store.Item) store.Revision {
	if it == nil {
		return store.Revision{}
	}
	return it.Revision()
}

func clone(it *store.Item) *store.Item {
	c := *it
	c.ProtectedDocumentKey = slices.Clone(it.ProtectedDocumentKey)
	c.InitialisationVector = slices.Clone(it.InitialisationVector)
	c.ProtectedSecretValue = slices.Clone(it.ProtectedSecretValue)
	return &c
}
