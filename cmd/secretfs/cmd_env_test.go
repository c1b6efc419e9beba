package main

import (
	"bytes"
	"strings"
	"testing"
)

// putAll stores "app/name" -> value in the store of dataDir.
func putAll(t *testing.T, dataDir []string, values map[string]string) {
	t.Helper()
	for k, v := range values {
		if _, stderr, err := run(t, strings.NewReader(v), append([]string{"put", k}, dataDir...)...); err != nil {
			t.Fatalf("put %s: %v\n%s", k, err, stderr)
		}
	}
}

func TestEnvPrintsEverySecretAsDotenvInNameOrder(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{
		"billing/db-password": "p\"w$x `id` \\\nline2",
		"billing/api-token":   "tok",
		"billing/2fa":         "",
		"auth/other":          "not billing's",
	})
	stdout, stderr, err := run(t, nil, append([]string{"env", "billing"}, dataDir...)...)
	if err != nil {
		t.Fatalf("env: %v\n%s", err, stderr)
	}
	want := "API_TOKEN=\"tok\"\nDB_PASSWORD=\"p\\\"w\\$x \\`id\\` \\\\\nline2\"\n_2FA=\"\"\n"
	if stdout != want {
		t.Fatalf("env printed\n%q\nwant\n%q", stdout, want)
	}
}

func TestEnvOfSeveralApplications(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/token": "b", "auth/key": "a"})
	stdout, stderr, err := run(t, nil, append([]string{"env", "billing", "auth", "billing"}, dataDir...)...)
	if err != nil {
		t.Fatalf("env: %v\n%s", err, stderr)
	}
	if want := "KEY=\"a\"\nTOKEN=\"b\"\n"; stdout != want {
		t.Fatalf("env printed %q, want %q", stdout, want)
	}
}

func TestEnvDockerPrintsLiteralLinesAndRefusesWhatTheyCannotCarry(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/token": `t"o$k'`, "billing/url": "https://h/?a=b c"})
	stdout, stderr, err := run(t, nil, append([]string{"env", "--docker", "billing"}, dataDir...)...)
	if err != nil {
		t.Fatalf("env --docker: %v\n%s", err, stderr)
	}
	if want := "TOKEN=t\"o$k'\nURL=https://h/?a=b c\n"; stdout != want {
		t.Fatalf("env --docker printed %q, want %q", stdout, want)
	}
	putAll(t, dataDir, map[string]string{"billing/pem": "-----BEGIN SECRET-----\nMIIB\n"})
	stdout, _, err = run(t, nil, append([]string{"env", "--docker", "billing"}, dataDir...)...)
	if err == nil || !strings.Contains(err.Error(), "billing/pem") || !strings.Contains(err.Error(), "newline") {
		t.Fatalf("env --docker of a multi-line value: %v, want an error naming billing/pem", err)
	}
	if stdout != "" || strings.Contains(err.Error(), "MIIB") {
		t.Fatalf("env --docker printed %q, error %q: want nothing printed and no value", stdout, err)
	}
}

func TestEnvCollisionIsAnErrorNamingBothAndPrintsNothing(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/db-password": "VALUE1", "billing/DB.PASSWORD": "VALUE2"})
	stdout, _, err := run(t, nil, append([]string{"env", "billing"}, dataDir...)...)
	want := "billing/DB.PASSWORD and billing/db-password both become the environment variable DB_PASSWORD"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("env: %v, want %q", err, want)
	}
	if stdout != "" || strings.Contains(err.Error(), "VALUE") {
		t.Fatalf("env printed %q, error %q: want nothing printed and no value", stdout, err)
	}
}

func TestEnvOfAnApplicationWithoutSecretsIsAnError(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/token": "x"})
	_, _, err := run(t, nil, append([]string{"env", "billling"}, dataDir...)...)
	if err == nil || !strings.Contains(err.Error(), "billling: the application holds no secrets") {
		t.Fatalf("env of a mistyped application: %v", err)
	}
}

func TestEnvRefusesAValueNoEnvironmentFileHolds(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/blob": "SECRET\x00\xff"})
	stdout, _, err := run(t, nil, append([]string{"env", "billing"}, dataDir...)...)
	if err == nil || !strings.Contains(err.Error(), "billing/blob") || stdout != "" || bytes.Contains([]byte(err.Error()), []byte("SECRET")) {
		t.Fatalf("env of a binary value: %v, printed %q", err, stdout)
	}
}

// The help promises no reader more than it reads back: docker compose
// keeps the backslash a shell needs before a backquote (render's
// TestDotenvIsReadBackByComposesRulesButABackquoteKeepsItsBackslash).
func TestEnvHelpSaysComposeKeepsTheBackslashBeforeABackquote(t *testing.T) {
	cmd, _, err := newRootCommand().Find([]string{"env"})
	if err != nil {
		t.Fatal(err)
	}
	help := strings.Join(strings.Fields(cmd.Long), " ")
	if !strings.Contains(help, "keeps the backslash before a backquote") {
		t.Fatalf("env's help does not say what docker compose reads differently:\n%s", cmd.Long)
	}
}
