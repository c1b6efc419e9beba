package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/audit"
	"github.com/secretfs/secretfs/crypto"
)

// withReadableStore makes a store whose file others can read, which
// every verb tightens to 0600 with a warning.
func withReadableStore(t *testing.T) (dataDir []string, dbPath string) {
	t.Helper()
	dataDir = newStore(t)
	dbPath = filepath.Join(dataDir[1], storeFile)
	if err := os.Chmod(dbPath, 0o644); err != nil {
		t.Fatal(err)
	}
	return dataDir, dbPath
}

func TestWarningIsOneJSONObjectPerLineWithLogFormatJSON(t *testing.T) {
	dataDir, dbPath := withReadableStore(t)
	_, stderr, err := run(t, nil, append([]string{"ls", "--log-format", "json"}, dataDir...)...)
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, line := range nonEmptyLines(stderr) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", line, err)
		}
		if entry["level"] == "warning" && strings.Contains(entry["msg"].(string), "tightened") && strings.Contains(fmt.Sprint(entry["files"]), dbPath+" (was 0644)") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no JSON warning about the store's mode in stderr:\n%s", stderr)
	}
}

// logfmtPair is one key=value of logrus's text format; a value with spaces
// or quotes is a Go-quoted string.
var logfmtPair = regexp.MustCompile(`^([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)`)

// parseLogfmt parses a line of logrus's text format, or fails.
func parseLogfmt(t *testing.T, line string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for rest := line; rest != ""; {
		m := logfmtPair.FindStringSubmatch(rest)
		if m == nil {
			t.Fatalf("stderr line %q is not key=value pairs (at %q)", line, rest)
		}
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			var err error
			if v, err = strconv.Unquote(v); err != nil {
				t.Fatalf("stderr line %q: %v", line, err)
			}
		}
		fields[m[1]] = v
		rest = rest[len(m[0]):]
	}
	return fields
}

func TestWarningIsOneKeyValueLineWithLogFormatText(t *testing.T) {
	dataDir, dbPath := withReadableStore(t)
	_, stderr, err := run(t, nil, append([]string{"ls", "--log-format", "text"}, dataDir...)...)
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, line := range nonEmptyLines(stderr) {
		f := parseLogfmt(t, line)
		if _, err := time.Parse(time.RFC3339, f["time"]); err != nil {
			t.Errorf("stderr line %q: time: %v", line, err)
		}
		if f["level"] == "warning" && strings.Contains(f["msg"], "tightened") && strings.Contains(f["files"], dbPath+" (was 0644)") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no text warning about the store's mode in stderr:\n%s", stderr)
	}
}

func TestUnknownLogFormatIsRefused(t *testing.T) {
	dataDir := newStore(t)
	if _, _, err := run(t, nil, append([]string{"ls", "--log-format", "xml"}, dataDir...)...); err == nil || err.Error() != `--log-format "xml": want text or json` {
		t.Errorf("--log-format xml: error %v", err)
	}
	t.Setenv("SECRETFS_LOG_FORMAT", "yaml")
	if _, _, err := run(t, nil, append([]string{"ls"}, dataDir...)...); err == nil || err.Error() != `--log-format "yaml": want text or json` {
		t.Errorf("SECRETFS_LOG_FORMAT=yaml: error %v", err)
	}
}

// What mount says on first use shares stderr with its log: with json it
// must be JSON too. (mount itself needs FUSE; this opens the backend as
// mount does.)
func TestFirstUseNoticesOfMountAreJSONWithLogFormatJSON(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	var stderr bytes.Buffer
	c := &config{backend: "local", dataDir: dataDir, writeFormat: crypto.FormatV2, timeout: 5 * time.Second, logFormat: "json", log: logrus.New()}
	c.log.SetOutput(&stderr)
	c.log.SetFormatter(&logrus.JSONFormatter{})
	b, err := c.open(context.Background(), opening{firstUse: true, notices: c.notices(&stderr)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var msgs []string
	for _, line := range nonEmptyLines(stderr.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", line, err)
		}
		msgs = append(msgs, entry["msg"].(string))
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"created the data directory " + dataDir, filepath.Join(dataDir, privateKey) + "  private", filepath.Join(dataDir, publicKey) + "  public"} {
		if !strings.Contains(all, want) {
			t.Errorf("the JSON notices do not say %q:\n%s", want, stderr.String())
		}
	}
}

func TestFirstUseNoticesOfMountArePlainTextWithLogFormatText(t *testing.T) {
	var stderr bytes.Buffer
	c := &config{logFormat: "text", log: logrus.New()}
	c.notices(&stderr).Write([]byte("generated an RSA key pair:\n"))
	if stderr.String() != "generated an RSA key pair:\n" {
		t.Errorf("text notice became %q", stderr.String())
	}
}

func nonEmptyLines(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// Where a daemon with neither --log-file nor syslog logs: as root in
// /var/log/secretfs; else where the XDG base directory specification keeps
// state such as logs; last, the data directory.
func TestADaemonLogsInVarLogSecretfsWhenRootElseInTheStateDirectoryThenTheDataDir(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(name string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == name {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name    string
		root    bool
		getenv  func(string) string
		dataDir string
		want    []string
	}{
		{"root", true, env("HOME", "/root"), "/var/lib/secretfs", []string{"/var/log/secretfs", "/root/.local/state/secretfs", "/var/lib/secretfs"}},
		{"root with no environment (mount(8))", true, env(), "/var/lib/secretfs", []string{"/var/log/secretfs", "/var/lib/secretfs"}},
		{"a user", false, env("HOME", "/home/u"), "/home/u/.local/share/secretfs", []string{"/home/u/.local/state/secretfs", "/home/u/.local/share/secretfs"}},
		{"a user with XDG_STATE_HOME", false, env("HOME", "/home/u", "XDG_STATE_HOME", "/st"), "/d", []string{"/st/secretfs", "/d"}},
		{"a relative XDG_STATE_HOME is ignored", false, env("HOME", "/home/u", "XDG_STATE_HOME", "st"), "/d", []string{"/home/u/.local/state/secretfs", "/d"}},
		{"the data dir named once", false, env("XDG_STATE_HOME", "/st"), "/st/secretfs", []string{"/st/secretfs"}},
	} {
		if got := daemonLogDirs(tc.root, tc.getenv, tc.dataDir); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The file is named after the mountpoint as systemd names the instance of
// secretfs@.service that mounts it: / becomes -, and what would be
// ambiguous is escaped, so that two mountpoints never share a log.
func TestADaemonLogIsNamedAfterTheMountpointAsSystemdEscapesIt(t *testing.T) {
	for mountpoint, want := range map[string]string{
		"/run/secrets":    "run-secrets.log",
		"/run/secrets/":   "run-secrets.log",
		"/srv/a-b/c":      `srv-a\x2db-c.log`,
		"/srv/a/b-c":      `srv-a-b\x2dc.log`,
		"/mnt/with space": `mnt-with\x20space.log`,
	} {
		if got := daemonLogName(mountpoint); got != want {
			t.Errorf("daemonLogName(%q) = %q, want %q", mountpoint, got, want)
		}
	}
	wd, _ := os.Getwd()
	if got, want := daemonLogName("mnt"), daemonLogName(filepath.Join(wd, "mnt")); got != want {
		t.Errorf("a relative mountpoint's log is %q, want that of its absolute path, %q", got, want)
	}
}

// A directory that cannot be made (here, below a file; on a host, a
// read-only /var/log) passes to the next; the one made is 0700 and the log
// 0600. When none can be made the error says why for each.
func TestADaemonLogGoesToTheFirstDirectoryThatCanBeMade(t *testing.T) {
	tmp := t.TempDir()
	notADir := filepath.Join(tmp, "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	blocked, second := filepath.Join(notADir, "secretfs"), filepath.Join(tmp, "state", "secretfs")
	f, err := openDaemonLog([]string{blocked, second}, "run-secrets.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if want := filepath.Join(second, "run-secrets.log"); f.path != want {
		t.Errorf("the log is %s, want %s", f.path, want)
	}
	if info, err := os.Stat(second); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("the log's directory: %v, %v; want mode 0700", info, err)
	}
	if info, err := os.Stat(f.path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the log: %v, %v; want mode 0600", info, err)
	}

	_, err = openDaemonLog([]string{blocked, filepath.Join(notADir, "other")}, "x.log")
	if err == nil || !strings.Contains(err.Error(), blocked) || !strings.Contains(err.Error(), filepath.Join(notADir, "other")) {
		t.Errorf("no directory can be made: error %v, want one naming both", err)
	}
}

// logrotate's convention: rename the log away, then SIGHUP. Lines before
// the signal stay in the renamed file; after it they go to a new file at
// the path, the audit log's too. SIGHUP with no log file is logged at info
// and ignored; a file that cannot be reopened is logged at error and the
// old one kept.
func TestSIGHUPReopensTheLogFileAndTheAuditLogAtTheirPaths(t *testing.T) {
	dir := t.TempDir()
	logPath, auditPath := filepath.Join(dir, "mount.log"), filepath.Join(dir, "audit.log")
	lf, err := openLogFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	al, err := audit.Open(auditPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	log := logrus.New()
	log.SetOutput(lf)
	log.SetFormatter(&logrus.JSONFormatter{})

	hup := make(chan os.Signal, 1)
	stop := reopenOnHUP(hup, log, logFiles(lf, al, auditPath))
	defer stop()
	log.Info("before")
	al.Record(audit.Entry{Op: "open", Secret: "before"})
	for _, p := range []string{logPath, auditPath} {
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
	}
	hup <- syscall.SIGHUP
	waitFor(t, "a new log file with the reopened line", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "reopened the log files")
	})
	log.Info("after")
	al.Record(audit.Entry{Op: "open", Secret: "after"})

	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	if old := read(logPath + ".1"); !strings.Contains(old, `"msg":"before"`) || !strings.Contains(old, "SIGHUP: reopening") || strings.Contains(old, `"msg":"after"`) {
		t.Errorf("the renamed log:\n%s", old)
	}
	if cur := read(logPath); !strings.Contains(cur, `"msg":"after"`) || strings.Contains(cur, `"msg":"before"`) {
		t.Errorf("the new log:\n%s", cur)
	}
	if old, cur := read(auditPath+".1"), read(auditPath); !strings.Contains(old, `"before"`) || strings.Contains(old, `"after"`) || !strings.Contains(cur, `"after"`) {
		t.Errorf("the renamed audit log:\n%s\nthe new one:\n%s", old, cur)
	}

	// The log's directory gone: the old file is kept, and an error said.
	if err := os.Rename(dir, dir+".moved"); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(dir+".moved", dir)
	hup <- syscall.SIGHUP
	waitFor(t, "an error saying the log file could not be reopened", func() bool {
		return strings.Contains(read(filepath.Join(dir+".moved", "mount.log")), `could not reopen the log file `+logPath)
	})
}

func TestSIGHUPWithoutALogFileIsLoggedAndIgnored(t *testing.T) {
	var out syncBuffer
	log := logrus.New()
	log.SetOutput(&out)
	hup := make(chan os.Signal, 1)
	stop := reopenOnHUP(hup, log, logFiles(nil, nil, ""))
	hup <- syscall.SIGHUP
	waitFor(t, "the SIGHUP logged", func() bool { return strings.Contains(out.String(), "no log file to reopen; ignored") })
	stop()
	if !strings.Contains(out.String(), "level=info") {
		t.Errorf("the SIGHUP is not logged at info: %s", out.String())
	}
	// Standard error is no file to reopen, for the audit log either.
	if files := logFiles(nil, mustOpenAudit(t, "-"), "-"); len(files) != 0 {
		t.Errorf("an audit log on standard error is reopened: %v", files)
	}
}

func mustOpenAudit(t *testing.T, path string) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// syncBuffer is a bytes.Buffer safe for a logger's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond, for what a goroutine does in its own time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
