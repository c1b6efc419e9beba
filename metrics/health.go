package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/secretfs/secretfs/fault"
)

// health judges the backend from the calls the decorators see. A call
// that ends with an answer (success, or NotFound, Conflict, Permission,
// Integrity and every other kind but Unavailable and Other: the backend
// heard and replied) clears any failure at once. A call that fails with
// Unavailable or Other starts a failure, timed from the moment that call
// ended, unless one is already running. A call its caller cancelled says
// nothing of the backend and changes nothing.
//
// The backend is judged down once a failure has run for longer than
// failingFor with no answer since. With failingFor equal to the calls'
// deadline, a backend that refuses connections is judged down after
// failingFor; one that hangs after about two deadlines: the first call
// that times out starts the failure, a later one that times out finds it
// old enough.
//
// Only calls the mount makes are judged: an idle mount asks nothing and
// keeps its last judgement.
type health struct {
	failingFor time.Duration

	mu           sync.Mutex
	serving      bool
	failingSince time.Time // zero while the last call that ended was answered
}

// record judges a call made with ctx that ended at now with err.
func (h *health) record(ctx context.Context, err error, now time.Time) {
	if err != nil && callerCanceled(ctx, err) {
		return
	}
	failed := err != nil && !fault.Answered(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !failed:
		h.failingSince = time.Time{}
	case h.failingSince.IsZero():
		h.failingSince = now
	}
}

// SetServing says whether the mount is served: the mount calls
// SetServing(true) once it answers and SetServing(false) when it stops.
// While it is not served, /healthz answers 503 "not mounted".
func (r *Registry) SetServing(serving bool) {
	r.health.mu.Lock()
	r.health.serving = serving
	r.health.mu.Unlock()
}

// Healthy reports what /healthz answers: true while the mount is served
// and the backend answers; else false, with a one-line reason that names
// no secret and no value.
func (r *Registry) Healthy() (ok bool, reason string) {
	now := r.now()
	h := &r.health
	h.mu.Lock()
	serving, since := h.serving, h.failingSince
	h.mu.Unlock()
	switch {
	case !serving:
		return false, "not mounted"
	case !since.IsZero() && now.Sub(since) > h.failingFor:
		return false, "backend calls failing since " + since.UTC().Format(time.RFC3339) +
			" (over " + h.failingFor.String() + ") with no success since"
	}
	return true, "ok"
}

// serveHealth answers /healthz: 200 "ok", or 503 and the reason.
func (r *Registry) serveHealth(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ok, reason := r.Healthy()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(reason + "\n")) // a client that left needs no answer
}
