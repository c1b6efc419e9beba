package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Owners and modes per path, from the mount's configuration file: one
// --allow-other mount serves each application to its own user, and the
// kernel enforces it (default_permissions).

// twoUsersConfig gives billing to uid 1001 and auth to uid 1002, each
// directory 0500 and each secret 0400, but billing/tls.key, readable by
// the group too: its rule names that one path, and wins although it comes
// after billing/* (the order of issue 13's example).
const twoUsersConfig = `owners:
  - match: billing
    uid: 1001
    gid: 1001
    mode: "0500"
  - match: billing/*
    uid: 1001
    gid: 1001
    mode: "0400"
  - match: billing/tls.key
    uid: 0
    gid: 1001
    mode: "0440"
  - match: auth
    uid: 1002
    gid: 1002
    mode: "0500"
  - match: auth/*
    uid: 1002
    gid: 1002
    mode: "0400"
`

// writeConfig writes a configuration file where every user can read it.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secretfs.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// as runs script with sh -c as uid:gid (setpriv, no supplementary
// groups) and returns its output and error.
func as(uid string, script string) (string, error) {
	cmd := exec.Command("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestOneMountServesTwoApplicationsToTwoUsers(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	billing, auth := unique("billing"), unique("auth")
	b.cli(t, []byte(billing), "put", "billing/db-password")
	b.cli(t, []byte("key"), "put", "billing/tls.key")
	b.cli(t, []byte(auth), "put", "auth/password")
	dir := traversableDir(t)
	m := mountAt(t, b, dir, "--allow-other", "--dir-mode", "0755", "--config", writeConfig(t, twoUsersConfig))
	m.secret(billing)
	m.secret(auth)

	// ls -l shows them.
	if got := m.mustSh("stat -c '%n %a %u %g' . billing billing/db-password billing/tls.key auth auth/password"); got != "."+
		" 755 0 0\nbilling 500 1001 1001\nbilling/db-password 400 1001 1001\nbilling/tls.key 440 0 1001\nauth 500 1002 1002\nauth/password 400 1002 1002\n" {
		t.Errorf("stat shows\n%s", got)
	}
	t.Logf("ls -l:\n%s", m.mustSh("ls -l . billing auth"))

	// Each reads its own, and is refused the other's.
	p := func(rel string) string { return m.path(rel) }
	for _, c := range []struct {
		uid, script, want string
		ok                bool
	}{
		{"1001", "cat " + p("billing/db-password"), billing, true},
		{"1001", "cat " + p("billing/tls.key"), "key", true},
		{"1001", "ls " + p("billing"), "db-password\ntls.key\n", true},
		{"1001", "cat " + p("auth/password"), "Permission denied", false},
		{"1001", "ls " + p("auth"), "Permission denied", false},
		{"1002", "cat " + p("auth/password"), auth, true},
		{"1002", "cat " + p("billing/db-password"), "Permission denied", false},
		{"1002", "ls " + p("billing"), "Permission denied", false},
		{"1003", "cat " + p("billing/tls.key"), "Permission denied", false},
	} {
		out, err := as(c.uid, c.script)
		if (err == nil) != c.ok || !strings.Contains(out, c.want) {
			t.Errorf("as %s, %s: %q, %v; want success %v and %q", c.uid, c.script, out, err, c.ok, c.want)
		}
	}

	// chmod and chown stay EPERM, but to what they are.
	m.failSh("chmod 644 billing/db-password", "Operation not permitted")
	m.failSh("chown 1002 billing/db-password", "Operation not permitted")
	m.mustSh("chmod 400 billing/db-password && chown 1001:1001 billing/db-password")

	// A secret created through the mount takes its path's owner and mode.
	m.mustSh("echo new > billing/created && echo other > auth/created")
	if got := m.mustSh("stat -c '%a %u %g' billing/created auth/created"); got != "400 1001 1001\n400 1002 1002\n" {
		t.Errorf("created secrets show %q", got)
	}
	if out, err := as("1001", "cat "+p("billing/created")); err != nil || out != "new\n" {
		t.Errorf("uid 1001 reads its created secret: %q, %v", out, err)
	}
}

// Paths no rule matches keep the flags' owners and modes; the flags work
// alone, and an empty configuration file is the flags alone.
func TestPathsNoRuleMatchesKeepTheFlags(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("v"), "put", "other/s")
	b.cli(t, []byte("v"), "put", "billing/s")
	m := mount(t, b, "--uid", "7", "--gid", "8", "--file-mode", "0640", "--dir-mode", "0750", "--config", writeConfig(t, twoUsersConfig))
	if got := m.mustSh("stat -c '%n %a %u %g' other other/s billing/s"); got != "other 750 7 8\nother/s 640 7 8\nbilling/s 400 1001 1001\n" {
		t.Errorf("stat shows\n%s", got)
	}
	empty := mount(t, b, "--uid", "7", "--gid", "8", "--config", writeConfig(t, "# nothing\n"))
	if got := empty.mustSh("stat -c '%n %a %u %g' billing billing/s"); got != "billing 700 7 8\nbilling/s 600 7 8\n" {
		t.Errorf("with an empty configuration file stat shows\n%s", got)
	}
}

// A secret moved (by root) to a path another owner rule matches shows, and is
// checked with, the owner and mode of its new path at once: the inode
// the kernel moved answers for the new name. (It kept the old path's
// owner and mode for seconds, for as long as the kernel kept the moved
// entry: the owner of the new path got EACCES, and a user the old rule
// let in could read it at its new path.)
func TestASecretMovedToAnotherOwnersPathTakesItsOwnerAtOnce(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("seed"), "put", "pub/seed")
	b.cli(t, []byte("seed"), "put", "priv/seed")
	b.cli(t, []byte("stored"), "put", "pub/stored")
	dir := traversableDir(t)
	m := mountAt(t, b, dir, "--allow-other", "--dir-mode", "0755", "--config", writeConfig(t, `owners:
  - match: pub/*
    mode: "0444"
  - match: priv/*
    uid: 1002
    gid: 1002
    mode: "0400"
`))
	m.mustSh("cat pub/stored >/dev/null && echo created > pub/created && cat pub/created >/dev/null")
	for _, name := range []string{"stored", "created"} {
		m.mustSh("stat pub/" + name + " >/dev/null && mv pub/" + name + " priv/" + name)
		if got := m.mustSh("stat -c '%a %u %g' priv/" + name); got != "400 1002 1002\n" {
			t.Errorf("priv/%s, moved from pub/, shows %q, want its path's 400 1002 1002", name, got)
		}
		if out, err := as("1002", "cat "+m.path("priv/"+name)); err != nil || !strings.Contains(out, name) {
			t.Errorf("uid 1002 reads priv/%s: %q, %v", name, out, err)
		}
		if out, err := as("1001", "cat "+m.path("priv/"+name)); err == nil {
			t.Errorf("uid 1001 reads priv/%s, which is 1002's 0400: %q", name, out)
		}
	}
}

// A user who may write an application's directory may not give a secret
// another owner by choosing its path, since the path decides who owns
// it: moving root's 0400 tls.key to a name of their own (which they
// could then read), or making a file at a name shown as root's (a value
// of theirs that programs would take for root's). Both are "Operation
// not permitted", and change nothing stored; moving and making their
// own secrets works as before, and so do making and editing by rename a
// file their group (primary or supplementary) may write. (Both attacks were allowed: `mv tls.key
// mine && cat mine` printed root's key.)
func TestAUserCannotGiveASecretAnotherOwnerByItsPath(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	b.cli(t, nil, "init")
	key := unique("root-only")
	b.cli(t, []byte(key), "put", "billing/tls.key")
	b.cli(t, []byte("token"), "put", "billing/api-token")
	dir := traversableDir(t)
	m := mountAt(t, b, dir, "--allow-other", "--dir-mode", "0755", "--config", writeConfig(t, `owners:
  - match: billing
    uid: 1001
    gid: 1001
    mode: "0700"
  - match: billing/tls.key
    uid: 0
    gid: 0
    mode: "0400"
  - match: billing/admin-*
    uid: 0
    gid: 0
    mode: "0444"
  - match: billing/team
    uid: 0
    gid: 1001
    mode: "0660"
  - match: billing/crew
    uid: 0
    gid: 4242
    mode: "0660"
  - match: billing/*
    uid: 1001
    gid: 1001
    mode: "0400"
`))
	m.secret(key)
	in := "cd " + m.path("billing") + " && "
	for _, c := range []struct{ what, script string }{
		{"moving root's tls.key to a name of 1001's", "mv tls.key mine"},
		{"moving 1001's api-token to a name shown as root's", "mv api-token admin-token"},
		{"making a file at a name shown as root's", "printf forged > admin-new"},
	} {
		if out, err := as("1001", in+c.script); err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("uid 1001, %s (%s): %q, %v; want Operation not permitted", c.what, c.script, out, err)
		}
	}
	if got := m.mustSh("ls billing"); got != "api-token\ntls.key\n" {
		t.Errorf("after the refusals billing lists %q", got)
	}
	if got := b.cli(t, nil, "get", "billing/tls.key"); got != key {
		t.Errorf("billing/tls.key holds %q after the refusals, want root's value", got)
	}
	if out, err := as("1001", in+"mv api-token mine && printf own > made && cat mine made"); err != nil || out != "tokenown" {
		t.Errorf("uid 1001 moves and makes its own secrets: %q, %v", out, err)
	}
	// What the group may write, it may make, and move a file it may read
	// over (an editor's temporary file renamed over the file it edits).
	if out, err := as("1001", in+"printf first > team && printf edited > team.tmp && mv team.tmp team && cat team"); err != nil || out != "edited" {
		t.Errorf("uid 1001 makes and edits billing/team (root:1001 0660): %q, %v", out, err)
	}
	if got := m.mustSh("stat -c '%a %u %g' billing/team"); got != "660 0 1001\n" {
		t.Errorf("billing/team shows %q, want its rule's 660 0 1001", got)
	}
	// So may a member of the group by a supplementary group, which the
	// request does not carry (the mount reads it from /proc).
	crew := exec.Command("setpriv", "--reuid=1001", "--regid=1001", "--groups=4242", "sh", "-c",
		in+"printf first > crew && printf edited > crew.tmp && mv crew.tmp crew && cat crew")
	if out, err := crew.CombinedOutput(); err != nil || string(out) != "edited" {
		t.Errorf("uid 1001, in group 4242, makes and edits billing/crew (root:4242 0660): %q, %v", out, err)
	}
	if out, err := as("1001", in+"printf x > crew"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("uid 1001 in no group 4242 writes billing/crew: %q, %v; want Permission denied", out, err)
	}
	m.mustSh("mv billing/tls.key billing/admin-key") // root may
	if got := m.mustSh("stat -c '%a %u' billing/admin-key"); got != "444 0\n" {
		t.Errorf("moved by root, billing/admin-key shows %q", got)
	}
}
