package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/internal/mountns"
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

// runMainEnv makes the test binary run main itself, with its arguments:
// the exit status and the streams are then those of the real command.
const runMainEnv = "SECRETFS_CLI_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args[0] = "secretfs"
		main()
		os.Exit(0)
	}
	// Its mounts in no other process's namespace (internal/mountns).
	mountns.Isolate()
	// Flags set in the environment of whoever runs the tests must not
	// change what the tests run.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, envPrefix) {
			os.Unsetenv(name)
		}
	}
	os.Exit(m.Run())
}

// runMain runs secretfs args as a process and returns its stdout, stderr
// and exit status.
func runMain(t *testing.T, stdin []byte, args ...string) (stdout, stderr []byte, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.Bytes(), errOut.Bytes(), status
}
