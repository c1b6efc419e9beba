package mountconfig_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/internal/owned/ownedtest"
	"github.com/secretfs/secretfs/mountconfig"
)

// writeConfig writes a configuration file of one watched application at
// dir/secretfs.yaml, mode 0644, and returns its path.
func writeConfig(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "secretfs.yaml")
	if err := os.WriteFile(p, []byte("watch:\n  - billing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mustRead fails t unless Load reads p whole.
func mustRead(t *testing.T, p, what string) {
	t.Helper()
	if cfg, err := mountconfig.Load(p); err != nil || len(cfg.Watch) != 1 {
		t.Errorf("Load of %s: %+v, %v; want it read", what, cfg, err)
	}
}

// mustRefuse fails t unless Load refuses p with a message that holds
// want.
func mustRefuse(t *testing.T, p, what, want string) {
	t.Helper()
	if _, err := mountconfig.Load(p); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Load of %s: %v; want it refused: %q", what, err, want)
	}
}

// A configuration file that a group other than root's may write is
// refused, naming the group and the fix: any member of the group could
// rewrite who may read which secret. One root's group may write is read.
func TestAGroupWritableConfigFileIsRefused(t *testing.T) {
	p := writeConfig(t, t.TempDir())
	if err := os.Chmod(p, 0o664); err != nil {
		t.Fatal(err)
	}
	gid := ownedtest.InOtherGroup(t, p)
	if _, err := mountconfig.Load(p); err == nil ||
		err.Error() != p+": members of group "+strconv.Itoa(gid)+" may write it (mode 0664), and it says who may read which secret: chmod g-w it" {
		t.Errorf("Load of a file of mode 0664, group %d: %v; want it refused", gid, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRead(t, p, "the file of mode 0644")
	if os.Geteuid() == 0 {
		if err := os.Chmod(p, 0o664); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, -1, 0); err != nil {
			t.Fatal(err)
		}
		mustRead(t, p, "a file of mode 0664, root's group")
	}
}

// A configuration file in a directory another user owns, or reached
// through one, is refused, naming the directory: its owner may rename
// the file and put another in its place, sticky bit or not. So is one
// reached through a symbolic link held in such a directory. Once root
// owns the directory, the file is read.
func TestAConfigFileInAnotherUsersDirectoryIsRefused(t *testing.T) {
	ownedtest.RequireRoot(t)
	root := t.TempDir()
	theirs := filepath.Join(root, "theirs")
	below := filepath.Join(theirs, "below")
	if err := os.MkdirAll(below, 0o755); err != nil {
		t.Fatal(err)
	}
	in, deeper := writeConfig(t, theirs), writeConfig(t, below)
	safe := filepath.Join(root, "safe")
	if err := os.Mkdir(safe, 0o755); err != nil {
		t.Fatal(err)
	}
	viaLink := filepath.Join(safe, "secretfs.yaml")
	if err := os.Symlink(filepath.Join(theirs, "link.yaml"), viaLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(writeConfig(t, root), filepath.Join(theirs, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, ownedtest.OtherUID, ownedtest.OtherUID); err != nil {
		t.Fatal(err)
	}
	want := "user 1000 may replace it (user 1000 owns " + theirs + "), and it says who may read which secret"
	for _, mode := range []os.FileMode{0o755, 0o755 | os.ModeSticky} {
		if err := os.Chmod(theirs, mode); err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, in, "a file in a directory of mode "+mode.String()+" another user owns", want)
		mustRefuse(t, deeper, "a file below a directory another user owns", want)
		mustRefuse(t, viaLink, "a file through a link in a directory another user owns", want)
	}
	if err := os.Chown(theirs, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{in, deeper, viaLink} {
		mustRead(t, p, p+" with root's directory")
	}
}

// A configuration file in a directory that a group other than root's may
// write without the sticky bit, or reached through one, is refused,
// naming the group and the directory: any member may rename the file
// and put another in its place. With the sticky bit, or with root's
// group, the file is read.
func TestAConfigFileInADirectoryAGroupMayWriteIsRefused(t *testing.T) {
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	if err := os.Mkdir(shared, 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o775); err != nil { // past the umask
		t.Fatal(err)
	}
	in := writeConfig(t, shared)
	viaLink := filepath.Join(root, "secretfs.yaml")
	if err := os.Symlink(in, viaLink); err != nil {
		t.Fatal(err)
	}
	gid := ownedtest.InOtherGroup(t, shared)
	want := "members of group " + strconv.Itoa(gid) + " may replace it (they may write " + shared + ", which is not sticky)"
	mustRefuse(t, in, "a file in a directory of mode 0775", want)
	mustRefuse(t, viaLink, "a file through a link into a directory of mode 0775", want)
	if err := os.Chmod(shared, 0o775|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	mustRead(t, in, "a file in a sticky directory of mode 01775")
	if os.Geteuid() == 0 {
		if err := os.Chmod(shared, 0o775); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(shared, -1, 0); err != nil {
			t.Fatal(err)
		}
		mustRead(t, in, "a file in a directory of mode 0775, root's group")
	}
}

// A configuration file reached through a symbolic link that another user
// owns, in a sticky directory, is refused, naming the link: the sticky
// bit lets them remove it and make another that leads elsewhere. One
// root's own link there leads to is read.
func TestAConfigFileThroughAnotherUsersLinkInAStickyDirectoryIsRefused(t *testing.T) {
	ownedtest.RequireRoot(t)
	root := t.TempDir()
	target := writeConfig(t, root)
	for _, mode := range []os.FileMode{0o777, 0o775} { // /tmp's kind, and a group's
		sticky := filepath.Join(root, "sticky"+strconv.FormatUint(uint64(mode), 8))
		if err := os.Mkdir(sticky, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sticky, mode|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(sticky, "secretfs.yaml")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		mustRead(t, link, "a file through root's link in sticky "+sticky)
		if err := os.Lchown(link, ownedtest.OtherUID, ownedtest.OtherUID); err != nil {
			t.Fatal(err)
		}
		want := "user 1000 may replace it (user 1000 owns the symbolic link " + link + " on the way to it, in sticky " + sticky + ")"
		if mode == 0o777 {
			want = "" // with fs.protected_symlinks, the kernel refuses to follow it (EACCES) before the check
		}
		mustRefuse(t, link, "a file through another user's link in sticky "+sticky, want)
	}
}

// A configuration file, or a directory on the way to it, whose access
// control list lets another user write it is refused, though root's group
// owns it: the group bits are then the list's mask. Once the mask lets
// nobody write (chmod g-w), or the directory is sticky, the file is read.
func TestAConfigFileAnAccessControlListLetsAnotherUserWriteIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "listed")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := writeConfig(t, dir)
	ownedtest.LetWrite(t, p, ownedtest.OtherUID)
	mustRefuse(t, p, "a file whose list lets user 1000 write it",
		p+": the users and groups its access control list names (getfacl) may write it (mode 0664), and it says who may read which secret: chmod g-w it")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRead(t, p, "the file, its list's mask without write")
	ownedtest.LetWrite(t, dir, ownedtest.OtherUID)
	mustRefuse(t, p, "a file in a directory whose list lets user 1000 write it",
		"the users and groups "+dir+"'s access control list names (getfacl) may replace it (they may write "+dir+", which is not sticky)")
	if err := os.Chmod(dir, 0o775|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	mustRead(t, p, "the file, its directory sticky")
}
