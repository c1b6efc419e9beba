package mountconfig_test

import (
	"strings"
	"testing"
)

// A view's path with a pattern's characters in it makes one file of that
// very name, which its writer, used to owner rules' patterns, likely did
// not mean: it is warned of, naming the line, not refused.
func TestAViewPathWrittenAsAPatternIsWarnedOf(t *testing.T) {
	for _, tc := range []struct {
		path string
		warn bool
	}{
		{"billing/*", true},
		{"billing/*.json", true},
		{"billing/db-?", true},
		{"billing/[ab].env", true},
		{"*/all.json", true},
		{"billing/all.json", false},
		{"billing/a]b", false}, // no pattern could mean that
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := parse(t, "owners:\n  - match: billing/*\n    mode: \"0400\"\nviews:\n  - path: "+yamlQuote(tc.path)+"\n    app: billing\n    format: json\n")
			got := c.ViewPathsLikePatterns()
			switch {
			case !tc.warn && len(got) != 0:
				t.Errorf("warnings %q, want none", got)
			case tc.warn && len(got) != 1:
				t.Errorf("warnings %q, want one", got)
			case tc.warn:
				want := "secretfs.yaml:5: the view path " + yamlQuote(tc.path) + " is a literal file name, not a pattern (unlike an owner rule's match:)"
				if !strings.HasPrefix(got[0], want) {
					t.Errorf("warning %q, want it to start %q", got[0], want)
				}
			}
		})
	}
}

func yamlQuote(s string) string { return `"` + s + `"` }
