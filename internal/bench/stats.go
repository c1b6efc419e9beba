package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// dist summarizes measurements in nanoseconds: the per-round means of a
// hot loop, or single operations.
type dist struct {
	n           int
	median, p90 float64
	min, max    float64
}

func summarize(values []float64) dist {
	if len(values) == 0 {
		return dist{}
	}
	s := slices.Sorted(slices.Values(values))
	return dist{n: len(s), median: quantile(s, 0.5), p90: quantile(s, 0.9), min: s[0], max: s[len(s)-1]}
}

// quantile of sorted values, interpolating between neighbours.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

// ns formats nanoseconds for a reader: 4.4 µs, 3.12 ms, 1.20 s.
func ns(v float64) string {
	d := time.Duration(v)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%.0f ns", v)
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%.1f µs", v/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", v/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", v/1e6)
	}
	return fmt.Sprintf("%.2f s", v/1e9)
}

// medianRange is "median (min–max)" of per-round means.
func (d dist) medianRange() string {
	return fmt.Sprintf("%s (%s–%s)", ns(d.median), ns(d.min), ns(d.max))
}

// medianP90 is "median, p90 …" of single operations.
func (d dist) medianP90() string {
	return fmt.Sprintf("%s (p90 %s)", ns(d.median), ns(d.p90))
}

// ratio is a/b as "21.3×".
func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	r := a / b
	if r < 10 {
		return fmt.Sprintf("%.2f×", r)
	}
	return fmt.Sprintf("%.0f×", r)
}

// counts are events by name: backend calls by API operation, or daemon
// requests by FUSE operation.
type counts map[string]float64

// minus is c − before, name by name, leaving out names that did not change.
func (c counts) minus(before counts) counts {
	d := counts{}
	for k, v := range c {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// per divides every count by n.
func (c counts) per(n float64) counts {
	d := counts{}
	for k, v := range c {
		d[k] = v / n
	}
	return d
}

func (c counts) total() float64 {
	var t float64
	for _, v := range c {
		t += v
	}
	return t
}

// String is "1 GetItem + 1 Decrypt", names in order, or "0".
func (c counts) String() string {
	if len(c) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, num(c[k])+" "+k)
	}
	return strings.Join(parts, " + ")
}

// num formats a count that may be an average: 1, 0.25, 0.0013, 66.6,
// 1,234.
func num(v float64) string {
	switch {
	case v == float64(int64(v)):
		return thousands(int64(v))
	case v >= 100:
		return thousands(int64(v + 0.5))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 0.1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.2g", v) // two significant digits of a rare event
}

// thousands writes n with commas: 2,400,000.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
