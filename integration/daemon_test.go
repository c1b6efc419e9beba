package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Running as a service: systemd's notifications, --daemon, mount(8) and
// fstab, and the audit log.

// A mount under systemd (Type=notify) says what it does (STATUS=), that it
// is ready (READY=1) only once it answers a listing, keeps the watchdog fed
// while it answers, and says STOPPING=1 on SIGTERM before it unmounts and
// exits 0.
func TestSystemdNotifyReadyOnlyOnceTheMountListsAndStoppingOnSIGTERM(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type message struct {
		text   string
		listed error // a listing of the mountpoint made when it arrived
		at     time.Time
	}
	messages := make(chan message, 100)
	var dir string
	dirSet := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(messages)
				return
			}
			msg := message{text: string(buf[:n]), at: time.Now()}
			if strings.Contains(msg.text, "READY=1") {
				<-dirSet
				_, msg.listed = os.ReadDir(dir)
				if msg.listed == nil && !isMounted(dir) {
					msg.listed = fmt.Errorf("%s is not a mountpoint", dir)
				}
			}
			messages <- msg
		}
	}()
	b := localBackend(t)
	b.env = append(slices.Clone(b.env), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=300000")
	dir = filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	close(dirSet)
	m := mountAt(t, b, dir)
	m.mustSh("mkdir app && echo v > app/s")

	var seen []string
	ready, watchdogs := false, 0
	deadline := time.After(20 * time.Second)
	for !ready || watchdogs < 2 {
		select {
		case msg := <-messages:
			seen = append(seen, msg.text)
			if strings.Contains(msg.text, "READY=1") {
				ready = true
				if msg.listed != nil {
					t.Errorf("READY=1 came before the mount listed: %v", msg.listed)
				}
			}
			if msg.text == "WATCHDOG=1" {
				watchdogs++
			}
		case <-deadline:
			t.Fatalf("no READY=1 and two WATCHDOG=1 within 20s; got %q", seen)
		}
	}
	if !strings.HasPrefix(seen[0], "STATUS=") {
		t.Errorf("the first notification is %q, want a STATUS= of what the mount does", seen[0])
	}
	if err := m.stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	var stopping bool
	for len(messages) > 0 {
		msg := <-messages
		stopping = stopping || strings.Contains(msg.text, "STOPPING=1")
	}
	if !stopping {
		t.Errorf("no STOPPING=1 after SIGTERM")
	}
	if isMounted(dir) {
		t.Errorf("%s still mounted after SIGTERM", dir)
	}
}

// daemonPID reads the pid --daemon reports.
func daemonPID(t *testing.T, stderr string) int {
	t.Helper()
	mm := regexp.MustCompile(`serving as process (\d+)`).FindStringSubmatch(stderr)
	if mm == nil {
		t.Fatalf("--daemon said %q, no process", stderr)
	}
	pid, _ := strconv.Atoi(mm[1])
	return pid
}

// killAtEnd makes sure a daemon the test started is gone when it ends.
func killAtEnd(t *testing.T, pid int, dir string) {
	t.Cleanup(func() {
		if isMounted(dir) {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// `secretfs mount --daemon` returns 0 once the mount answers and serves
// in the background; umount ends the daemon cleanly. If the mount fails
// it returns non-zero with the reason, and leaves nothing behind.
func TestDaemonReturnsOnceTheMountAnswersAndUmountEndsIt(t *testing.T) {
	requireFUSE(t)
	b := localBackend(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	logFile := filepath.Join(t.TempDir(), "daemon.log")
	_, stderr, err := b.run(nil, "mount", "--daemon", dir, "--log-file", logFile)
	if err != nil {
		t.Fatalf("mount --daemon: %v\n%s", err, stderr)
	}
	pid := daemonPID(t, stderr)
	killAtEnd(t, pid, dir)
	if !isMounted(dir) {
		t.Fatalf("mount --daemon returned, but %s is not mounted", dir)
	}
	if out, err := exec.Command("sh", "-c", "mkdir "+dir+"/app && echo v > "+dir+"/app/s && cat "+dir+"/app/s").CombinedOutput(); err != nil || string(out) != "v\n" {
		t.Fatalf("the daemon's mount: %q, %v", out, err)
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	eventually(t, 10*time.Second, "the daemon exits once unmounted", func() bool { return !alive(pid) })
	log, _ := os.ReadFile(logFile)
	if !strings.Contains(string(log), "unmounted from outside") {
		t.Errorf("the daemon's log does not say it was unmounted:\n%s", log)
	}

	failed := filepath.Join(t.TempDir(), "mnt")
	_, stderr, err = b.run(nil, "mount", "--daemon", failed, "--rsa-key", "/nonexistent/key.pem", "--log-file", logFile)
	if err == nil || !strings.Contains(stderr, "/nonexistent/key.pem") {
		t.Errorf("mount --daemon with a missing key: %v, %q; want a failure naming the key", err, stderr)
	}
	if isMounted(failed) {
		syscall.Unmount(failed, syscall.MNT_DETACH)
		t.Error("a failed --daemon left a mount")
	}
}

// `mount -t fuse.secretfs SOURCE MOUNTPOINT -o OPTIONS` works through
// fuse3's mount.fuse3, and so does an fstab line mounted with `mount -T`;
// an unknown option is refused with a message; umount ends the daemon.
// mount(8) runs helpers with no PATH: the shell finds secretfs in
// /usr/local/bin, where the install puts it. The test runs in a mount
// namespace of its own, whose /usr/local/bin holds the built binary.
func TestMountTypeFuseSecretfsAndAnFstabLine(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("mount.fuse3"); err != nil {
		t.Fatalf("mount.fuse3 (fuse3) is needed: %v", err)
	}
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("from fstab"), "put", "app/s")
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	os.Mkdir(bin, 0o755)
	if out, err := exec.Command("cp", binary, filepath.Join(bin, "secretfs")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	dir := filepath.Join(tmp, "mnt")
	os.Mkdir(dir, 0o755)
	fstab := filepath.Join(tmp, "fstab")
	logs := filepath.Join(tmp, "logs")
	os.Mkdir(logs, 0o755)
	line := fmt.Sprintf("local:%s %s fuse.secretfs ro,noauto,nofail,_netdev,x-systemd.automount,apps=app:other,ttl=5s,log_file=%s/fstab.log 0 0\n", b.dataDir(), dir, logs)
	if err := os.WriteFile(fstab, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e
trap 'umount -l %[2]s 2>/dev/null || true' EXIT
mount --bind %[1]s /usr/local/bin
mount -t fuse.secretfs local:%[3]s %[2]s -o ro,allow_other,uid=1000,gid=1000,file_mode=0400,dir_mode=0500,log_file=%[4]s/t.log,nodev,nosuid 2>%[4]s/mounted
echo "t: $(cat %[2]s/app/s) $(stat -c '%%u %%a' %[2]s/app/s)"
pid=$(sed -n 's/.*serving as process \([0-9]*\).*/\1/p' %[4]s/mounted)
[ -n "$pid" ] || { echo "no pid: $(cat %[4]s/mounted)"; exit 1; }
umount %[2]s
for i in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && echo "daemon still running after umount" || echo "t: daemon gone"
if mount -t fuse.secretfs local:%[3]s %[2]s -o bogus=1 2>%[4]s/refused; then echo "bogus accepted"; umount %[2]s; fi
mount -T %[5]s %[2]s
echo "fstab: $(ls %[2]s | tr '\n' ' ')$(cat %[2]s/app/s)"
umount %[2]s
`, bin, dir, b.dataDir(), logs, fstab)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"t: from fstab 1000 400", "t: daemon gone", "fstab: app other from fstab"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "bogus accepted") {
		t.Error("an unknown mount option was accepted")
	}
	refused, _ := os.ReadFile(filepath.Join(logs, "refused"))
	if !strings.Contains(string(refused), `unknown mount option "bogus=1"`) {
		t.Errorf("an unknown option's refusal says %q", refused)
	}
}

// The audit log has one JSON line per open of a secret, per commit, per
// unlink and per rename, with the caller's uid, gid, pid and command;
// never a value. On a read-only mount it turns opens back on, so that a
// read by another user is recorded.
func TestAuditLogRecordsWhoOpenedCommittedRemovedAndRenamed(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	value := unique("audited")
	b.cli(t, []byte(value), "put", "app/s")
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	dir := traversableDir(t)
	m := mountAt(t, b, dir, "--audit-log", auditFile, "--read-only", "--allow-other", "--file-mode", "0444", "--dir-mode", "0555")
	m.secret(value)
	cat := exec.Command("cat", m.path("app/s"))
	cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	if out, err := cat.CombinedOutput(); err != nil || string(out) != value {
		t.Fatalf("cat as uid 1000: %q, %v", out, err)
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}

	rw := mount(t, b, "--audit-log", auditFile)
	rw.mustSh("echo new > app/s")
	tid := readFromAnotherThread(t, rw.path("app/s"))
	rw.mustSh("mv app/s app/t && rm app/t")
	rw.stop()

	f, err := os.Open(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type entry struct {
		Op, App, Secret, To, Result, Command string
		Version                              int64
		UID, GID, PID, TID                   uint32
	}
	var entries []entry
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.Contains(s.Text(), value) {
			t.Errorf("the audit log records a value: %s", s.Text())
		}
		var e entry
		if err := json.Unmarshal(s.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", s.Text(), err)
		}
		entries = append(entries, e)
	}
	find := func(op, secret string, uid uint32) *entry {
		for i := range entries {
			e := &entries[i]
			if e.Op == op && e.App == "app" && e.Secret == secret && e.UID == uid {
				return e
			}
		}
		return nil
	}
	if e := find("open", "s", 1000); e == nil {
		t.Errorf("no open of app/s by uid 1000 in %+v", entries)
	} else if e.GID != 1000 || e.PID == 0 || e.Command != "cat" || e.Result != "OK" || e.Version < 1 {
		t.Errorf("the read by uid 1000: %+v", e)
	}
	for _, want := range []struct{ op, secret string }{{"commit", "s"}, {"rename", "s"}, {"unlink", "t"}} {
		if e := find(want.op, want.secret, 0); e == nil || e.Result != "OK" {
			t.Errorf("no %s of app/%s by root in %+v", want.op, want.secret, entries)
		}
	}
	if e := find("rename", "s", 0); e != nil && e.To != "t" {
		t.Errorf("the rename records its target as %q", e.To)
	}
	// The kernel names the calling thread; the record gives its process
	// too (it gave the thread as the pid).
	var threaded *entry
	for i := range entries {
		if e := &entries[i]; e.Op == "open" && e.Secret == "s" && e.TID == uint32(tid) {
			threaded = e
		}
	}
	if threaded == nil {
		t.Errorf("no open of app/s by thread %d in %+v", tid, entries)
	} else if threaded.PID != uint32(os.Getpid()) {
		t.Errorf("the open by thread %d of process %d records pid %d", tid, os.Getpid(), threaded.PID)
	}
}

// readFromAnotherThread reads path from a thread of this process that is
// not its main thread (whose id is the process's), and returns that
// thread's id.
func readFromAnotherThread(t *testing.T, path string) int {
	t.Helper()
	type result struct {
		tid int
		err error
	}
	done := make(chan result)
	read := make(chan struct{}) // closed once the read is done
	var try func()
	try = func() {
		// Unlocked before the goroutine ends: a thread a locked goroutine
		// leaves is terminated, and a child this process started from it
		// (the test servers, with Pdeathsig) would be killed with it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if tid := unix.Gettid(); tid == os.Getpid() {
			go try() // the main thread: ask again, from another
			<-read   // holding this one meanwhile
			return
		}
		_, err := os.ReadFile(path)
		done <- result{unix.Gettid(), err}
	}
	go try()
	r := <-done
	close(read)
	if r.err != nil {
		t.Fatalf("reading %s from thread %d: %v", path, r.tid, r.err)
	}
	return r.tid
}

// A commit made at the release (touch, : > f: a creation or truncation
// nobody wrote after) is audited as the writer's, who opened the file:
// not as uid 0, pid 0 and no command, which reads as root's (the kernel's
// RELEASE names no caller). So is truncate(2) by path, which commits at
// once.
func TestACommitAtTheReleaseOrByTruncateIsAuditedAsTheWriters(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("x"), "put", "app/seed")
	b.cli(t, []byte("xyz"), "put", "app/cut")
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	dir := traversableDir(t)
	m := mountAt(t, b, dir, "--audit-log", auditFile, "--allow-other", "--uid", "1001", "--gid", "1001", "--dir-mode", "0755")
	for _, script := range []string{"touch " + m.path("app/touched"), ": > " + m.path("app/truncated"), "truncate -s 0 " + m.path("app/seed"),
		// truncate(2) by path, which truncate(1) does not make (it opens
		// the file and truncates the descriptor).
		`perl -e 'truncate($ARGV[0], 1) or die "$!\n"' ` + m.path("app/cut")} {
		if out, err := as("1001", script); err != nil {
			t.Fatalf("as 1001, %s: %q, %v", script, out, err)
		}
	}
	m.mustSh("cat app/touched app/truncated app/seed app/cut")
	m.stop()
	text, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"touched", "truncated", "seed", "cut"} {
		found := false
		for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
			var e struct {
				Op, Secret, Command string
				UID, GID, PID       uint32
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("audit line %q: %v", line, err)
			}
			if e.Op != "commit" || e.Secret != secret {
				continue
			}
			found = true
			if e.UID != 1001 || e.GID != 1001 || e.PID == 0 || e.Command == "" {
				t.Errorf("the commit of app/%s is audited as %s", secret, line)
			}
		}
		if !found {
			t.Errorf("no commit of app/%s in the audit log:\n%s", secret, text)
		}
	}
}
