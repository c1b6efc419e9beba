package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// v1Limit holds the metrics of the v1 limit (secrets.V1FailureLimit): how
// many v1 decryptions it refused, and whether it refuses them now.
type v1Limit struct {
	refused prometheus.Counter
	until   atomic.Int64 // unix nanoseconds; v1 decryptions are refused before it
}

// collectors makes the v1 limit's metrics, read with now.
func (l *v1Limit) collectors(now func() time.Time) []prometheus.Collector {
	l.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "secretfs_v1_decryptions_refused_total",
		Help: "Decryptions of v1 (legacy, unauthenticated) items refused because v1 items failed their integrity check too often: someone may be forging them (docs/SECURITY.md).",
	})
	tripped := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "secretfs_v1_limit_tripped",
		Help: "1 while every v1 decryption is refused because v1 items failed their integrity check too often, else 0.",
	}, func() float64 {
		if now().UnixNano() < l.until.Load() {
			return 1
		}
		return 0
	})
	return []prometheus.Collector{l.refused, tripped}
}

// V1Limit returns the secrets.V1Observer that counts what the v1 limit
// does: pass it as secrets.Options.V1Observer. The limit says nothing of
// which secret, so nothing is labelled. Called on a nil Registry (a mount
// without --metrics-addr) it returns an observer that counts nothing.
func (r *Registry) V1Limit() V1LimitObserver { return V1LimitObserver{r: r} }

// V1LimitObserver implements secrets.V1Observer (by its method set: the
// metrics package does not import secrets). Get one from
// Registry.V1Limit.
type V1LimitObserver struct{ r *Registry }

// V1Refused counts a refused v1 decryption.
func (o V1LimitObserver) V1Refused() {
	if o.r != nil {
		o.r.v1.refused.Inc()
	}
}

// V1Tripped records that v1 decryptions are refused until `until`.
func (o V1LimitObserver) V1Tripped(until time.Time) {
	if o.r != nil {
		o.r.v1.until.Store(until.UnixNano())
	}
}
