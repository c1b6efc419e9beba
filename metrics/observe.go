package metrics

import (
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/store"
)

// Served counts one FUSE request the mount served, as WrapRequests does
// for each. op is the request's name (LOOKUP, OPEN, READ...);
// errno is what it answered, labelled by name: OK for success, else
// ENOENT, EIO...
func (r *Registry) Served(op string, errno syscall.Errno, took time.Duration) {
	r.fuseRequests.WithLabelValues(op, errnoLabel(errno)).Inc()
	r.fuseDuration.WithLabelValues(op).Observe(took.Seconds())
}

func errnoLabel(errno syscall.Errno) string {
	if errno == 0 {
		return "OK"
	}
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return "errno_" + strconv.Itoa(int(errno))
}

// Observer returns the cache.Observer that counts what the cache does:
// pass it as cache.Options.Observer. It counts and never labels: the
// applications and secrets it is told of are dropped.
func (r *Registry) Observer() CacheObserver { return CacheObserver{r: r} }

// CacheObserver implements cache.Observer (the metrics package does not
// import cache, whose Observer it satisfies by its method set). The zero
// value must not be used: get one from Registry.Observer.
type CacheObserver struct{ r *Registry }

// Looked counts a lookup as a hit or a miss.
func (o CacheObserver) Looked(hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	o.r.lookups.WithLabelValues(result).Inc()
}

// Revalidated counts a revalidation of an application, and the secrets
// it found changed.
func (o CacheObserver) Revalidated(_ string, changed int) {
	o.r.revalidations.Inc()
	o.r.revalidationChanges.Add(float64(changed))
}

// Stale counts an answer given past its TTL.
func (o CacheObserver) Stale(store.Key, error, bool) { o.r.staleAnswers.Inc() }

// Crowded counts a plaintext the count bound (--cache-size) wiped to
// hold another.
func (o CacheObserver) Crowded(int) { o.r.crowded.Inc() }

// Recovered counts nothing: the backend's recovery shows in
// secretfs_backend_requests_total and /healthz.
func (o CacheObserver) Recovered(store.Key) {}
