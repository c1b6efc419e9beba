package integration

import "testing"

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
