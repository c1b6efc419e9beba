package integration

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The systemd unit and its sample environment file, in systemd/.
const (
	unitFile      = "../systemd/secretfs@.service"
	envExample    = "../systemd/secretfs.env.example"
	installedPath = "/usr/local/bin/secretfs"
)

// systemdAnalyzeVerify runs `systemd-analyze verify` on the instance
// secretfs@run-secrets.service of unit, a copy of the unit file in which
// the installed binary is the one built for this run: verify checks that
// ExecStart names an executable. It needs no running systemd. It returns
// what verify printed; verify exits 0 on warnings such as an unknown key,
// so the output is the verdict.
func systemdAnalyzeVerify(t *testing.T, unit []byte) (string, error) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (%v): install Debian's systemd package (apt-get install systemd)", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secretfs@.service"), bytes.ReplaceAll(unit, []byte(installedPath), []byte(binary)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "secretfs@run-secrets.service")).CombinedOutput()
	return string(out), err
}

func readUnit(t *testing.T) []byte {
	t.Helper()
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("\nExecStart="+installedPath+" mount %f\n")) {
		t.Fatalf("%s does not start %s mount %%f", unitFile, installedPath)
	}
	return unit
}

func TestSystemdUnitPassesSystemdAnalyzeVerify(t *testing.T) {
	unit := readUnit(t)
	if out, err := systemdAnalyzeVerify(t, unit); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check can fail: a key systemd does not know is reported.
	broken := bytes.Replace(unit, []byte("\n[Service]\n"), []byte("\n[Service]\nProtectEverything=yes\n"), 1)
	if out, _ := systemdAnalyzeVerify(t, broken); !strings.Contains(out, "Unknown key 'ProtectEverything'") {
		t.Errorf("systemd-analyze verify passed a unit with an unknown key:\n%s", out)
	}
}

// Each of these options makes systemd run the service in a mount
// namespace of its own whose mounts never reach the host: the mount would
// be invisible to every other program (see the unit's comments).
var namespacingOptions = regexp.MustCompile(`^(ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|PrivateMounts|PrivateNetwork|PrivateIPC|ReadWritePaths|ReadOnlyPaths|InaccessiblePaths|ExecPaths|NoExecPaths|BindPaths|BindReadOnlyPaths|TemporaryFileSystem|ProtectKernelTunables|ProtectKernelModules|ProtectKernelLogs|ProtectControlGroups|ProtectProc|ProcSubset|MountFlags|RootDirectory|RootImage|DynamicUser|LogNamespace)=`)

func TestSystemdUnitLeavesTheMountVisibleToTheHost(t *testing.T) {
	s := bufio.NewScanner(bytes.NewReader(readUnit(t)))
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); namespacingOptions.MatchString(line) {
			t.Errorf("%s sets %q: the service would get a mount namespace of its own, and its mount would be seen by no one else", unitFile, line)
		}
	}
}

// Every SECRETFS_ variable the sample environment file names, set or
// commented out, is a flag of `secretfs mount`; the ones it sets mount a
// store as the comments say: read-only, owned by 1000:1000, 0400 and 0500.
func TestSystemdEnvironmentExampleNamesRealFlagsAndMountsAsItSays(t *testing.T) {
	example, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	help, err := exec.Command(binary, "mount", "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	variable := regexp.MustCompile(`(?m)^(#?)(SECRETFS_[A-Z_]+)=(.*)$`)
	var set []string
	for _, m := range variable.FindAllStringSubmatch(string(example), -1) {
		flag := "--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(m[2], "SECRETFS_")), "_", "-")
		if !regexp.MustCompile(`\s` + regexp.QuoteMeta(flag) + `\s`).Match(help) {
			t.Errorf("%s names %s, but secretfs mount has no %s", envExample, m[2], flag)
		}
		if m[1] == "" {
			set = append(set, m[2]+"="+m[3])
		}
	}
	if len(set) == 0 {
		t.Fatalf("%s sets no variable", envExample)
	}

	b := localBackend(t)
	b.env = append(b.env, set...) // --data-dir, a flag, wins over SECRETFS_DATA_DIR
	value := unique("env")
	b.cli(t, nil, "init")
	b.cli(t, []byte(value), "put", "app/s")
	m := mount(t, b)
	m.secret(value)
	if got := m.mustSh("stat -c '%a %u %g' app/s app"); got != "400 1000 1000\n500 1000 1000\n" {
		t.Errorf("stat app/s app: %q, want 400 and 500, owned by 1000:1000", got)
	}
	if got := m.mustSh("cat app/s"); got != value {
		t.Errorf("cat app/s: %q", got)
	}
	m.failSh("echo new > app/s", "Read-only file system")
}

// The unit as shipped starts with the environment file as shipped (the
// README's install steps: the example copied unchanged, `secretfs init`
// run once), under a real systemd: active/running, and uid 1000 reads a
// secret it owns. (The unit's root, bounded to CAP_SYS_ADMIN, was kept out
// of its own mount by --uid 1000 --dir-mode 0500: "mount /run/secrets:
// permission denied", restarted every 2 s for ever.) A misspelled
// variable is warned of in the journal.
func TestSystemdUnitStartsWithTheShippedEnvironmentExample(t *testing.T) {
	example, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	b := &backend{name: "local", flags: []string{"--data-dir", data}}
	value := unique("shipped")
	b.cli(t, nil, "init")
	b.cli(t, []byte(value), "put", "billing/db-password")
	m := bootMachine(t, binary, readUnit(t), string(example)+"SECRETFS_APP=billing\n", data)
	const S = "secretfs@run-secrets.service"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of %s:\n%s", S, m.journal(S))
		}
	})
	if out, err := m.run("systemctl", "start", S); err != nil {
		t.Fatalf("systemctl start with the shipped environment file: %v\n%s", err, out)
	}
	if s := m.show(S, "ActiveState") + "/" + m.show(S, "SubState"); s != "active/running" {
		t.Fatalf("after start: %s", s)
	}
	if got := m.must("setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "cat", "/run/secrets/billing/db-password"); got != value {
		t.Errorf("uid 1000 reads %q", got)
	}
	if j := m.journal(S); !strings.Contains(j, "variable=SECRETFS_APP") || !strings.Contains(j, "names no flag of secretfs mount") {
		t.Errorf("the journal does not warn of the misspelled SECRETFS_APP")
	}
	if j := m.journal(S); strings.Contains(j, "first listing failed") {
		t.Errorf("the mount's own check could not list it")
	}
	m.must("systemctl", "stop", S)
}
