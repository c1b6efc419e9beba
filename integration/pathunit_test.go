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
// and the service reads the new value. One rotation starts it once.
func TestASystemdPathUnitWithPathChangedHearsAPut(t *testing.T) {
	unit := readUnit(t)
	data := filepath.Join(t.TempDir(), "data")
	b := &backend{name: "local", flags: []string{"--data-dir", data}}
	old := unique("old")
	b.cli(t, nil, "init")
	b.cli(t, []byte(old), "put", "billing/db-password")
	const ttl = 2 * time.Second
	env := fmt.Sprintf("SECRETFS_BACKEND=local\nSECRETFS_READ_ONLY=true\nSECRETFS_TTL=%s\nSECRETFS_CONFIG=/etc/secretfs/run-secrets.yaml\nSECRETFS_LOG_LEVEL=info\n", ttl)
	m := bootMachine(t, binary, unit, env, data)
	mustWrite(t, filepath.Join(m.work, "etc-secretfs", "run-secrets.yaml"), watchAll, 0o600)
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

	fresh := unique("fresh")
	b.cli(t, []byte(fresh), "put", "billing/db-password")
	// The mount learns of the put within the TTL and signals it at once;
	// systemd then starts the service, which takes a moment of its own.
	eventually(t, ttl+5*time.Second, "rotated.service runs and reads the new value", func() bool {
		out, _ := m.run("cat", "/run/rotated.log")
		return strings.Contains(out, fresh)
	})
	// Whatever else would come. (must trims the last newline.)
	time.Sleep(2 * ttl)
	if out := m.must("cat", "/run/rotated.log"); out != fresh {
		t.Errorf("rotated.service wrote %q; want the new value, once", out)
	}
	if n := m.show("rotated.service", "NRestarts"); n != "0" {
		t.Errorf("rotated.service restarted %s times", n)
	}
	if s := m.show(S, "ActiveState"); s != "active" {
		t.Errorf("%s is %s", S, s)
	}
}
