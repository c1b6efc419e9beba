// Package audit writes the mount's audit log: one JSON line per open of a
// secret, per commit, per unlink and per rename, saying when, what, to
// which secret and version, how it ended (the errno), and who asked: the
// caller's uid, gid, pid and command name. It never records a value: an
// Entry has no field that could hold one.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one audited operation, as package vfs makes it: the one
// record of an access, from the file system's core to this log.
type Entry struct {
	Time    time.Time     `json:"time"`
	Op      string        `json:"op"` // open, commit, unlink, rename
	App     string        `json:"app"`
	Secret  string        `json:"secret"`
	ToApp   string        `json:"to_app,omitempty"` // rename: where it went
	To      string        `json:"to,omitempty"`
	Version int64         `json:"version"` // the revision opened, committed, removed or renamed; 0 when none
	Errno   syscall.Errno `json:"-"`
	UID     uint32        `json:"uid"`
	GID     uint32        `json:"gid"`
	PID     uint32        `json:"pid"`     // the calling process; 0 if it was gone
	TID     uint32        `json:"tid"`     // the calling thread, which the kernel names (a single-threaded process's pid)
	Command string        `json:"command"` // /proc/TID/comm when it happened; "" if the process was gone
}

// line is the JSON form of an Entry: the errno by name ("OK" for 0).
type line struct {
	Entry
	Result string `json:"result"`
}

// Log writes entries as JSON lines. Safe for concurrent use; a failed
// write is reported once to the function given to Open (once more after
// each Reopen), and the log goes on.
type Log struct {
	path   string // "" for standard error
	failed func(error)

	mu     sync.Mutex // guards what follows: Record, Reopen and Close swap or use the file
	w      io.Writer
	closer io.Closer
	broken bool
}

// Open opens the audit log at path, appending (mode 0600), or standard
// error for "-". failed is told of the first write that fails.
func Open(path string, failed func(error)) (*Log, error) {
	if path == "-" {
		return &Log{w: os.Stderr, failed: failed}, nil
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return &Log{path: path, w: f, closer: f, failed: failed}, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return f, nil
}

// Reopen opens the log's path again, creating the file if it is gone, and
// writes there from then on: logrotate renames the file away and sends
// SIGHUP, and the next entry goes to a new file at the path. If the path
// cannot be opened, the log goes on writing to the file it had, and
// Reopen says why. Standard error is not reopened.
func (l *Log) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.closer
	l.w, l.closer, l.broken = f, f, false
	l.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("audit log: closing the file it replaced: %w", err)
	}
	return nil
}

// Record writes e as one line.
func (l *Log) Record(e Entry) {
	result := "OK"
	if e.Errno != 0 {
		result = unix.ErrnoName(e.Errno)
		if result == "" {
			result = fmt.Sprintf("errno %d", int(e.Errno))
		}
	}
	b, err := json.Marshal(line{Entry: e, Result: result})
	if err != nil {
		return // an Entry always marshals
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(b); err != nil && !l.broken {
		l.broken = true
		if l.failed != nil {
			l.failed(err)
		}
	}
}

// Recorder returns l.Record, or nil when l is nil (no audit log), so that
// the mount, told nothing to record to, does no auditing work at all.
func (l *Log) Recorder() func(Entry) {
	if l == nil {
		return nil
	}
	return l.Record
}

// Close closes the file, if any.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closer == nil {
		return nil
	}
	return l.closer.Close()
}
