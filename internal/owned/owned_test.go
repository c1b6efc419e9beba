package owned_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/secretfs/secretfs/internal/owned"
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
