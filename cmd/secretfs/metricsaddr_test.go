package main

import (
	"testing"

	"github.com/secretfs/secretfs/internal/handover"
)

// A replacement takes over the predecessor's metrics address when the
// two name the same port on addresses that overlap (one of them every
// address), as well as when they are equal: the address comes free as
// the predecessor steps down. (":19312" against "127.0.0.1:19312" was
// refused as held by another process.)
func TestAMetricsAddressOverlappingThePredecessorsIsItsToTakeOver(t *testing.T) {
	for _, c := range []struct {
		theirs, ours string
		want         bool
	}{
		{":19312", ":19312", true},
		{":19312", "127.0.0.1:19312", true},
		{"127.0.0.1:19312", ":19312", true},
		{"127.0.0.1:19312", "127.0.0.1:19312", true},
		{"127.0.0.1:19312", "127.0.0.2:19312", false},
		{":19312", ":19313", false},
		{handover.NoMetrics, ":19312", false},
		{"", ":19312", true}, // a predecessor that does not say is taken to
		{"localhost:19312", "127.0.0.1:19312", true},
		{"localhost:19312", "127.0.0.2:19312", false},
	} {
		s := &succession{pred: &handover.Predecessor{Hello: handover.Reply{MetricsAddr: c.theirs}}}
		if got := s.predecessorServesMetricsAt(c.ours); got != c.want {
			t.Errorf("predecessor at %q, this mount at %q: %v, want %v", c.theirs, c.ours, got, c.want)
		}
	}
}
