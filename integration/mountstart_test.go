package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// How `secretfs mount` starts: what it checks before it makes or mounts
// anything, and how --daemon leaves the caller.

// mountFails runs `secretfs mount dir` against b with extra flags; it must
// exit non-zero, leaving nothing mounted at dir. It returns what it wrote
// to stderr. A mount made after all is detached, and a daemon it started
// is killed.
func mountFails(t *testing.T, b *backend, dir string, extra ...string) string {
	t.Helper()
	requireFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(append([]string{"mount", dir}, b.flags...), extra...)...)
	cmd.Env = append(os.Environ(), b.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if strings.Contains(stderr.String(), "serving as process") {
		killAtEnd(t, daemonPID(t, stderr.String()), dir)
	}
	if isMounted(dir) {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		t.Errorf("secretfs left a mount at %s", dir)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("secretfs mount %s %q: %v, want a failure\n%s", dir, extra, err, stderr.String())
	}
	return stderr.String()
}

// deadMountOn leaves at path what a killed secretfs leaves: a FUSE mount
// whose connection is gone ("Transport endpoint is not connected"). The
// root's mode is path's type, as fusermount3 makes it.
func deadMountOn(t *testing.T, path string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("fd=%d,rootmode=%o,user_id=0,group_id=0", fd, st.Mode&syscall.S_IFMT)
	err = syscall.Mount("secretfs", path, "fuse.secretfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts)
	syscall.Close(fd) // the connection ends: the mount is dead
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if isMounted(path) {
			_ = syscall.Unmount(path, syscall.MNT_DETACH)
		}
	})
	if _, err := os.Stat(path); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of the dead mount: %v, want ENOTCONN", err)
	}
}

// A mount point that is a regular file is refused before anything is
// made or mounted, in the foreground, with --daemon, and where a dead
// mount on the file is recovered first: no mount is left on it, and no
// data directory or key pair is made.
func TestAMountPointThatIsAFileIsRefusedBeforeAnythingIsMadeOrMounted(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	file := filepath.Join(t.TempDir(), "cfile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "daemon.log")
	for _, extra := range [][]string{nil, {"--daemon", "--log-file", logFile}} {
		stderr := mountFails(t, b, file, extra...)
		if !strings.Contains(stderr, file+" is not a directory") {
			t.Errorf("mount %q on a file says %q, want that it is not a directory", extra, stderr)
		}
	}
	deadMountOn(t, file)
	stderr := mountFails(t, b, file)
	if !strings.Contains(stderr, file+" is not a directory") {
		t.Errorf("mount on a dead mount on a file says %q, want that it is not a directory", stderr)
	}
	if _, err := os.Stat(b.dataDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused mount made the data directory: %v", err)
	}
	if fi, err := os.Stat(file); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the file after the refusals: %v, %v", fi, err)
	}
}

// A missing mount point is made, with its missing parents (mode 0755
// less the umask); one whose parent is a file is refused, making nothing.
func TestAMissingMountPointIsMadeWithItsParents(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	dir := filepath.Join(t.TempDir(), "a", "b", "mnt")
	m := mountAt(t, b, dir)
	m.mustSh("mkdir app && echo v > app/s")
	if fi, err := os.Stat(filepath.Dir(dir)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the made parent: %v, %v; want mode 0755", fi, err)
	}
	m.stop()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	other := localBackend(t)
	stderr := mountFails(t, other, filepath.Join(file, "mnt"))
	if !strings.Contains(stderr, file+" is not a directory") {
		t.Errorf("a mount point under a file: %q", stderr)
	}
	if _, err := os.Stat(other.dataDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused mount made the data directory: %v", err)
	}
}
