// Package breaker keeps an outage from costing every request a deadline.
// It wraps a store.Store and a crypto.KeyWrapper: once a call gets no
// answer (it ran out of time, or failed in a way the backend did not
// classify), every call to the same backend fails at once, for
// RetryAfter; then one call goes through to see whether the backend
// answers again, while the others keep failing at once until it does.
// Any answer (a value, NotFound, AccessDenied, a conflict...) closes the
// breaker: an answer is not an outage. The rule is fault.Answered.
//
// It is a decorator, as restic's backend/retry is (there, failedLoads):
// every call to the backend (a fetch, a listing, a write, a removal, a key
// unwrap or generation) meets the same rule, whoever makes it. It never
// retries: the SDKs do, inside each call's deadline.
//
// A breaker holds no lock while it calls the backend.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/secretfs/secretfs/fault"
)

// DefaultRetryAfter is how long a breaker stays open after a call got no
// answer, when Breaker.RetryAfter is zero.
const DefaultRetryAfter = time.Second

// Breaker is the outage state of one backend (the store, or the key
// service). The zero value is ready to use. Safe for concurrent use.
type Breaker struct {
	// Name says which backend, in errors: "the store", "the key service".
	Name string
	// RetryAfter is how long calls fail at once after one got no answer;
	// DefaultRetryAfter if zero.
	RetryAfter time.Duration
	// Timeout is the deadline the callers give each call (--timeout),
	// which errors name when a call ran out of it. If zero, they name
	// what was left of the call's deadline when it reached the breaker,
	// which is a little less (1.999s for a 2s --timeout), and less still
	// on a loaded machine.
	Timeout time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time

	mu      sync.Mutex
	openAt  time.Time // when the last call that got no answer ended; zero: closed
	cause   error     // why
	silence string    // how, in words: "gave no answer within 5s"
	probing bool      // a call is seeing whether the backend answers again
}

// Do runs f, one call to the backend, unless the breaker is open (then it
// fails at once with fault.Unavailable, naming why), and judges its
// outcome. A call whose caller gave up (ctx cancelled) says nothing of the
// backend.
func (b *Breaker) Do(ctx context.Context, op fault.Op, f func() error) error {
	probe, err := b.admit(ctx, op)
	if err != nil {
		return err
	}
	budget := time.Duration(0)
	if deadline, ok := ctx.Deadline(); ok {
		budget = b.Timeout
		if budget == 0 {
			budget = time.Until(deadline).Round(time.Millisecond)
		}
	}
	err = f()
	b.judge(ctx, err, probe, budget)
	return err
}

// always marks a context whose calls go through an open breaker.
type always struct{}

// Always returns ctx marked so that its calls go through even while the
// breaker is open (and are judged as any other): for the rare question
// whose answer matters more than the outage rule, such as whether a write
// whose answer was lost landed, which decides what close(2) reports.
func Always(ctx context.Context) context.Context { return context.WithValue(ctx, always{}, true) }

// admit lets a call through, or refuses it at once while the backend is
// known not to answer. After RetryAfter one call (the probe) goes through.
func (b *Breaker) admit(ctx context.Context, op fault.Op) (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openAt.IsZero() || ctx.Value(always{}) != nil {
		return false, nil
	}
	if !b.probing && !b.now().Before(b.openAt.Add(b.retryAfter())) {
		b.probing = true
		return true, nil
	}
	next := "is not asked again before " + b.retryAfter().String() + " have passed"
	if b.probing {
		next = "is being asked again now" // past retryAfter: one call, the probe, is on its way
	}
	return false, fault.E(op, fault.Unavailable, fmt.Sprintf("%s %s %s ago, and %s",
		b.name(), b.silence, b.now().Sub(b.openAt).Round(time.Millisecond), next), b.cause)
}

// judge records the outcome of a call that went through, which had
// budget to answer (0: no deadline).
func (b *Breaker) judge(ctx context.Context, err error, probe bool, budget time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch {
	case err == nil || fault.Answered(err):
		b.openAt, b.cause = time.Time{}, nil
	case errors.Is(ctx.Err(), context.Canceled):
		// The caller gave up before the backend answered: that says
		// nothing of the backend (its deadline is DeadlineExceeded).
	default:
		b.openAt, b.cause = b.now(), err
		b.silence = "did not answer"
		if budget > 0 && errors.Is(err, context.DeadlineExceeded) {
			b.silence = "gave no answer within " + budget.String()
		}
	}
}

// Open reports whether the breaker is open: a call got no answer and none
// has answered since.
func (b *Breaker) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.openAt.IsZero()
}

func (b *Breaker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Breaker) retryAfter() time.Duration {
	if b.RetryAfter > 0 {
		return b.RetryAfter
	}
	return DefaultRetryAfter
}

func (b *Breaker) name() string {
	if b.Name != "" {
		return b.Name
	}
	return "the backend"
}
