package integration

import (
	"testing"
	"time"
)

// liveAt mounts b, with flags, at a new mount point (replacedDir), the
// live secretfs a test of a replacement replaces, with value (app/s's)
// registered as a secret it must never log; it returns the mount point,
// the log of the process that will replace the mount there, and the
// mount.
func liveAt(t *testing.T, b *backend, value string, flags ...string) (dir, logPath string, live *mounted) {
	t.Helper()
	dir, logPath = replacedDir(t)
	live = mountAt(t, b, dir, flags...)
	live.secret(value)
	return dir, logPath, live
}

// wantServedBy checks that `secretfs status --json dir` names process
// pid, serving; what names that process for the failure (the old
// process, the new one, and when).
func wantServedBy(t *testing.T, dir string, pid int, what string) {
	t.Helper()
	if st := statusOf(t, dir); st.SeenPID != pid || !st.Serving {
		t.Errorf("secretfs status: process %d, serving %v; want %s, %d, serving", st.SeenPID, st.Serving, what, pid)
	}
}

// waitExited waits up to 30 s for m's process to exit; else it fails
// the test at once with why and m's log.
func waitExited(t *testing.T, m *mounted, why string) {
	t.Helper()
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s\n%s", why, m.log())
	}
}
