package secrets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/secretfs/secretfs/fault"
)

// The v1 limit. v1 (AES-CBC, the original Secret Store's format) is not
// authenticated: whether a forged v1 item's padding is valid decides
// between EIO and a value, and someone who can write the store and see
// that difference (through the mount, its logs or its metrics) learns the
// plaintext of any v1 item a block at a time, with some hundreds of
// forged items per byte (a padding oracle). A Keeper therefore counts the
// integrity failures of v1 items, and once V1FailureLimit of them fall
// within V1FailureWindow it refuses every v1 decryption, valid or not,
// for V1FailureWindow. The window slides: the limit trips when a failure
// is the V1FailureLimit-th within the last V1FailureWindow, and v1 stays
// refused for one whole window from that moment, so no more than
// V1FailureLimit answers about forged v1 items are ever given in any
// window. Genuine v1 items never fail, so reading them never trips it.
const (
	V1FailureLimit  = 10
	V1FailureWindow = time.Hour
)

// V1Observer is told what the v1 limit does, for the mount's metrics. It
// is told nothing of which secret: a metric must not name one. Its
// methods are called without any lock held and must not block.
type V1Observer interface {
	// V1Refused is called for every v1 decryption refused because the
	// limit was reached.
	V1Refused()
	// V1Tripped is called when the limit is reached: v1 decryptions are
	// refused until `until`.
	V1Tripped(until time.Time)
}

// noV1Observer is the V1Observer of a Keeper given none.
type noV1Observer struct{}

func (noV1Observer) V1Refused()          {}
func (noV1Observer) V1Tripped(time.Time) {}

// v1Limiter counts the integrity failures of v1 decryptions and refuses
// v1 decryptions once V1FailureLimit of them fall within V1FailureWindow.
//
// So that the limit is exact, a decryption in flight counts as a failure
// until it has ended: at most V1FailureLimit minus the failures of the
// window run at once, and others wait for one to end (within their call's
// deadline). Without that, many concurrent reads of forged items could
// all be answered before the first failure was counted.
type v1Limiter struct {
	now func() time.Time

	mu       sync.Mutex
	failures []time.Time // within the last window, oldest first
	inflight int
	until    time.Time     // v1 decryptions are refused before it
	ended    chan struct{} // closed, and replaced, when a decryption in flight ends
}

func newV1Limiter(now func() time.Time) *v1Limiter {
	return &v1Limiter{now: now, ended: make(chan struct{})}
}

// v1Refused is the error of a refused v1 decryption: fault.Integrity,
// so that the mount answers EIO, as for the failures that tripped it.
type v1Refused struct{ until time.Time }

func (e v1Refused) Error() string {
	return fmt.Sprintf("v1 decryption refused until %s: %d v1 items failed their integrity check within %s, as when someone forges items to read others' values; `secretfs migrate` moves v1 items to an authenticated format",
		e.until.Format(time.RFC3339), V1FailureLimit, V1FailureWindow)
}

// acquire admits one v1 decryption, or refuses it. An admitted one must
// be ended with end. It waits while other decryptions in flight could
// still reach the limit, until ctx ends.
func (l *v1Limiter) acquire(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := l.now()
		if now.Before(l.until) {
			until := l.until
			l.mu.Unlock()
			return fault.E(fault.Integrity, v1Refused{until})
		}
		l.prune(now)
		if len(l.failures)+l.inflight < V1FailureLimit {
			l.inflight++
			l.mu.Unlock()
			return nil
		}
		ended := l.ended
		l.mu.Unlock()
		select {
		case <-ended:
		case <-ctx.Done():
			return fault.E(fault.Unavailable, fmt.Errorf("waiting for other v1 decryptions to end: %w", ctx.Err()))
		}
	}
}

// end ends a decryption that acquire admitted; failed says it failed its
// integrity check. If that failure reaches the limit, tripped is true and
// v1 decryptions are refused until `until`.
func (l *v1Limiter) end(failed bool) (tripped bool, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if failed {
		now := l.now()
		l.prune(now)
		l.failures = append(l.failures, now)
		if len(l.failures) >= V1FailureLimit {
			l.until = now.Add(V1FailureWindow)
			tripped, until = true, l.until
		}
	}
	close(l.ended)
	l.ended = make(chan struct{})
	return tripped, until
}

// prune forgets the failures that are no longer within the window
// ending at now. l.mu must be held.
func (l *v1Limiter) prune(now time.Time) {
	i := 0
	for i < len(l.failures) && !l.failures[i].After(now.Add(-V1FailureWindow)) {
		i++
	}
	l.failures = append(l.failures[:0], l.failures[i:]...)
}

// IsV1Refused reports whether err is the refusal of a v1 decryption by
// the limit, which says nothing about the item: it may open once the
// limit ends, unlike an item that failed its own integrity check.
func IsV1Refused(err error) bool {
	var r v1Refused
	return errors.As(err, &r)
}
