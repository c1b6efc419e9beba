package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A --daemon mount keeps none of the descriptors its caller left open
// without close-on-exec: a shell that did `exec 5< /mnt/secrets/app/x`
// on a mount and then ran `secretfs mount --replace --daemon` would
// otherwise have the new daemon hold the old mount, whose process then
// never ends its drain. The caller here is secretfs itself, started with
// a file at descriptor 5; the daemon it starts must not hold that file.
func TestADaemonHoldsNoDescriptorItsCallerLeftOpen(t *testing.T) {
	dir := fuseMountpoint(t)
	dataDir := newStore(t)
	held, err := os.Create(filepath.Join(t.TempDir(), "held-by-the-caller"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	var daemonPID int
	t.Cleanup(func() { endDaemon(t, dir, daemonPID) })
	cmd := exec.Command(os.Args[0], append([]string{"mount", "--daemon", dir, "--log-file", filepath.Join(t.TempDir(), "mount.log")}, dataDir...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.ExtraFiles = []*os.File{nil, nil, held} // descriptor 5, as `exec 5<` leaves it
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mount --daemon: %v\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`serving as process (\d+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("mount --daemon named no process serving the mount:\n%s", stderr.String())
	}
	daemonPID, _ = strconv.Atoi(m[1])

	fdDir := "/proc/" + m[1] + "/fd"
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && target == held.Name() {
			t.Errorf("the daemon holds the file its caller left open, at descriptor %s", e.Name())
		}
	}
}

// endDaemon ends the daemon pid (0: none was started) that serves dir:
// its mount is detached, which ends it, and it is killed if it is still
// the test binary running.
func endDaemon(t *testing.T, dir string, pid int) {
	for unix.Unmount(dir, unix.MNT_DETACH) == nil {
	}
	if pid == 0 {
		return
	}
	self, _ := os.Executable()
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && exe == self {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Logf("killing the daemon %d: %v", pid, err)
		}
	}
}

// Where close_range(2) fails, closeOnExec marks each descriptor in turn:
// one opened without close-on-exec has it afterwards.
func TestCloseOnExecEachMarksADescriptorOpenedWithoutIt(t *testing.T) {
	fd, err := unix.Open(os.DevNull, unix.O_RDONLY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Fatalf("before: descriptor flags %#x, %v; want no FD_CLOEXEC", flags, err)
	}
	closeOnExecEach()
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("after: descriptor flags %#x, %v; want FD_CLOEXEC", flags, err)
	}
}

// A --daemon parent passes a stop signal it caught on to its replacing
// child as withdrawSignal, never as SIGTERM: it passes one on until it
// has read that the child serves, which may be after the child's switch
// ended, and a SIGTERM then would unmount the path the child took over.
func TestADaemonParentPassesAStopOnAsAWithdrawal(t *testing.T) {
	out := filepath.Join(t.TempDir(), "heard")
	child := exec.Command("sh", "-c", `trap 'echo USR1 > "$0"; exit 0' USR1; trap 'echo TERM > "$0"; exit 0' TERM; echo ready > "$0"; while :; do sleep 0.05; done`, out)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	waitForFile(t, out, "ready")
	sigs := make(chan os.Signal, 1)
	var said bytes.Buffer
	stop := passSignalsOn(sigs, child.Process, &said)
	sigs <- unix.SIGINT
	if err := child.Wait(); err != nil {
		t.Fatalf("the child: %v", err)
	}
	stop()
	if got, _ := os.ReadFile(out); string(got) != "USR1\n" {
		t.Errorf("the child heard %q, want USR1 (withdrawSignal)", got)
	}
	if !bytes.Contains(said.Bytes(), []byte("passed on to the replacing process")) {
		t.Errorf("the parent said %q", said.String())
	}
}

// waitForFile waits until the file at path holds want and a newline.
func waitForFile(t *testing.T, path, want string) {
	t.Helper()
	for range 600 {
		if got, _ := os.ReadFile(path); string(got) == want+"\n" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never held %q", path, want)
}
