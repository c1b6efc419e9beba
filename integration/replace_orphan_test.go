package integration

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A mount unmounted from its path while a copy of it in another mount
// namespace still holds it no longer answers for the path: it closes its
// control socket, and removes it, once it sees the path no longer shows
// it (within seconds), so `secretfs status` fails for the empty mount
// point; a new mount there listens at the socket, answers `secretfs
// status`, keeps its socket once the old process is gone, and can be
// replaced. (The old one kept the socket: status named it with exit 0, a
// new mount there had no socket and could never be replaced.)
func TestAnUnmountedMountGivesUpItsControlSocketToTheNextMount(t *testing.T) {
	b, orphan, _, holderPID := mountedWithACopy(t, "orphan")
	dir := orphan.dir
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount -l: %v: %s", err, out)
	}
	eventually(t, 30*time.Second, "the unmounted mount closes its control socket", func() bool {
		return len(controlSockets(t, dir)) == 0
	})
	if !strings.Contains(orphan.log(), "closing the control socket") {
		t.Errorf("the unmounted mount's log does not say it closed its control socket:\n%s", orphan.log())
	}
	if out, err := exec.Command(binary, "status", dir).CombinedOutput(); err == nil {
		t.Errorf("secretfs status of the empty mount point succeeded: %s", out)
	}

	next := mountAt(t, b, dir)
	if strings.Contains(next.log(), "no control socket") {
		t.Errorf("the new mount has no control socket:\n%s", next.log())
	}
	wantServedBy(t, dir, next.cmd.Process.Pid, "the new mount's process")
	// The copy ends, and the old process with it: the new mount keeps
	// its socket.
	if err := syscall.Kill(holderPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, orphan, "the unmounted mount did not exit within 30s of its copy's release:")
	wantServedBy(t, dir, next.cmd.Process.Pid, "once the old process exited, the new mount's process")
	replacement := mountAt(t, b, dir, "--replace")
	if !strings.Contains(replacement.log(), "the predecessor stepped down") {
		t.Errorf("the new mount could not be replaced:\n%s", replacement.log())
	}
	wantServedBy(t, dir, replacement.cmd.Process.Pid, "after the replacement, the replacing process")
}

// `secretfs status` fails for a path that, in the caller's mount
// namespace, does not show the file system of the secretfs answering the
// control socket beside it: here a namespace where the mount was
// unmounted, which the socket file, in the directory above, still
// reaches. (It said "served by" and exited 0.)
func TestStatusFailsWhereThePathDoesNotShowTheSecretfsThatAnswers(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	dir := mountpoint(t)
	m := mountAt(t, b, dir)
	if out, err := exec.Command(binary, "status", dir).CombinedOutput(); err != nil {
		t.Fatalf("secretfs status of the mount: %v: %s", err, out)
	}
	script := "umount -l " + dir + " && exec " + binary + " status " + dir
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script).CombinedOutput()
	t.Logf("secretfs status where the path shows nothing: %v: %s", err, out)
	if err == nil {
		t.Errorf("secretfs status in a mount namespace where %s shows an empty directory succeeded: %s", dir, out)
	}
	if !strings.Contains(string(out), "nothing is mounted there in this mount namespace") || !strings.Contains(string(out), "process "+strconv.Itoa(m.cmd.Process.Pid)) {
		t.Errorf("secretfs status said %q; want that the path shows nothing here, naming process %d", out, m.cmd.Process.Pid)
	}
	// --json says so too: "serving" is the process's own word, "ready"
	// the verdict for the path as seen from there.
	script = "umount -l " + dir + " && exec " + binary + " status --json " + dir
	out, err = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script).Output()
	var r struct {
		Serving  bool   `json:"serving"`
		Ready    bool   `json:"ready"`
		NotReady string `json:"not_ready"`
	}
	if jerr := json.Unmarshal(out, &r); err == nil || jerr != nil || r.Ready || !r.Serving || !strings.Contains(r.NotReady, "nothing is mounted there") {
		t.Errorf("secretfs status --json where the path shows nothing: %v, %s; want exit 1 and ready false, serving true, not_ready saying why", err, out)
	}
	m.mustSh("ls >/dev/null")
}

// A replaced secretfs whose drain a copy of its mount in another mount
// namespace holds names that holder in its log a few seconds into the
// drain, with no signal or --drain-timeout to end it: the copy may hold
// it for as long as that namespace lives, and nothing else would tell
// why the process lives on. (It named the holders only as a signal or
// --drain-timeout ended the drain.)
func TestADrainStillHeldNamesItsHoldersWithinSeconds(t *testing.T) {
	b, old, value, holderPID := mountedWithACopy(t, "drain")
	dir := old.dir
	next := mountAt(t, b, dir, "--replace")
	next.secret(value)
	eventually(t, 30*time.Second, "the replaced secretfs names the copy that holds its drain", func() bool {
		log := old.log()
		return strings.Contains(log, "still holds the detached mount") && strings.Contains(log, `"pid":`+strconv.Itoa(holderPID))
	})
	select {
	case <-old.exited:
		t.Errorf("the replaced secretfs exited while a copy held its mount:\n%s", old.log())
	default:
	}
	if strings.Contains(old.log(), "drain ended") {
		t.Errorf("the drain ended while the copy held the mount:\n%s", old.log())
	}
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(holderPID), "-m", "cat", old.path("app/s")).CombinedOutput(); err != nil || string(out) != value {
		t.Errorf("reading through the copy during the drain: %q, %v; want it served", out, err)
	}
	// The copy ends: the drain with it.
	if err := syscall.Kill(holderPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.exited:
		if old.waitErr != nil {
			t.Errorf("the replaced secretfs exited with %v", old.waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the replaced secretfs did not exit within 30s of its copy's release:\n%s", old.log())
	}
}

// mountedWithACopy mounts a backend holding app/s (replacedSecret) at a
// new mount point, and starts a process in a mount namespace of its own,
// private, holding a copy of that mount until the test ends
// (copyHolder), once it read app/s through it. It returns the backend,
// the mount, the value of app/s and the holder's pid.
func mountedWithACopy(t *testing.T, prefix string) (*backend, *mounted, string, int) {
	t.Helper()
	b, value := replacedSecret(t, prefix)
	m := mountAt(t, b, mountpoint(t))
	m.secret(value)
	pid, line := copyHolder(t, "cat "+m.path("app/s")+" && echo")
	if line != value+"\n" {
		t.Fatalf("reading through the copy: %q", line)
	}
	return b, m, value, pid
}
