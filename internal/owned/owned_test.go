package owned_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/secretfs/secretfs/internal/owned"
	"github.com/secretfs/secretfs/internal/owned/ownedtest"
)

// open opens p for the test, closing it at the end.
func open(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// writeFile writes p with mode (whatever the umask) and returns it.
func writeFile(t *testing.T, p string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// A refusal says why the file matters in the caller's words, between who
// could write it and the fix; a file nobody else could write is accepted.
func TestARefusalGivesTheCallersReason(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "f"), 0o666)
	err := owned.Check(open(t, p), p, "it decides something")
	if want := "every user may write it (mode 0666), and it decides something: chmod o-w it"; err == nil || err.Error() != want {
		t.Errorf("Check of a file of mode 0666: %v; want %q", err, want)
	}
	q := writeFile(t, filepath.Join(dir, "g"), 0o644)
	if err := owned.Check(open(t, q), q, "it decides something"); err != nil {
		t.Errorf("Check of a file of mode 0644 in a directory of this user: %v; want nil", err)
	}
}

// The file judged is the one opened, not what its path names by the time
// of the check: a file every user may write, renamed over by a safe one
// after it was opened, is still refused.
func TestTheFileOpenedIsJudgedNotWhatItsPathNamesLater(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "f"), 0o666)
	f := open(t, p)
	if err := os.Rename(writeFile(t, filepath.Join(dir, "safe"), 0o600), p); err != nil {
		t.Fatal(err)
	}
	if err := owned.Check(f, p, "it matters"); err == nil {
		t.Error("Check of an opened file of mode 0666, whose path now names a file of mode 0600: nil; want it refused")
	}
}

// A private file (a private key) that anyone other than root or this
// process's user may read is refused by CheckPrivate, naming who and the
// fix: every user, its group's members, whatever the group, or those an
// access control list names. Check alone accepts each.
func TestAPrivateFileOthersMayReadIsRefused(t *testing.T) {
	dir := t.TempDir()
	const why = "it decrypts every secret"
	refused := func(p, want string) {
		t.Helper()
		if err := owned.CheckPrivate(open(t, p), p, why); err == nil || err.Error() != want {
			t.Errorf("CheckPrivate of %s: %v; want %q", p, err, want)
		}
		if err := owned.Check(open(t, p), p, why); err != nil {
			t.Errorf("Check of %s: %v; want nil: only its readers are wrong", p, err)
		}
	}
	refused(writeFile(t, filepath.Join(dir, "every"), 0o644),
		"every user may read it (mode 0644), and it decrypts every secret: chmod go-r it")
	group := writeFile(t, filepath.Join(dir, "group"), 0o640)
	gid := ownedtest.InOtherGroup(t, group)
	refused(group, "members of group "+strconv.Itoa(gid)+" may read it (mode 0640), and it decrypts every secret: chmod g-r it")
	if os.Geteuid() == 0 {
		root := writeFile(t, filepath.Join(dir, "root"), 0o640)
		if err := os.Chown(root, -1, 0); err != nil {
			t.Fatal(err)
		}
		refused(root, "members of group 0 may read it (mode 0640), and it decrypts every secret: chmod g-r it")
	}
	listed := writeFile(t, filepath.Join(dir, "listed"), 0o600)
	ownedtest.LetRead(t, listed, ownedtest.OtherUID)
	refused(listed, "the users and groups its access control list names (getfacl) may read it (mode 0640), and it decrypts every secret: chmod g-r it")
}

// A private file only its owner may read, or whose access control list's
// mask lets nobody else read it, is accepted.
func TestAPrivateFileOnlyItsOwnerMayReadIsAccepted(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := writeFile(t, filepath.Join(dir, mode.String()), mode)
		if err := owned.CheckPrivate(open(t, p), p, "it decrypts every secret"); err != nil {
			t.Errorf("CheckPrivate of a file of mode %#o: %v; want nil", mode, err)
		}
	}
	listed := writeFile(t, filepath.Join(dir, "listed"), 0o600)
	ownedtest.LetRead(t, listed, ownedtest.OtherUID)
	if err := os.Chmod(listed, 0o600); err != nil { // the mask: nobody the list names may read
		t.Fatal(err)
	}
	if err := owned.CheckPrivate(open(t, listed), listed, "it decrypts every secret"); err != nil {
		t.Errorf("CheckPrivate of a file whose list's mask lets nobody read: %v; want nil", err)
	}
}
