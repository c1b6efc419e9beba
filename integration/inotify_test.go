package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Change signals: a change the mount learns of from the store (another
// host, secretfs put) reaches programs watching with inotify, also on a
// read-only mount, and by the time the event comes the new value is what
// an open reads.

// watcher is a running `inotifywait -m`, whose events are read as they
// come; for each event of a file, what the file held right after it.
type watcher struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []event
	done   chan struct{}
}

// event is one line of inotifywait: the path and the event names, and
// what reading the path gave right after the line was read.
type event struct {
	path, names string
	at          time.Time
	read        string
	readErr     error
}

// watch starts inotifywait -m on paths, for the events that mean a
// change (not the opens and reads of readers), and waits until its
// watches are established.
func watch(t *testing.T, readAfter string, paths ...string) *watcher {
	t.Helper()
	if _, err := exec.LookPath("inotifywait"); err != nil {
		t.Fatalf("inotifywait not found (%v): run scripts/install-test-deps (Debian package inotify-tools)", err)
	}
	args := append([]string{"-m", "-e", "modify,close_write,attrib,move,create,delete,delete_self", "--format", "%w%f %e"}, paths...)
	w := &watcher{t: t, cmd: exec.Command("inotifywait", args...), done: make(chan struct{})}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	w.cmd.Stderr = stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
		<-w.done
	})
	go func() {
		defer close(w.done)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			path, names, _ := strings.Cut(s.Text(), " ")
			e := event{path: path, names: names, at: time.Now()}
			if readAfter != "" {
				// Right away, as a program woken by the event would.
				b, err := os.ReadFile(readAfter)
				e.read, e.readErr = string(b), err
			}
			w.mu.Lock()
			w.events = append(w.events, e)
			w.mu.Unlock()
		}
	}()
	eventually(t, 10*time.Second, "inotifywait establishes its watches", func() bool {
		return strings.Contains(stderr.String(), "Watches established")
	})
	return w
}

// seen returns the events so far.
func (w *watcher) seen() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event(nil), w.events...)
}

// count returns how many events so far are of path and include name.
func (w *watcher) count(path, name string) int {
	n := 0
	for _, e := range w.seen() {
		if e.path == path && strings.Contains(e.names, name) {
			n++
		}
	}
	return n
}

// watchAll is a configuration file that watches every application.
const watchAll = "watch:\n  - \"*\"\n"

// inotifywait on a --read-only mount sees an event within --ttl + 1 s of
// `secretfs put`, and a program that reads the file right after the
// event reads the new value. A rotation is one event, not a storm.
func TestInotifywaitOnAReadOnlyMountSeesAPutWithinTheTTL(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		old := unique("old")
		b.cli(t, []byte(old), "put", "app/s")
		b.cli(t, []byte("other"), "put", "app/other")
		const ttl = 2 * time.Second
		m := mount(t, b, "--read-only", "--ttl", ttl.String(), "--config", writeConfig(t, watchAll))
		m.secret(old)
		if got := m.mustSh("cat app/s"); got != old {
			t.Fatalf("cat app/s: %q", got)
		}
		dir := watch(t, m.path("app/s"), m.path("app"))
		file := watch(t, "", m.path("app/s"))

		fresh := m.secret(unique("fresh"))
		b.cli(t, []byte(fresh), "put", "app/s")
		put := time.Now()
		eventually(t, ttl+time.Second, "inotifywait on the directory sees the change", func() bool {
			return dir.count(m.path("app/s"), "MODIFY") > 0
		})
		var first event
		for _, e := range dir.seen() {
			if strings.Contains(e.names, "MODIFY") {
				first = e
				break
			}
		}
		t.Logf("the event came %s after the put", first.at.Sub(put).Round(10*time.Millisecond))
		if first.readErr != nil || first.read != fresh {
			t.Errorf("read right after the event: %q, %v; want the new value", first.read, first.readErr)
		}
		eventually(t, time.Second, "inotifywait on the file sees it too", func() bool {
			return file.count(m.path("app/s"), "MODIFY") > 0
		})
		time.Sleep(ttl + time.Second) // whatever else would come
		if n := dir.count(m.path("app/s"), "MODIFY"); n != 1 {
			t.Errorf("one rotation gave %d MODIFY events in the directory, want 1: %+v", n, dir.seen())
		}
		if n := dir.count(m.path("app/other"), ""); n != 0 {
			t.Errorf("an unchanged secret had %d events: %+v", n, dir.seen())
		}
		t.Logf("inotifywait -m on the directory:\n%s", transcript(dir.seen()))
		t.Logf("inotifywait -m on the file:\n%s", transcript(file.seen()))
	})
}

// --watch alone, with no configuration file, turns change signals on for
// the applications its patterns match: a put to a matched application is
// heard within --ttl + 1 s, and read right after the event; a put to an
// application nothing matches is not (nobody reads it, so the mount
// never learns of it).
func TestTheWatchFlagAloneTurnsChangeSignalsOn(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("old"), "put", "billing/s")
	b.cli(t, []byte("old"), "put", "auth/s")
	const ttl = 2 * time.Second
	m := mount(t, b, "--read-only", "--ttl", ttl.String(), "--watch", "bill*")
	m.mustSh("cat billing/s auth/s >/dev/null")
	watched := watch(t, m.path("billing/s"), m.path("billing"))
	unwatched := watch(t, "", m.path("auth"))

	fresh := unique("fresh")
	b.cli(t, []byte(fresh), "put", "billing/s")
	b.cli(t, []byte(unique("fresh")), "put", "auth/s")
	eventually(t, ttl+time.Second, "inotifywait on the watched application sees the change", func() bool {
		return watched.count(m.path("billing/s"), "MODIFY") > 0
	})
	for _, e := range watched.seen() {
		if strings.Contains(e.names, "MODIFY") && (e.readErr != nil || e.read != fresh) {
			t.Errorf("read right after the event: %q, %v; want the new value", e.read, e.readErr)
		}
	}
	time.Sleep(ttl + time.Second)
	if got := unwatched.seen(); len(got) != 0 {
		t.Errorf("an application --watch does not match had events:\n%s", transcript(got))
	}
}

func transcript(events []event) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString(e.path + " " + e.names + "\n")
	}
	return b.String()
}

// Nothing is sent for secrets that do not change: 10 s of a watched
// mount whose secrets stay as they are, listed once a second, give no
// event.
func TestNoEventInTenSecondsOfUnchangedSecrets(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("v"), "put", "app/s")
	b.cli(t, []byte(`{"u": "x"}`), "put", "app/j")
	cfg := watchAll + "views:\n  - path: app/u\n    secret: app/j\n    field: u\n"
	m := mount(t, b, "--read-only", "--ttl", "1s", "--config", writeConfig(t, cfg))
	m.mustSh("cat app/s app/u >/dev/null")
	w := watch(t, "", m.path("app"), m.path("app/s"), m.path("app/u"))
	time.Sleep(10 * time.Second)
	if got := w.seen(); len(got) != 0 {
		t.Errorf("unchanged secrets gave events:\n%s", transcript(got))
	}
}

// A view changes when its input does, and its watchers hear of it: once
// per change of the input.
func TestAViewsWatchersHearOfAChangeOfItsInput(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte(`{"u": "first"}`), "put", "app/j")
	cfg := watchAll + "views:\n  - path: app/u\n    secret: app/j\n    field: u\n"
	m := mount(t, b, "--read-only", "--ttl", "1s", "--config", writeConfig(t, cfg))
	if got := m.mustSh("cat app/u"); got != "first" {
		t.Fatalf("cat app/u: %q", got)
	}
	w := watch(t, m.path("app/u"), m.path("app"))
	modified := func() []event {
		var out []event
		for _, e := range w.seen() {
			if e.path == m.path("app/u") && strings.Contains(e.names, "MODIFY") {
				out = append(out, e)
			}
		}
		return out
	}
	for i, v := range []string{"second", "third"} {
		b.cli(t, []byte(`{"u": "`+v+`"}`), "put", "app/j")
		eventually(t, 2*time.Second, "the view's change is heard", func() bool { return len(modified()) > i })
		if e := modified()[i]; e.readErr != nil || e.read != v {
			t.Errorf("read right after the view's event: %q, %v; want %q", e.read, e.readErr, v)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(modified()); n != 2 {
		t.Errorf("two changes of the input gave %d MODIFY events of the view:\n%s", n, transcript(w.seen()))
	}
}

// The change signal is the mount's own: it commits nothing (the store
// keeps the put's revision), is not in the audit log, and leaves the
// value as the put made it, on a read-write mount too.
func TestTheChangeSignalCommitsAndAuditsNothing(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("one"), "put", "app/s")
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	m := mount(t, b, "--ttl", "1s", "--audit-log", auditFile, "--config", writeConfig(t, watchAll))
	m.mustSh("cat app/s >/dev/null")
	w := watch(t, "", m.path("app"))
	b.cli(t, []byte("two"), "put", "app/s")
	before := b.cli(t, nil, "ls", "-l", "app")
	eventually(t, 2*time.Second, "the change is heard", func() bool { return w.count(m.path("app/s"), "CLOSE_WRITE") > 0 })
	time.Sleep(500 * time.Millisecond)
	if after := b.cli(t, nil, "ls", "-l", "app"); after != before {
		t.Errorf("the signal changed the store: %q, then %q", before, after)
	}
	if got := m.mustSh("cat app/s"); got != "two" {
		t.Errorf("cat app/s: %q", got)
	}
	data, _ := os.ReadFile(auditFile)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct {
			Op  string
			PID int
		}
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if e.Op == "commit" || e.PID == m.cmd.Process.Pid {
			t.Errorf("the audit log records the signal: %s", line)
		}
	}
}

// A read-only mount that makes change signals is read-only per mount
// (its file system is writable only through the signaller's private
// clone): every change is refused with EROFS, changing nothing, also an
// open for writing after the kernel stopped sending opens to the mount,
// which would otherwise let a shared writable mapping change the pages
// every reader reads. Hot reads still ask it nothing.
func TestAReadOnlyMountRefusesEveryChangeWithEROFS(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	value := unique("ro")
	b.cli(t, []byte(value), "put", "app/s")
	addr := metricsAddr(t)
	m := mount(t, b, "--read-only", "--metrics-addr", addr, "--config", writeConfig(t, watchAll))
	m.secret(value)
	before := b.cli(t, nil, "ls", "-l", "app")
	for _, script := range []string{
		"echo x > app/s", "/bin/echo x >> app/s", "truncate -s 0 app/s", "rm app/s", "mv app/s app/t",
		"mkdir app2", "touch app/s", "touch app/new", "echo x > app/new", "chmod 600 app/s", "ln -s s app/l",
	} {
		m.failSh(script, "Read-only file system")
	}
	if after := b.cli(t, nil, "ls", "-l", "app"); after != before {
		t.Errorf("the refused changes changed the store: %q, then %q", before, after)
	}
	if got := m.mustSh("cat app/s && ls app"); got != value+"s\n" {
		t.Errorf("after the refusals: %q", got)
	}
	info := mountsAt(t, os.Getpid(), m.dir)
	if len(info) != 1 || !strings.HasPrefix(info[0].vfsOpt, "ro") {
		t.Errorf("the mount is %+v, want one, read-only per mount", info)
	}
	for range 3 {
		m.mustSh("cat app/s >/dev/null")
	}
	// The kernel no longer sends opens: only its own refusal stands
	// between a writer and the page cache.
	for _, flags := range []int{syscall.O_RDWR, syscall.O_WRONLY} {
		fd, err := syscall.Open(m.path("app/s"), flags, 0)
		if err == nil {
			data, merr := syscall.Mmap(fd, 0, len(value), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
			if merr == nil {
				copy(data, "TAMPERED")
				syscall.Munmap(data)
			}
			syscall.Close(fd)
			t.Errorf("open(app/s, %#x) succeeded on a read-only mount (mmap: %v)", flags, merr)
		} else if err != syscall.EROFS {
			t.Errorf("open(app/s, %#x): %v, want EROFS", flags, err)
		}
	}
	if got := m.mustSh("cat app/s"); got != value {
		t.Errorf("after the refused opens for writing, cat app/s: %q", got)
	}
	time.Sleep(100 * time.Millisecond)
	requests := fuseRequests(t, addr)
	for range 1000 {
		if got, err := os.ReadFile(m.path("app/s")); err != nil || string(got) != value {
			t.Fatalf("read %q, %v", got, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if got := delta(requests, fuseRequests(t, addr)); len(got) != 0 {
		t.Errorf("1000 hot reads asked the read-only mount %v, want nothing", got)
	}
}

// lockedBuffer is a bytes.Buffer one goroutine writes while another
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A mount that took over with --replace makes change signals as the one
// it replaced did: inotifywait, started on the new mount, hears a put
// within --ttl + 1 s. The replaced process, kept alive by a descriptor
// held on its detached mount, learns of the same change but signals
// nothing through the path, which now shows its successor's mount: the
// secret has only the put's version, and the successor's audit log no
// write.
func TestChangeSignalsFollowAReplacement(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	old := unique("old")
	b.cli(t, []byte(old), "put", "app/s")
	const ttl = 2 * time.Second
	args := []string{"--read-only", "--ttl", ttl.String(), "--config", writeConfig(t, watchAll)}
	dir := mountpoint(t)
	first := mountAt(t, b, dir, args...)
	first.secret(old)
	held, err := os.Open(first.path("app/s")) // keeps the replaced process serving
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	logPath := filepath.Join(t.TempDir(), "new.log")
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	replaceArgs := append([]string{"mount", dir, "--replace", "--daemon", "--log-file", logPath, "--audit-log", auditPath}, args...)
	_, errOut, err := b.run(nil, replaceArgs...)
	if err != nil {
		t.Fatalf("mount --replace --daemon: %v\n%s", err, errOut)
	}
	pid := daemonPID(t, errOut)
	t.Cleanup(func() { stopDaemon(t, pid, dir) })
	if c := countsOf(t, dir); c.pid != pid {
		t.Fatalf("secretfs status names process %d, want the successor %d", c.pid, pid)
	}
	if at := mountsAt(t, os.Getpid(), dir); len(at) != 1 || !strings.HasPrefix(at[0].vfsOpt, "ro") {
		t.Errorf("after the replacement, %+v at %s; want one mount, read-only per mount", at, dir)
	}
	if got := first.mustSh("cat app/s"); got != old {
		t.Fatalf("cat app/s through the successor: %q", got)
	}
	w := watch(t, filepath.Join(dir, "app/s"), filepath.Join(dir, "app"))

	fresh := first.secret(unique("fresh"))
	b.cli(t, []byte(fresh), "put", "app/s")
	eventually(t, ttl+time.Second, "inotifywait on the successor's mount sees the change", func() bool {
		return w.count(filepath.Join(dir, "app/s"), "MODIFY") > 0
	})
	for _, e := range w.seen() {
		if strings.Contains(e.names, "MODIFY") && (e.readErr != nil || e.read != fresh) {
			t.Errorf("read right after the event: %q, %v; want the new value", e.read, e.readErr)
		}
	}
	// The replaced process lists what it holds once per TTL too; give it
	// the time to learn of the put and try to signal it.
	time.Sleep(2 * ttl)
	if n := w.count(filepath.Join(dir, "app/s"), "MODIFY"); n != 1 {
		t.Errorf("one put gave %d MODIFY events, want 1:\n%s", n, transcript(w.seen()))
	}
	if v := versionOf(t, b, "app", "s"); v != 2 {
		t.Errorf("app/s is at version %d after one put over version 1, want 2: a change signal committed a write", v)
	}
	if a, err := os.ReadFile(auditPath); err != nil || strings.Contains(string(a), `"commit"`) {
		t.Errorf("the successor's audit log (%v):\n%s\nwant no commit", err, a)
	}
	b2 := make([]byte, 64)
	if n, err := held.ReadAt(b2, 0); string(b2[:n]) != old {
		t.Errorf("the descriptor held across the replacement reads %q, %v; want the old value", b2[:n], err)
	}
}

// A Go program watching with fsnotify (the library Go programs use for
// inotify), on a --read-only mount, hears a put within --ttl + 1 s, both
// in the application's directory and on the file, and reads the new
// value right after.
func TestAGoFsnotifyWatcherHearsAPut(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	old := unique("old")
	b.cli(t, []byte(old), "put", "app/s")
	const ttl = 2 * time.Second
	m := mount(t, b, "--read-only", "--ttl", ttl.String(), "--config", writeConfig(t, watchAll))
	m.secret(old)
	if got := m.mustSh("cat app/s"); got != old {
		t.Fatalf("cat app/s: %q", got)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, p := range []string{m.path("app"), m.path("app/s")} {
		if err := w.Add(p); err != nil {
			t.Fatalf("fsnotify: watching %s: %v", p, err)
		}
	}
	fresh := m.secret(unique("fresh"))
	b.cli(t, []byte(fresh), "put", "app/s")
	deadline := time.After(ttl + time.Second)
	for {
		select {
		case e := <-w.Events:
			if e.Name != m.path("app/s") || !e.Has(fsnotify.Write) {
				continue
			}
			got, err := os.ReadFile(m.path("app/s"))
			if err != nil || string(got) != fresh {
				t.Errorf("read right after fsnotify's %s: %q, %v; want the new value", e, got, err)
			}
			return
		case err := <-w.Errors:
			t.Fatalf("fsnotify: %v", err)
		case <-deadline:
			t.Fatalf("fsnotify heard no write of app/s within %s of the put", ttl+time.Second)
		}
	}
}

// A program watching a secret's file (not its directory) hears a rewrite
// made through the same mount, on a mount without a watch list too, and
// reads the new value: the writer works on an inode of its own, and the
// mount touches the revision it replaced, which the watch holds. (The
// trial: `inotifywait -e modify app/f` waited on after `echo v2 > app/f`.)
func TestAWatcherOfAFileHearsARewriteThroughTheSameMount(t *testing.T) {
	b := localBackend(t)
	m := mount(t, b)
	m.mustSh("mkdir app && echo v1 > app/f")
	w := watch(t, "", m.path("app/f"))
	m.mustSh("echo v2 > app/f")
	eventually(t, 5*time.Second, "the file's watcher hears the rewrite", func() bool {
		return w.count(m.path("app/f"), "MODIFY") > 0 || w.count(m.path("app/f"), "CLOSE_WRITE") > 0
	})
	if got := m.mustSh("cat app/f"); got != "v2\n" {
		t.Errorf("after the event app/f reads %q, want v2", got)
	}
}

// A watcher of an application's directory hears that a view in it
// changed when it can no longer be rendered (its input changed elsewhere
// into something it cannot read), and a reader woken by the event gets
// EIO: the change signal's look at the view's name finds a file of one
// byte that only it reaches (and that reads EIO), and its touch goes
// through that.
func TestADirectoryWatcherHearsAViewThatCannotBeRenderedAnyMore(t *testing.T) {
	b, m := watchedViews(t)
	dir := watch(t, m.path("billing/db-user"), m.path("billing"))
	b.cli(t, []byte(unique("notjson")), "put", "billing/db-credentials")
	view := m.path("billing") + "/db-user"
	eventually(t, 10*time.Second, "the directory's watcher hears of billing/db-user", func() bool {
		return dir.count(view, "CLOSE_WRITE") > 0
	})
	for _, e := range dir.seen() {
		if e.path == view && e.readErr == nil {
			t.Errorf("a read after the event %s got %q, want EIO", e.names, e.read)
		}
	}
	m.failSh("cat billing/db-user", "Input/output error")
	if out, _, err := m.sh("echo x > billing/db-user"); err == nil {
		t.Errorf("a write to the broken view succeeded: %q", out)
	}
}
