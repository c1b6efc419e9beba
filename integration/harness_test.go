// Package integration mounts the built secretfs binary with real FUSE and
// drives it with real tools (sh, cat, echo, ls, cp, mv, rm). Every test
// cleans up its mount and process, even when it fails. Nothing here skips:
// a missing dependency (FUSE, fusermount3) is a failure, because CI must
// never pass by testing nothing.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/internal/mountns"
	"github.com/secretfs/secretfs/internal/testserver"
)

// binary is the secretfs built for this test run, with the race detector.
var binary string

// dynalite and localKMS serve every DynamoDB-backed test of the run; each
// test gets its own table and KMS key.
var dynalite, localKMS *testserver.Server

func TestMain(m *testing.M) {
	// The shards run side by side, and some boot containers: in a mount
	// namespace of its own, a shard's mounts are copied into no other
	// shard's containers, which would keep them alive (and a replaced
	// or stopped secretfs serving) until the container ends.
	mountns.Isolate()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "secretfs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "secretfs")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/secretfs")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building secretfs:", err)
		return 1
	}
	// A missing server fails the run: the DynamoDB suite never skips.
	if dynalite, err = testserver.StartDynalite(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer dynalite.Close()
	if localKMS, err = testserver.StartLocalKMS(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer localKMS.Close()
	return m.Run()
}

// requireFUSE fails the test when this machine cannot mount FUSE.
func requireFUSE(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("FUSE is not usable here (%v); run scripts/install-test-deps as root", err)
	}
	f.Close()
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Fatalf("fusermount3 not found (%v); run scripts/install-test-deps as root", err)
	}
}

// backend is where a test's secrets live; every flag and variable the
// binary needs to reach it is in flags and env.
type backend struct {
	name  string
	flags []string
	env   []string
	// stored returns everything the store holds, as raw bytes, to be
	// searched for plaintext.
	stored func(t *testing.T) [][]byte

	table, alias string // dynamodb: the table and the KMS key alias
}

// localBackend is the embedded default in a fresh data directory.
func localBackend(t *testing.T) *backend {
	dataDir := filepath.Join(t.TempDir(), "data")
	return &backend{
		name:  "local",
		flags: []string{"--data-dir", dataDir},
		stored: func(t *testing.T) [][]byte {
			files, _ := filepath.Glob(filepath.Join(dataDir, "secrets.db*"))
			if len(files) == 0 {
				t.Fatal("no store file found to inspect")
			}
			var all [][]byte
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, data)
			}
			return all
		},
	}
}

// dataDir returns the local backend's data directory.
func (b *backend) dataDir() string {
	for i, f := range b.flags {
		if f == "--data-dir" {
			return b.flags[i+1]
		}
	}
	return ""
}

// cli runs a secretfs admin verb against b and returns its stdout; it
// fails the test if the verb fails.
func (b *backend) cli(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, errOut, err := b.run(stdin, args...)
	if err != nil {
		t.Fatalf("secretfs %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// run runs a secretfs verb against b.
func (b *backend) run(stdin []byte, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(args, b.flags...)...)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mounted is one running `secretfs mount`.
type mounted struct {
	t       *testing.T
	b       *backend
	dir     string // the mountpoint
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error

	mu      sync.Mutex
	secrets [][]byte // values that must never appear in the log
	// holdsCreations says the test holds a creation open on purpose,
	// so that a request may wait the full bound of the wait for a closing writer (one second).
	holdsCreations bool
}

// mount starts `secretfs mount` on a new mountpoint and waits until the
// mount is live. Cleanup stops it with SIGTERM, checks that it unmounted
// itself and exited cleanly, lazily unmounts whatever is left, and checks
// the log for plaintext.
func mount(t *testing.T, b *backend, extra ...string) *mounted {
	t.Helper()
	return mountAt(t, b, mountpoint(t), extra...)
}

// mountpoint returns a new empty directory to mount on.
func mountpoint(t *testing.T) string {
	t.Helper()
	requireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mountAt(t *testing.T, b *backend, dir string, extra ...string) *mounted {
	t.Helper()
	return mountBinaryAt(t, binary, b, dir, extra...)
}

// plainBinary returns secretfs built without the race detector, whose
// shadow memory would hide what a test of the mount's memory measures.
// It is built once per run.
func plainBinary(t *testing.T) string {
	t.Helper()
	plainOnce.Do(func() {
		plain = filepath.Join(filepath.Dir(binary), "secretfs-plain")
		build := exec.Command("go", "build", "-o", plain, "../cmd/secretfs")
		if out, err := build.CombinedOutput(); err != nil {
			plainErr = fmt.Errorf("building secretfs without -race: %v\n%s", err, out)
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plain
}

var (
	plainOnce sync.Once
	plain     string
	plainErr  error
)

// mountBinaryAt is mountAt with the secretfs binary bin.
func mountBinaryAt(t *testing.T, bin string, b *backend, dir string, extra ...string) *mounted {
	t.Helper()
	m := &mounted{t: t, b: b, dir: dir, logPath: filepath.Join(t.TempDir(), "mount.log"), exited: make(chan struct{})}
	logFile, err := os.Create(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"mount", dir, "--log-format", "json", "--log-level", "debug"}, b.flags...)
	m.cmd = exec.Command(bin, append(args, extra...)...)
	m.cmd.Env = append(os.Environ(), b.env...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	// The mount dies with the test process, even if a timeout kills it.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.waitErr = m.cmd.Wait(); logFile.Close(); close(m.exited) }()
	t.Cleanup(m.cleanup)
	// Ready when this process says so: the mount table alone cannot tell
	// a new mount from a stale one left at the same path.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(m.log(), `"msg":"mounted"`) || !isMounted(dir) {
		select {
		case <-m.exited:
			t.Fatalf("secretfs mount exited before mounting: %v\n%s", m.waitErr, m.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("secretfs did not mount %s within 30s\n%s", dir, m.log())
		}
	}
	return m
}

// stop sends SIGTERM and waits for the process to unmount and exit.
func (m *mounted) stop() error {
	select {
	case <-m.exited:
		return m.waitErr
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return m.waitErr
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
		return errors.New("secretfs did not exit within 20s of SIGTERM; killed it")
	}
}

// kill simulates a crash: SIGKILL, leaving the mount behind.
func (m *mounted) kill() {
	_ = m.cmd.Process.Kill()
	<-m.exited
}

func (m *mounted) cleanup() {
	t := m.t
	err := m.stop()
	if isMounted(m.dir) {
		_ = syscall.Unmount(m.dir, syscall.MNT_DETACH)
		if !t.Failed() {
			t.Errorf("%s was still mounted after secretfs stopped", m.dir)
		}
	}
	if err != nil && !m.killed() && !t.Failed() {
		t.Errorf("secretfs mount did not exit cleanly: %v\n%s", err, m.log())
	}
	log := m.log()
	if strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("the race detector found a data race in the mount")
	}
	// No test holds a truncated file open without writing, but those
	// that say so, so no request should ever have waited out a closing
	// writer (a one-second stall).
	m.mu.Lock()
	holds := m.holdsCreations
	m.mu.Unlock()
	if strings.Contains(log, "stopped waiting for a writer") && !holds {
		t.Errorf("a request waited the full bound of the wait for a closing writer")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.secrets {
		// The value as written, and as the usual encodings would show it.
		for _, form := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), strconv.Quote(string(s))} {
			if strings.Contains(log, form) {
				t.Errorf("the mount's log contains a secret value")
			}
		}
	}
	if t.Failed() {
		t.Logf("mount log:\n%s", log)
	}
}

func (m *mounted) killed() bool {
	ws, ok := m.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// log returns what the mount has logged so far.
func (m *mounted) log() string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

// secret registers value as plaintext that must never reach the log or
// the store, and returns it.
func (m *mounted) secret(value string) string {
	m.mu.Lock()
	m.secrets = append(m.secrets, []byte(value))
	m.mu.Unlock()
	return value
}

// path is the absolute path of rel inside the mount.
func (m *mounted) path(rel string) string { return filepath.Join(m.dir, rel) }

// sh runs script with sh -c inside the mountpoint. It returns stdout,
// stderr and the error (an *exec.ExitError when the script failed).
func (m *mounted) sh(script string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = m.dir
	cmd.Env = append(os.Environ(), "MNT="+m.dir)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

// mustSh runs script and fails the test if it fails.
func (m *mounted) mustSh(script string) string {
	m.t.Helper()
	out, errOut, err := m.sh(script)
	if err != nil {
		m.t.Fatalf("sh -c %q: %v\nstderr: %s", script, err, errOut)
	}
	return out
}

// failSh runs script, which must fail with an error message containing
// want (the strerror text of the expected errno).
func (m *mounted) failSh(script, want string) {
	m.t.Helper()
	_, errOut, err := m.sh(script)
	if err == nil {
		m.t.Fatalf("sh -c %q succeeded; want failure %q", script, want)
	}
	if !strings.Contains(errOut, want) {
		m.t.Fatalf("sh -c %q failed with %q; want %q", script, errOut, want)
	}
}

// isMounted reports whether dir is a mountpoint, from /proc/self/mountinfo.
func isMounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && unescapeMountPath(fields[4]) == dir {
			return true
		}
	}
	return false
}

func unescapeMountPath(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// eventually polls cond until it holds or the deadline passes. It is for
// convergence (a cache TTL running out), never for measuring speed.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
