package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/internal/handover"
	"github.com/secretfs/secretfs/internal/testserver"
)

// `secretfs mount --replace` where something goes wrong half way: the
// new mount cannot answer, or the old process is signalled while it steps
// down. Both are checked against the built binary, old and new process
// alike.

// A --replace whose own mount cannot answer a listing refuses before it
// attaches that mount beneath the live one and before it asks the live
// one to step down, with a reason that says the listing failed, and
// changes nothing: the path is served by the old process as before (the
// same value, the same file system, one secretfs mount there and none
// beneath it), the old process runs on, not stepped down, and the new one
// is gone, leaving no control socket behind. Here the replacement's
// DynamoDB endpoint takes requests and never answers (a frozen dynalite:
// a new configuration pointing at a hung endpoint), while the old
// process's backend keeps answering.
func TestReplaceRefusesANewMountThatCannotListAndChangesNothing(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b, _ := ownDynamo(t, false)
	value := unique("kept")
	b.cli(t, []byte(value), "put", "app/s")
	// --ttl 0: every read below asks the old process's backend, which
	// must keep answering.
	dir, logPath, old := liveAt(t, b, value, "--ttl", "0")
	if got := old.mustSh("cat app/s"); got != value {
		t.Fatalf("cat app/s on the old mount: %q", got)
	}
	before := mountsAt(t, os.Getpid(), dir)
	devBefore := topDev(t, dir)
	sockets := controlSockets(t, dir)

	hung, err := testserver.StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	hung.Freeze()
	replacement := *b
	replacement.env = nil
	for _, kv := range b.env {
		if !strings.HasPrefix(kv, "AWS_ENDPOINT_URL_DYNAMODB=") {
			replacement.env = append(replacement.env, kv)
		}
	}
	replacement.env = append(replacement.env, "AWS_ENDPOINT_URL_DYNAMODB="+hung.URL)

	_, errOut, err := replacement.run(nil, "mount", dir, "--replace", "--daemon", "--timeout", "1s", "--log-format", "json", "--log-file", logPath)
	t.Logf("--replace with a mount that cannot answer a listing: %v, %s", err, strings.TrimSpace(errOut))
	if err == nil {
		t.Errorf("--replace with a mount that cannot answer a listing succeeded: %q", errOut)
	}
	if !regexp.MustCompile(`listing the new mount: .*input/output error|the new mount did not answer a listing within`).MatchString(errOut) ||
		!strings.Contains(errOut, "the live mount goes on serving, unchanged") {
		t.Errorf("--replace said %q; want that the new mount's listing failed and the live mount goes on serving", errOut)
	}
	if hung.Total() == 0 {
		t.Errorf("the replacement never asked its DynamoDB: its listing failed for another reason")
	}
	newLog, _ := os.ReadFile(logPath)
	if bytes.Contains(newLog, []byte("stepped down")) {
		t.Errorf("the replacement's log says a predecessor stepped down:\n%s", newLog)
	}

	// Nothing changed: the old process serves the path, alone.
	if got := old.mustSh("cat app/s"); got != value {
		t.Errorf("cat app/s after the refusal: %q, want the old process's value", got)
	}
	old.mustSh("ls app >/dev/null")
	if after := mountsAt(t, os.Getpid(), dir); len(after) != 1 || len(before) != 1 || after[0].id != before[0].id || after[0].fstype != "fuse.secretfs" {
		t.Errorf("mounts at %s after the refusal: %+v; before: %+v; want the old mount alone, as it was", dir, after, before)
	}
	if dev := topDev(t, dir); dev != devBefore {
		t.Errorf("the path shows the file system %d:%d, before the refusal %d:%d", dev>>8, dev&0xff, devBefore>>8, devBefore&0xff)
	}
	wantServedBy(t, dir, old.cmd.Process.Pid, "after the refusal, the old process")
	select {
	case <-old.exited:
		t.Fatalf("the old process exited after the refused replacement: %v", old.waitErr)
	default:
	}
	eventually(t, 30*time.Second, "the old process hears that the would-be successor went away", func() bool {
		return strings.Contains(old.log(), "the process that announced itself as a successor went away; still serving")
	})
	if strings.Contains(old.log(), "stepped down") || strings.Contains(old.log(), "stepping down") {
		t.Errorf("the old process's log speaks of stepping down:\n%s", old.log())
	}
	if pids := runningWith(logPath); len(pids) > 0 {
		t.Errorf("the refused replacement still runs: processes %v", pids)
	}
	if now := controlSockets(t, dir); strings.Join(now, " ") != strings.Join(sockets, " ") {
		t.Errorf("control sockets beside %s after the refusal: %q, before: %q", dir, now, sockets)
	}
}

// A SIGTERM that reaches the old process in the middle of its step-down,
// after its successor asked and before it detached its mount, does not
// take the path from the successor: the step-down finishes, the successor
// hears so and serves the path, the old process drains (ended at once by
// the signal) and exits cleanly, readers by path see no error, and one
// secretfs mount, the successor's, is at the path with nothing left
// beneath it. The old process is held in its step-down by
// SECRETFS_TEST_HOLD_STEPDOWN (cmd/secretfs/replace.go): a FIFO that the
// step-down opens and reads to its end before it detaches, so that the
// signal lands there every time, not by timing.
func TestReplaceSignalledMidStepDownLeavesThePathServedByTheNewProcess(t *testing.T) {
	b, value := replacedSecret(t, "midway")
	hold := filepath.Join(t.TempDir(), "hold-step-down")
	if err := syscall.Mkfifo(hold, 0o600); err != nil {
		t.Fatal(err)
	}
	holding := *b
	holding.env = append(append([]string(nil), b.env...), "SECRETFS_TEST_HOLD_STEPDOWN="+hold)
	dir, logPath, old := liveAt(t, &holding, value)
	oldDev := topDev(t, dir)
	var released sync.Once
	release := func(w *os.File) {
		released.Do(func() {
			if w != nil {
				w.Close()
			}
		})
	}
	// Whatever happens, the old process is not left waiting at the FIFO.
	t.Cleanup(func() {
		if w, err := os.OpenFile(hold, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})

	// Readers by path, all along.
	readers := &tally{name: "4 readers re-opening by path"}
	stopReaders := readers.readAlong(t, filepath.Join(dir, "app", "s"), 4, func(got string, _ time.Time) string {
		if got != value {
			return fmt.Sprintf("read %q", got)
		}
		return ""
	})

	type result struct {
		stderr string
		err    error
	}
	replaced := make(chan result, 1)
	go func() {
		_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--log-format", "json", "--log-file", logPath)
		replaced <- result{errOut, err}
	}()

	// The successor asked, and the old process is in its step-down: it
	// opened the FIFO, which an open for writing that does not wait
	// finds.
	var w *os.File
	eventually(t, 60*time.Second, "the old process begins its step-down", func() bool {
		f, err := os.OpenFile(hold, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return false
		}
		w = f
		return true
	})
	t.Cleanup(func() { release(w) })
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the old process takes the SIGTERM", func() bool {
		return strings.Contains(old.log(), `"msg":"unmounting"`)
	})
	if dev := topDev(t, dir); dev != oldDev {
		t.Fatalf("the path shows %d:%d while the step-down is held, want the old mount %d:%d", dev>>8, dev&0xff, oldDev>>8, oldDev&0xff)
	}
	release(w)

	r := <-replaced
	if r.err != nil {
		newLog, _ := os.ReadFile(logPath)
		got, err := os.ReadFile(filepath.Join(dir, "app", "s"))
		t.Fatalf("mount --replace --daemon, its predecessor signalled mid step-down: %v\n%s\nits log:\n%s\nthe path then reads %q, %v, with the mounts %+v", r.err, r.stderr, newLog, got, err, mountsAt(t, os.Getpid(), dir))
	}
	pid := daemonPID(t, r.stderr)
	t.Cleanup(func() { stopDaemon(t, pid, dir) })
	waitExited(t, old, "the old process did not exit within 30s of its step-down, signalled")
	if old.waitErr != nil {
		t.Errorf("the old process exited with %v", old.waitErr)
	}
	// Reads by path go on a while once the old process is gone.
	n := readers.reads.Load()
	eventually(t, 30*time.Second, "readers read from the new process", func() bool { return readers.reads.Load() >= n+20 })
	stopReaders()
	readers.report(t)

	oldLog := old.log()
	for _, want := range []string{"stepped down for a successor", "ending the drain on a signal"} {
		if !strings.Contains(oldLog, want) {
			t.Errorf("the old process's log does not say %q:\n%s", want, oldLog)
		}
	}
	if strings.Contains(oldLog, `"msg":"unmounted"`) {
		t.Errorf("the old process unmounted the path:\n%s", oldLog)
	}
	newLog, _ := os.ReadFile(logPath)
	if !bytes.Contains(newLog, []byte("the predecessor stepped down")) {
		t.Errorf("the new process does not say its predecessor stepped down:\n%s", newLog)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "app", "s")); err != nil || string(got) != value {
		t.Errorf("cat app/s after the replacement: %q, %v", got, err)
	}
	wantServedBy(t, dir, pid, "the new process")
	at := mountsAt(t, os.Getpid(), dir)
	if len(at) != 1 || at[0].fstype != "fuse.secretfs" {
		t.Errorf("mounts at %s: %+v, want one secretfs mount", dir, at)
	}
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Only this test's mounts: the old process has exited, so its
	// device number is free, and another test's mount (the integration
	// shards run side by side) may have it now.
	for _, m := range all {
		if m.Dev == oldDev && (m.Point == dir || strings.HasPrefix(m.Point, filepath.Dir(dir)+"/")) {
			t.Errorf("the old process's file system is still mounted: %+v", m)
		}
	}
	if top, ok := handover.TopAt(all, dir); !ok || top.Dev == oldDev {
		t.Errorf("the path shows %+v, want the new process's mount", top)
	}
}

// topDev is the device number of the file system the path dir shows.
func topDev(t *testing.T, dir string) uint64 {
	t.Helper()
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	top, ok := handover.TopAt(all, dir)
	if !ok {
		t.Fatalf("nothing is mounted at %s", dir)
	}
	return top.Dev
}

// replyOfStatus is what `secretfs status --json` says of a mount.
type replyOfStatus struct {
	SeenPID int  `json:"seen_pid"`
	Serving bool `json:"serving"`
}

func statusOf(t *testing.T, dir string) replyOfStatus {
	t.Helper()
	out, err := exec.Command(binary, "status", "--json", dir).Output()
	if err != nil {
		t.Fatalf("secretfs status --json %s: %v\n%s", dir, err, out)
	}
	var r replyOfStatus
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("secretfs status --json said %s: %v", out, err)
	}
	return r
}

// controlSockets lists the control sockets beside the mount point dir:
// the one a mount listens on, and any a successor made for itself.
func controlSockets(t *testing.T, dir string) []string {
	t.Helper()
	found, err := filepath.Glob(handover.SocketPath(dir) + "*")
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// runningWith lists the processes with arg among their arguments.
func runningWith(arg string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !alive(pid) {
			continue
		}
		for _, a := range bytes.Split(cmdline, []byte{0}) {
			if string(a) == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// killAllRunningWith makes sure that when the test ends no process it
// started with arg (a path of its own) runs on, and nothing stays
// mounted at dir: a --daemon that a failing test left behind. Called
// before the test mounts anything, its cleanup runs after theirs.
func killAllRunningWith(t *testing.T, arg, dir string) {
	t.Cleanup(func() {
		for _, pid := range runningWith(arg) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for isMounted(dir) {
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				if !errors.Is(err, syscall.EINVAL) {
					t.Errorf("unmounting %s: %v", dir, err)
				}
				return
			}
		}
	})
}

// A --replace of a live secretfs with a --data-dir that holds no store
// (a mistyped path) is refused, making nothing, and the live one serves
// on: the secretfs it replaces serves a store that exists. (It made a
// new, empty store there, and served it in the live one's place.) With
// nothing to replace, --replace makes a store on first use, as any mount.
func TestReplaceWithADataDirThatHoldsNoStoreIsRefused(t *testing.T) {
	b, value := replacedSecret(t, "mistyped")
	dir, _, old := liveAt(t, b, value)
	mistyped := filepath.Join(t.TempDir(), "dta")
	cmd := exec.Command(binary, "mount", dir, "--replace", "--daemon", "--log-file", filepath.Join(t.TempDir(), "new.log"), "--data-dir", mistyped)
	cmd.Env = append(os.Environ(), b.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	errOut := stderr.String()
	if err == nil || !strings.Contains(errOut, "no secret store at "+mistyped) || !strings.Contains(errOut, "a --replace makes none") {
		t.Errorf("mount --replace --data-dir MISTYPED: %v, %q; want it refused: no store there, and a --replace makes none", err, errOut)
	}
	if _, err := os.Stat(mistyped); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused replacement made %s: %v", mistyped, err)
	}
	if got := old.mustSh("cat app/s"); got != value {
		t.Errorf("cat app/s after the refused replacement: %q", got)
	}
	wantServedBy(t, dir, old.cmd.Process.Pid, "the live secretfs")
}
