package main

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// The log says that more secrets are read than --cache-size holds once,
// however often the bound wipes a plaintext meanwhile (at most once an
// hour), naming the bound.
func TestTheLogSaysOnceThatMoreSecretsAreReadThanTheCacheHolds(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	l := staleLog{log: log, crowd: &crowdWarning{}}
	for range 100 {
		l.Crowded(1024)
	}
	var warned []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "more secrets are read than --cache-size holds") {
			warned = append(warned, e)
		}
	}
	if len(warned) != 1 || warned[0].Data["cache_size"] != 1024 {
		t.Errorf("warnings: %d (%v), want 1 naming cache_size 1024", len(warned), warned)
	}
}
