package mountconfig_test

import (
	"strings"
	"testing"
)

// A pattern that an earlier pattern takes some of its paths from is
// named, with the line of both rules and one such path: a path the file
// names if there is one, else one both patterns match. An earlier rule
// narrower than the later one (the way to write an exception), an exact
// path's rule (which wins wherever it is) and rules that share no path
// are not warned of.
func TestAnOwnerRuleAnEarlierPatternTakesPathsFromIsWarnedOf(t *testing.T) {
	rule := func(match string) string { return "  - match: \"" + match + "\"\n    mode: \"0400\"\n" }
	for _, tc := range []struct {
		name  string
		rules []string
		more  string // views and watch
		want  []string
	}{
		{"a wider pattern first", []string{"*/*", "billing/*"}, "",
			[]string{`secretfs.yaml:4: the owner rule for "billing/*" does not apply to billing/x, nor to the other paths the rule for "*/*" at line 2 also matches`}},
		{"a wider pattern first, a view's path for example", []string{"*/*", "billing/*"}, "views:\n  - path: billing/db-user\n    secret: billing/db\n    field: user\n",
			[]string{`secretfs.yaml:4: the owner rule for "billing/*" does not apply to billing/db-user, nor to the other paths the rule for "*/*" at line 2 also matches`}},
		{"a wider pattern of applications first", []string{"*", "bill*"}, "watch:\n  - billing\n",
			[]string{`secretfs.yaml:4: the owner rule for "bill*" does not apply to billing, nor to the other paths the rule for "*" at line 2 also matches`}},
		{"crossing patterns", []string{"*/db", "billing/*"}, "",
			[]string{`secretfs.yaml:4: the owner rule for "billing/*" does not apply to billing/db, nor to the other paths the rule for "*/db" at line 2 also matches`}},
		{"crossing patterns, one with a class", []string{"bill*/*", "*/d[a-c]"}, "",
			[]string{`secretfs.yaml:4: the owner rule for "*/d[a-c]" does not apply to billx/da, nor to the other paths the rule for "bill*/*" at line 2 also matches`}},
		{"patterns that share only a path the file names", []string{"*/tls*", "*/*.key"}, "views:\n  - path: billing/tls.key\n    secret: billing/pem\n    field: key\n",
			[]string{`secretfs.yaml:4: the owner rule for "*/*.key" does not apply to billing/tls.key, nor to the other paths the rule for "*/tls*" at line 2 also matches`}},
		{"patterns that share only paths the file does not name", []string{"*/tls*", "*/*.key"}, "", nil}, // a limit: not warned of
		{"two earlier patterns", []string{"*/db", "b*/*", "billing/*"}, "", []string{
			`secretfs.yaml:4: the owner rule for "b*/*" does not apply to bx/db, nor to the other paths the rule for "*/db" at line 2 also matches`,
			`secretfs.yaml:6: the owner rule for "billing/*" does not apply to billing/db, nor to the other paths the rule for "*/db" at line 2 also matches`,
			`secretfs.yaml:6: the owner rule for "billing/*" does not apply to billing/x, nor to the other paths the rule for "b*/*" at line 4 also matches`}},
		{"an exception first", []string{"billing/db-*", "billing/*", "*/*"}, "", nil},
		{"an exact path's rule after a pattern", []string{"*/*", "billing/tls.key"}, "", nil},
		{"disjoint patterns", []string{"billing/*", "auth/*", "*", "*/*"}, "", nil},
		{"an application and its files", []string{"b*", "b*/*"}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "owners:\n"
			for _, r := range tc.rules {
				text += rule(r)
			}
			got := parse(t, text+tc.more).ShadowedOwners()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %q, want it to start %q", got[i], w)
				}
			}
		})
	}
}

// The examples of the issue and of the README, whose patterns share no
// path, warn of nothing.
func TestTheExamplesShadowNoOwnerRule(t *testing.T) {
	if got := parse(t, issueExample).ShadowedOwners(); len(got) != 0 {
		t.Errorf("the issue's example: warnings %q", got)
	}
	if got := parse(t, "owners:\n  - match: \"*/*\"\n    mode: 0o440\n  - match: \"*\"\n    gid: 7\n").ShadowedOwners(); len(got) != 0 {
		t.Errorf("rules for files and for applications: warnings %q", got)
	}
}
