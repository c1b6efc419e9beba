package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// containerReaderScript reads $FILE in a loop, printing "N EPOCH_NS ok
// VALUE" or "N EPOCH_NS error MESSAGE" for each read N, until $STOP
// exists.
const containerReaderScript = `i=0
while [ ! -e "$STOP" ] && [ "$i" -lt 200000 ]; do
	i=$((i+1))
	t=$(date +%s%N)
	if v=$(cat "$FILE" 2>&1); then echo "$i $t ok $v"; else echo "$i $t error $v"; fi
	sleep 0.01
done
echo "$i stopped"
`

// timedRead is one read of a reader that prints containerReaderScript's
// lines.
type timedRead struct {
	n    int
	at   time.Time
	ok   bool
	text string
}

// timedReads parses what a reader printed.
func timedReads(t *testing.T, path string) []timedRead {
	t.Helper()
	data, _ := os.ReadFile(path)
	line := regexp.MustCompile(`^(\d+) (\d+) (ok|error) (.*)$`)
	var all []timedRead
	for _, l := range strings.Split(string(data), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		ns, _ := strconv.ParseInt(m[2], 10, 64)
		all = append(all, timedRead{n: n, at: time.Unix(0, ns), ok: m[3] == "ok", text: m[4]})
	}
	return all
}

// readsBetween counts the reads of value and the failed reads between
// from and to.
func readsBetween(all []timedRead, value string, from, to time.Time) (oks int, failed []timedRead) {
	for _, r := range all {
		if r.at.Before(from) || r.at.After(to) {
			continue
		}
		if r.ok && r.text == value {
			oks++
		} else {
			failed = append(failed, r)
		}
	}
	return oks, failed
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Under a real systemd (PID 1 of a systemd-nspawn container) running
// systemd/secretfs@.service as shipped, `systemctl reload` replaces the
// running secretfs with the binary now installed while a reader in the
// container loops over a secret: 0 failed reads, MAINPID changes to a
// process running the new binary, the unit is never anything but
// active/running or reloading, and the replaced process exits. Twice in
// a row. Then: with move_mount made to fail as a kernel before 6.5 fails
// it, a reload says so and changes nothing, and one with --replace=gap
// stops and mounts; a stop right after a reload (which made a process
// systemd did not start the main one) unmounts and exits cleanly (it was
// SIGKILLed at once); `systemctl restart` is a stop and a start; and the
// gap a crash (SIGKILL) leaves until Restart=on-failure serves again is
// measured.
func TestSystemdReloadReplacesTheMountWithNoGap(t *testing.T) {
	unit := readUnit(t)
	for _, want := range []string{"\nNotifyAccess=exec\n", "\nExecReload=" + installedPath + " mount --replace --daemon %f\n"} {
		if !strings.Contains(string(unit), want) {
			t.Fatalf("%s lacks %q", unitFile, strings.TrimSpace(want))
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	b := &backend{name: "local", flags: []string{"--data-dir", data}}
	value := unique("hunter2")
	b.cli(t, nil, "init")
	b.cli(t, []byte(value), "put", "billing/db-password")
	m := bootMachine(t, binary, unit, "SECRETFS_BACKEND=local\nSECRETFS_LOG_LEVEL=info\n", data)
	const S = "secretfs@run-secrets.service"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of %s:\n%s", S, m.journal(S))
		}
	})
	m.must("systemctl", "start", S)
	state := func() string {
		out, _ := m.run("systemctl", "show", "--value", "-p", "ActiveState", "-p", "SubState", S)
		return strings.ReplaceAll(out, "\n", "/")
	}
	if s := state(); s != "active/running" {
		t.Fatalf("after start: %s", s)
	}
	serving := m.show(S, "StatusText")
	if !strings.HasPrefix(serving, "serving /run/secrets (") {
		t.Fatalf("after start: StatusText=%q, want it to name the mount point and the backend", serving)
	}

	// The reader, in the container.
	readerOut := filepath.Join(t.TempDir(), "reader.out")
	out, err := os.Create(readerOut)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	reader := m.command("sh", "-c", containerReaderScript)
	reader.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FILE=/run/secrets/billing/db-password", "STOP=/run/stop-reader"}
	reader.Stdout, reader.Stderr = out, out
	reader.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan struct{})
	go func() { reader.Wait(); close(readerDone) }()
	t.Cleanup(func() {
		m.run("touch", "/run/stop-reader")
		select {
		case <-readerDone:
		case <-time.After(10 * time.Second):
			reader.Process.Kill()
		}
	})
	okAfter := func(since time.Time) int {
		oks, _ := readsBetween(timedReads(t, readerOut), value, since, time.Now().Add(time.Hour))
		return oks
	}
	began := time.Now()
	eventually(t, 30*time.Second, "the reader in the container reads the secret", func() bool { return okAfter(began) >= 5 })

	// The states the unit passes through, sampled throughout.
	var mu sync.Mutex
	states := map[string]int{}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			default:
			}
			s := state()
			mu.Lock()
			states[s]++
			mu.Unlock()
		}
	}()

	reloadOnce := func(bin string) {
		t.Helper()
		oldMain := m.show(S, "MainPID")
		m.install(bin)
		if out, err := m.run("systemctl", "reload", S); err != nil {
			t.Fatalf("systemctl reload: %v\n%s", err, out)
		}
		newMain := m.show(S, "MainPID")
		if newMain == oldMain || newMain == "0" {
			t.Fatalf("MainPID %s before the reload, %s after: want another process", oldMain, newMain)
		}
		if comm := m.must("cat", "/proc/"+newMain+"/comm"); comm != "secretfs" {
			t.Errorf("the new main process %s is %q", newMain, comm)
		}
		if got := m.must("sha256sum", "/proc/"+newMain+"/exe"); !strings.HasPrefix(got, fileSHA256(t, bin)) {
			t.Errorf("the new main process does not run the binary installed before the reload")
		}
		if s := state(); s != "active/running" {
			t.Errorf("after the reload: %s", s)
		}
		if got, want := m.show(S, "StatusText"), serving+", took over as process "+newMain; got != want {
			t.Errorf("after the reload: StatusText=%q, want %q", got, want)
		}
		eventually(t, 30*time.Second, "the replaced process exits", func() bool {
			_, err := m.run("test", "-e", "/proc/"+oldMain)
			return err != nil
		})
		t.Logf("reload: MainPID %s -> %s", oldMain, newMain)
	}
	before := time.Now()
	reloadOnce(plainBinary(t))
	reloadOnce(binary)
	settled := time.Now()
	eventually(t, 30*time.Second, "the reader reads after the reloads", func() bool { return okAfter(settled) >= 5 })
	close(stopSampling)
	<-sampled
	oks, failed := readsBetween(timedReads(t, readerOut), value, before, time.Now())
	t.Logf("two reloads: the reader in the container read the secret %d times, %d reads failed; the unit's states seen: %v", oks, len(failed), states)
	if len(failed) != 0 {
		t.Errorf("%d reads failed across the reloads; the first: %+v", len(failed), failed[0])
	}
	for s := range states {
		if s != "active/running" && s != "reloading/reload" {
			t.Errorf("the unit was %s during the reloads (%d samples): want active/running, or reloading while ExecReload runs", s, states[s])
		}
	}
	if j := m.journal(S); strings.Contains(j, "reception only permitted") {
		t.Errorf("systemd refused a notification:\n%s", j)
	}

	// A stop right after a reload: the main process is one systemd did
	// not start, and it must still get the SIGTERM, unmount and exit
	// cleanly. (systemd, not waiting for a main process that is not its
	// child, SIGKILLed it at once: a dead mount, Result=signal.)
	stopAndStart := func(after string) {
		t.Helper()
		journalBefore := len(m.journal(S))
		m.must("systemctl", "stop", S)
		if j := m.journal(S)[journalBefore:]; !strings.Contains(j, "level=info msg=unmounted") || strings.Contains(j, "with signal SIGKILL") {
			t.Errorf("systemctl stop after %s did not unmount cleanly (or SIGKILLed a process):\n%s", after, j)
		}
		if result := m.show(S, "Result"); result != "success" {
			t.Errorf("systemctl stop after %s: Result=%s, want success", after, result)
		}
		if out, err := m.run("findmnt", "/run/secrets"); err == nil {
			t.Errorf("a mount is left at /run/secrets after a stop that followed %s:\n%s", after, out)
		}
		m.must("systemctl", "start", S)
		restarted := time.Now()
		eventually(t, 30*time.Second, "the reader reads after the stop and start", func() bool { return okAfter(restarted) >= 3 })
	}
	stopAndStart("a reload")

	// A kernel without MOVE_MOUNT_BENEATH, played with a system call
	// filter that fails move_mount as such a kernel does (EINVAL).
	dropIn := "/run/systemd/system/" + S + ".d/old-kernel.conf"
	m.must("mkdir", "-p", filepath.Dir(dropIn))
	writeIn := func(path, content string) {
		t.Helper()
		mustWrite(t, fmt.Sprintf("/proc/%d/root%s", m.init, path), content, 0o644)
	}
	writeIn(dropIn, "[Service]\nSystemCallFilter=~move_mount\nSystemCallErrorNumber=EINVAL\n")
	m.must("systemctl", "daemon-reload")
	mainBefore := m.show(S, "MainPID")
	if out, err := m.run("systemctl", "reload", S); err == nil {
		t.Errorf("systemctl reload with move_mount failing as before Linux 6.5 succeeded:\n%s", out)
	}
	if j := m.journal(S); !strings.Contains(j, "this kernel cannot mount beneath a live mount") || !strings.Contains(j, "--replace=gap") {
		t.Errorf("the failed reload does not say the kernel cannot mount beneath, nor what --replace=gap does")
	}
	if main := m.show(S, "MainPID"); main != mainBefore || state() != "active/running" {
		t.Errorf("after the refused reload: MainPID %s (was %s), %s", main, mainBefore, state())
	}
	writeIn(dropIn, "[Service]\nSystemCallFilter=~move_mount\nSystemCallErrorNumber=EINVAL\nExecReload=\nExecReload="+installedPath+" mount --replace=gap --daemon %f\n")
	m.must("systemctl", "daemon-reload")
	gapFrom := time.Now()
	m.must("systemctl", "reload", S)
	gapTo := time.Now()
	if main := m.show(S, "MainPID"); main == mainBefore || state() != "active/running" {
		t.Errorf("after the reload with --replace=gap: MainPID %s (was %s), %s", main, mainBefore, state())
	}
	eventually(t, 30*time.Second, "the reader reads after the reload with a gap", func() bool { return okAfter(gapTo) >= 3 })
	_, gapFailed := readsBetween(timedReads(t, readerOut), value, gapFrom, gapTo)
	t.Logf("--replace=gap on a kernel that cannot mount beneath: %d reads failed during the reload", len(gapFailed))
	stopAndStart("a reload with --replace=gap")
	m.must("systemctl", "daemon-reload")

	// restart keeps its meaning: a stop and a start. With WatchdogSec=,
	// the process a reload makes the main one keeps the watchdog up.
	writeIn(dropIn, "[Service]\nWatchdogSec=4s\n")
	m.must("systemctl", "daemon-reload")
	mainBefore = m.show(S, "MainPID")
	journalBefore := len(m.journal(S))
	m.must("systemctl", "restart", S)
	if main := m.show(S, "MainPID"); main == mainBefore || state() != "active/running" {
		t.Errorf("after systemctl restart: MainPID %s (was %s), %s", main, mainBefore, state())
	}
	// The stop of this restart comes after a reload: the main process
	// is not systemd's child, and it must still unmount and exit on the
	// SIGTERM, not be SIGKILLed at once (which left a dead mount).
	if j := m.journal(S)[journalBefore:]; !strings.Contains(j, "level=info msg=unmounted") || strings.Contains(j, "with signal SIGKILL") {
		t.Errorf("the stop of systemctl restart after a reload did not unmount cleanly (or SIGKILLed a process):\n%s", j)
	}
	restartsBefore := m.show(S, "NRestarts")
	m.must("systemctl", "reload", S)
	mainAfter := m.show(S, "MainPID")
	time.Sleep(8 * time.Second) // twice WatchdogSec
	if main, restarts := m.show(S, "MainPID"), m.show(S, "NRestarts"); main != mainAfter || restarts != restartsBefore || state() != "active/running" {
		t.Errorf("with WatchdogSec=4s, 8s after a reload: MainPID %s (was %s), NRestarts %s (was %s), %s", main, mainAfter, restarts, restartsBefore, state())
	}
	if j := m.journal(S); strings.Contains(j, "Watchdog timeout") {
		t.Errorf("systemd's watchdog fired after the reload")
	}
	m.must("rm", "-r", filepath.Dir(dropIn))
	m.must("systemctl", "daemon-reload")

	// A crash: SIGKILL, and Restart=on-failure. The gap is measured,
	// not asserted: from the kill to the first read that succeeds.
	restartsBefore = m.show(S, "NRestarts")
	killed := time.Now()
	m.must("systemctl", "kill", "-s", "KILL", "--kill-who=main", S)
	// The gap starts with the first failed read after the kill (reads
	// made while systemctl was still on its way succeed) and ends with
	// the first read that succeeds after it.
	var firstFailed, firstOK timedRead
	eventually(t, 60*time.Second, "the reader reads again after the crash", func() bool {
		firstFailed, firstOK = timedRead{}, timedRead{}
		for _, r := range timedReads(t, readerOut) {
			switch {
			case r.at.Before(killed):
			case firstFailed.n == 0 && !r.ok:
				firstFailed = r
			case firstFailed.n != 0 && r.ok && r.text == value:
				firstOK = r
				return true
			}
		}
		return false
	})
	_, crashFailed := readsBetween(timedReads(t, readerOut), value, killed, firstOK.at)
	restarts, _ := strconv.Atoi(m.show(S, "NRestarts"))
	was, _ := strconv.Atoi(restartsBefore)
	if restarts != was+1 {
		t.Errorf("NRestarts went from %d to %d after the SIGKILL, want one restart", was, restarts)
	}
	eventually(t, 30*time.Second, "the unit is active/running again after the crash", func() bool { return state() == "active/running" })
	t.Logf("crash gap: from SIGKILL of the main process to the first successful read, %s (RestartSec=%s; %d reads failed meanwhile, with %q)",
		firstOK.at.Sub(killed).Round(time.Millisecond), m.show(S, "RestartUSec"), len(crashFailed), firstFailed.text)

	m.run("touch", "/run/stop-reader")
	<-readerDone
	m.must("systemctl", "stop", S)
	if out, err := m.run("findmnt", "/run/secrets"); err == nil {
		t.Errorf("a mount is left at /run/secrets after stop:\n%s", out)
	}
	if leftover, _ := m.run("sh", "-c", "pgrep -x secretfs || true"); leftover != "" {
		t.Errorf("secretfs processes left after stop: %s", leftover)
	}
}
