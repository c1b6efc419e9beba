package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/internal/handover"
)

// `secretfs mount --replace`: a new secretfs takes over a live mount
// point with no gap (docs/SEMANTICS.md, "Replacement").

// replaceValue is the nth value the writer of these tests commits: a
// fixed length, so that a torn or partial read shows.
func replaceValue(n int) string { return fmt.Sprintf("v%05d-%s", n, strings.Repeat("x", 48)) }

var replaceValuePattern = regexp.MustCompile(`^v(\d{5})-x{48}$`)

// commitLog records when each value was committed (its close returned),
// and judges whether a read was current: a read that started at least
// --ttl + 1 s after value n was committed must return n or a later one.
type commitLog struct {
	mu    sync.Mutex
	at    map[int]time.Time
	fresh time.Duration // --ttl + 1 s
}

func (c *commitLog) committed(n int, at time.Time) {
	c.mu.Lock()
	c.at[n] = at
	c.mu.Unlock()
}

// judge returns why a read of got, started at start, is wrong: not a
// whole value, or older than what was committed fresh before it.
func (c *commitLog) judge(got string, start time.Time) string {
	m := replaceValuePattern.FindStringSubmatch(got)
	if m == nil {
		return fmt.Sprintf("not a whole value: %q", got)
	}
	n, _ := strconv.Atoi(m[1])
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, at := range c.at {
		if k > n && start.Sub(at) > c.fresh {
			return fmt.Sprintf("value %d read at %s, but %d was committed %s before", n, start.Format("15:04:05.000"), k, start.Sub(at).Round(time.Millisecond))
		}
	}
	return ""
}

// tally counts the reads of one kind of reader and keeps the first
// failures.
type tally struct {
	name     string
	reads    atomic.Int64
	mu       sync.Mutex
	failures []string
}

func (t *tally) fail(why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures = append(t.failures, why)
}

// readAlong starts n readers that read path again and again, 2 ms apart,
// counting in tl each read and each failure: an error, or what judge
// says of the value read (started when the read began). They stop when
// the returned function is called, or when the test ends.
func (tl *tally) readAlong(t *testing.T, path string, n int, judge func(got string, start time.Time) string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				got, err := os.ReadFile(path)
				tl.reads.Add(1)
				if err != nil {
					tl.fail(err.Error())
				} else if why := judge(string(got), start); why != "" {
					tl.fail(why)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	stop = sync.OnceFunc(func() { close(done); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

func (t *tally) report(tb testing.TB) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	tb.Logf("%s: %d reads, %d errors", t.name, t.reads.Load(), len(t.failures))
	if len(t.failures) > 0 {
		tb.Errorf("%s: %d of %d reads failed; the first: %q", t.name, len(t.failures), t.reads.Load(), t.failures[:min(5, len(t.failures))])
	}
	if t.reads.Load() == 0 {
		tb.Errorf("%s: no read at all", t.name)
	}
}

// slaveConsumerScript is a consumer in its own mount namespace, as the
// kubelet sets one up for a pod with a HostToContainer hostPath volume of
// the directory holding the mount point (consumerScript, service_test.go),
// reading as uid 1000 and printing "N EPOCH_NS ok VALUE" or "N EPOCH_NS
// error MESSAGE" for each read; it stops when $STOP exists or the test
// process is gone.
const slaveConsumerScript = `set -eu
mount --rbind "$HOST" "$CONT"
mount --make-rslave "$CONT"
mount -o remount,bind,ro "$CONT"
exec setpriv --reuid=1000 --regid=1000 --clear-groups --inh-caps=-all --bounding-set=-all sh -c '
echo "consumer uid $(id -u) gid $(id -g)"
i=0
while [ ! -e "$STOP" ] && [ -e "/proc/$TESTPID" ] && [ "$i" -lt 100000 ]; do
	i=$((i+1))
	t=$(date +%s%N)
	if v=$(cat "$CONT/secrets/$APP/db-password" 2>&1); then echo "$i $t ok $v"; else echo "$i $t error $v"; fi
	sleep 0.01
done
echo "$i stopped"
'`

// processCounts are the open descriptors (/proc/PID/fd) and goroutines
// (secretfs status --json, over the control socket: in all, and by the
// function that started them) of the secretfs serving dir.
type processCounts struct {
	pid, fds, goroutines int
	byCreator            map[string]int
	// byTarget counts the open descriptors by what they name (readlink
	// of /proc/PID/fd/N): a file by its base name (each process of a
	// test logs to a file of its own), a socket or a pipe by its kind.
	byTarget map[string]int
}

func countsOf(t *testing.T, dir string) processCounts {
	t.Helper()
	out, err := exec.Command(binary, "status", "--json", dir).Output()
	if err != nil {
		t.Fatalf("secretfs status --json %s: %v\n%s", dir, err, out)
	}
	var r struct {
		SeenPID             int            `json:"seen_pid"`
		Goroutines          int            `json:"goroutines"`
		GoroutinesByCreator map[string]int `json:"goroutines_by_creator"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.SeenPID == 0 || len(r.GoroutinesByCreator) == 0 {
		t.Fatalf("secretfs status --json said %s (%v)", out, err)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", r.SeenPID)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	byTarget := map[string]int{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if filepath.IsAbs(target) {
			target = filepath.Base(target)
		}
		byTarget[anonymousInode.ReplaceAllString(target, "$1")]++
	}
	return processCounts{pid: r.SeenPID, fds: len(fds), goroutines: r.Goroutines, byCreator: r.GoroutinesByCreator, byTarget: byTarget}
}

// anonymousInode matches what a descriptor of a socket or a pipe names
// besides its kind: "socket:[123]" is counted as "socket".
var anonymousInode = regexp.MustCompile(`^(socket|pipe):\[\d+\]$`)

// settledLike returns the counts of the secretfs serving dir once it
// holds no descriptors and no goroutines beyond base's (go-fuse's readers
// aside), within 30 s; else it fails the test, naming what is left.
func settledLike(t *testing.T, dir string, base processCounts, what string) processCounts {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := countsOf(t, dir)
		fds, goroutines := descriptorsLeftBehind(now, base), leftBehind(now, base)
		if len(fds) == 0 && len(goroutines) == 0 {
			return now
		}
		if time.Now().After(deadline) {
			t.Errorf("%s holds descriptors beyond a fresh mount's: %q; goroutines: %q", what, fds, goroutines)
			return now
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// descriptorsLeftBehind lists what now holds descriptors of beyond base.
func descriptorsLeftBehind(now, base processCounts) []string {
	var more []string
	for target, n := range now.byTarget {
		if n > base.byTarget[target] {
			more = append(more, fmt.Sprintf("%s: %d (was %d)", target, n, base.byTarget[target]))
		}
	}
	sort.Strings(more)
	return more
}

// goFuseReaders is what starts go-fuse's readers of /dev/fuse: a pool that
// grows while requests come in at once, and whose readers then wait in a
// read; its size says how busy the mount was, not that anything leaked.
const goFuseReaders = "github.com/hanwen/go-fuse/v2/fuse.(*fuseFD).readRequest"

// leftBehind lists the goroutines of now beyond those of base, by the
// function that started them, go-fuse's readers aside.
func leftBehind(now, base processCounts) []string {
	var more []string
	for creator, n := range now.byCreator {
		if creator != goFuseReaders && n > base.byCreator[creator] {
			more = append(more, fmt.Sprintf("%s: %d (was %d)", creator, n, base.byCreator[creator]))
		}
	}
	sort.Strings(more)
	return more
}

// versionOf returns the Version of app/name in the store (secretfs ls -l).
func versionOf(t *testing.T, b *backend, app, name string) int {
	t.Helper()
	for _, line := range strings.Split(b.cli(t, nil, "ls", "-l", app), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[len(f)-1] == name {
			v, err := strconv.Atoi(f[3])
			if err != nil {
				t.Fatalf("ls -l line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("%s/%s not listed by secretfs ls -l %s", app, name, app)
	return 0
}

// Twenty replacements in a row, each by a new `secretfs mount --replace`
// process, while every kind of reader the issue names carries on: four
// readers re-opening by path; a descriptor opened before each
// replacement and read again after it; a bind mount of the application's
// directory (Kubernetes' subPath) made on the first mount; a consumer in
// a mount namespace of its own (slave propagation) reading as uid 1000;
// and a writer whose close lands on the process being replaced, after it
// stepped down. Not one read fails, every value is whole and current
// within --ttl + 1 s, every write is committed exactly once; afterwards
// one secretfs mount is at the path (in this namespace and the
// consumer's), every replaced process has exited once nothing held its
// mount, and a process that took over holds no more descriptors or
// goroutines than one that mounted afresh.
func TestTwentyReplacementsWhileReadersHoldersBindsAndAWriterCarryOn(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	const (
		rounds = 20
		app    = "billing"
		ttl    = time.Second
	)
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte(replaceValue(0)), "put", app+"/db-password")
	versionBefore := versionOf(t, b, app, "db-password")
	// A second writer's secret: its closes race the switch.
	b.cli(t, []byte(replaceValue(0)), "put", app+"/racing")
	racingBefore := versionOf(t, b, app, "racing")
	var racingCommitted, racingFailed, racingAfterSwitch int
	// How long the last replacement took, from its start until it
	// served: the racing close comes at a random point of the next one's
	// like span, half of it later.
	replacing := 2 * time.Second

	// A node: the directory holding the mount point is a shared mount,
	// as for a DaemonSet's Bidirectional hostPath.
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	host, container, bind := filepath.Join(base, "node"), filepath.Join(base, "consumer"), filepath.Join(base, "subpath")
	for _, d := range []string{host, container, bind} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "mount", "--bind", host, host)
	t.Cleanup(func() { _ = syscall.Unmount(host, syscall.MNT_DETACH) })
	mustRun(t, "mount", "--make-rshared", host)
	dir := filepath.Join(host, "secrets")
	flags := []string{"--ttl", ttl.String(), "--allow-other", "--uid", "1000", "--gid", "1000", "--file-mode", "0400", "--dir-mode", "0500", "--apps", app}

	commits := &commitLog{at: map[int]time.Time{0: time.Now()}, fresh: ttl + time.Second}
	first := mountAt(t, b, dir, flags...)
	quiet := countsOf(t, dir)
	mounts := []*mounted{first}

	// The bind of one application's directory, made on the first mount.
	mustRun(t, "mount", "--bind", filepath.Join(dir, app), bind)
	t.Cleanup(func() { _ = syscall.Unmount(bind, syscall.MNT_DETACH) })

	// The consumer in its own mount namespace.
	consumer := startSlaveConsumer(t, slaveConsumerScript, base, host, container, app)
	t.Cleanup(consumer.stop) // before the mounts' cleanups: it reads in a copy of the mount

	// The readers in this namespace: four by path, one through the bind.
	byPath, throughBind, held := &tally{name: "4 readers re-opening by path"}, &tally{name: "a reader through the bind (subPath)"}, &tally{name: "a descriptor held across each replacement"}
	stopByPath := byPath.readAlong(t, filepath.Join(dir, app, "db-password"), 4, commits.judge)
	stopThroughBind := throughBind.readAlong(t, filepath.Join(bind, "db-password"), 1, commits.judge)
	stopReaders := func() { stopByPath(); stopThroughBind() }

	eventually(t, 30*time.Second, "the consumer reads", func() bool {
		data, _ := os.ReadFile(consumer.out)
		return bytes.Count(data, []byte(" ok ")) >= 3
	})

	for round := 1; round <= rounds; round++ {
		// A writer opens the secret on the mount about to be replaced,
		// and writes; its close comes after the replacement.
		value := replaceValue(round)
		w, err := os.OpenFile(filepath.Join(dir, app, "db-password"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatalf("round %d: open for writing: %v", round, err)
		}
		if _, err := io.WriteString(w, value); err != nil {
			t.Fatalf("round %d: write: %v", round, err)
		}
		// A reader opens it too, and reads once.
		h, err := os.Open(filepath.Join(dir, app, "db-password"))
		if err != nil {
			t.Fatalf("round %d: open: %v", round, err)
		}
		before := make([]byte, 128)
		n, err := h.ReadAt(before, 0)
		held.reads.Add(1)
		if err != nil && err != io.EOF {
			held.fail(err.Error())
		}
		before = before[:n]

		// A second writer, on another secret, whose close races the
		// switch: it comes after a random delay, before, during or after
		// the step-down, on the process being replaced.
		racer, err := os.OpenFile(filepath.Join(dir, app, "racing"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatalf("round %d: open the racing secret for writing: %v", round, err)
		}
		if _, err := io.WriteString(racer, value); err != nil {
			t.Fatalf("round %d: write the racing secret: %v", round, err)
		}
		type closed struct {
			err error
			at  time.Time
		}
		raced := make(chan closed, 1)
		go func(delay time.Duration) {
			time.Sleep(delay)
			err := racer.Close()
			raced <- closed{err, time.Now()}
		}(replacing/2 + time.Duration(rand.Int64N(int64(replacing))))

		previous := mounts[len(mounts)-1]
		began := time.Now()
		next := mountAt(t, b, dir, append([]string{"--replace"}, flags...)...)
		switched := time.Now()
		replacing = switched.Sub(began)
		mounts = append(mounts, next)
		race := <-raced
		if race.err != nil {
			racingFailed++
			t.Logf("round %d: the racing writer's close failed: %v", round, race.err)
		} else {
			racingCommitted++
		}
		if race.at.After(switched) {
			racingAfterSwitch++
		}
		if !strings.Contains(next.log(), "the predecessor stepped down") {
			t.Fatalf("round %d: the new secretfs does not say its predecessor stepped down:\n%s", round, next.log())
		}

		again := make([]byte, 128)
		n, err = h.ReadAt(again, 0)
		held.reads.Add(1)
		switch {
		case err != nil && err != io.EOF:
			held.fail(fmt.Sprintf("round %d: read after the replacement: %v", round, err))
		case string(again[:n]) != string(before):
			held.fail(fmt.Sprintf("round %d: read %q after the replacement, %q before", round, again[:n], before))
		}
		h.Close()
		if err := w.Close(); err != nil {
			t.Fatalf("round %d: the writer's close, on the replaced process: %v", round, err)
		}
		commits.committed(round, time.Now())
		next.secret(value)

		// Once nothing holds its mount, the replaced process exits by
		// itself (the first one is held by the bind until the end).
		if previous != first {
			waitExited(t, previous, fmt.Sprintf("round %d: the replaced secretfs did not exit within 30s of its mount's last reference going", round))
			if previous.waitErr != nil {
				t.Errorf("round %d: the replaced secretfs exited with %v", round, previous.waitErr)
			}
		}
	}
	// The last value is read through every kind of reader.
	time.Sleep(commits.fresh)
	// One secretfs mount in the consumer's namespace, below the
	// directory it holds.
	inConsumer := mountinfoLines(t, consumer.cmd.Process.Pid, filepath.Join(container, "secrets"))
	t.Logf("mountinfo of the consumer's namespace after %d replacements:\n%s", rounds, strings.Join(inConsumer, "\n"))
	if len(inConsumer) != 1 || !strings.Contains(inConsumer[0], " - fuse.secretfs ") {
		t.Errorf("in the consumer's namespace, %d mounts below its directory, want one secretfs mount", len(inConsumer))
	}
	stopReaders()
	consumer.stop()

	byPath.report(t)
	throughBind.report(t)
	held.report(t)
	data, _ := os.ReadFile(consumer.out)
	consumerReads := &tally{name: "a consumer in its own mount namespace, as uid 1000"}
	line := regexp.MustCompile(`^(\d+) (\d+) (ok|error) (.*)$`)
	var header []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			header = append(header, l)
			continue
		}
		consumerReads.reads.Add(1)
		ns, _ := strconv.ParseInt(m[2], 10, 64)
		if m[3] != "ok" {
			consumerReads.fail("read " + m[1] + ": " + m[4])
		} else if why := commits.judge(m[4], time.Unix(0, ns)); why != "" {
			consumerReads.fail("read " + m[1] + ": " + why)
		}
	}
	consumerReads.report(t)
	if len(header) < 1 || header[0] != "consumer uid 1000 gid 1000" {
		t.Errorf("the consumer said %q, want that it runs as uid and gid 1000", header)
	}

	// Every write committed once.
	if v := versionOf(t, b, app, "db-password"); v != versionBefore+rounds {
		t.Errorf("the secret's version went from %d to %d over %d writes, want +%d: a write was lost or committed twice", versionBefore, v, rounds, rounds)
	}
	// Every racing close that succeeded committed once, and none that
	// failed committed.
	t.Logf("the racing writer's closes: %d committed, %d failed, %d of them once the replacing process had taken over", racingCommitted, racingFailed, racingAfterSwitch)
	if v := versionOf(t, b, app, "racing"); v != racingBefore+racingCommitted {
		t.Errorf("the racing secret's version went from %d to %d, but %d of its closes succeeded (%d failed): a close that succeeded was not committed exactly once, or one that failed was", racingBefore, v, racingCommitted, racingFailed)
	}
	if got := b.cli(t, nil, "get", app+"/db-password"); got != replaceValue(rounds) {
		t.Errorf("the store holds %q, want the last value written", got)
	}

	// One secretfs mount at the path, here and in the consumer's namespace.
	last := mounts[len(mounts)-1]
	lines := mountinfoLines(t, os.Getpid(), dir)
	t.Logf("mountinfo at %s after %d replacements:\n%s", dir, rounds, strings.Join(lines, "\n"))
	if len(lines) != 1 || !strings.Contains(lines[0], " - fuse.secretfs ") {
		t.Errorf("after %d replacements %d lines of mountinfo at %s, want one secretfs mount", rounds, len(lines), dir)
	}

	// The first process still serves the bind; unmounting it ends it.
	select {
	case <-first.exited:
		t.Fatal("the first secretfs exited while the bind still held its mount")
	default:
	}
	if err := syscall.Unmount(bind, 0); err != nil {
		t.Fatal(err)
	}
	waitExited(t, first, "the first secretfs did not exit within 30s of the bind being unmounted")
	for i, m := range mounts[:len(mounts)-1] {
		select {
		case <-m.exited:
		default:
			t.Errorf("replaced secretfs %d is still running", i)
		}
		if !strings.Contains(m.log(), "the last reference to the detached mount is gone") {
			t.Errorf("replaced secretfs %d does not say its detached mount was released", i)
		}
	}

	// Nothing left behind in a process that took over: the one serving
	// after 20 replacements, once the load stopped, holds no descriptors
	// and no goroutines beyond what the first secretfs held right after
	// it mounted afresh, measured the same way, but for go-fuse's
	// readers, whose pool grew with the load. (It held a pipe pair and
	// /dev/null more, go-fuse's splice pool, until READ replies were
	// written with one writev: see fs.wipingResult.)
	loaded := settledLike(t, dir, quiet, fmt.Sprintf("the secretfs serving after %d replacements", rounds))
	// And one more replacement, once quiet, holds the same open
	// descriptors and no more goroutines than the first secretfs did.
	quietNext := mountAt(t, b, dir, append([]string{"--replace"}, flags...)...)
	waitExited(t, last, "the last replaced secretfs did not exit")
	now := settledLike(t, dir, quiet, "a secretfs that took over when quiet")
	if now.pid != quietNext.cmd.Process.Pid {
		t.Errorf("secretfs status names process %d, want the last one, %d", now.pid, quietNext.cmd.Process.Pid)
	}
	t.Logf("open descriptors and goroutines (go-fuse's readers among them): %d and %d (%d) in the first secretfs right after it mounted; %d and %d (%d) in the one that took over after %d replacements, once the load stopped; %d and %d (%d) in one that took over when quiet",
		quiet.fds, quiet.goroutines, quiet.byCreator[goFuseReaders], loaded.fds, loaded.goroutines, loaded.byCreator[goFuseReaders], rounds,
		now.fds, now.goroutines, now.byCreator[goFuseReaders])
}

func consumerAlive(done <-chan struct{}) bool {
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// mountinfoLines returns the lines of /proc/PID/mountinfo mounted at dir.
func mountinfoLines(t *testing.T, pid int, dir string) []string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && unescapeMountPath(fields[4]) == dir {
			lines = append(lines, s.Text())
		}
	}
	return lines
}

// --replace changes nothing, and says why, where no secretfs of this
// user serves the mount point: another file system there, another user's
// secretfs, or a user other than the live one's asking. A plain
// directory is mounted as usual.
func TestReplaceIsRefusedUnlessTheMountPointIsServedByASecretfsOfTheSameUser(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	b.cli(t, nil, "init")

	t.Run("another file system", func(t *testing.T) {
		dir := mountpoint(t)
		mustRun(t, "mount", "-t", "tmpfs", "tmpfs", dir)
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		if err := os.WriteFile(filepath.Join(dir, "kept"), []byte("kept"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--log-file", filepath.Join(t.TempDir(), "log"))
		if err == nil || !strings.Contains(errOut, "is a tmpfs mount, not one a secretfs serves") {
			t.Errorf("--replace over a tmpfs: %v, %q", err, errOut)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "kept")); err != nil || string(got) != "kept" || len(mountinfoLines(t, os.Getpid(), dir)) != 1 {
			t.Errorf("after the refusal the tmpfs reads %q, %v, with %d mounts at the path", got, err, len(mountinfoLines(t, os.Getpid(), dir)))
		}
	})

	t.Run("another user's secretfs", func(t *testing.T) {
		// uid 1000 mounts its own secretfs (through fusermount3) in a
		// directory it owns. /dev/fuse is root's alone on this machine,
		// so uid 1000 gets a /dev/fuse of mode 0666 in a mount namespace
		// of its own, whose mounts stay there but for the one at its
		// directory, a shared mount that propagates to this namespace.
		base := filepath.Dir(traversableDir(t))
		userDir, private := filepath.Join(base, "user"), filepath.Join(base, "private")
		dir := filepath.Join(userDir, "mnt")
		data := filepath.Join(userDir, "data")
		for _, d := range []string{dir, private} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{userDir, dir} {
			if err := os.Chown(d, 1000, 1000); err != nil {
				t.Fatal(err)
			}
		}
		mustRun(t, "mount", "--bind", userDir, userDir)
		t.Cleanup(func() { syscall.Unmount(userDir, syscall.MNT_DETACH) })
		mustRun(t, "mount", "--make-shared", userDir)
		mustRun(t, "mount", "--bind", private, private)
		t.Cleanup(func() { syscall.Unmount(private, syscall.MNT_DETACH) })
		mustRun(t, "mount", "--make-private", private)
		const script = `set -eu
mount --make-rprivate /dev
mount -t tmpfs -o mode=755 tmpfs "$PRIVATE"
mknod -m 666 "$PRIVATE/fuse" c 10 229
mount --bind "$PRIVATE/fuse" /dev/fuse
exec setpriv --reuid=1000 --regid=1000 --clear-groups "$BIN" mount "$DIR" --data-dir "$DATA" --log-format json`
		user := exec.Command("unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script)
		user.Env = append(os.Environ(), "HOME="+userDir, "PRIVATE="+private, "BIN="+binary, "DIR="+dir, "DATA="+data)
		userLog := filepath.Join(t.TempDir(), "user.log")
		lf, err := os.Create(userLog)
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		user.Stdout, user.Stderr = lf, lf
		user.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := user.Start(); err != nil {
			t.Fatal(err)
		}
		userDone := make(chan struct{})
		go func() { user.Wait(); close(userDone) }()
		t.Cleanup(func() {
			user.Process.Signal(syscall.SIGTERM)
			select {
			case <-userDone:
			case <-time.After(20 * time.Second):
				user.Process.Kill()
				<-userDone
			}
			// Not root: its stop unmounts with fusermount3.
			if log, _ := os.ReadFile(userLog); !strings.Contains(string(log), `"msg":"unmounted"`) || len(mountinfoLines(t, os.Getpid(), dir)) != 0 {
				t.Errorf("uid 1000's secretfs did not unmount itself at SIGTERM:\n%s", log)
			}
			syscall.Unmount(dir, syscall.MNT_DETACH)
		})
		deadline := time.Now().Add(30 * time.Second)
		for log, _ := os.ReadFile(userLog); !strings.Contains(string(log), `"msg":"mounted"`); log, _ = os.ReadFile(userLog) {
			if time.Now().After(deadline) || !consumerAlive(userDone) {
				t.Fatalf("uid 1000's secretfs did not mount:\n%s", log)
			}
			time.Sleep(20 * time.Millisecond)
		}
		before := mountinfoLines(t, os.Getpid(), dir)
		if len(before) != 1 || !strings.Contains(before[0], "user_id=1000") {
			t.Fatalf("uid 1000's mount: %q", before)
		}
		_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--log-file", filepath.Join(t.TempDir(), "log"))
		if err == nil || !strings.Contains(errOut, "is served by another user's secretfs (user_id=1000): only that user may replace it") {
			t.Errorf("root's --replace of uid 1000's secretfs: %v, %q", err, errOut)
		}
		if after := mountinfoLines(t, os.Getpid(), dir); len(after) != 1 || after[0] != before[0] {
			t.Errorf("after the refusal: %q, want %q", after, before)
		}
		if !consumerAlive(userDone) {
			t.Error("uid 1000's secretfs is gone")
		}
	})

	t.Run("another user asking", func(t *testing.T) {
		dir := traversableDir(t)
		m := mountAt(t, b, dir, "--allow-other")
		for _, args := range [][]string{
			{"mount", dir, "--replace", "--data-dir", t.TempDir()},
			{"status", dir},
		} {
			cmd := exec.Command("setpriv", append([]string{"--reuid=1000", "--regid=1000", "--clear-groups", binary}, args...)...)
			out, err := cmd.CombinedOutput()
			switch {
			case err == nil:
				t.Errorf("secretfs %s as uid 1000 succeeded on root's mount:\n%s", strings.Join(args, " "), out)
			case args[0] == "mount" && !strings.Contains(string(out), "is served by another user's secretfs (user_id=0)"):
				t.Errorf("--replace as uid 1000: %s", out)
			case args[0] == "status" && !strings.Contains(string(out), "is not a control socket only this user (uid 1000) may use"):
				t.Errorf("status as uid 1000: %s", out)
			}
		}
		if strings.Contains(m.log(), "step") {
			t.Errorf("root's secretfs heard of a successor:\n%s", m.log())
		}
		m.mustSh("ls >/dev/null")
	})

	t.Run("a plain directory is mounted as usual", func(t *testing.T) {
		dir := mountpoint(t)
		m := mountAt(t, b, dir, "--replace")
		if !strings.Contains(m.log(), "--replace: nothing to replace; mounting as usual") {
			t.Errorf("--replace on a plain directory does not say it had nothing to replace:\n%s", m.log())
		}
	})
}

// With --daemon, --replace returns 0 once the switch is done: by then the
// path is served by the new process and the old mount is detached; the
// old process, holding nothing, has exited or is exiting.
func TestReplaceWithDaemonReturnsOnceTheNewProcessServesThePath(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	value := unique("daemon")
	b.cli(t, []byte(value), "put", "app/s")
	dir := mountpoint(t)
	old := mountAt(t, b, dir)
	old.secret(value)
	oldDev := mountsAt(t, os.Getpid(), dir)
	var oldRoot syscall.Stat_t
	if err := syscall.Stat(dir, &oldRoot); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "new.log")
	_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--log-file", logPath)
	if err != nil {
		t.Fatalf("mount --replace --daemon: %v\n%s", err, errOut)
	}
	pid := daemonPID(t, errOut)
	t.Cleanup(func() { stopDaemon(t, pid, dir) })
	at := mountsAt(t, os.Getpid(), dir)
	if len(at) != 1 || at[0].id == oldDev[0].id {
		t.Errorf("when --replace --daemon returned, %+v at %s; want one mount, not the old one (%d)", at, dir, oldDev[0].id)
	}
	if c := countsOf(t, dir); c.pid != pid {
		t.Errorf("secretfs status names process %d, want the daemon %d", c.pid, pid)
	}
	if got := old.mustSh("cat app/s"); got != value {
		t.Errorf("cat app/s: %q", got)
	}
	select {
	case <-old.exited:
	case <-time.After(30 * time.Second):
		// What still holds its file system, in any mount namespace this
		// test can see: the kernel ends the old connection only once
		// nothing does.
		t.Fatalf("the replaced secretfs did not exit; what holds its file system: %v\n%s", handover.Holders(oldRoot.Dev), old.log())
	}
	if !strings.Contains(old.log(), "stepped down for a successor") {
		t.Errorf("the replaced secretfs does not say it stepped down:\n%s", old.log())
	}
}

// stopDaemon stops a --daemon mount with SIGTERM and waits until it is
// gone and dir unmounted.
func stopDaemon(t *testing.T, pid int, dir string) {
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("the daemon %d did not exit within 20s of SIGTERM", pid)
	}
	if isMounted(dir) {
		syscall.Unmount(dir, syscall.MNT_DETACH)
		t.Errorf("%s still mounted after the daemon stopped", dir)
	}
}

// A replaced secretfs serves what still holds its mount for as long as
// it holds it, unless --drain-timeout runs out or a signal comes first:
// then it exits, its log names each holder (process and descriptor), and
// what held the mount loses it.
func TestADrainEndsOnItsTimeoutOrASignalAndNamesWhatStillHeldTheMount(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	value := unique("held")
	b.cli(t, []byte(value), "put", "app/s")
	for _, end := range []string{"--drain-timeout", "SIGTERM"} {
		t.Run(end, func(t *testing.T) {
			dir := mountpoint(t)
			var old *mounted
			if end == "--drain-timeout" {
				old = mountAt(t, b, dir, "--drain-timeout", "1s")
			} else {
				old = mountAt(t, b, dir)
			}
			old.secret(value)
			held, err := os.Open(filepath.Join(dir, "app", "s"))
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			next := mountAt(t, b, dir, "--replace")
			next.secret(value)
			got := make([]byte, 256)
			if n, err := held.ReadAt(got, 0); (err != nil && err != io.EOF) || string(got[:n]) != value {
				t.Errorf("the held descriptor read %q, %v after the replacement", got[:n], err)
			}
			if end == "SIGTERM" {
				select {
				case <-old.exited:
					t.Fatal("the replaced secretfs exited while a descriptor held its mount")
				case <-time.After(time.Second):
				}
				old.cmd.Process.Signal(syscall.SIGTERM)
			}
			waitExited(t, old, fmt.Sprintf("the replaced secretfs did not end its drain (%s)", end))
			if old.waitErr != nil {
				t.Errorf("the replaced secretfs exited with %v", old.waitErr)
			}
			want := fmt.Sprintf(`"command":"%s","holds":"descriptor %d: /app/s"`, filepath.Base(os.Args[0])[:min(15, len(filepath.Base(os.Args[0])))], held.Fd())
			if log := old.log(); !strings.Contains(log, "still open when the drain ended") || !strings.Contains(log, want) || !strings.Contains(log, fmt.Sprintf(`"pid":%d`, os.Getpid())) {
				t.Errorf("the replaced secretfs's log does not name this process's descriptor (%s):\n%s", want, log)
			}
			if _, err := held.ReadAt(got, 0); err == nil {
				t.Errorf("the held descriptor still reads after the drain ended")
			}
			if got := next.mustSh("cat app/s"); got != value {
				t.Errorf("the path reads %q", got)
			}
		})
	}
}

// A predecessor that refuses to step down once the new mount lies
// beneath its own leaves --replace failing with its reason, having
// changed nothing: the new mount is withdrawn, the predecessor's is the
// only mount at the path and serves it, and nothing dead is left there
// to surface later as "transport endpoint is not connected". The
// predecessor is this test process: a small file system with a control
// socket whose step-down fails.
func TestReplaceRefusedAfterMountingBeneathChangesNothing(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	dir := mountpoint(t)
	root := &gofs.Inode{}
	fsys := gofs.NewNodeFS(root, &gofs.Options{OnAdd: func(ctx context.Context) {
		file := root.NewPersistentInode(ctx, &gofs.MemRegularFile{Data: []byte("old"), Attr: fuse.Attr{Mode: 0o644}}, gofs.StableAttr{})
		root.AddChild("hello", file, false)
	}})
	server, err := fuse.NewServer(fsys, dir, &fuse.MountOptions{FsName: "secretfs", Name: "secretfs", DirectMount: true, DirectMountStrict: true})
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for syscall.Unmount(dir, syscall.MNT_DETACH) == nil {
		}
		server.Wait()
	})
	before := mountsAt(t, os.Getpid(), dir)
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	top, ok := handover.TopAt(all, dir)
	if err != nil || !ok {
		t.Fatalf("the test's mount at %s: %v", dir, err)
	}
	var askedToStepDown atomic.Int64
	control, err := handover.Listen(handover.SocketPath(dir), handover.Server{Mountpoint: dir, FSType: "fuse.secretfs", Dev: top.Dev, Release: "test", Owner: os.Geteuid(),
		StepDown: func(func() error) error {
			askedToStepDown.Add(1)
			return errors.New("this predecessor refuses to step down, for a test")
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer control.Close()

	_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--log-file", filepath.Join(t.TempDir(), "new.log"))
	if err == nil || !strings.Contains(errOut, "this predecessor refuses to step down, for a test") || !strings.Contains(errOut, "the live mount goes on serving, unchanged") {
		t.Errorf("--replace of a predecessor that refuses: %v, %q", err, errOut)
	}
	if n := askedToStepDown.Load(); n != 1 {
		t.Errorf("the predecessor was asked to step down %d times, want once (with the new mount beneath it)", n)
	}
	// The predecessor's file system is the only one at the path, with
	// the options it had: the mount showing it is a clone of its own
	// (handover.Mount.Withdraw), with another mount id.
	after := mountsAt(t, os.Getpid(), dir)
	all, err = handover.ReadMountInfo("/proc/self/mountinfo")
	if now, ok := handover.TopAt(all, dir); err != nil || !ok || now.Dev != top.Dev || len(after) != 1 || len(before) != 1 || after[0].vfsOpt != before[0].vfsOpt {
		t.Errorf("after the refusal: %+v at %s (device %s), want the predecessor's file system (%s) alone, as before (%+v)", after, dir, now.DevString(), top.DevString(), before)
	}
	for range 3 {
		if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "old" {
			t.Errorf("the path after the refusal read %q, %v; want the predecessor's hello", got, err)
		}
	}
	// The predecessor's mount, once unmounted, reveals the directory,
	// not a dead mount.
	if err := syscall.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	server.Wait()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || isMounted(dir) {
		t.Errorf("once the predecessor's mount is gone, %s: statfs %v, still a mount point: %v", dir, err, isMounted(dir))
	}
}
