package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// With --apps on a read-write mount, an application the list leaves out
// cannot be reached by making it: mkdir of one the store holds, or of a
// new one, is EPERM, as are a file of that name at the root and renaming
// an application onto it; nothing of it is ever listed or read, and the
// store is left as it was.
func TestAppsRefusesEveryChangeAtTheRootOfAnApplicationItLeavesOut(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("billing's"), "put", "billing/secret")
	auth := unique("auth")
	b.cli(t, []byte(auth), "put", "auth/secret")
	m := mount(t, b, "--apps", "billing")
	m.secret(auth)

	// In the order of the trial that found mkdir let auth in.
	for _, c := range []struct{ script, want string }{
		{"cat auth/secret", "No such file"},
		{"mkdir auth", "Operation not permitted"},
		{"ls -l auth", "No such file"},
		{"cat auth/secret", "No such file"},
		{"mkdir newapp", "Operation not permitted"},
		{"printf x > newapp/s", "nonexistent"},
		{"touch auth", "Operation not permitted"},
		{"mv billing auth", "Operation not permitted"},
		{"mv billing/secret auth/secret", "No such file"},
		{"mkdir billing", "File exists"},
	} {
		m.failSh(c.script, c.want)
	}
	if got := m.mustSh("ls -a; cat billing/secret"); got != ".\n..\nbilling\nbilling's" {
		t.Errorf("the mount shows %q", got)
	}
	if got := b.cli(t, nil, "get", "auth/secret"); got != auth {
		t.Errorf("the store holds %q at auth/secret", got)
	}
	if got := b.cli(t, nil, "ls"); strings.Contains(got, "newapp") {
		t.Errorf("the store holds newapp: %q", got)
	}
	if log := m.log(); strings.Contains(log, "application created") {
		t.Errorf("the mount created an application:\n%s", log)
	}
}

// renameat2 through the kernel: RENAME_NOREPLACE is honoured;
// RENAME_EXCHANGE and RENAME_WHITEOUT are EOPNOTSUPP (this test runs as
// root, so the kernel lets RENAME_WHITEOUT reach the mount; without
// CAP_MKNOD it refuses it itself with EPERM); a flag renameat2 does not
// define is EINVAL. No refused rename changes a value.
func TestRenameat2RefusesWhiteoutAndExchangeAndHonoursNoReplace(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	m := mount(t, b)
	m.mustSh("mkdir app && printf one > app/ex1 && printf two > app/ex2")
	ex1, ex2, ex3 := m.path("app/ex1"), m.path("app/ex2"), m.path("app/ex3")
	whiteout := syscall.EOPNOTSUPP
	if os.Geteuid() != 0 {
		whiteout = syscall.EPERM
	}
	for _, c := range []struct {
		name  string
		flags uint
		to    string
		want  syscall.Errno
	}{
		{"RENAME_WHITEOUT", unix.RENAME_WHITEOUT, ex2, whiteout},
		{"RENAME_WHITEOUT to a new name", unix.RENAME_WHITEOUT, ex3, whiteout},
		{"RENAME_EXCHANGE", unix.RENAME_EXCHANGE, ex2, syscall.EOPNOTSUPP},
		{"an undefined flag", 1 << 5, ex2, syscall.EINVAL},
		{"RENAME_NOREPLACE onto ex2", unix.RENAME_NOREPLACE, ex2, syscall.EEXIST},
	} {
		if err := unix.Renameat2(unix.AT_FDCWD, ex1, unix.AT_FDCWD, c.to, c.flags); err != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if got := m.mustSh("cat app/ex1; echo; cat app/ex2; echo; ls app"); got != "one\ntwo\nex1\nex2\n" {
		t.Errorf("after the refused renames: %q", got)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, ex1, unix.AT_FDCWD, ex3, unix.RENAME_NOREPLACE); err != nil {
		t.Errorf("RENAME_NOREPLACE to a new name: %v", err)
	}
	if got := b.cli(t, nil, "get", "app/ex3") + b.cli(t, nil, "get", "app/ex2"); got != "onetwo" {
		t.Errorf("the store holds %q at ex3 and ex2", got)
	}
}

// A file being created (its creator holds it open, nothing committed
// yet): the name exists for path walks, so stat by another process finds
// it, empty; but it is not listed, and another process's open for
// reading is ENOENT, so that no reader takes the nothing committed yet
// for the secret's value. Once the creator closes, all three agree.
func TestANameBeingCreatedIsStattedButNotListedOrReadByOthersUntilItsCommit(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	m := mount(t, b)
	m.mustSh("mkdir app")
	f, err := os.OpenFile(m.path("app/slow"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := m.mustSh("stat -c %s app/slow"); got != "0\n" {
		t.Errorf("stat while being created: %q", got)
	}
	m.failSh("cat app/slow", "No such file")
	if got := m.mustSh("ls app"); got != "" {
		t.Errorf("ls while being created: %q", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.mustSh("stat -c %s app/slow; cat app/slow; ls app"); got != "0\nslow\n" {
		t.Errorf("after the close: %q", got)
	}
}
