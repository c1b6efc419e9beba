package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// execViewConfig is a configuration file with a template view and an
// application view.
const execViewConfig = `views:
  - path: billing/app.env
    template: |
      DB_PASSWORD={{ field "billing/db" "password" | quote }}
  - path: billing/all.json
    app: billing
    format: json
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secretfs.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secretfs exec --view sets the view's rendering, as the mount renders
// it, as one variable named after the view's name.
func TestExecViewSetsTheRenderingAsAVariable(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/db": `{"password": "p\"w"}`, "auth/token": "tok"})
	cfg := writeConfig(t, execViewConfig)
	stdout, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--config", cfg, "--view", "billing/app.env", "--view", "billing/all.json", "--app", "auth"},
		"sh", "-c", `printf '%s|%s|%s' "$APP_ENV" "$ALL_JSON" "$TOKEN"`)...)
	if status != 0 {
		t.Fatalf("exec: status %d\n%s", status, stderr)
	}
	want := "DB_PASSWORD=\"p\\\"w\"\n|{\n  \"DB\": \"{\\\"password\\\": \\\"p\\\\\\\"w\\\"}\"\n}\n|tok"
	if string(stdout) != want {
		t.Fatalf("the command printed %q, want %q", stdout, want)
	}
}

func TestExecViewRefusals(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/db": `{"password": "TOPVALUE"}`, "billing/app_env": "x"})
	cfg := writeConfig(t, execViewConfig)
	for _, c := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"without --config", []string{"--view", "billing/app.env"}, "give it with --config FILE"},
		{"no such view", []string{"--config", cfg, "--view", "billing/none"}, "has no view at that path"},
		{"a bad config", []string{"--config", writeConfig(t, "viewz: []\n"), "--view", "billing/app.env"}, `secretfs.yaml:1: unknown key "viewz"`},
		{"a collision with a secret", []string{"--config", cfg, "--view", "billing/app.env", "--app", "billing"}, "both become the environment variable APP_ENV"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ran := filepath.Join(t.TempDir(), "ran")
			_, stderr, status := runMain(t, nil, execArgs(dataDir, c.flags, "touch", ran)...)
			if status != 1 || !strings.Contains(string(stderr), c.want) || strings.Contains(string(stderr), "TOPVALUE") {
				t.Fatalf("exec: status %d, stderr %q; want 1 and %q", status, stderr, c.want)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Fatal("the command ran")
			}
		})
	}
}

func TestExecViewOfAMissingInputIsAnErrorNamingIt(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/other": "x"})
	_, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--config", writeConfig(t, execViewConfig), "--view", "billing/app.env"}, "true")...)
	if status != 1 || !strings.Contains(string(stderr), "billing/app.env") || !strings.Contains(string(stderr), "billing/db") {
		t.Fatalf("exec: status %d, stderr %q", status, stderr)
	}
}

// A secret stored at a view's path, hidden by the view on a mount, is not
// a member of its application's view for exec --view either: the
// application view shows what the mount's listing shows.
func TestExecViewOfAnApplicationLeavesOutASecretAViewHides(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/db": `{"password": "p"}`, "billing/app.env": "HIDDEN"})
	stdout, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--config", writeConfig(t, execViewConfig), "--view", "billing/all.json"},
		"sh", "-c", `printf '%s' "$ALL_JSON"`)...)
	if status != 0 {
		t.Fatalf("exec: status %d\n%s", status, stderr)
	}
	if want := "{\n  \"DB\": \"{\\\"password\\\": \\\"p\\\"}\"\n}\n"; string(stdout) != want {
		t.Fatalf("the command printed %q, want %q", stdout, want)
	}
}
