package metrics_test

import (
	"testing"
	"time"

	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/secrets"
)

var _ secrets.V1Observer = metrics.V1LimitObserver{}

// The v1 limit's metrics: a counter of refused decryptions and a flag
// that is 1 until the time the limit was tripped for, without a label.
func TestV1LimitMetrics(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := metrics.New("test", metrics.Options{Now: c.Now})
	_, fams := scrape(t, r.Handler())
	check(t, fams, []want{
		{"secretfs_v1_decryptions_refused_total", nil, 0},
		{"secretfs_v1_limit_tripped", nil, 0},
	})

	obs := r.V1Limit()
	obs.V1Tripped(c.Now().Add(time.Hour))
	obs.V1Refused()
	obs.V1Refused()
	body, fams := scrape(t, r.Handler())
	check(t, fams, []want{
		{"secretfs_v1_decryptions_refused_total", nil, 2},
		{"secretfs_v1_limit_tripped", nil, 1},
	})
	noLeaks(t, body, fams)

	c.Advance(time.Hour)
	_, fams = scrape(t, r.Handler())
	check(t, fams, []want{
		{"secretfs_v1_decryptions_refused_total", nil, 2},
		{"secretfs_v1_limit_tripped", nil, 0},
	})
}

// A mount without metrics has a nil Registry: its observer counts nothing
// and must not crash.
func TestV1LimitOfNilRegistryDoesNotCrash(t *testing.T) {
	var r *metrics.Registry
	obs := r.V1Limit()
	obs.V1Refused()
	obs.V1Tripped(time.Now().Add(time.Hour))
}
