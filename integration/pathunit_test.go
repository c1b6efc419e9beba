package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A systemd .path unit with PathChanged= on a secret of a --read-only
// mount served by secretfs@.service under a real systemd (nspawn)
// starts its service when the secret is rotated with `secretfs put`,
// and the service reads the new value, never the old one. systemd
// watches both the file (the revision it found, which the mount signals
// through its inode) and its directory (which hears of the name): one
// rotation is one event in each, so the service runs once, or twice when
// the first run ended before the second event came, never more. An
// inotify watcher of a view of that secret hears IN_MODIFY too.
//
// The same holds with the owner and modes of the unit's environment
// example (uid 1000, files 0400, directories 0500): the mount's change
// signal opens each changed file for writing, which the kernel allows
// root only with CAP_DAC_OVERRIDE (default_permissions), views having
// no write bits at all. (With CAP_SYS_ADMIN alone in the unit's
// bounding set, every signal was refused, and logged at debug level.)
func TestASystemdPathUnitWithPathChangedHearsAPut(t *testing.T) {
	for _, tc := range []struct{ name, env string }{
		{"root's files", ""},
		{"the environment example's owner and modes", "SECRETFS_ALLOW_OTHER=true\nSECRETFS_UID=1000\nSECRETFS_GID=1000\nSECRETFS_FILE_MODE=0400\nSECRETFS_DIR_MODE=0500\n"},
	} {
		t.Run(tc.name, func(t *testing.T) { pathUnitHearsAPut(t, tc.env) })
	}
}

// pathUnitViewConfig watches every application and shows billing/pw-copy,
// a view of billing/db-password.
const pathUnitViewConfig = watchAll + "views:\n  - path: billing/pw-copy\n    template: '{{ secret \"billing/db-password\" }}'\n"

func pathUnitHearsAPut(t *testing.T, extraEnv string) {
	unit := readUnit(t)
	data := filepath.Join(t.TempDir(), "data")
	b := &backend{name: "local", flags: []string{"--data-dir", data}}
	old := unique("old")
	b.cli(t, nil, "init")
	b.cli(t, []byte(old), "put", "billing/db-password")
	const ttl = 2 * time.Second
	env := fmt.Sprintf("SECRETFS_BACKEND=local\nSECRETFS_READ_ONLY=true\nSECRETFS_TTL=%s\nSECRETFS_CONFIG=/etc/secretfs/run-secrets.yaml\nSECRETFS_LOG_LEVEL=info\n%s", ttl, extraEnv)
	m := bootMachine(t, binary, unit, env, data)
	mustWrite(t, filepath.Join(m.work, "etc-secretfs", "run-secrets.yaml"), pathUnitViewConfig, 0o600)
	const S = "secretfs@run-secrets.service"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of %s:\n%s", S, m.journal(S))
			t.Logf("journal of rotated.service:\n%s", m.journal("rotated.service"))
		}
	})
	m.must("systemctl", "start", S)
	if got := m.must("cat", "/run/secrets/billing/db-password"); got != old {
		t.Fatalf("cat in the container: %q", got)
	}
	writeIn := func(path, content string) {
		t.Helper()
		mustWrite(t, fmt.Sprintf("/proc/%d/root%s", m.init, path), content, 0o644)
	}
	writeIn("/etc/systemd/system/rotated.path", "[Path]\nPathChanged=/run/secrets/billing/db-password\nUnit=rotated.service\n")
	writeIn("/etc/systemd/system/rotated.service", "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'cat /run/secrets/billing/db-password >> /run/rotated.log; echo >> /run/rotated.log'\n")
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", "rotated.path")

	if got := m.must("cat", "/run/secrets/billing/pw-copy"); got != old {
		t.Fatalf("cat of the view in the container: %q", got)
	}
	viewWatcher := m.inotifywait(t, "modify", "/run/secrets/billing/pw-copy")

	fresh := unique("fresh")
	b.cli(t, []byte(fresh), "put", "billing/db-password")
	if heard := viewWatcher(); !strings.Contains(heard, "MODIFY") {
		t.Errorf("inotifywait -e modify on the view heard %q, want MODIFY", heard)
	}
	// The mount learns of the put within the TTL and signals it at once;
	// systemd then starts the service, which takes a moment of its own.
	eventually(t, ttl+5*time.Second, "rotated.service runs and reads the new value", func() bool {
		out, _ := m.run("cat", "/run/rotated.log")
		return strings.Contains(out, fresh)
	})
	// Whatever else would come. (must trims the last newline.)
	time.Sleep(2 * ttl)
	runs := strings.Split(m.must("cat", "/run/rotated.log"), "\n")
	for _, r := range runs {
		if r != fresh {
			t.Errorf("a run of rotated.service read %q; want the new value (runs: %q)", r, runs)
		}
	}
	if len(runs) > 2 {
		t.Errorf("one rotation ran rotated.service %d times, want once per watch systemd holds (the file, its directory): %q", len(runs), runs)
	}
	t.Logf("one rotation ran rotated.service %d times", len(runs))
	if n := m.show("rotated.service", "NRestarts"); n != "0" {
		t.Errorf("rotated.service restarted %s times", n)
	}
	if s := m.show(S, "ActiveState"); s != "active" {
		t.Errorf("%s is %s", S, s)
	}
}
