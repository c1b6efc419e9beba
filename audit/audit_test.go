package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEntriesAreJSONLinesWithTheResultByName(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	l.Record(Entry{Time: at, Op: "open", App: "billing", Secret: "db-password", Version: 3, UID: 1000, GID: 1000, PID: 42, TID: 43, Command: "cat"})
	l.Record(Entry{Time: at, Op: "rename", App: "billing", Secret: "a", ToApp: "billing", To: "b", Version: 1, Errno: syscall.ESTALE})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	s := bufio.NewScanner(f)
	for s.Scan() {
		var m map[string]any
		if err := json.Unmarshal(s.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", s.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	want := map[string]any{"time": "2026-12-02T12:00:00Z", "op": "open", "app": "billing", "secret": "db-password",
		"version": 3.0, "result": "OK", "uid": 1000.0, "gid": 1000.0, "pid": 42.0, "tid": 43.0, "command": "cat"}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %v, want %v", k, lines[0][k], v)
		}
	}
	if _, ok := lines[0]["to"]; ok {
		t.Error("an open records a rename target")
	}
	if lines[1]["result"] != "ESTALE" || lines[1]["to"] != "b" {
		t.Errorf("rename line: %v", lines[1])
	}
	if info, _ := os.Stat(p); info.Mode().Perm() != 0o600 {
		t.Errorf("the audit log has mode %v, want 0600", info.Mode().Perm())
	}
}

func TestAFailedWriteIsReportedOnce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	failures := 0
	l, err := Open(p, func(error) { failures++ })
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // writes now fail
	l.Record(Entry{Op: "open"})
	l.Record(Entry{Op: "open"})
	if failures != 1 {
		t.Errorf("%d failures reported, want 1", failures)
	}
}

// logrotate's convention: the file is renamed away, then the log is told
// to reopen (SIGHUP); entries before go to the renamed file, entries after
// to a new file at the path, with mode 0600.
func TestReopenWritesToANewFileAtThePathAfterTheOldOneWasRenamed(t *testing.T) {
	dir := t.TempDir()
	p, rotated := filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit.log.1")
	l, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Record(Entry{Op: "open", Secret: "before"})
	if err := os.Rename(p, rotated); err != nil {
		t.Fatal(err)
	}
	l.Record(Entry{Op: "open", Secret: "renamed"}) // still the open file: the renamed one
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Record(Entry{Op: "open", Secret: "after"})
	if got := secrets(t, rotated); len(got) != 2 || got[0] != "before" || got[1] != "renamed" {
		t.Errorf("the renamed file holds %q, want before and renamed", got)
	}
	if got := secrets(t, p); len(got) != 1 || got[0] != "after" {
		t.Errorf("the new file holds %q, want after", got)
	}
	if info, err := os.Stat(p); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the new audit log: %v, %v; want mode 0600", info, err)
	}
}

// A path that cannot be opened again leaves the log writing where it did,
// and Reopen says why.
func TestAFailedReopenKeepsTheOldFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	os.Mkdir(dir, 0o700)
	p, rotated := filepath.Join(dir, "audit.log"), filepath.Join(t.TempDir(), "audit.log.1")
	failures := 0
	l, err := Open(p, func(error) { failures++ })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Rename(p, rotated); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("Reopen of a path whose directory is gone: %v, want an error naming it", err)
	}
	l.Record(Entry{Op: "open", Secret: "kept"})
	if got := secrets(t, rotated); len(got) != 1 || got[0] != "kept" || failures != 0 {
		t.Errorf("after a failed Reopen the old file holds %q (%d failures), want kept", got, failures)
	}
}

func TestReopenOfStandardErrorDoesNothing(t *testing.T) {
	l, err := Open("-", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Errorf("Reopen of standard error: %v", err)
	}
}

// secrets returns the secret of each entry in the audit file at p.
func secrets(t *testing.T, p string) []string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, e.Secret)
	}
	return got
}
