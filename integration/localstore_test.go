package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// logLines returns the mount's JSON log lines at level whose message
// contains all of words.
func logLines(t *testing.T, m *mounted, level string, words ...string) []map[string]any {
	t.Helper()
	var found []map[string]any
	for _, line := range strings.Split(m.log(), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil || entry["level"] != level {
			continue
		}
		msg, _ := entry["msg"].(string)
		all := true
		for _, w := range words {
			all = all && strings.Contains(msg, w)
		}
		if all {
			found = append(found, entry)
		}
	}
	return found
}

// The data directory removed under a running mount (rm -rf): what the
// mount has read keeps reading, but no write is acknowledged, since the
// store it would go to is gone, and the log says why.
func TestLocalStoreRemovedWhileMountedRefusesWrites(t *testing.T) {
	b := localBackend(t)
	old := unique("before")
	b.cli(t, nil, "init")
	b.cli(t, []byte(old), "put", "app/s")
	m := mount(t, b)
	m.secret(old)
	if got := m.mustSh("cat app/s"); got != old {
		t.Fatalf("cat app/s = %q before the removal, want %q", got, old)
	}

	if out, err := exec.Command("rm", "-rf", b.dataDir()).CombinedOutput(); err != nil {
		t.Fatalf("rm -rf %s: %v\n%s", b.dataDir(), err, out)
	}

	if got := m.mustSh("cat app/s"); got != old {
		t.Errorf("cat app/s = %q after the removal, want the value read before", got)
	}
	m.failSh("printf %s "+m.secret(unique("after"))+" | dd of=app/s conv=fsync status=none", "Input/output error")
	m.failSh("/bin/echo "+m.secret(unique("new"))+" > app/new", "Input/output error")
	if got := m.mustSh("cat app/s"); got != old {
		t.Errorf("cat app/s = %q after the refused write, want the value read before", got)
	}
	if len(logLines(t, m, "error", "store file", "was removed")) == 0 {
		t.Errorf("no error-level log line says the store file was removed")
	}
}

// mountTmpfs mounts a tmpfs of size bytes at a new directory and unmounts
// it when the test ends (after the secretfs mounts the test starts later,
// whose cleanups run first), also when the test fails.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount -t tmpfs -o size=%s %s: %v (the integration tests run as root)", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the tmpfs %s: %v; detaching it", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// A full disk fails the write that did not fit with ENOSPC, leaves the
// value stored before intact, and, once there is room, writes again.
func TestLocalStoreFullDiskIsENOSPCAndKeepsTheOldValue(t *testing.T) {
	disk := mountTmpfs(t, "4m")
	dataDir := filepath.Join(disk, "data")
	b := &backend{name: "local", flags: []string{"--data-dir", dataDir}}
	old := unique("before")
	b.cli(t, nil, "init")
	b.cli(t, []byte(old), "put", "app/s")
	m := mount(t, b)
	m.secret(old)
	if got := m.mustSh("cat app/s"); got != old {
		t.Fatalf("cat app/s = %q, want %q", got, old)
	}

	filler := filepath.Join(disk, "filler")
	out, _ := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=4096").CombinedOutput()
	if !strings.Contains(string(out), "No space left on device") {
		t.Fatalf("filling the tmpfs: dd said %q, want it to run out of space", out)
	}

	// Larger than any slack left in the store's files.
	big := strings.Repeat(m.secret(unique("big")), 64<<10/20)
	m.failSh("printf %s "+big+" | dd of=app/s conv=fsync status=none", "No space left on device")
	if got := m.mustSh("cat app/s"); got != old {
		t.Errorf("cat app/s = %q after the write that did not fit, want the old value", got)
	}
	if got := b.cli(t, nil, "get", "app/s"); got != old {
		t.Errorf("the store holds %q after the write that did not fit, want the old value", got)
	}
	if len(logLines(t, m, "error", "app/s", "no space left")) == 0 {
		t.Errorf("no error-level log line says the store's disk is full")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	m.mustSh("printf %s " + big + " | dd of=app/s conv=fsync status=none")
	if got := b.cli(t, nil, "get", "app/s"); got != big {
		t.Errorf("with room again the store holds %d bytes, want the %d written", len(got), len(big))
	}
}

// A store file another user could read, from an older secretfs or a
// restore, is made owner-only when the mount opens it, and the log says so.
func TestLocalStoreOpenTightensAReadableStoreTo0600(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte(unique("value")), "put", "app/s")
	db := filepath.Join(b.dataDir(), "secrets.db")
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}

	m := mount(t, b)
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("secrets.db has mode %04o after the mount opened it, want 0600", mode)
	}
	for _, p := range []string{db + "-wal", db + "-shm"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	lines := logLines(t, m, "warning", "tightened")
	if len(lines) != 1 {
		t.Fatalf("%d log lines say the store's files were tightened, want 1", len(lines))
	}
	files, _ := json.Marshal(lines[0]["files"])
	if !strings.Contains(string(files), db+" (was 0644)") {
		t.Errorf("the log line names %s, want %q among them", files, db+" (was 0644)")
	}
}
