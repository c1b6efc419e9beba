package cache

import (
	"context"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// Writes through the catalog: what a writer must expect (Verify), and what
// its write or removal makes current (Put, Delete).

// Verify implements secrets.Catalog: a fetch that began no earlier than
// the call, applied as every fetch is (see runFetch).
func (c *Catalog) Verify(ctx context.Context, k store.Key) (store.Meta, error) {
	const op fault.Op = "cache.Verify"
	if err := k.Validate(); err != nil {
		return store.Meta{}, fault.E(op, err)
	}
	c.mu.Lock()
	f := c.freshFetch(c.app(k.App), k, c.now())
	c.mu.Unlock()
	<-f.done
	if f.err != nil {
		return store.Meta{}, f.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	meta := f.item.Meta
	if s := c.snaps[keyOf(k, meta)]; s != nil {
		meta = s.meta // a legacy item's size, once learned
	}
	return meta, nil
}

// Put implements secrets.Catalog. A successful write makes its revision
// current at once, with its value held (reading it back needs no key
// unwrap); a failed one makes the catalog ask the store about k before it
// answers from memory again.
func (c *Catalog) Put(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error) {
	item, err := c.origin.Write(context.WithoutCancel(ctx), k, value, expected)
	var wiped []func()
	defer func() { tell(wiped) }() // deferred first: runs once the lock is released
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
	if ks.removed.Equal(item.Revision()) {
		// A Delete through the catalog removed this very revision while
		// the write's answer was on its way: it stays removed.
		return item.Meta, nil
	}
	c.setCurrent(k, ks, item.Meta, item, c.now())
	c.absent.Remove(k.App)
	c.noteApp(k.App, true)
	if !c.opts.WriteOnly {
		// The value just sealed is this revision's plaintext: reading it
		// back needs no unwrap. The caller keeps its own slice.
		wiped = c.fill(ks.snap, crypto.Plaintext(value).Clone())
		c.dropPrev(ks) // the new value is held: nothing to fall back on is needed
	}
	return item.Meta, nil
}

// Delete implements secrets.Catalog.
func (c *Catalog) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	err := c.origin.Delete(context.WithoutCancel(ctx), k, expected)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		if c.root.emptied == nil {
			c.root.emptied = map[string]time.Time{}
		}
		c.root.emptied[k.App] = c.now()
	}
	a := c.apps[k.App]
	if a == nil || a.keys[k.Name] == nil {
		return err
	}
	ks := a.keys[k.Name]
	if err == nil {
		c.setAbsent(ks, c.now())
		ks.removed = expected
	} else {
		ks.recheck = c.now()
	}
	return err
}
