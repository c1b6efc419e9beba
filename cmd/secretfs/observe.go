package main

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/cache"
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

func (l staleLog) Recovered(k store.Key) {
	l.log.WithField("secret", k.String()).Info("the store answers again: serving fresh values")
}
