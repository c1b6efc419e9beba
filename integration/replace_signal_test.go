package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A signal to `secretfs mount --replace --daemon` (the replacing child,
// or its --daemon parent) while it replaces a mount: before the child
// asks the predecessor to step down, the replacement is withdrawn and
// changes nothing; once it asked, the switch completes and the signal
// does not unmount the path. Each moment is reached by a FIFO the
// process holds at (SECRETFS_TEST_HOLD_TAKEOVER in the successor,
// SECRETFS_TEST_HOLD_STEPDOWN in the predecessor), never by timing.

// replacing is a `secretfs mount --replace --daemon` running in the
// background: its --daemon parent, and what the parent said.
type replacing struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	done   chan struct{}
	err    error
}

// startReplacing starts `secretfs mount dir --replace --daemon`, logging
// to logPath, with env added to b's.
func startReplacing(t *testing.T, b *backend, dir, logPath string, env ...string) *replacing {
	t.Helper()
	args := append([]string{"mount", dir, "--replace", "--daemon", "--log-format", "json", "--log-file", logPath}, b.flags...)
	r := &replacing{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	r.cmd.Env = append(append(os.Environ(), b.env...), env...)
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for the parent to return, and returns its error and what
// it said.
func (r *replacing) wait(t *testing.T) (string, error) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("mount --replace --daemon did not return within 90s: %s", r.stderr.String())
	}
	return r.stderr.String(), r.err
}

// signalled is a signal sent to the replacing process, or to its
// --daemon parent.
type signalled struct {
	name   string
	parent bool
	sig    syscall.Signal
}

var toTheChild = signalled{"SIGTERM to the replacing process", false, syscall.SIGTERM}

// replacedSecret is the backend of a test of a replacement, with one
// secret, app/s, whose value it returns.
func replacedSecret(t *testing.T, prefix string) (*backend, string) {
	t.Helper()
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	value := unique(prefix)
	b.cli(t, []byte(value), "put", "app/s")
	return b, value
}

// replacedDir is a mount point, and the log of the process that will
// replace the mount there: whatever runs with it is killed when the test
// ends, and the mount point unmounted.
func replacedDir(t *testing.T) (dir, logPath string) {
	t.Helper()
	dir = mountpoint(t)
	logPath = filepath.Join(t.TempDir(), "new.log")
	killAllRunningWith(t, logPath, dir)
	return dir, logPath
}

// send sends c's signal to the replacing child, or to the parent; then
// it waits until the parent says it passed the signal on to its child,
// or has ended, so that the child has it before it is let go.
func (r *replacing) send(t *testing.T, c signalled, child int) {
	t.Helper()
	target := child
	if c.parent {
		target = r.cmd.Process.Pid
	}
	if err := syscall.Kill(target, c.sig); err != nil {
		t.Fatal(err)
	}
	if !c.parent {
		return
	}
	eventually(t, 30*time.Second, "the parent passes the signal on, or ends", func() bool {
		select {
		case <-r.done:
			return true
		default:
			return strings.Contains(r.stderr.String(), "passed on to the replacing process")
		}
	})
}

// childOf returns the process whose parent is pid, waiting for it.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	var child int
	eventually(t, 30*time.Second, "the --daemon parent's child", func() bool {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...: comm may hold spaces.
			rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
			if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				child, _ = strconv.Atoi(e.Name())
				return true
			}
		}
		return false
	})
	return child
}

// holdFIFO makes a FIFO for a hold hook, and returns its path and a
// function that waits until a process holds at it and returns the write
// end, to close to let it go. Whatever happens, nothing is left waiting
// at it when the test ends.
func holdFIFO(t *testing.T) (string, func(what string) *os.File) {
	t.Helper()
	hold := filepath.Join(t.TempDir(), "hold")
	if err := syscall.Mkfifo(hold, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w, err := os.OpenFile(hold, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	return hold, func(what string) *os.File {
		var w *os.File
		eventually(t, 60*time.Second, what, func() bool {
			f, err := os.OpenFile(hold, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				return false
			}
			w = f
			return true
		})
		t.Cleanup(func() { w.Close() })
		return w
	}
}

// A signal that reaches the replacing process (or its --daemon parent,
// which passes it on) once its mount lies beneath the live one, but
// before it asked the live one to step down, ends the replacement: the
// new mount is withdrawn, the command exits non-zero saying it was
// interrupted and changed nothing, and the live secretfs serves on, alone
// at the path, never asked to step down. (It took over, said "mounted",
// then took the signal as a stop and unmounted the path, which served
// nothing; the parent, signalled, died at once with no word.)
func TestASignalBeforeTheSwitchWithdrawsTheNewMount(t *testing.T) {
	b, value := replacedSecret(t, "before")
	for _, tc := range []signalled{toTheChild, {"SIGINT to the --daemon parent", true, syscall.SIGINT}, {"SIGHUP to the --daemon parent", true, syscall.SIGHUP}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, logPath := replacedDir(t)
			old := mountAt(t, b, dir)
			old.secret(value)
			oldDev := topDev(t, dir)
			sockets := controlSockets(t, dir)
			hold, held := holdFIFO(t)

			r := startReplacing(t, b, dir, logPath, "SECRETFS_TEST_HOLD_TAKEOVER="+hold)
			child := childOf(t, r.cmd.Process.Pid)
			w := held("the new process holds before asking the old one to step down")
			r.send(t, tc, child)
			// The hold goes on once the signal reached the process
			// (SECRETFS_TEST_HOLD_TAKEOVER, cmd/secretfs/replace.go).
			if _, err := w.WriteString("signalled\n"); err != nil {
				t.Fatal(err)
			}
			w.Close()
			errOut, err := r.wait(t)
			t.Logf("mount --replace --daemon, signalled before the switch: %v, %s", err, strings.TrimSpace(errOut))
			var exit *exec.ExitError
			if err == nil {
				t.Errorf("mount --replace --daemon, signalled before the switch, succeeded: %s", errOut)
			} else if errors.As(err, &exit) && exit.ExitCode() < 0 {
				t.Errorf("the --daemon parent was killed by the signal (%v) rather than report the child's outcome: %q", err, errOut)
			}
			if !strings.Contains(errOut, "interrupted") || !strings.Contains(errOut, "changed nothing") || !strings.Contains(errOut, "the live mount goes on serving, unchanged") {
				t.Errorf("mount --replace said %q; want that it was interrupted and changed nothing", errOut)
			}
			newLog, _ := os.ReadFile(logPath)
			if bytes.Contains(newLog, []byte("stepped down")) || bytes.Contains(newLog, []byte(`"msg":"mounted"`)) {
				t.Errorf("the interrupted replacement's log speaks of a switch:\n%s", newLog)
			}
			eventually(t, 30*time.Second, "the interrupted replacement exits", func() bool { return !alive(child) })

			// Nothing changed: the old process serves the path, alone.
			if got := old.mustSh("cat app/s"); got != value {
				t.Errorf("cat app/s after the interrupted replacement: %q", got)
			}
			if at := mountsAt(t, os.Getpid(), dir); len(at) != 1 || topDev(t, dir) != oldDev {
				t.Errorf("mounts at %s: %+v, want the old one (device %d:%d) alone", dir, at, oldDev>>8, oldDev&0xff)
			}
			if st := statusOf(t, dir); st.SeenPID != old.cmd.Process.Pid || !st.Serving {
				t.Errorf("secretfs status: process %d, serving %v; want the old process %d, serving", st.SeenPID, st.Serving, old.cmd.Process.Pid)
			}
			eventually(t, 30*time.Second, "the old process hears that the would-be successor went away", func() bool {
				return strings.Contains(old.log(), "the process that announced itself as a successor went away; still serving")
			})
			if strings.Contains(old.log(), "stepping down") || strings.Contains(old.log(), "stepped down") {
				t.Errorf("the old process's log speaks of stepping down:\n%s", old.log())
			}
			if now := controlSockets(t, dir); strings.Join(now, " ") != strings.Join(sockets, " ") {
				t.Errorf("control sockets beside %s: %q, before: %q", dir, now, sockets)
			}
		})
	}
}

// A replacement held beneath a live secretfs that is stopped meanwhile
// (its mount unmounted, so the path shows the replacement's), then
// signalled before it asked anything: both were told to stop, and the
// path is left with no mount, not a dead one. (The replacement tried to
// withdraw from beneath a mount no longer there, failed, and exited with
// its mount at the path: "Transport endpoint is not connected".)
func TestAReplacementSignalledAfterTheLiveMountStoppedLeavesNoMount(t *testing.T) {
	b, value := replacedSecret(t, "both")
	dir, logPath := replacedDir(t)
	old := mountAt(t, b, dir)
	old.secret(value)
	hold, held := holdFIFO(t)

	r := startReplacing(t, b, dir, logPath, "SECRETFS_TEST_HOLD_TAKEOVER="+hold)
	child := childOf(t, r.cmd.Process.Pid)
	w := held("the new process holds before asking the old one to step down")
	if err := old.stop(); err != nil {
		t.Errorf("stopping the live secretfs while a replacement is held beneath it: %v\n%s", err, old.log())
	}
	if strings.Contains(old.log(), "still serving") {
		t.Errorf("the stopped secretfs's log says it is still serving:\n%s", old.log())
	}
	r.send(t, toTheChild, child)
	if _, err := w.WriteString("signalled\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	errOut, err := r.wait(t)
	t.Logf("mount --replace --daemon, signalled after the live mount stopped: %v, %s", err, strings.TrimSpace(errOut))
	if err == nil {
		t.Errorf("mount --replace --daemon, signalled before it asked, succeeded: %s", errOut)
	}
	eventually(t, 30*time.Second, "the signalled replacement exits", func() bool { return !alive(child) })
	if at := mountsAt(t, os.Getpid(), dir); len(at) != 0 {
		newLog, _ := os.ReadFile(logPath)
		t.Errorf("mounts at %s once both were stopped: %+v, want none\nthe replacement's log:\n%s", dir, at, newLog)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("ls %s once both were stopped: %d entries, %v; want the empty directory beneath", dir, len(entries), err)
	}
}

// A signal that reaches the replacing process (or its --daemon parent)
// once it asked the live secretfs to step down, while the step-down is
// under way, does not stop it: the switch completes, the command returns
// 0 naming the new process, whose log says that a signal came during the
// switch and was not taken as a stop, and which serves the path on; a
// second signal stops it as usual; what the parent passes on, reaching
// the new process after the switch, is not a stop. (It said "mounted",
// then took the signal as a stop and unmounted the path: readers got
// ENOENT.)
func TestASignalDuringTheSwitchDoesNotUnmountThePath(t *testing.T) {
	b, value := replacedSecret(t, "during")
	for _, tc := range []signalled{toTheChild, {"SIGINT to the --daemon parent", true, syscall.SIGINT}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, logPath, old, held := heldAtStepDown(t, b, value)

			r := startReplacing(t, b, dir, logPath)
			child := childOf(t, r.cmd.Process.Pid)
			w := held("the old process begins its step-down")
			r.send(t, tc, child)
			w.Close()
			errOut, err := r.wait(t)
			if err != nil {
				newLog, _ := os.ReadFile(logPath)
				t.Fatalf("mount --replace --daemon, signalled during the switch: %v\n%s\nits log:\n%s", err, errOut, newLog)
			}
			pid := daemonPID(t, errOut)
			t.Cleanup(func() { stopDaemon(t, pid, dir) })
			if pid != child {
				t.Errorf("the command names process %d, want the child %d", pid, child)
			}
			newLog, _ := os.ReadFile(logPath)
			if !bytes.Contains(newLog, []byte("a signal came during the switch")) {
				t.Errorf("the new process's log does not say a signal came during the switch:\n%s", newLog)
			}
			if bytes.Contains(newLog, []byte(`"msg":"unmounting"`)) || bytes.Contains(newLog, []byte(`"msg":"unmounted"`)) {
				t.Errorf("the new process took the signal as a stop:\n%s", newLog)
			}
			// By the time the command returned, the new process had
			// taken the signal: the path is its own, and stays served.
			if got, err := os.ReadFile(filepath.Join(dir, "app", "s")); err != nil || string(got) != value {
				t.Errorf("cat app/s after the switch: %q, %v", got, err)
			}
			if st := statusOf(t, dir); st.SeenPID != pid || !st.Serving {
				t.Errorf("secretfs status: process %d, serving %v; want the new process %d, serving", st.SeenPID, st.Serving, pid)
			}
			if at := mountsAt(t, os.Getpid(), dir); len(at) != 1 {
				t.Errorf("mounts at %s: %+v, want the new one alone", dir, at)
			}
			select {
			case <-old.exited:
			case <-time.After(30 * time.Second):
				t.Errorf("the old process did not exit within 30s of its step-down:\n%s", old.log())
			}
			// The --daemon parent passes a stop signal on until it has
			// read that the mount serves, a moment after the child said
			// so: what it passes (SIGUSR1) reaching the child after the
			// switch is not a stop. This is the child's side; that the
			// parent passes SIGUSR1 and not SIGTERM (which unmounted
			// the path) is TestADaemonParentPassesAStopOnAsAWithdrawal's.
			if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			if st := statusOf(t, dir); st.SeenPID != pid || !st.Serving {
				t.Errorf("after the parent's signal reached it late, secretfs status: process %d, serving %v; want the new process %d, serving", st.SeenPID, st.Serving, pid)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "app", "s")); err != nil || string(got) != value || !alive(pid) {
				t.Errorf("after the parent's signal reached it late: cat app/s %q, %v; process %d alive: %v", got, err, pid, alive(pid))
			}
			// A second signal stops the new process as usual (stopDaemon
			// checks that it unmounts and exits).
		})
	}
}

// A successor killed after it asked the live secretfs to step down (an
// OOM kill, or systemd's SIGKILL when a reload times out) leaves its
// mount beneath, dead: the live secretfs refuses to step down and serves
// on. (It detached, and the path answered ENOTCONN until a new mount.)
func TestAStepDownWhoseSuccessorWasKilledKeepsTheMount(t *testing.T) {
	b, value := replacedSecret(t, "killed")
	dir, logPath, old, held := heldAtStepDown(t, b, value)

	kill := startSuccessor(t, b, dir, logPath)
	w := held("the live secretfs begins its step-down")
	kill()
	w.Close()

	eventually(t, 30*time.Second, "the live secretfs refuses to step down", func() bool {
		return strings.Contains(old.log(), "could not step down")
	})
	if got, err := os.ReadFile(filepath.Join(dir, "app", "s")); err != nil || string(got) != value {
		t.Errorf("the path after the successor was killed mid-step-down: %q, %v; want the live secretfs's value\n%s", got, err, old.log())
	}
	// The killed successor's dead mount is left beneath (as after any
	// crash, the next mount there detaches it); once the live one stops,
	// it is on top, and the test takes it away.
	if err := old.stop(); err != nil {
		t.Errorf("stopping the live secretfs: %v", err)
	}
	_ = syscall.Unmount(dir, syscall.MNT_DETACH)
}

// heldAtStepDown mounts b at a new mount point, as a secretfs whose
// step-down holds at a FIFO (SECRETFS_TEST_HOLD_STEPDOWN), serving value;
// it returns the mount point, the log of the process that will replace
// it, the mount, and the function that waits for the hold.
func heldAtStepDown(t *testing.T, b *backend, value string) (dir, logPath string, old *mounted, held func(what string) *os.File) {
	t.Helper()
	dir, logPath = replacedDir(t)
	hold, held := holdFIFO(t)
	holding := *b
	holding.env = append(append([]string(nil), b.env...), "SECRETFS_TEST_HOLD_STEPDOWN="+hold)
	old = mountAt(t, &holding, dir)
	old.secret(value)
	return dir, logPath, old, held
}

// A successor killed after it mounted beneath the live secretfs and
// before it asked it to step down leaves its dead mount beneath; when the
// live one stops, it detaches that dead mount too, and the path is the
// plain directory again. (It showed the dead mount, ENOTCONN, until the
// next mount there recovered it.)
func TestAStopDetachesTheDeadMountOfASuccessorKilledBeforeItAsked(t *testing.T) {
	b, value := replacedSecret(t, "killedearly")
	dir, logPath, old := liveAt(t, b, value)
	hold, held := holdFIFO(t)
	kill := startSuccessor(t, b, dir, logPath, "SECRETFS_TEST_HOLD_TAKEOVER="+hold)
	w := held("the successor holds, its mount beneath the live one")
	kill()
	w.Close()
	if at := mountsAt(t, os.Getpid(), dir); len(at) != 2 {
		t.Fatalf("mounts at %s once the successor was killed: %+v, want the live one and the dead one beneath", dir, at)
	}
	if got := old.mustSh("cat app/s"); got != value {
		t.Errorf("cat app/s with a dead successor beneath: %q", got)
	}
	if err := old.stop(); err != nil {
		t.Errorf("stopping the live secretfs: %v", err)
	}
	at := mountsAt(t, os.Getpid(), dir)
	if len(at) != 0 {
		t.Errorf("mounts at %s after the live secretfs stopped: %+v, want none", dir, at)
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if _, err := os.ReadDir(dir); err != nil {
		t.Errorf("the mount point after the stop: %v, want the plain directory", err)
	}
	if !strings.Contains(old.log(), "detached the dead secretfs mount that lay beneath") {
		t.Errorf("the stopped secretfs does not say it detached the dead mount:\n%s", old.log())
	}
}

// startSuccessor starts `secretfs mount --replace` of dir in the
// foreground, logging to logPath, with b's flags and environment and
// env, and returns the function that kills it (SIGKILL, as a crash);
// it is killed when the test ends, or with the test process.
func startSuccessor(t *testing.T, b *backend, dir, logPath string, env ...string) (kill func()) {
	t.Helper()
	succ := exec.Command(binary, append([]string{"mount", dir, "--replace", "--log-format", "json", "--log-file", logPath}, b.flags...)...)
	succ.Env = append(append(os.Environ(), b.env...), env...)
	succ.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := succ.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			_ = succ.Process.Kill()
			_ = succ.Wait()
		})
	}
	t.Cleanup(kill)
	return kill
}
