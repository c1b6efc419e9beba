package mountconfig_test

import (
	"strings"
	"testing"

	"github.com/secretfs/secretfs/mountconfig"
)

// The flags of the mounts in these tests: root owns what no rule names,
// files 0600, directories 0700.
var rootDefaults = mountconfig.Defaults{UID: 0, GID: 0, FileMode: 0o600, DirMode: 0o700}

func noGroups(uint32) []uint32 { return nil }

// A view readable by someone who may not read one of its inputs is
// named, with the reader and the input, once per view; a view at most as
// readable as its inputs is not.
func TestAViewWiderThanItsInputsIsNamed(t *testing.T) {
	const owners = `owners:
  - match: billing
    uid: 1001
    mode: "0500"
  - match: billing/*
    uid: 1001
    mode: "0400"
  - match: billing/tls.key
    uid: 0
    gid: 1001
    mode: "0440"
  - match: auth
    uid: 1002
    mode: "0500"
  - match: auth/*
    uid: 1002
    mode: "0400"
`
	for _, tc := range []struct {
		name   string
		views  string
		groups func(uint32) []uint32
		want   string // in the one warning; "" for none
	}{
		{"a field of a secret of the same owner", `
  - path: billing/db-user
    secret: billing/db-credentials
    field: username`, noGroups, ""},
		{"an application view over a file only a group reads", `
  - path: billing/all.json
    app: billing
    format: json`, noGroups, "the view billing/all.json is readable by uid 1001, who cannot read its input billing/tls.key (uid 0, gid 1001, mode 0440"},
		{"the same, its reader in that group", `
  - path: billing/all.json
    app: billing
    format: json`, func(uid uint32) []uint32 { return []uint32{1001} }, ""},
		{"a template reading another application", `
  - path: billing/peek
    template: '{{ secret "auth/secret" }}'`, noGroups, "the view billing/peek is readable by uid 1001, who cannot read its input auth/secret"},
		{"a view every user reads", `
  - path: pub/public
    secret: pub/key
    field: public`, noGroups, "the view pub/public is readable by every user, who cannot read its input pub/key (uid 1002, gid 0, mode 0400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := owners
			if strings.Contains(tc.name, "every user") {
				cfg += "  - match: pub\n    mode: \"0555\"\n  - match: pub/public\n    mode: \"0444\"\n  - match: pub/*\n    uid: 1002\n    mode: \"0400\"\n"
			}
			c := parse(t, cfg+"views:"+tc.views+"\n")
			got := c.WiderViews(rootDefaults, tc.groups)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("warnings %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("warnings %q, want one with %q", got, tc.want)
			case tc.want != "" && !strings.HasPrefix(got[0], "secretfs.yaml:"):
				t.Errorf("warning %q does not name the file and line", got[0])
			}
		})
	}
}

// With no owner rules, every path has the flags' owner and modes: no view
// is wider than its inputs.
func TestWithTheFlagsAloneNoViewIsWider(t *testing.T) {
	c := parse(t, "views:\n  - path: app/all\n    app: app\n    format: dotenv\n  - path: app/f\n    secret: other/j\n    field: a\n")
	if got := c.WiderViews(mountconfig.Defaults{UID: 1000, GID: 1000, FileMode: 0o640, DirMode: 0o750}, noGroups); len(got) != 0 {
		t.Errorf("warnings %q, want none", got)
	}
}

// A view's owner rule names a user and its group (uid 1001, gid 1001):
// that user reads an input of that group through the group bits, whether
// or not the host's user database knows it. An input whose group bits
// give nothing, or that is of another group, is still warned of.
func TestTheUserOfAViewsRuleReadsThroughItsGroup(t *testing.T) {
	for _, tc := range []struct {
		name, key string // billing/tls.key's rule
		want      string // in the one warning; "" for none
	}{
		{"an input its group reads", `uid: 0, gid: 1001, mode: "0440"`, ""},
		{"an input of its group, group bits clear", `uid: 0, gid: 1001, mode: "0400"`,
			"the view billing/all.json is readable by uid 1001, who cannot read its input billing/tls.key (uid 0, gid 1001, mode 0400"},
		{"an input of another user and group", `uid: 0, gid: 0, mode: "0440"`,
			"the view billing/all.json is readable by uid 1001, who cannot read its input billing/tls.key (uid 0, gid 0, mode 0440"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parse(t, `owners:
  - {match: billing, uid: 1001, gid: 1001, mode: "0500"}
  - {match: billing/*, uid: 1001, gid: 1001, mode: "0400"}
  - {match: billing/tls.key, `+tc.key+`}
views:
  - {path: billing/all.json, app: billing, format: json}
`)
			got := c.WiderViews(rootDefaults, noGroups)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("warnings %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("warnings %q, want one with %q", got, tc.want)
			}
		})
	}
}

// The README's example, mounted as the README mounts it (by root,
// --dir-mode 0755, --allow-other), warns of no view: uid 1001 reads
// billing/tls.key (gid 1001, 0440) through its group, on a host whose
// user database does not know uid 1001 too.
func TestTheREADMEsExampleHasNoViewWiderThanItsInputs(t *testing.T) {
	c := parse(t, readmeExample(t))
	d := mountconfig.Defaults{UID: 0, GID: 0, FileMode: 0o600, DirMode: 0o755}
	if got := c.WiderViews(d, noGroups); len(got) != 0 {
		t.Errorf("warnings %q, want none", got)
	}
}

// A user or group an owner rule names, who cannot enter the mount's
// root, is named once, with the rule's line: without --allow-other no
// one but the user who mounts and root may; with it, the root's mode
// (the flags) must let them search it. Root and the user who mounts are
// never named, nor anyone the root lets in.
func TestAnOwnerTheMountsRootKeepsOutIsNamed(t *testing.T) {
	c := parse(t, `owners:
  - match: billing
    uid: 1001
    gid: 1001
    mode: "0500"
  - match: billing/*
    uid: 1001
    mode: "0400"
  - match: auth/*
    uid: 0
    gid: 1002
    mode: "0440"
`)
	for _, tc := range []struct {
		name       string
		d          mountconfig.Defaults
		allowOther bool
		groups     func(uint32) []uint32
		want       []string // one warning each, in order
	}{
		{"root's mode keeps them out", rootDefaults, true, noGroups, []string{
			`secretfs.yaml:2: the owner rule "billing" gives uid 1001 what it matches, but they may not enter the mount's root (uid 0, gid 0, mode 0700: --uid, --gid, --dir-mode)`,
			`secretfs.yaml:2: the owner rule "billing" gives members of gid 1001`,
			`secretfs.yaml:9: the owner rule "auth/*" gives members of gid 1002`,
		}},
		{"a root every user may search", mountconfig.Defaults{FileMode: 0o600, DirMode: 0o711}, true, noGroups, nil},
		{"a root of their group", mountconfig.Defaults{GID: 1001, FileMode: 0o600, DirMode: 0o710}, true, func(uint32) []uint32 { return []uint32{1001} }, []string{
			`secretfs.yaml:9: the owner rule "auth/*" gives members of gid 1002`,
		}},
		{"without --allow-other", mountconfig.Defaults{FileMode: 0o600, DirMode: 0o755}, false, noGroups, []string{
			`secretfs.yaml:2: the owner rule "billing" gives uid 1001 what it matches, but without --allow-other no user but the one who mounts (uid 0) and root may enter the mount`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.UnreachableOwners(tc.d, tc.allowOther, 0, tc.groups)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %d: %q, want it to begin %q", i, got[i], w)
				}
			}
		})
	}
	if got := c.UnreachableOwners(rootDefaults, false, 1001, noGroups); len(got) != 0 {
		t.Errorf("mounted by uid 1001, without --allow-other: warnings %q, want none", got)
	}
}
