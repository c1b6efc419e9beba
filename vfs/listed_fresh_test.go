package vfs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// oneItem is an Origin holding one item's metadata, which the test may
// change (another host writing it): enough to list and look up.
type oneItem struct {
	mu   sync.Mutex
	meta store.Meta
}

func (o *oneItem) get() store.Meta { o.mu.Lock(); defer o.mu.Unlock(); return o.meta }
func (o *oneItem) Fetch(ctx context.Context, k store.Key) (*store.Item, error) {
	return &store.Item{Meta: o.get()}, nil
}
func (o *oneItem) Open(ctx context.Context, item *store.Item) (secrets.Secret, error) {
	return secrets.Secret{}, fault.E(fault.Unavailable)
}
func (o *oneItem) Write(context.Context, store.Key, []byte, store.Revision) (*store.Item, error) {
	return nil, fault.E(fault.Unavailable)
}
func (o *oneItem) Delete(context.Context, store.Key, store.Revision) error {
	return fault.E(fault.Unavailable)
}
func (o *oneItem) ListAll(ctx context.Context, app string) ([]store.Meta, error) {
	return []store.Meta{o.get()}, nil
}
func (o *oneItem) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	return []store.Meta{o.get()}, "", nil
}
func (o *oneItem) Apps(ctx context.Context) ([]string, error) { return []string{"app"}, nil }
func (o *oneItem) MaxValueSize() int64                        { return 1 << 20 }

// An entry READDIRPLUS takes from a listing stands no longer than the
// listing: one made at t0 and read at t0+TTL-1s lets the kernel keep the
// name for the second left, not a whole TTL more (until t0+2*TTL-1s,
// though the store changed at t0+1s), as it did before.
func TestAListedEntryStandsForNoLongerThanItsListing(t *testing.T) {
	const ttl = 30 * time.Second
	var mu sync.Mutex
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	o := &oneItem{meta: store.Meta{Key: db, Version: 1, InitialisationVector: []byte{1}, Size: 3, Modified: t0}}
	cat := cache.New(o, cache.Options{TTL: ttl, StaleIfError: time.Hour, Now: clock})
	defer cat.Close()
	fs := New(cat, Options{TTL: ttl, FileMode: 0o600, DirMode: 0o700})

	if _, ok, err := fs.List("app").Next(ctx); !ok || err != nil { // lists the application at t0
		t.Fatal(ok, err)
	}
	set(t0.Add(time.Second))
	o.mu.Lock()
	o.meta = store.Meta{Key: db, Version: 2, InitialisationVector: []byte{2}, Size: 3, Modified: t0.Add(time.Second)}
	o.mu.Unlock()

	set(t0.Add(ttl - time.Second))
	l := fs.List("app") // `ls -l`: READDIRPLUS
	if _, ok, err := l.Next(ctx); !ok || err != nil {
		t.Fatalf("Next: %v %v", ok, err)
	}
	e, listed, err := l.Lookup(ctx, db.Name)
	if !listed || err != nil {
		t.Fatalf("listing lookup: %v %v", listed, err)
	}
	changedAt := t0.Add(time.Second)
	standsUntil := t0.Add(ttl - time.Second).Add(e.Fresh)
	t.Logf("listed at t0, read at t0+%v: version %d, the kernel may keep it %v, until %v after the store changed",
		ttl-time.Second, e.Meta.Version, e.Fresh, standsUntil.Sub(changedAt))
	if standsUntil.Sub(changedAt) > ttl+time.Second {
		t.Errorf("a name older than --ttl: version %d stands %v after the change (TTL %v)", e.Meta.Version, standsUntil.Sub(changedAt), ttl)
	}
}
