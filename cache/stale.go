package cache

import (
	"math/rand/v2"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Stale-if-error. While the store cannot answer, the last answer about a
// secret is served (staleAnswer); while the keys cannot decrypt a newer
// revision of a secret being read, the last value read is (fallback). The
// catalog keeps asking in the background (retryListing), so that the
// first read after an outage is fresh.

// staleAnswer returns the last answer the store gave about k, past its
// TTL, when the store cannot answer now (cause), if it is still within
// the stale window. c.mu must be held.
func (c *Catalog) staleAnswer(ks *keyState, k store.Key, cause error) (secrets.Entry, bool) {
	now := c.now()
	if !c.mayServeStaleKey(ks, now) {
		return secrets.Entry{}, false
	}
	first := !ks.warned
	ks.warned = true
	go c.obs.Stale(k, cause, first)
	meta := ks.snap.meta
	if prev, _ := c.fallback(ks, now); prev != nil {
		meta = prev.meta // the current one cannot be read either
	}
	return secrets.Entry{Meta: meta, Fresh: c.opts.RetryAfter, Stale: true}, true
}

// prevAnswer answers with the revision a newer one replaced, while the
// newer one cannot be decrypted (see fallback): stale-if-error for the
// keys. c.mu must be held.
func (c *Catalog) prevAnswer(ks *keyState, k store.Key, now time.Time) (secrets.Entry, bool) {
	prev, cause := c.fallback(ks, now)
	if prev == nil {
		return secrets.Entry{}, false
	}
	first := !ks.prevWarned
	ks.prevWarned = true
	go c.obs.Stale(k, cause, first)
	return secrets.Entry{Meta: prev.meta, Fresh: c.opts.RetryAfter, Stale: true}, true
}

// mayServeStaleKey reports whether the last answer about a key may be
// given while the store cannot answer. c.mu must be held.
func (c *Catalog) mayServeStaleKey(ks *keyState, now time.Time) bool {
	return ks.served() && c.withinStale(ks.verified, now)
}

// fallback returns the revision kept from before (ks.prev), and why, when
// it is what k must be answered with now: the last attempt to decrypt the
// current revision got no answer (the key service, or the store for its
// item) and none has decrypted it since, and the kept one is held and
// within the stale window. Every answer about k (Lookup, a stale answer,
// Known) goes through it, so that they agree: an open checks the revision
// it was looked up as against Known.
//
// How long ago that attempt failed does not matter here: a lookup that
// tried the current revision may answer well after (its revalidation
// waits for the store's deadline), and the kernel keeps that answer for
// RetryAfter after it; for all that time Known must say what the lookup
// said, and the lookup must not answer with the revision it just failed
// to decrypt. When to try the keys again is mustTry's rule. c.mu must be
// held.
func (c *Catalog) fallback(ks *keyState, now time.Time) (*snapshot, error) {
	if ks.prev == nil {
		return nil, nil
	}
	if c.resident.holds(ks.snap) || !c.resident.holds(ks.prev) {
		// The newer one was decrypted meanwhile, or the older one's
		// plaintext was wiped (idle): it has nothing left to offer.
		c.dropPrev(ks)
		return nil, nil
	}
	s := ks.snap
	if s.failed == nil || !c.withinStale(ks.prevSince, now) {
		return nil, nil
	}
	return ks.prev, s.failed.err
}

// mustTry reports whether a lookup must try to decrypt k's current
// revision before it answers: a revision read before (ks.prev) could be
// served instead, the current one is not held, the lookup has not tried
// it yet (tried), and the last attempt, if any, failed at least
// RetryAfter ago (the key service is not asked again sooner, as the
// breaker in front of it would not either). Whatever the answer (fresh or
// stale), a name is not pointed at a revision that cannot be read while
// the last value read could be served. c.mu must be held.
func (c *Catalog) mustTry(ks *keyState, tried *snapshot, now time.Time) bool {
	return ks.served() && ks.prev != nil && ks.snap != tried && !c.resident.holds(ks.snap) &&
		!c.recent(ks.snap.failed, now)
}

// settlePrev applies the outcome of decrypting snap, the current revision
// of k that replaced a held one: decrypted, or refused with an answer (a
// tampered item, a key that refuses), the replaced one is let go; for
// want of an answer, it stays to be served (see fallback).
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

// scheduleRetry asks the store again about app, in the background,
// RetryAfter after its revalidation got no answer (see retryListing).
// c.mu must be held.
func (c *Catalog) scheduleRetry(app string, a *appIndex) {
	if a.retrying {
		return
	}
	a.retrying = true
	// A little jitter, so that a fleet of mounts that lost the store at
	// once does not ask it again all at the same instant.
	d := c.opts.RetryAfter + time.Duration(rand.Int64N(int64(c.opts.RetryAfter/10)+1))
	c.after(d, func() { c.retryListing(app) })
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
	f := newFlight(now)
	a.listing = f
	c.mu.Unlock()
	c.runListing(app, f)
}
