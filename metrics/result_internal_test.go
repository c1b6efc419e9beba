package metrics

import (
	"context"
	"regexp"
	"testing"

	"github.com/secretfs/secretfs/fault"
)

// Every fault.Kind has its own label, so that a Kind appended to fault
// does not silently count as "other".
func TestEveryKindHasALabel(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[string]fault.Kind{"ok": 255, resultCanceled: 255}
	for k := fault.Kind(0); k.String() != "unknown error kind"; k++ {
		got := resultOf(context.Background(), &fault.Error{Kind: k})
		if !snake.MatchString(got) {
			t.Errorf("kind %s is labelled %q, not snake case", k, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("kinds %s and %s share the label %q", k, other, got)
		}
		seen[got] = k
	}
	if got := resultOf(context.Background(), nil); got != "ok" {
		t.Errorf("success is labelled %q", got)
	}
}
