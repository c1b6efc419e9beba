package main

import (
	"slices"
	"testing"
)

// A SECRETFS_* variable that sets no flag of mount is stray for mount (a
// misspelling in a unit's environment file, or another verb's flag); one
// that sets one of its flags, or that secretfs sets for its own
// children, is not.
func TestAVariableThatNamesNoFlagIsStray(t *testing.T) {
	t.Setenv("SECRETFS_APP", "billing") // for SECRETFS_APPS
	t.Setenv("SECRETFS_TTLL", "5s")
	t.Setenv("SECRETFS_APPS", "billing")   // mount's
	t.Setenv("SECRETFS_TABLE", "secrets")  // every verb's
	t.Setenv("SECRETFS_DAEMON", "false")   // mount's, set for a daemon's child
	t.Setenv(listProbeEnv, "/nonexistent") // internal
	t.Setenv("SECRETFS_DOCKER", "true")    // env's (--docker)
	mount, _, err := newRootCommand().Find([]string{"mount"})
	if err != nil {
		t.Fatal(err)
	}
	got := strayVariables(mount)
	if want := []string{"SECRETFS_APP", "SECRETFS_DOCKER", "SECRETFS_TTLL"}; !slices.Equal(got, want) {
		t.Errorf("stray variables: %q, want %q", got, want)
	}
}
