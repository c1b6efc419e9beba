package main

import (
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/store"
)

// staleLog tells the operator, once per secret per outage, that the mount
// serves a value past its TTL because the store cannot answer, and when it
// answers again.
type staleLog struct {
	log    logrus.FieldLogger
	window time.Duration
	crowd  *crowdWarning
}

// crowdWarning is when the log last said that more secrets are read
// than --cache-size holds (see staleLog.Crowded).
type crowdWarning struct{ last atomic.Int64 }

// crowdWarningEvery is how often, at most, the log says it.
const crowdWarningEvery = time.Hour

// Crowded warns, at most once per crowdWarningEvery, that the count
// bound wiped a plaintext to hold another: every read of it again costs
// a key unwrap, and so, while this lasts, key unwraps grow with the read
// rate (secretfs_cache_crowded_total counts each).
func (l staleLog) Crowded(size int) {
	now := time.Now().UnixNano()
	if last := l.crowd.last.Load(); last != 0 && now-last < int64(crowdWarningEvery) || !l.crowd.last.CompareAndSwap(last, now) {
		return
	}
	l.log.WithField("cache_size", size).Warn("more secrets are read than --cache-size holds: the least recently read plaintext was wiped, and reading it again costs a key unwrap (a KMS Decrypt); raise --cache-size to hold every secret this host reads (said at most once an hour)")
}

var _ cache.Observer = staleLog{}

func (staleLog) Looked(bool)             {}
func (staleLog) Revalidated(string, int) {}

func (l staleLog) Stale(k store.Key, cause error, first bool) {
	if first {
		l.log.WithFields(logrus.Fields{"secret": k.String(), "stale_if_error": l.window.String(), "error": cause.Error()}).
			Warn("the store cannot answer: serving the last known value")
	}
}

// RolledBack warns of a secret whose Version went down while the mount
// ran: someone who can write the store put an older item back (the
// format cannot tell that from a restore), or the secret was removed and
// created again elsewhere.
func (l staleLog) RolledBack(k store.Key, from, to store.Version) {
	l.log.WithFields(logrus.Fields{"secret": k.String(), "from_version": int64(from), "to_version": int64(to)}).
		Warn("the secret's version went down: an older item was put back in the store, or it was removed and created again")
}

func (l staleLog) Recovered(k store.Key) {
	l.log.WithField("secret", k.String()).Info("the store answers again: serving fresh values")
}

// observers tells each of its observers everything.
type observers []cache.Observer

var (
	_ cache.RollbackObserver = staleLog{}
	_ cache.CrowdObserver    = staleLog{}
	_ cache.CrowdObserver    = observers{}
	_ cache.CrowdObserver    = metrics.CacheObserver{}
	_ cache.RollbackObserver = observers{}
	_ cache.Observer         = observers{}
	_ cache.Observer         = metrics.CacheObserver{}
)

func (o observers) Looked(hit bool) {
	for _, x := range o {
		x.Looked(hit)
	}
}

func (o observers) Revalidated(app string, changed int) {
	for _, x := range o {
		x.Revalidated(app, changed)
	}
}

func (o observers) Stale(k store.Key, cause error, first bool) {
	for _, x := range o {
		x.Stale(k, cause, first)
	}
}

func (o observers) RolledBack(k store.Key, from, to store.Version) {
	for _, x := range o {
		if rb, ok := x.(cache.RollbackObserver); ok {
			rb.RolledBack(k, from, to)
		}
	}
}

func (o observers) Crowded(size int) {
	for _, x := range o {
		if c, ok := x.(cache.CrowdObserver); ok {
			c.Crowded(size)
		}
	}
}

func (o observers) Recovered(k store.Key) {
	for _, x := range o {
		x.Recovered(k)
	}
}
