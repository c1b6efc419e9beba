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
// to stderr.
func mountFails(t *testing.T, b *backend, dir string, extra ...string) string {
	t.Helper()
	requireFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(append([]string{"mount", dir}, b.flags...), extra...)...)
	cmd.Env = append(os.Environ(), b.env...)
	return failsLeavingNothing(t, cmd, dir)
}

// failsLeavingNothing runs cmd, a mount at dir that must fail, leaving
// nothing mounted there, and returns what it wrote to stderr. A mount
// made after all is detached, and a daemon it started is killed.
func failsLeavingNothing(t *testing.T, cmd *exec.Cmd, dir string) string {
	t.Helper()
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
		t.Fatalf("%q: %v, want a failure\n%s", cmd.Args, err, stderr.String())
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

// runIn runs secretfs args in the working directory dir, with b's
// environment but none of its flags, and returns its stderr.
func runIn(t *testing.T, b *backend, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), b.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stderr.String(), err
}

// cwdOf returns the working directory of process pid.
func cwdOf(t *testing.T, pid int) string {
	t.Helper()
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return cwd
}

// A --daemon mount works in /, as daemon(3) does, so that it keeps no
// directory busy; every relative path it was given (the mount point,
// --data-dir, --log-file, --audit-log, --config) names what it named in
// the directory it was started from.
func TestADaemonWorksInTheRootDirectoryWithItsRelativePathsResolvedFirst(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	work := t.TempDir()
	config := "owners:\n  - match: app/*\n    mode: \"0640\"\n"
	if err := os.WriteFile(filepath.Join(work, "secrets.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr, err := runIn(t, b, work, "mount", "--daemon", "mnt", "--data-dir", "data", "--log-file", "daemon.log",
		"--audit-log", "audit.log", "--config", "secrets.yaml")
	if err != nil {
		t.Fatalf("mount --daemon: %v\n%s", err, stderr)
	}
	dir := filepath.Join(work, "mnt")
	pid := daemonPID(t, stderr)
	killAtEnd(t, pid, dir)
	if cwd := cwdOf(t, pid); cwd != "/" {
		t.Errorf("the daemon works in %s, want /", cwd)
	}
	if !isMounted(dir) {
		t.Fatalf("%s is not mounted", dir)
	}
	if out, err := exec.Command("sh", "-c", "mkdir "+dir+"/app && echo v > "+dir+"/app/s && stat -c %a "+dir+"/app/s").CombinedOutput(); err != nil || string(out) != "640\n" {
		t.Errorf("a secret written through the daemon's mount: %q, %v; want mode 640 from the config file", out, err)
	}
	for _, name := range []string{"data/secrets.db", "data/key.pem", "daemon.log", "audit.log"} {
		if fi, err := os.Stat(filepath.Join(work, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s in the directory the daemon was started from: %v", name, err)
		}
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	eventually(t, 20*time.Second, "the daemon exits once unmounted", func() bool { return !alive(pid) })
}

// `mount --replace --daemon` run from a directory inside the mount it
// replaces lets the replaced process exit: the new daemon does not keep
// the old mount busy from its working directory.
func TestAReplaceDaemonStartedInsideTheOldMountLetsTheOldProcessExit(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	old := mount(t, b)
	old.mustSh("mkdir billing && echo v > billing/s")
	logPath := filepath.Join(t.TempDir(), "new.log")
	stderr, err := runIn(t, b, old.path("billing"), append([]string{"mount", old.dir, "--replace", "--daemon", "--log-file", logPath}, b.flags...)...)
	if err != nil {
		t.Fatalf("mount --replace --daemon: %v\n%s", err, stderr)
	}
	pid := daemonPID(t, stderr)
	killAtEnd(t, pid, old.dir)
	if cwd := cwdOf(t, pid); cwd != "/" {
		t.Errorf("the new daemon works in %s, want /", cwd)
	}
	select {
	case <-old.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the replaced secretfs did not exit: something holds its detached mount\n%s", old.log())
	}
	if out, err := exec.Command("cat", old.path("billing/s")).CombinedOutput(); err != nil || string(out) != "v\n" {
		t.Errorf("cat through the new daemon: %q, %v", out, err)
	}
}

// mountFormFails runs secretfs in the mount(8) form, as mount.fuse3 runs
// it (`secretfs local:DATA_DIR MOUNTPOINT -o OPTIONS`); it must exit
// non-zero, leaving nothing mounted. It returns what it wrote to stderr.
func mountFormFails(t *testing.T, dataDir, dir, options string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "local:"+dataDir, dir, "-o", options)
	cmd.Dir = "/"
	return failsLeavingNothing(t, cmd, dir)
}

// A --read-only mount never makes a data directory, a key pair or a store
// file: where there is no store it is refused as the other verbs refuse
// it, in the foreground, with --daemon and in the mount(8) form, before
// it makes even the mount point.
func TestAReadOnlyMountOfAMissingStoreIsRefusedAndMakesNothing(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	logFile := filepath.Join(t.TempDir(), "ro.log")
	want := "no secret store at " + filepath.Join(b.dataDir(), "secrets.db") + ": run `secretfs init` first"
	for _, extra := range [][]string{{"--read-only"}, {"--read-only", "--daemon", "--log-file", logFile}} {
		if stderr := mountFails(t, b, dir, extra...); !strings.Contains(stderr, want) {
			t.Errorf("mount %q of a missing store says %q, want %q", extra, stderr, want)
		}
	}
	if stderr := mountFormFails(t, b.dataDir(), dir, "ro,log_file="+logFile); !strings.Contains(stderr, want) {
		t.Errorf("the mount(8) form, ro, of a missing store says %q, want %q", stderr, want)
	}
	for _, made := range []string{b.dataDir(), dir} {
		if _, err := os.Stat(made); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused read-only mount made %s: %v", made, err)
		}
	}
	// An existing, empty data directory is no store either.
	if err := os.Mkdir(b.dataDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if stderr := mountFails(t, b, dir, "--read-only"); !strings.Contains(stderr, want) {
		t.Errorf("mount --read-only of an empty data directory says %q, want %q", stderr, want)
	}
	if names, _ := os.ReadDir(b.dataDir()); len(names) != 0 {
		t.Errorf("a refused read-only mount made %v in the data directory", names)
	}
}

// A store file missing beside its key pair is a lost store, not a first
// use: every mount refuses it (read-write, read-only, --daemon, the
// mount(8) form), and so does every verb, rather than start a new, empty
// store over it.
func TestAStoreFileMissingBesideItsKeyPairIsRefusedByEveryMount(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("value"), "put", "app/s")
	dbPath := filepath.Join(b.dataDir(), "secrets.db")
	if err := os.Remove(dbPath); err != nil {
		t.Fatal(err)
	}
	dir := mountpoint(t)
	logFile := filepath.Join(t.TempDir(), "m.log")
	want := "the store " + dbPath + " is missing but its key pair is beside it"
	for _, extra := range [][]string{nil, {"--read-only"}, {"--daemon", "--log-file", logFile}, {"--read-only", "--daemon", "--log-file", logFile}} {
		if stderr := mountFails(t, b, dir, extra...); !strings.Contains(stderr, want) || !strings.Contains(stderr, "restore secrets.db") {
			t.Errorf("mount %q without secrets.db says %q, want %q", extra, stderr, want)
		}
	}
	for _, options := range []string{"rw,log_file=" + logFile, "ro,log_file=" + logFile} {
		if stderr := mountFormFails(t, b.dataDir(), dir, options); !strings.Contains(stderr, want) {
			t.Errorf("the mount(8) form -o %s without secrets.db says %q, want %q", options, stderr, want)
		}
	}
	for _, verb := range [][]string{{"ls"}, {"get", "app/s"}, {"init"}} {
		if _, stderr, err := b.run(nil, verb...); err == nil || !strings.Contains(stderr, want) {
			t.Errorf("%s without secrets.db: %v, %q; want %q", verb, err, stderr, want)
		}
	}
	if _, err := os.Stat(dbPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refusal made a new store file: %v", err)
	}
}

// What a mount makes on first use (the data directory, a key pair) is
// said on the terminal with --daemon and in the mount(8) form too, not
// only in the daemon's log.
func TestADaemonSaysOnTheTerminalWhatItMadeOnFirstUse(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	for _, form := range []string{"--daemon", "mount(8)"} {
		b := localBackend(t)
		dir := filepath.Join(t.TempDir(), "mnt")
		logFile := filepath.Join(t.TempDir(), "first.log")
		var stderr string
		var err error
		if form == "--daemon" {
			stderr, err = runIn(t, b, "/", append([]string{"mount", dir, "--daemon", "--log-file", logFile}, b.flags...)...)
		} else {
			stderr, err = runIn(t, b, "/", "local:"+b.dataDir(), dir, "-o", "log_file="+logFile)
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", form, err, stderr)
		}
		pid := daemonPID(t, stderr)
		killAtEnd(t, pid, dir)
		for _, want := range []string{
			"secretfs: created the data directory " + b.dataDir() + " (mode 0700)\n",
			"secretfs: generated an RSA key pair:\n",
			"secretfs: " + filepath.Join(b.dataDir(), "key.pem") + "  private: ",
			"secretfs: " + filepath.Join(b.dataDir(), "key.pub.pem") + "  public: ",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s on first use says %q, want %q", form, stderr, want)
			}
		}
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v: %s", err, out)
		}
		eventually(t, 20*time.Second, "the daemon exits once unmounted", func() bool { return !alive(pid) })
	}
}

// A --daemon whose mount fusermount3 refuses says why, as the foreground
// does: what fusermount3 said on its standard error, which the daemon
// (with no terminal) catches, logs and gives its parent to print. The
// mount is made by uid 1000, through fusermount3, on a directory that is
// root's, which fusermount3 refuses whatever /dev/fuse's mode.
func TestADaemonSaysWhyFusermountRefusedTheMount(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, home, dir := filepath.Join(base, "secretfs"), filepath.Join(base, "home"), filepath.Join(base, "mnt")
	if out, err := exec.Command("cp", binary, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	for _, d := range []string{home, dir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(home, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(home, "daemon.log")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "mount", dir, "--daemon", "--data-dir", filepath.Join(home, "data"), "--log-file", logFile)
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	stderr := failsLeavingNothing(t, cmd, dir)
	if !strings.Contains(stderr, "fusermount exited") || !strings.Contains(stderr, "fusermount3: ") {
		t.Errorf("mount --daemon says %q; want fusermount3's own reason after go-fuse's", stderr)
	}
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "fusermount3: ") {
		t.Errorf("the daemon's log does not say what fusermount3 said:\n%s", log)
	}
}

// A mount on a path a live file system serves is refused before anything
// is made: with --daemon, not even its log file. (The log file was made
// first.) A mount point that holds files is mounted
// over, as mount(8) does, with a warning in the log that they are hidden.
func TestAMountOnALiveMountMakesNothingAndOneOnFilesWarns(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	dir := mountpoint(t)
	if err := os.WriteFile(filepath.Join(dir, "left-here"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mountAt(t, b, dir)
	if !strings.Contains(m.log(), "the mount point is not empty: what it holds is hidden while the mount is there") {
		t.Errorf("a mount over files does not warn of them:\n%s", m.log())
	}
	logFile := filepath.Join(t.TempDir(), "second.log")
	if _, stderr, err := b.run(nil, "mount", dir, "--daemon", "--log-file", logFile); err == nil || !strings.Contains(stderr, "already a mountpoint") {
		t.Errorf("a second mount on a live one: %v, %q; want it refused: already a mountpoint", err, stderr)
	}
	if at := mountsAt(t, os.Getpid(), dir); len(at) != 1 {
		t.Errorf("mounts at %s after the refused mount: %+v, want the live one alone", dir, at)
	}
	if _, err := os.Stat(logFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused mount made its log file: %v", err)
	}
	m.mustSh("ls >/dev/null")
}
