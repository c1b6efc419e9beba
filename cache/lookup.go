package cache

import (
	"context"
	"slices"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// step is what a lookup does next: answer (done), decrypt a revision
// before answering with it (try, see mustTry), or wait for a call to the
// origin and look again (wait).
type step struct {
	done  bool
	entry secrets.Entry
	err   error
	try   *snapshot
	wait  *flight
	// revalidation: wait is a revalidation (its failure decides the
	// answer), not a fetch that binds a revision already fresh.
	revalidation bool
}

func answer(e secrets.Entry, err error) step { return step{done: true, entry: e, err: err} }

// Lookup implements secrets.Catalog.
func (c *Catalog) Lookup(ctx context.Context, k store.Key) (secrets.Entry, error) {
	const op fault.Op = "cache.Lookup"
	if err := k.Validate(); err != nil {
		return secrets.Entry{}, fault.E(op, err)
	}
	hit := true
	defer func() { c.obs.Looked(hit) }()
	var last step       // the call waited for last, if any
	var tried *snapshot // the revision this lookup tried to decrypt
	for {
		c.mu.Lock()
		st := c.lookupStep(k, last, tried)
		c.mu.Unlock()
		switch {
		case st.done:
			if st.err != nil {
				st.err = fault.E(op, k.Path(), st.err)
			}
			return st.entry, st.err
		case st.try != nil:
			hit, tried = false, st.try
			c.settlePrev(k, st.try, st.try.decrypt(ctx))
		default:
			hit, last = false, st
			<-st.wait.done // never abandoned: each backend call has its own deadline
		}
	}
}

// lookupStep decides the next step of a lookup of k, given the call it
// waited for last and the revision it tried to decrypt. c.mu must be
// held.
func (c *Catalog) lookupStep(k store.Key, last step, tried *snapshot) step {
	now := c.now()
	var asOf time.Time // once a call was waited for: what it told stands, whatever the TTL
	if last.wait != nil {
		asOf = last.wait.started
	}
	if c.absentSince(k.App, now, asOf) {
		return answer(secrets.Entry{}, fault.E(fault.NotFound, "no such application"))
	}
	a := c.app(k.App)
	ks := a.keys[k.Name]
	if err := last.wait.failure(); last.revalidation && err != nil && !fault.Is(fault.NotFound, err) {
		// The store was asked and did not say (NotFound says: the
		// freshness check below answers it).
		if !fault.Answered(err) {
			return c.staleStep(ks, k, err, tried)
		}
		return answer(secrets.Entry{}, err)
	}
	if fresh, until := c.fresh(a, ks, now, asOf); fresh {
		return c.freshStep(a, ks, k, now, until, last, tried)
	}
	f, outage := c.revalidation(a, ks, k, now)
	if outage != nil {
		// The store did not answer the last time it was asked: give the
		// last answer at once, if it may be given, while f asks again in
		// the background.
		if st := c.staleStep(ks, k, outage.err, tried); st.err == nil {
			return st
		}
	}
	return step{wait: f, revalidation: true}
}

// freshStep is the next step of a lookup whose answer about k is fresh:
// what it says, unless the revision must first be bound or decrypted.
// c.mu must be held.
func (c *Catalog) freshStep(a *appIndex, ks *keyState, k store.Key, now, until time.Time, last step, tried *snapshot) step {
	switch {
	case !ks.holds():
		return answer(secrets.Entry{}, fault.E(fault.NotFound))
	case ks.status == keyRefused:
		return answer(secrets.Entry{}, ks.refusal)
	}
	if c.mustTry(ks, tried, now) {
		return step{try: ks.snap}
	}
	if e, ok := c.prevAnswer(ks, k, now); ok {
		return answer(e, nil)
	}
	e := secrets.Entry{Meta: ks.snap.meta, Fresh: until.Sub(now)}
	if err := last.wait.failure(); ks.snap.item != nil || (!last.revalidation && err != nil && !fault.Answered(err)) {
		// Bound; or the store could not be asked for the item: the
		// name stands, and a read will report the failure.
		return answer(e, nil)
	}
	if err := last.wait.failure(); !last.revalidation && err != nil && !fault.Is(fault.NotFound, err) {
		// The store answered the read of the item with a failure (a
		// malformed or oversized item): that is the answer. Reading it
		// again at once would only answer the same, in a loop that ends
		// no sooner than the listing changes.
		return answer(secrets.Entry{}, err)
	}
	// Fresh, but known only from a listing: read the item now, so that
	// the revision the name is bound to can be read (see Snapshot.Bind).
	return step{wait: c.fetchFlight(a, k, now)}
}

// staleStep is the next step of a lookup of k while the store cannot be
// asked (cause): the last answer, if it may be given, after trying to
// decrypt its revision if need be; else the failure. c.mu must be held.
func (c *Catalog) staleStep(ks *keyState, k store.Key, cause error, tried *snapshot) step {
	if now := c.now(); c.mayServeStaleKey(ks, now) && c.mustTry(ks, tried, now) {
		return step{try: ks.snap}
	}
	e, ok := c.staleAnswer(ks, k, cause)
	if !ok {
		return answer(secrets.Entry{}, cause)
	}
	return answer(e, nil)
}

// fresh reports whether what the catalog knows of the key (ks, or its
// absence from a listing of a) still stands, and until when: it is
// younger than the TTL, or no older than asOf (the start of a call the
// caller waited for, which answers it even with a TTL of zero), and no
// write through the catalog failed since. c.mu must be held.
func (c *Catalog) fresh(a *appIndex, ks *keyState, now, asOf time.Time) (bool, time.Time) {
	at := a.listedAt
	if ks != nil && !ks.verified.IsZero() {
		at = ks.verified
	}
	until := at.Add(c.opts.TTL)
	if ks != nil && !ks.recheck.IsZero() && (asOf.IsZero() || asOf.Before(ks.recheck)) {
		return false, until
	}
	return !at.IsZero() && (now.Before(until) || (!asOf.IsZero() && !at.Before(asOf))), until
}

// Fresh implements secrets.Catalog.
func (c *Catalog) Fresh(k store.Key) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.apps[k.App]
	if a == nil {
		return 0
	}
	now := c.now()
	if fresh, until := c.fresh(a, a.keys[k.Name], now, time.Time{}); fresh {
		return until.Sub(now)
	}
	return 0
}

// revalidation returns the call that will tell what k is now, starting it
// if need be, and the failure of the last such call if it got no answer
// (an outage). A known secret is revalidated with its whole application
// (one listing, which answers its other names for the TTL); an unknown
// one, in an application never listed, with a fetch of its item. With a
// TTL of zero a listing answers nothing beyond the lookup that waited
// for it, so a known secret is revalidated with a fetch of its item: one
// request, where a listing per name would make `ls -l` of N names cost N
// listings of N. c.mu must be held.
func (c *Catalog) revalidation(a *appIndex, ks *keyState, k store.Key, now time.Time) (f *flight, outage *failure) {
	if ks.holds() && c.opts.TTL == 0 {
		return c.fetchFlight(a, k, now), ks.failed
	}
	if ks.holds() || !a.listedAt.IsZero() {
		return c.listingFlight(a, k.App, now), a.failed
	}
	f = c.fetchFlight(a, k, now)
	if ks != nil {
		outage = ks.failed
	}
	return f, outage
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
	if !ks.served() {
		return store.Meta{}, false
	}
	if ks.prev != nil {
		if prev, _ := c.fallback(ks, c.now()); prev != nil {
			return prev.meta, true
		}
	}
	return ks.snap.meta, true
}

// HasSecrets implements secrets.Catalog: from a listing no older than the
// TTL, else from a new one (stale if the store cannot answer).
func (c *Catalog) HasSecrets(ctx context.Context, app string) (bool, error) {
	const op fault.Op = "cache.HasSecrets"
	if c.opts.TTL == 0 && store.ValidName(app) == nil {
		// With no TTL a listing answers this call alone, and a path
		// walk asks at every step through the application's directory
		// (`ls -l` of N names: N listings of N). One entry of one page
		// says as much; anything else (an empty page, no answer) goes
		// the way of a listing, which knows absence and outages.
		if page, _, err := c.origin.List(ctx, app, "", 1); err == nil && len(page) > 0 {
			return true, nil
		}
	}
	if c.inFreshRootListing(app) {
		return true, nil
	}
	absent, err := c.listed(app)
	if err != nil && !fault.Answered(err) && c.heldSecretsWithinStale(app) {
		return true, nil
	}
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

// inFreshRootListing reports whether a listing of the applications no
// older than the TTL names app (with what the catalog learned since): it
// then holds secrets as far as the TTL lets the mount know, and needs no
// listing of its own. The kernel looks up every name `ls` of the root
// gives, and each would cost a listing of the application otherwise
// (one Query per application per TTL, on top of the Scan).
func (c *Catalog) inFreshRootListing(app string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if a := c.apps[app]; a != nil && a.fresh(c.opts.TTL, now, time.Time{}) {
		return false // its own listing answers, and knows what the catalog did since
	}
	return c.root.fresh(c.opts.TTL, now, time.Time{}) && c.root.vouchesFor(app)
}

// heldSecretsWithinStale reports whether, by an answer of the store
// still within the stale window, app holds secrets: a secret of it the
// catalog fetched, or a listing of the applications. An application
// known only so (never listed on its own, see inFreshRootListing) has no
// listing of its own to fall back on while the store cannot answer.
func (c *Catalog) heldSecretsWithinStale(app string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if a := c.apps[app]; a != nil {
		for _, ks := range a.keys {
			if ks.holds() && c.withinStale(ks.verified, now) {
				return true
			}
		}
	}
	return c.root.vouchesFor(app) && c.withinStale(c.root.listedAt, now)
}

// listPage is how many names a page of List holds when the caller lets
// the catalog choose.
const listPage = 1000

// List implements secrets.Catalog: a page of the application's listing,
// no older than the TTL. The listing is the one revalidation makes, so a
// listing of an application is one more only when the TTL has passed;
// while the store cannot answer, it is the last one, within the stale
// window. A refused revision lists with its size unknown.
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
	a := c.app(app)
	names := a.names()
	i, _ := slices.BinarySearch(names, after)
	page := make([]store.Meta, 0, min(limit, len(names)-i))
	for ; i < len(names); i++ {
		if names[i] == after {
			continue
		}
		ks := a.keys[names[i]]
		if !ks.holds() {
			continue
		}
		if len(page) == limit {
			return page, page[limit-1].Name, nil
		}
		page = append(page, ks.snap.meta)
	}
	return page, "", nil
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
		return &c.app(app).listingState, false
	}, func(f *flight) { go c.runListing(app, f) })
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apps[app] == nil, nil
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
