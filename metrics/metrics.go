// Package metrics is the mount's Prometheus metrics and health check: it
// counts what the mount serves, what the cache does and what the backends
// (the Store and the KeyWrapper) are asked, and it judges from those calls
// whether the backend answers. Handler serves both as /metrics and
// /healthz.
//
// The counting wraps the boundaries as decorators (WrapStore, WrapKeys,
// Observer, WrapRequests); nothing inside a store, a key wrapper or the
// file system knows of it.
// A backend request's result is "ok", the snake-case name of its
// fault.Kind ("not_found", "conflict", "permission", "unavailable",
// "other"...), or "canceled" when its caller gave up first.
//
// Health is judged from the backend calls the decorators see. /healthz
// answers 200 "ok" while the mount is served (SetServing) and the backend
// answers. An answer is a success or any error but Unavailable and Other
// (NotFound, Conflict, Permission, Integrity: the backend heard and
// replied), and it makes the mount healthy at once. A call failing with
// Unavailable or Other starts a failure, timed from when that call ended;
// once a failure has run for longer than Options.FailingFor with no answer
// since, /healthz answers 503 "backend calls failing since T (over D) with
// no success since". A call its caller cancelled counts as neither. Only
// the mount's own calls are judged: an idle mount keeps its last
// judgement.
//
// It must never put an application name, a secret name or a value in a
// label, a help text or a health answer: labels hold only operation names,
// errno names, service names given by the caller, and result kinds. A
// scrape of a mount must tell an outsider nothing about what it holds but
// how much.
package metrics

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/secretfs/secretfs/fault"
)

// DefaultFailingFor is Options.FailingFor when none is given: the
// default of the mount's --timeout, the deadline of one backend call.
const DefaultFailingFor = 5 * time.Second

// Options configures a Registry.
type Options struct {
	// FailingFor is how long backend calls must have been failing, with
	// no success since, before /healthz answers 503. The mount passes its
	// --timeout: a backend that has not answered for one whole deadline
	// is down, not slow. DefaultFailingFor if <= 0.
	FailingFor time.Duration
	// Now is the clock of the health judgement; time.Now if nil.
	// Durations are always measured with the monotonic clock.
	Now func() time.Time
}

// Buckets of the duration histograms, in seconds. A FUSE request answered
// from memory takes tens of microseconds; one that waits for the backend
// takes what the backend takes, up to the call's deadline.
var (
	fuseBuckets    = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	backendBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Registry holds the mount's metrics and health. Safe for concurrent use.
type Registry struct {
	reg *prometheus.Registry
	now func() time.Time

	fuseRequests        *prometheus.CounterVec
	fuseDuration        *prometheus.HistogramVec
	lookups             *prometheus.CounterVec
	revalidations       prometheus.Counter
	revalidationChanges prometheus.Counter
	staleAnswers        prometheus.Counter
	crowded             prometheus.Counter
	backendRequests     *prometheus.CounterVec
	backendDuration     *prometheus.HistogramVec
	commits             *prometheus.CounterVec
	v1                  v1Limit

	held   atomic.Pointer[func() int]
	health health
}

// New returns a Registry for a mount of the given secretfs version, with
// every secretfs_ metric and the standard go_ and process_ collectors
// registered. Its health answers "not mounted" until SetServing(true).
func New(version string, opts Options) *Registry {
	if opts.FailingFor <= 0 {
		opts.FailingFor = DefaultFailingFor
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Registry{reg: prometheus.NewRegistry(), now: opts.Now}
	r.health.failingFor = opts.FailingFor

	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "secretfs_build_info",
		Help:        "Always 1; the labels say which secretfs and which Go built this mount.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	r.fuseRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "secretfs_fuse_requests_total",
		Help: "FUSE requests the mount served, by operation and the errno answered (OK for success).",
	}, []string{"op", "errno"})
	r.fuseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "secretfs_fuse_request_duration_seconds",
		Help:    "How long the mount took to answer a FUSE request, by operation.",
		Buckets: fuseBuckets,
	}, []string{"op"})
	r.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "secretfs_cache_lookups_total",
		Help: "Lookups of a secret answered by the cache: hit from memory, miss after asking the store.",
	}, []string{"result"})
	r.revalidations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "secretfs_cache_revalidations_total",
		Help: "Listings that revalidated what the cache knew of an application.",
	})
	r.revalidationChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "secretfs_cache_revalidation_changes_total",
		Help: "Secrets that revalidations found changed or removed.",
	})
	r.staleAnswers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "secretfs_stale_answers_total",
		Help: "Answers given past their TTL because the store could not be asked (stale-if-error).",
	})
	r.crowded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "secretfs_cache_crowded_total",
		Help: "Plaintexts wiped to hold others within --cache-size: reading one again costs a key unwrap (a KMS Decrypt).",
	})
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "secretfs_secrets_decrypted",
		Help: "Secrets whose plaintext the mount holds in memory.",
	}, func() float64 {
		if f := r.held.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	r.backendRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "secretfs_backend_requests_total",
		Help: "Requests to the backends, by service, operation and result (ok, or the kind of error).",
	}, []string{"service", "operation", "result"})
	r.backendDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "secretfs_backend_request_duration_seconds",
		Help:    "How long a backend request took, by service and operation, whatever its result.",
		Buckets: backendBuckets,
	}, []string{"service", "operation"})
	r.commits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "secretfs_commits_total",
		Help: "Writes committed to the store: ok, conflict (another writer won) or failed.",
	}, []string{"result"})
	healthy := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "secretfs_healthy",
		Help: "1 while /healthz answers 200: the mount is served and the backend answers.",
	}, func() float64 {
		if ok, _ := r.Healthy(); ok {
			return 1
		}
		return 0
	})

	// Zero series a dashboard can rate() from the first scrape on.
	for _, result := range []string{"hit", "miss"} {
		r.lookups.WithLabelValues(result)
	}
	for _, result := range []string{commitOK, commitConflict, commitFailed} {
		r.commits.WithLabelValues(result)
	}

	r.reg.MustRegister(
		build, r.fuseRequests, r.fuseDuration, r.lookups, r.revalidations,
		r.revalidationChanges, r.staleAnswers, r.crowded, held, r.backendRequests,
		r.backendDuration, r.commits, healthy,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	r.reg.MustRegister(r.v1.collectors(r.now)...)
	return r
}

// Gatherer is the underlying Prometheus registry, for a caller that
// serves or tests it its own way.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Decrypted makes secretfs_secrets_decrypted report held() at each
// scrape: the mount passes the cache's (*cache.Catalog).Held. Until it is
// called (or after Decrypted(nil)) the gauge reports 0. held must be safe
// to call concurrently.
func (r *Registry) Decrypted(held func() int) {
	if held == nil {
		r.held.Store(nil)
		return
	}
	r.held.Store(&held)
}

// Commit results.
const (
	commitOK       = "ok"
	commitConflict = "conflict"
	commitFailed   = "failed"
)

// Committed counts one commit of a write (a flush or fsync of a written
// file, a create, a rename) by its outcome: nil is ok; a failed condition
// (fault.ConditionFailed: another writer won) is conflict; any other
// error is failed.
func (r *Registry) Committed(err error) {
	result := commitOK
	switch {
	case err == nil:
	case fault.ConditionFailed(err):
		result = commitConflict
	default:
		result = commitFailed
	}
	r.commits.WithLabelValues(result).Inc()
}

// resultCanceled is the result of a call its caller gave up on before the
// backend answered: neither a success nor a failure of the backend.
const resultCanceled = "canceled"

// resultOf labels the outcome of a backend call made with ctx: "ok", the
// kind of its error, or "canceled".
func resultOf(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return "ok"
	case callerCanceled(ctx, err):
		return resultCanceled
	}
	return fault.KindOf(err).Label()
}

// callerCanceled reports whether err is only the caller's cancellation
// (an interrupted read), which says nothing of the backend. An expired
// deadline is not: the backend did not answer in time.
func callerCanceled(ctx context.Context, err error) bool {
	return errors.Is(err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled)
}
