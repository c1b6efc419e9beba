package owned

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A relative link whose directory is itself reached through a link is
// resolved from the real directory, as the kernel does. (The check
// joined it to the path as written, and refused a valid file: "no such
// file or directory"; found by a review.)
func TestAFileThroughARelativeLinkInALinkedDirectoryIsAccepted(t *testing.T) {
	base := t.TempDir()
	must := fatalOn(t)
	must(os.MkdirAll(filepath.Join(base, "opt/x/etc"), 0o755))
	must(os.MkdirAll(filepath.Join(base, "opt/x/shared"), 0o755))
	must(os.WriteFile(filepath.Join(base, "opt/x/shared/c.conf"), []byte(""), 0o600))
	must(os.Symlink("../shared/c.conf", filepath.Join(base, "opt/x/etc/c.conf")))
	must(os.Symlink(filepath.Join(base, "opt/x/etc"), filepath.Join(base, "etc")))
	p := filepath.Join(base, "etc/c.conf")
	if _, err := os.ReadFile(p); err != nil {
		t.Fatalf("kernel cannot open: %v", err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Check(f, p, "it matters"); err != nil {
		t.Errorf("valid file refused: %v", err)
	}
}

// A link in a directory component, inside a directory every user may
// write, is found: anyone could swap it. (Only the file's own links were
// followed; found by a review.)
func TestAFileThroughALinkInADirectoryEveryUserMayWriteIsFound(t *testing.T) {
	base := t.TempDir()
	must := fatalOn(t)
	must(os.MkdirAll(filepath.Join(base, "real"), 0o755))
	must(os.WriteFile(filepath.Join(base, "real/c.conf"), []byte(""), 0o600))
	must(os.MkdirAll(filepath.Join(base, "open"), 0o755))
	must(os.Chmod(filepath.Join(base, "open"), 0o777))
	must(os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "open/dirlink")))
	must(os.Symlink(filepath.Join(base, "open/dirlink"), filepath.Join(base, "a")))
	p := filepath.Join(base, "a/c.conf")
	if err := othersMayReplace(p, "it matters"); err == nil || !strings.Contains(err.Error(), filepath.Join(base, "open")+" may be written by every user") {
		t.Errorf("%s reached through a link in world-writable %s: %v, want it named", p, filepath.Join(base, "open"), err)
	}
}

// fatalOn returns a function that fails t at once on an error.
func fatalOn(t *testing.T) func(error) {
	return func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
