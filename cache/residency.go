package cache

import (
	"runtime/debug"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/secretfs/secretfs/crypto"
)

// residency is the set of snapshots holding plaintext, bounded by count:
// an LRU (golang-lru) whose eviction wipes the value of the snapshot it
// drops. Reads mark a snapshot recently used (touch); the sweeper drops
// those idle for longer than Options.Idle. Every method but touch must be
// called with Catalog.mu held: the eviction callback runs inside them and
// collects the wiped snapshots' listeners, which the caller tells once it
// has released the lock (tell).
type residency struct {
	held *lru.Cache[*snapshot, struct{}]
	told []func() // listeners of snapshots wiped by the call in progress
}

func newResidency(size int) *residency {
	r := &residency{}
	held, err := lru.NewWithEvict(size, func(s *snapshot, _ struct{}) {
		r.told = append(r.told, s.wipe()...)
	})
	if err != nil {
		panic(err) // only for a size below 1
	}
	r.held = held
	return r
}

// hold makes s hold value, which it owns from then on, and wipes the
// least recently read plaintexts beyond the bound. It returns the
// listeners of the snapshots wiped.
func (r *residency) hold(s *snapshot, value crypto.Plaintext, now time.Time) (told []func(), crowded bool) {
	s.setValue(value)
	s.touch(now.UnixNano())
	crowded = r.held.Add(s, struct{}{})
	return r.collect(), crowded
}

// remove wipes s's plaintext, if it holds one, and returns its listeners.
func (r *residency) remove(s *snapshot) []func() {
	r.held.Remove(s)
	return r.collect()
}

// purge wipes every plaintext held.
func (r *residency) purge() []func() {
	r.held.Purge()
	return r.collect()
}

// idle wipes the plaintexts not read since cutoff (unix nanoseconds).
func (r *residency) idle(cutoff int64) []func() {
	for _, s := range r.held.Keys() {
		if s.read.Load() <= cutoff {
			r.held.Remove(s)
		}
	}
	return r.collect()
}

// touch marks s as just read, for the count bound. It takes only the
// LRU's own lock: reads call it without Catalog.mu.
func (r *residency) touch(s *snapshot) { r.held.Get(s) }

func (r *residency) holds(s *snapshot) bool { return s != nil && r.held.Contains(s) }

func (r *residency) len() int { return r.held.Len() }

func (r *residency) collect() []func() {
	told := r.told
	r.told = nil
	return told
}

// fill gives value to s, which owns it from then on. c.mu must be held;
// the listeners of the plaintexts the bound wiped are returned, to be
// told once it is released.
func (c *Catalog) fill(s *snapshot, value crypto.Plaintext) []func() {
	told, crowded := c.resident.hold(s, value, c.now())
	if o, ok := c.obs.(CrowdObserver); ok && crowded {
		go o.Crowded(c.opts.Size)
	}
	return told
}

// tell runs the listeners of wiped plaintexts, each in its own goroutine:
// they notify the kernel, which must never happen under a lock.
func tell(told []func()) {
	for _, f := range told {
		go f()
	}
}

// sweep wipes plaintexts left unread for Idle, forgets absences the
// store told of more than a TTL ago, and drops the indexes of
// applications nobody uses, until Close.
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
		told := c.resident.idle(now.Add(-c.opts.Idle).UnixNano())
		c.forgetUnused(now)
		emptied := len(told) > 0 && c.resident.len() == 0
		c.mu.Unlock()
		tell(told)
		if emptied {
			// The wiped plaintexts' memory goes back to the system now,
			// not when the runtime next scavenges: a mount that served a
			// burst of secrets and went idle holds little.
			debug.FreeOSMemory()
		}
	}
}

// forgetUnused forgets absences older than the TTL (and past RetryAfter
// of a failure) and the indexes nobody uses (see unused). c.mu must be
// held.
func (c *Catalog) forgetUnused(now time.Time) {
	for app, a := range c.apps {
		for name, ks := range a.keys {
			if !ks.holds() && ks.fetch == nil && !now.Before(ks.verified.Add(c.opts.TTL)) &&
				(ks.failed == nil || !now.Before(ks.failed.at.Add(c.opts.RetryAfter))) {
				c.dropSnap(ks)
				a.forget(name)
			}
		}
		if c.unused(a, now) {
			for _, ks := range a.keys {
				c.dropSnap(ks)
			}
			delete(c.apps, app)
		}
	}
}
