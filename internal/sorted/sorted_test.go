package sorted

import (
	"slices"
	"testing"
)

func TestSetInsertsInPlaceAndDeletesOnce(t *testing.T) {
	names := []string{"a", "c"}
	for _, step := range []struct {
		name    string
		present bool
		want    []string
	}{
		{"b", true, []string{"a", "b", "c"}},
		{"b", true, []string{"a", "b", "c"}},
		{"d", true, []string{"a", "b", "c", "d"}},
		{"a", false, []string{"b", "c", "d"}},
		{"a", false, []string{"b", "c", "d"}},
		{"0", true, []string{"0", "b", "c", "d"}},
	} {
		names = Set(names, step.name, step.present)
		if !slices.Equal(names, step.want) {
			t.Fatalf("Set(%q, %v): %v, want %v", step.name, step.present, names, step.want)
		}
	}
}
