package cache

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// flight is a call to the origin that callers share: a fetch of one item,
// or a listing. Its result is applied to the catalog by the flight itself,
// the same way whoever started it; err (and item, for a fetch) are set
// before done is closed. No caller's cancellation stops it: the origin
// bounds each backend call with its own deadline.
type flight struct {
	started time.Time // what it tells is true as of then
	done    chan struct{}
	item    *store.Item
	err     error
}

func newFlight(now time.Time) *flight { return &flight{started: now, done: make(chan struct{})} }

// failure returns the error of a flight that has ended, or nil (also for
// no flight).
func (f *flight) failure() error {
	if f == nil {
		return nil
	}
	return f.err
}

// fetchFlight returns the fetch of k's item in flight, or starts one.
// c.mu must be held.
func (c *Catalog) fetchFlight(a *appIndex, k store.Key, now time.Time) *flight {
	ks := a.state(k.Name)
	if ks.fetch != nil {
		return ks.fetch
	}
	f := newFlight(now)
	ks.fetch = f
	go c.runFetch(k, f)
	return f
}

// freshFetch returns a fetch of k that began no earlier than now: the one
// in flight if it did, else a new one. c.mu must be held.
func (c *Catalog) freshFetch(a *appIndex, k store.Key, now time.Time) *flight {
	ks := a.state(k.Name)
	if ks.fetch != nil && !ks.fetch.started.Before(now) {
		return ks.fetch
	}
	f := newFlight(now)
	if ks.fetch == nil {
		ks.fetch = f
	}
	go c.runFetch(k, f)
	return f
}

// runFetch reads k's item and applies what the store said: the one path
// of every fetch, whether a lookup, a read binding its revision or a
// writer verifying what it replaces asked for it.
func (c *Catalog) runFetch(k store.Key, f *flight) {
	item, err := c.origin.Fetch(context.Background(), k)
	c.mu.Lock()
	a := c.app(k.App)
	ks := a.state(k.Name)
	if ks.fetch == f {
		ks.fetch = nil
	}
	var changed []store.Key
	var told []func()
	switch {
	case err == nil:
		newer := ks.verified.After(f.started) && ks.holds() && !ks.snap.meta.Revision().Equal(item.Revision())
		if newer || ks.removed.Equal(item.Revision()) {
			// A write through the catalog finished after this fetch
			// began: it is newer; or a Delete through the catalog
			// removed what it read. The fetched item may still bind a
			// snapshot of its own revision.
			c.attach(item)
			break
		}
		if c.setCurrent(k, ks, item.Meta, item, f.started) {
			changed = append(changed, k)
		}
	case fault.Is(fault.NotFound, err):
		if !ks.verified.After(f.started) {
			if ks.holds() {
				changed = append(changed, k)
			}
			c.setAbsent(ks, f.started)
		}
	case fault.Is(fault.Permission, err):
		// An answer, not an outage: not remembered as a failure, so that
		// access granted again works at the next lookup.
		told = c.refuse(a, k.Name)
	case !fault.Answered(err):
		ks.failed = &failure{at: c.now(), err: err}
	default:
		// Answered with a failure (a malformed item): the caller gets
		// it. An answer about the secret ends its outage: the next lookup
		// asks rather than answer stale at once.
		c.endOutage(k, ks)
	}
	c.mu.Unlock()
	tell(told)
	c.changed(changed)
	f.item, f.err = item, err
	close(f.done)
}

// listingFlight returns app's listing in flight, or starts one. c.mu must
// be held.
func (c *Catalog) listingFlight(a *appIndex, app string, now time.Time) *flight {
	return c.flightOf(&a.listingState, now, func(f *flight) { go c.runListing(app, f) })
}

// flightOf returns l's listing in flight, or starts one with run. c.mu
// must be held.
func (c *Catalog) flightOf(l *listingState, now time.Time, run func(*flight)) *flight {
	if l.listing == nil {
		l.listing = newFlight(now)
		run(l.listing)
	}
	return l.listing
}

// runListing lists app whole and applies it.
func (c *Catalog) runListing(app string, f *flight) {
	metas, err := c.origin.ListAll(context.Background(), app)
	c.mu.Lock()
	a := c.app(app)
	a.listing = nil
	var changed, appeared []store.Key
	var told []func()
	switch {
	case err == nil:
		relisted := !a.listedAt.IsZero()
		a.failed, a.listedAt = nil, f.started
		changed, appeared = c.applyListing(a, app, metas, f.started)
		if !relisted {
			appeared = nil // the first listing finds everything: nothing appeared
		}
		c.noteListed(app, a, f.started)
	case fault.Is(fault.Permission, err):
		a.listedAt = time.Time{} // nothing it listed stands
		for name := range a.keys {
			told = append(told, c.refuse(a, name)...)
		}
	default:
		// Silence, or an answer that is a failure of the listing as a
		// whole (a malformed item fails only its own name: checkMeta):
		// either way the store said nothing about any one name, so the
		// last listing stands within the stale window, as each name's
		// own last answer does, and is asked again in the background. An
		// answer taken as the end of the listing would make every intact
		// name of the application fail once its TTL is past, and the
		// next listing count as a first one, whose new names nobody is
		// told of.
		a.failed = &failure{at: c.now(), err: err}
		c.scheduleRetry(app, a)
	}
	c.mu.Unlock()
	tell(told)
	if err == nil {
		c.obs.Revalidated(app, len(changed))
	}
	c.changed(append(changed, appeared...))
	f.err = err
	close(f.done)
}

// runApps lists the applications and applies the listing.
func (c *Catalog) runApps(f *flight) {
	names, err := c.origin.Apps(context.Background())
	c.mu.Lock()
	r := &c.root
	r.listing = nil
	switch {
	case err == nil:
		// An application a listing of its own found empty after this
		// one began stays absent: what began later stands.
		names = slices.DeleteFunc(names, func(n string) bool {
			at, ok := c.absent.Peek(n)
			return ok && !at.Before(f.started)
		})
		r.names, r.listedAt, r.failed = names, f.started, nil
		maps.DeleteFunc(r.emptied, func(_ string, at time.Time) bool { return at.Before(f.started) })
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

// await makes sure the listing that state returns (under c.mu; done
// true: nothing needs listing) is no older than the TTL: from memory,
// else from a new listing started with run (which every caller at the
// time shares), else, while the store cannot answer, the last one if it
// is within the stale window: at once if the last listing got no answer
// (or none about any one name: runListing),
// while a new one asks in the background. Like every call of the catalog
// to its origin, it runs without the caller's cancellation: a mount's
// request is cancelled when the process that made it catches a signal,
// and must not fail for that (only a fatal signal interrupts a read).
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
		f := c.flightOf(l, now, run)
		stale := c.withinStale(l.listedAt, now)
		outage := l.failed != nil
		c.mu.Unlock()
		if outage && stale {
			return nil
		}
		<-f.done
		asOf = f.started
		if f.err != nil {
			if c.servesStale(l) {
				return nil
			}
			return f.err
		}
	}
}

// servesStale says whether the last listing l holds is the answer after
// its flight failed: the run took the failure for an outage (l.failed;
// runListing, runApps decide which failures are), and the listing is
// within the stale window.
func (c *Catalog) servesStale(l *listingState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.failed != nil && c.withinStale(l.listedAt, c.now())
}
