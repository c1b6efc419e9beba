package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
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
	l.Record(Entry{Time: at, Op: "open", App: "billing", Secret: "db-password", Version: 3, UID: 1000, GID: 1000, PID: 42, Command: "cat"})
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
		"version": 3.0, "result": "OK", "uid": 1000.0, "gid": 1000.0, "pid": 42.0, "command": "cat"}
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
