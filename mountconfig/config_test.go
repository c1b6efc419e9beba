package mountconfig_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/mountconfig"
	"github.com/secretfs/secretfs/store"
)

// issueExample is the file of issue 13 as the issue gives it, with a
// watch list: its rule for billing/tls.key comes after the one for
// billing/*, and wins, being for that one path.
const issueExample = `owners:                      # first match wins
  - match: billing           # an application's directory
    uid: 1001
    gid: 1001
    mode: "0500"
  - match: billing/*         # path.Match on application/secret (views included)
    uid: 1001
    gid: 1001
    mode: "0400"
  - match: billing/tls.key
    uid: 0
    gid: 1001
    mode: "0440"
views:                       # read-only files rendered from secrets
  - path: billing/db-user
    secret: billing/db-credentials   # a secret whose value is JSON
    field: username                  # a JMESPath expression on it
  - path: billing/app.env
    template: |                      # Go text/template
      DB_USER={{ field "billing/db-credentials" "username" }}
      DB_PASSWORD={{ field "billing/db-credentials" "password" | quote }}
      API_TOKEN={{ secret "billing/api-token" | quote }}
  - path: billing/all.json
    app: billing                     # every secret of the application
    format: json                     # json | dotenv | yaml | properties
watch:
  - billing
  - "auth-*"
`

func parse(t *testing.T, text string) *mountconfig.Config {
	t.Helper()
	c, err := mountconfig.Parse("secretfs.yaml", []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestTheIssuesExampleParses(t *testing.T) {
	c := parse(t, issueExample)
	if len(c.Owners) != 3 || len(c.Views) != 3 || len(c.Watch) != 2 {
		t.Fatalf("%d owners, %d views, %d watches; want 3, 3, 2", len(c.Owners), len(c.Views), len(c.Watch))
	}
	if views := c.Views; views[0].Line != 15 || views[1].Line != 18 || views[2].Line != 23 {
		t.Errorf("views at lines %d, %d, %d; want 15, 18, 23", views[0].Line, views[1].Line, views[2].Line)
	}
	if in := c.Views[1].View.Inputs().Secrets; len(in) != 2 || in[0].String() != "billing/api-token" || in[1].String() != "billing/db-credentials" {
		t.Errorf("the template view reads %v", in)
	}
	for app, want := range map[string]bool{"billing": true, "auth-eu": true, "auth": false, "other": false} {
		if got := c.Watched(app); got != want {
			t.Errorf("Watched(%q) = %v, want %v", app, got, want)
		}
	}
	if v, ok := c.ViewAt(store.Key{App: "billing", Name: "all.json"}); !ok || v.Spec.Format != "json" {
		t.Errorf("ViewAt(billing/all.json) = %+v, %v", v, ok)
	}
}

// The rule for a path exactly wins; else the first pattern that matches,
// views included; an application's rule is not its files'.
func TestAnExactPathsRuleWinsElseTheFirstMatchingPattern(t *testing.T) {
	c := parse(t, issueExample)
	for _, v := range []struct {
		path      string
		ok        bool
		line      int
		uid, mode uint32
	}{
		{"billing", true, 2, 1001, 0o500},
		{"billing/db-password", true, 6, 1001, 0o400},
		{"billing/tls.key", true, 10, 0, 0o440},   // an exact path, after billing/*
		{"billing/db-user", true, 6, 1001, 0o400}, // views included
		{"auth", false, 0, 0, 0},
		{"auth/x", false, 0, 0, 0},
		{"billingx", false, 0, 0, 0},
	} {
		o, ok := c.OwnerOf(v.path)
		if ok != v.ok || (ok && (o.Line != v.line || *o.UID != v.uid || *o.Mode != v.mode)) {
			t.Errorf("OwnerOf(%q) = %+v, %v; want the rule at line %d (uid %d, mode %#o): %v", v.path, o, ok, v.line, v.uid, v.mode, v.ok)
		}
	}
}

// Among patterns the file's order decides, whichever is narrower; an
// exact path wins wherever it is written.
func TestAmongPatternsTheFirstInTheFileWins(t *testing.T) {
	rules := map[string]string{
		"db":     "  - match: billing/db-*\n    mode: \"0440\"\n",
		"all":    "  - match: billing/*\n    mode: \"0400\"\n",
		"exact":  "  - match: billing/db-main\n    mode: \"0444\"\n",
		"exact2": "  - match: billing/db-main\n    mode: \"0404\"\n",
	}
	for _, v := range []struct {
		order       []string
		dbX, dbMain uint32
		other       uint32
	}{
		{[]string{"db", "all"}, 0o440, 0o440, 0o400},
		{[]string{"all", "db"}, 0o400, 0o400, 0o400},
		{[]string{"exact", "all", "db"}, 0o400, 0o444, 0o400},
		{[]string{"db", "exact2"}, 0o440, 0o404, 0},
	} {
		text := "owners:\n"
		for _, r := range v.order {
			text += rules[r]
		}
		c := parse(t, text)
		for p, want := range map[string]uint32{"billing/db-x": v.dbX, "billing/db-main": v.dbMain, "billing/tls.key": v.other} {
			o, ok := c.OwnerOf(p)
			switch {
			case want == 0 && ok:
				t.Errorf("%v: OwnerOf(%q) = %+v, want no rule", v.order, p, o)
			case want != 0 && (!ok || *o.Mode != want):
				t.Errorf("%v: OwnerOf(%q) = %+v, %v; want mode %#o", v.order, p, o, ok, want)
			}
		}
	}
}

func TestAnOwnerRuleMaySetOnlySomeFields(t *testing.T) {
	c := parse(t, "owners:\n  - match: \"*/*\"\n    mode: 0o440\n  - match: \"*\"\n    gid: 7\n")
	o, ok := c.OwnerOf("a/b")
	if !ok || o.UID != nil || o.GID != nil || *o.Mode != 0o440 {
		t.Errorf("OwnerOf(a/b) = %+v", o)
	}
	o, ok = c.OwnerOf("a")
	if !ok || o.UID != nil || *o.GID != 7 || o.Mode != nil {
		t.Errorf("OwnerOf(a) = %+v", o)
	}
}

// An alias stands for what its anchor holds: `gid: *id` is the uid's
// number, and a rule or a view may be the same list item twice.
func TestAnAliasIsReadAsWhatItsAnchorHolds(t *testing.T) {
	c := parse(t, "owners:\n  - match: a\n    uid: &id 1001\n    gid: *id\n    mode: &m \"0440\"\n  - match: b\n    mode: *m\nwatch:\n  - &w a\n  - *w\n")
	o, ok := c.OwnerOf("a")
	if !ok || o.UID == nil || o.GID == nil || *o.UID != 1001 || *o.GID != 1001 || *o.Mode != 0o440 {
		t.Errorf("OwnerOf(a) = %+v", o)
	}
	if o, ok := c.OwnerOf("b"); !ok || o.Mode == nil || *o.Mode != 0o440 {
		t.Errorf("OwnerOf(b) = %+v", o)
	}
}

func TestAnEmptyFileIsTheFlagsAlone(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "owners:\nviews:\n", "---\n", "owners:\n---\n# nothing more\n"} {
		c := parse(t, text)
		if _, ok := c.OwnerOf("a"); ok || len(c.Views) != 0 || c.Watched("a") {
			t.Errorf("%q: %+v", text, c)
		}
	}
}

// Every refusal names the file and the line of what is wrong, and why.
func TestRefusalsNameTheLineAndTheReason(t *testing.T) {
	for _, c := range []struct {
		name, text string
		line       int
		want       string
	}{
		{"unknown top-level key", "owners: []\nviewz:\n  - path: a/b\n", 2, `unknown key "viewz" in the file (known: owners, views, watch)`},
		{"unknown key in an owner rule", "owners:\n  - match: a\n    user: 5\n", 3, `unknown key "user" in an owner rule`},
		{"unknown key in a view", "views:\n  - path: a/b\n    secret: a/c\n    field: x\n    feild: y\n", 5, `unknown key "feild" in a view`},
		{"bad pattern", "owners:\n  - match: a\n    uid: 1\n  - match: \"billing/[\"\n    uid: 2\n", 4, `match "billing/[": not a pattern`},
		{"pattern of three parts", "owners:\n  - match: a/b/c\n    uid: 1\n", 2, "want an application (app) or its files (app/name)"},
		{"empty part", "owners:\n  - match: a/\n    uid: 1\n", 2, "want an application (app) or its files (app/name)"},
		{"watch of a file", "watch:\n  - a/b\n", 2, "watch lists applications"},
		{"bad watch pattern", "watch:\n  - \"[[\"\n", 2, `watch "[[": not a pattern`},
		{"mode not octal", "owners:\n  - match: a\n    mode: \"0800\"\n", 3, `mode "0800": want permission bits in octal`},
		{"mode a word", "owners:\n  - match: a\n    mode: rwx\n", 3, `mode "rwx"`},
		{"mode too large", "owners:\n  - match: a\n    mode: \"17777\"\n", 3, `mode "17777"`},
		{"mode setuid", "owners:\n  - match: a\n    mode: \"4755\"\n", 3, `mode "4755": want permission bits from 0 to 0777`},
		{"uid negative", "owners:\n  - match: a\n    uid: -1\n", 3, `uid "-1": want a number`},
		{"gid a list", "owners:\n  - match: a\n    gid: [1]\n", 3, "gid"},
		{"rule without match", "owners:\n  - uid: 1\n", 2, "an owner rule needs match"},
		{"rule setting nothing", "owners:\n  - match: a\n", 2, `the owner rule for "a" sets none of uid, gid and mode`},
		{"the same path twice", "owners:\n  - match: \"*\"\n    gid: 7\n  - match: billing\n    uid: 1\n  - match: billing\n    uid: 2\n", 6, `the owner rule for "billing" never applies: the rule at line 4 has the same match`},
		{"the same pattern twice", "owners:\n  - match: \"b*/*\"\n    gid: 7\n  - match: \"b*/*\"\n    uid: 2\n", 4, `the owner rule for "b*/*" never applies: the rule at line 2 has the same match`},
		{"key twice", "owners:\n  - match: a\n    uid: 1\n    uid: 2\n", 4, `"uid" is given twice in an owner rule (first at line 3)`},
		{"view without path", "views:\n  - app: a\n    format: json\n", 2, "a view needs path"},
		{"view that does not compile", "views:\n  - path: a/v\n    template: '{{ secret .Name }}'\n", 2, "a/v"},
		{"view of two kinds", "views:\n  - path: a/v\n    app: a\n    format: json\n    template: x\n", 2, "exactly one of"},
		{"two views at one path", "views:\n  - path: a/v\n    app: a\n    format: json\n  - path: a/v\n    app: b\n    format: yaml\n", 5, "the view a/v is already defined at line 2"},
		{"a view hiding another's input", "views:\n  - path: a/v\n    secret: a/creds\n    field: user\n  - path: a/creds\n    app: a\n    format: json\n", 2, "the view a/v reads the secret a/creds, which the view at line 5 hides"},
		{"a view reading itself", "views:\n  - path: a/v\n    template: '{{ secret \"a/v\" }}'\n", 2, "reads the secret a/v, which the view at line 2 hides"},
		{"not YAML", "owners:\n\t- match: a\n", 2, "not YAML: found character that cannot start any token"},
		{"owners not a list", "owners:\n  match: a\n", 2, "owners must be a list"},
		{"a list at the top", "- a\n", 1, "the file must be a mapping"},
		{"a second document", "views: []\n---\nbogus: 1\n", 3, `a second YAML document (after "---"): the file must hold one`},
		{"a second document, empty but for a comment", "owners: []\n---\n# more\nwatch: [a]\n", 4, "a second YAML document"},
		{"a merge key in a rule", "owners:\n  - &r {match: a, uid: 1}\n  - match: b\n    <<: *r\n", 4, "a YAML merge key (<<) in an owner rule: write the keys out"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := mountconfig.Parse("/etc/secretfs/run-secrets.yaml", []byte(c.text))
			var e *mountconfig.Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse: %v, want a *mountconfig.Error", err)
			}
			if e.Line != c.line || !strings.Contains(e.Msg, c.want) {
				t.Fatalf("Parse: %q, want line %d and %q", err, c.line, c.want)
			}
			if prefix := "/etc/secretfs/run-secrets.yaml:" + itoa(c.line) + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("Parse: %q, want it to start with %q", err, prefix)
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestCheckStoreRefusesAViewOverAStoredSecret(t *testing.T) {
	c := parse(t, issueExample)
	stored := map[store.Key]bool{{App: "billing", Name: "db-credentials"}: true, {App: "billing", Name: "app.env"}: true}
	err := c.CheckStore(context.Background(), func(_ context.Context, k store.Key) (bool, error) { return stored[k], nil })
	if err == nil || err.Error() != "secretfs.yaml:18: the view billing/app.env names a secret the store holds: remove the secret (secretfs rm) or give the view another path" {
		t.Fatalf("CheckStore: %v", err)
	}
	delete(stored, store.Key{App: "billing", Name: "app.env"})
	if err := c.CheckStore(context.Background(), func(_ context.Context, k store.Key) (bool, error) { return stored[k], nil }); err != nil {
		t.Fatalf("CheckStore with no view over a secret: %v", err)
	}
	failing := errors.New("no answer")
	if err := c.CheckStore(context.Background(), func(context.Context, store.Key) (bool, error) { return false, failing }); err == nil || !strings.Contains(err.Error(), "secretfs.yaml:15: cannot tell") {
		t.Fatalf("CheckStore with a failing store: %v", err)
	}
}

func TestLoadNamesAMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if _, err := mountconfig.Load(missing); err == nil || !strings.HasPrefix(err.Error(), missing+": ") {
		t.Fatalf("Load: %v", err)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(issueExample), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := mountconfig.Load(file); err != nil || c.File != file || len(c.Views) != 3 {
		t.Fatalf("Load: %+v, %v", c, err)
	}
}

func TestANilConfigMatchesNothing(t *testing.T) {
	var c *mountconfig.Config
	if _, ok := c.OwnerOf("a"); ok || c.Watched("a") {
		t.Error("a nil config matched")
	}
	if _, ok := c.ViewAt(store.Key{App: "a", Name: "b"}); ok {
		t.Error("a nil config has a view")
	}
}

// The README's example configuration file parses.
func TestTheREADMEsExampleParses(t *testing.T) {
	c := parse(t, readmeExample(t))
	if len(c.Owners) == 0 || len(c.Views) == 0 || len(c.Watch) == 0 {
		t.Errorf("the README's example has %d owners, %d views, %d watches", len(c.Owners), len(c.Views), len(c.Watch))
	}
	if o, ok := c.OwnerOf("billing/tls.key"); !ok || *o.UID != 0 || *o.Mode != 0o440 {
		t.Errorf("the README's example gives billing/tls.key %+v", o)
	}
}

// readmeExample is the README's example configuration file: its first
// YAML block after the heading of the configuration file.
func readmeExample(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Owners per path, views and change events")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no YAML block under \"## Owners per path, views and change events\"")
	}
	return block
}

// A configuration file that every user may write is refused, naming the
// file and saying why: it says who may read which secret. One only its
// owner may write is read (one its group may write:
// TestAGroupWritableConfigFileIsRefused).
func TestAConfigFileEveryUserMayWriteIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secretfs.yaml")
	if err := os.WriteFile(p, []byte("watch:\n  - billing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o666, 0o602} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := mountconfig.Load(p)
		if err == nil || !strings.HasPrefix(err.Error(), p+": every user may write it") {
			t.Errorf("Load of a file of mode %#o: %v, want it refused", mode, err)
		}
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err := mountconfig.Load(p); err != nil || len(cfg.Watch) != 1 {
		t.Errorf("Load of a file of mode 0644: %+v, %v", cfg, err)
	}
}

// A configuration file that another user could have put in place is
// refused: one in a directory every user may write without the sticky
// bit, or one another user owns. One in a sticky directory (/tmp's
// kind) is read.
func TestAConfigFileAnotherUserCouldReplaceIsRefused(t *testing.T) {
	open := everyUsersDir(t, t.TempDir())
	p := filepath.Join(open, "secretfs.yaml")
	if err := os.WriteFile(p, []byte("watch:\n  - billing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := mountconfig.Load(p); err == nil || !strings.Contains(err.Error(), "every user may replace it ("+open+" may be written by every user") {
		t.Errorf("Load of a file in a directory of mode 0777: %v, want it refused", err)
	}
	if err := os.Chmod(open, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := mountconfig.Load(p); err != nil {
		t.Errorf("Load of a file in a sticky directory: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(p, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if _, err := mountconfig.Load(p); err == nil || !strings.Contains(err.Error(), "user 4242 owns it") {
			t.Errorf("Load of a file another user owns: %v, want it refused", err)
		}
	}
}

// A configuration file reached through a symbolic link is refused when
// anyone may swap the file the link leads to: the link's directory is
// safe, the target's is every user's without the sticky bit. (It was
// read: only the directories above the link were checked.)
func TestAConfigFileThroughALinkIntoADirectoryAnotherUserMayWriteIsRefused(t *testing.T) {
	root := t.TempDir()
	open := everyUsersDir(t, root)
	target := filepath.Join(open, "secretfs.yaml")
	if err := os.WriteFile(target, []byte("watch:\n  - billing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	safe := filepath.Join(root, "safe")
	if err := os.Mkdir(safe, 0o755); err != nil {
		t.Fatal(err)
	}
	viaFile := filepath.Join(safe, "secretfs.yaml")
	viaHop := filepath.Join(safe, "hop.yaml")
	viaDir := filepath.Join(safe, "dir")
	for _, link := range [][2]string{
		{target, viaFile},
		{filepath.Join(open, "hop.yaml"), viaHop}, // safe/hop.yaml -> open/hop.yaml -> safe/secretfs.yaml
		{viaFile, filepath.Join(open, "hop.yaml")},
		{open, viaDir},
	} {
		if err := os.Symlink(link[0], link[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{viaFile, viaHop, filepath.Join(viaDir, "secretfs.yaml")} {
		// The link to the directory is named as the directory it shows.
		if _, err := mountconfig.Load(p); err == nil || !strings.Contains(err.Error(), "every user may replace it (") ||
			!strings.Contains(err.Error(), " may be written by every user and is not sticky") {
			t.Errorf("Load(%s): %v, want it refused naming %s", p, err, open)
		}
	}
	if err := os.Chmod(open, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{viaFile, viaHop, filepath.Join(viaDir, "secretfs.yaml")} {
		if cfg, err := mountconfig.Load(p); err != nil || len(cfg.Watch) != 1 {
			t.Errorf("Load(%s) with the directory sticky: %+v, %v", p, cfg, err)
		}
	}
}

// everyUsersDir makes parent/open, a directory every user may write,
// without the sticky bit.
func everyUsersDir(t *testing.T, parent string) string {
	t.Helper()
	open := filepath.Join(parent, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	return open
}
