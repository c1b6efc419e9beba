package main

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"
)

// run runs the secretfs command line args in this process, with stdin
// (nil: empty), and returns what it wrote to stdout and stderr.
func run(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	if stdin == nil {
		stdin = bytes.NewReader(nil)
	}
	var out, errOut bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// newStore runs `secretfs init` on a fresh local data dir and returns the
// --data-dir argument pair for the verbs that use it.
func newStore(t *testing.T) []string {
	t.Helper()
	dataDir := []string{"--data-dir", filepath.Join(t.TempDir(), "data")}
	if _, stderr, err := run(t, nil, append([]string{"init"}, dataDir...)...); err != nil {
		t.Fatalf("init: %v\n%s", err, stderr)
	}
	return dataDir
}
