package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// execArgs is `secretfs exec` on dataDir's store with the given flags,
// then -- and the command.
func execArgs(dataDir []string, flags []string, command ...string) []string {
	args := append([]string{"exec"}, dataDir...)
	args = append(args, flags...)
	return append(append(args, "--"), command...)
}

func TestExecRunsTheCommandWithTheSecretsAsVariables(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/db-password": "p\"w $x\nline2\n", "auth/token": "tok"})
	stdout, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--app", "billing", "--app", "auth"},
		"sh", "-c", `printf '%s|%s' "$DB_PASSWORD" "$TOKEN"`)...)
	if status != 0 {
		t.Fatalf("exec: status %d\n%s", status, stderr)
	}
	if want := "p\"w $x\nline2\n|tok"; string(stdout) != want {
		t.Fatalf("the command printed %q, want %q", stdout, want)
	}
}

// Flags end at the command: its own flags are its own.
func TestExecWithoutDashDashPassesTheCommandsFlags(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/token": "tok"})
	args := append(append([]string{"exec"}, dataDir...), "--app", "billing", "sh", "-c", `printf %s "$TOKEN"`)
	stdout, stderr, status := runMain(t, nil, args...)
	if status != 0 || string(stdout) != "tok" {
		t.Fatalf("exec: status %d, printed %q\n%s", status, stdout, stderr)
	}
}

func TestExecExitStatusIsTheCommands(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/token": "tok"})
	_, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--app", "billing"}, "sh", "-c", "exit 7")...)
	if status != 7 {
		t.Fatalf("exec: status %d, want the command's 7\n%s", status, stderr)
	}
}

func TestExecCollisionIsAnErrorAndRunsNothing(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/db-password": "VALUE1", "billing/db_password": "VALUE2", "billing/DB-PASSWORD": "VALUE3"})
	ran := filepath.Join(t.TempDir(), "ran")
	_, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--app", "billing"}, "touch", ran)...)
	want := "billing/DB-PASSWORD, billing/db-password and billing/db_password all become the environment variable DB_PASSWORD"
	if status != 1 || !strings.Contains(string(stderr), want) {
		t.Fatalf("exec: status %d, stderr %q; want 1 and %q", status, stderr, want)
	}
	if strings.Contains(string(stderr), "VALUE") {
		t.Fatalf("stderr holds a value: %q", stderr)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Fatal("the command ran")
	}
}

func TestExecSecretReplacesAnInheritedVariableWithAWarning(t *testing.T) {
	dataDir := newStore(t)
	t.Setenv("TZ", "UTC") // inherited (HOME, which this test used, is refused now: git reads configuration there)
	putAll(t, dataDir, map[string]string{"billing/tz": "Europe/Paris"})
	stdout, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--app", "billing"}, "sh", "-c", `printf %s "$TZ"`)...)
	if status != 0 || string(stdout) != "Europe/Paris" {
		t.Fatalf("exec: status %d, TZ %q\n%s", status, stdout, stderr)
	}
	if !strings.Contains(string(stderr), "a secret replaces a variable of the environment") || !strings.Contains(string(stderr), "variable=TZ") {
		t.Fatalf("no warning naming TZ: %q", stderr)
	}
}

func TestExecRefusals(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/token": "tok", "nul/blob": "SECRET\x00x"})
	for _, c := range []struct {
		name  string
		flags []string
		cmd   []string
		want  string
	}{
		{"no app", nil, []string{"true"}, "--app APP"},
		{"a view without a config file", []string{"--view", "billing/app.env"}, []string{"true"}, "--view names a view of the mount's configuration file: give it with --config FILE"},
		{"an application without secrets", []string{"--app", "nosuch"}, []string{"true"}, "nosuch: the application holds no secrets"},
		{"a NUL", []string{"--app", "nul"}, []string{"true"}, "nul/blob: the value holds a NUL byte"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, status := runMain(t, nil, execArgs(dataDir, c.flags, c.cmd...)...)
			if status != 1 || !strings.Contains(string(stderr), c.want) || strings.Contains(string(stderr), "SECRET") {
				t.Fatalf("exec: status %d, stderr %q; want 1 and %q", status, stderr, c.want)
			}
		})
	}
}

func TestExecRefusesAValueLinuxCannotPassInTheEnvironment(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/big": strings.Repeat("x", 200*1024)})
	_, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--app", "billing"}, "true")...)
	if status != 1 || !strings.Contains(string(stderr), "billing/big: the variable BIG would be 204805 bytes") {
		t.Fatalf("exec: status %d, stderr %q", status, stderr)
	}
}

// A COMMAND that cannot be run ends secretfs with the shell's statuses:
// 127 when it is not found, 126 when it is not executable.
func TestExecOfACommandThatCannotRunExitsAsTheShellDoes(t *testing.T) {
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/token": "tok"})
	notExecutable := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		command string
		want    int
	}{
		{"no-such-command-here", 127},
		{filepath.Join(t.TempDir(), "missing"), 127},
		{notExecutable, 126},
	} {
		_, stderr, status := runMain(t, nil, execArgs(dataDir, []string{"--app", "billing"}, tc.command)...)
		if status != tc.want || !strings.Contains(string(stderr), tc.command) {
			t.Errorf("exec of %s: status %d, stderr %q; want %d, naming the command", tc.command, status, stderr, tc.want)
		}
	}
}
