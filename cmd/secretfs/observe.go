package main

import (
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

func (o observers) Recovered(k store.Key) {
	for _, x := range o {
		x.Recovered(k)
	}
}
