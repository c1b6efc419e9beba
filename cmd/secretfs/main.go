// Command secretfs mounts a table of encrypted secrets as files
// (/<application>/<secret>) and administers it from the shell.
// See README.md for the verbs and flags.
//
// The flow of every run: the cobra flags and SECRETFS_* make a config
// (root.go), validated in one place; the verb builds what it needs from
// it (backend.go: the store and keys); mount (cmd_mount.go) then mounts,
// and waits for a signal or an unmount.
//
// # Lock order
//
// Three locks, all leaves: logFile.mu (the log file SIGHUP swaps, service.go), succession.mu (the metrics listener, replace.go) and the
// env verb's lock on the values it gathers (cmd_env.go). None is held
// while another is taken, nor across a backend call.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/secretfs/secretfs/fault"
)

func main() {
	if err := execute(newRootCommand(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "secretfs:", fault.Message(err))
		status := 1
		if s := (*exitStatus)(nil); errors.As(err, &s) {
			status = s.status
		}
		os.Exit(status)
	}
}

// exitStatus is an error that ends secretfs with a status other than 1.
type exitStatus struct {
	status int
	err    error
}

func (e *exitStatus) Error() string { return e.err.Error() }
func (e *exitStatus) Unwrap() error { return e.err }
