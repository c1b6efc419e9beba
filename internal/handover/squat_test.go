package handover

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// squatter starts this test binary as uid 1000, listening at path as
// another user who took it would (see squat). stop ends it, leaving its
// socket file, and returns what it said after "ready".
func squatter(t *testing.T, path string) (stop func() string) {
	t.Helper()
	// /proc/self/exe is this binary to the child too, which may not
	// pass through the build's private directory once it is uid 1000.
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), squatterEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}, Pdeathsig: syscall.SIGKILL}
	return startChild(t, cmd)
}

// sharedDir makes a directory every user may write, sticky as /tmp is,
// in directories every user may pass through.
func sharedDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir() // $TMPDIR/TestName<random>/<n>, both 0700
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// user1000MayWrite is an access control list that lets uid 1000 write a
// directory, as setfacl -m u:1000:rwx would: version 2, then each entry's
// tag, permissions and id (-1 for none), little-endian.
var user1000MayWrite = []byte{
	2, 0, 0, 0,
	0x01, 0, 7, 0, 0xff, 0xff, 0xff, 0xff, // the owner
	0x02, 0, 7, 0, 0xe8, 0x03, 0, 0, // user 1000
	0x04, 0, 5, 0, 0xff, 0xff, 0xff, 0xff, // the group
	0x10, 0, 7, 0, 0xff, 0xff, 0xff, 0xff, // the mask
	0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff, // others
}

// A control socket is made only where nobody but root and the serving
// user may put another in its place: not in (or below) a directory that
// another user owns, or that every user, a group other than root's or
// an access control list lets write without the sticky bit.
func TestListenRefusesADirectoryWhereOthersMayReplaceItsSocket(t *testing.T) {
	requireRootAndFUSE(t)
	for _, c := range []struct {
		name     string
		mode     os.FileMode
		uid, gid int
		acl      bool   // an access control list lets uid 1000 write it
		above    bool   // the directory above the socket's is the one
		refused  string // "" when the socket is made
	}{
		{name: "every user may write it", mode: 0o777, refused: "every user may replace it"},
		{name: "another user owns it", mode: 0o755, uid: 1000, refused: "user 1000 owns"},
		{name: "a group other than root's may write it", mode: 0o775, gid: 1000, refused: "members of group 1000 may replace it"},
		{name: "an access control list lets another user write it", mode: 0o755, acl: true, refused: "access control list names (getfacl) may replace it"},
		{name: "every user may write the directory above", mode: 0o777, above: true, refused: "every user may replace it"},
		{name: "another user owns the directory above", mode: 0o755, uid: 1000, above: true, refused: "user 1000 owns"},
		{name: "it is sticky, as /tmp is", mode: os.ModeSticky | 0o777},
		{name: "only root's group may write it", mode: 0o775},
	} {
		t.Run(c.name, func(t *testing.T) {
			named := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(named, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(named, c.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(named, c.uid, c.gid); err != nil {
				t.Fatal(err)
			}
			if c.acl {
				if err := unix.Setxattr(named, "system.posix_acl_access", user1000MayWrite, 0); err != nil {
					t.Fatal(err)
				}
			}
			dir := named
			if c.above {
				dir = filepath.Join(named, "sub")
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, ".mnt.secretfs.sock")
			ctl, err := Listen(path, Server{Mountpoint: filepath.Join(dir, "mnt"), Owner: os.Geteuid(), Log: quietLog(t)})
			if c.refused == "" {
				if err != nil {
					t.Fatalf("Listen: %v", err)
				}
				ctl.Close()
				return
			}
			if err == nil {
				ctl.Close()
				t.Fatalf("Listen made its socket at %s", path)
			}
			if !strings.Contains(err.Error(), c.refused) || !strings.Contains(err.Error(), named) || !strings.Contains(err.Error(), "would ask the socket they put in its place") {
				t.Errorf("Listen: %v; want it to say %q of %s, and why that matters", err, c.refused, named)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused Listen left %s: %v", path, err)
			}
		})
	}
}

// What another user put at the control socket's path before the mount
// made its own (in a sticky directory, as beside a mount point in /tmp)
// is theirs: a new mount neither asks it anything (it could lie, and be
// taken for a secretfs that serves the mount point, or not) nor removes
// it, and says whose it is.
func TestListenNeitherAsksNorRemovesWhatAnotherUserPutAtItsPath(t *testing.T) {
	requireRootAndFUSE(t)
	for _, c := range []struct {
		name string
		make func(t *testing.T, path string) (said func() string)
	}{
		{"a socket they listen on", func(t *testing.T, path string) func() string {
			return squatter(t, path)
		}},
		{"a socket they left", func(t *testing.T, path string) func() string {
			said := squatter(t, path)()
			return func() string { return said }
		}},
		{"a symbolic link", func(t *testing.T, path string) func() string {
			if err := os.Symlink("/etc/passwd", path); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(path, 1000, 1000); err != nil {
				t.Fatal(err)
			}
			return func() string { return "" }
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := sharedDir(t)
			path := SocketPath(filepath.Join(dir, "mnt"))
			said := c.make(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			ctl, err := Listen(path, Server{Mountpoint: filepath.Join(dir, "mnt"), Owner: os.Geteuid(), Log: quietLog(t)})
			if err == nil {
				ctl.Close()
				t.Fatalf("Listen took over %s", path)
			}
			if !strings.Contains(err.Error(), path+" is uid 1000's") || !strings.Contains(err.Error(), "not asking it anything, nor removing it") {
				t.Errorf("Listen: %v; want it to say whose %s is, and that it leaves it alone", err, path)
			}
			if s := said(); strings.Contains(s, "asked") {
				t.Errorf("Listen asked uid 1000's socket something: it said %q", s)
			}
			if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
				t.Errorf("uid 1000's %s was removed or replaced: %v", path, err)
			}
		})
	}
}

// secretfs status asks nothing of a socket it finds at the control
// socket's path, even one that is root's and 0600, unless the process
// listening on it is of its own user (SO_PEERCRED): another user's could
// answer with lies, and a replacement sends its mount there.
func TestStatusAsksNothingOfASocketAnotherUserListensOn(t *testing.T) {
	requireRootAndFUSE(t)
	mnt := filepath.Join(sharedDir(t), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	path := SocketPath(mnt)
	said := squatter(t, path)
	// As a socket a secretfs of this user made looks: the client's
	// checks of the file pass, and only the listener's user is left.
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Status(mnt)
	if err == nil {
		p.Close()
		t.Fatalf("Status trusted uid 1000's socket: it said it is %q", p.Hello.Release)
	}
	if !strings.Contains(err.Error(), "runs as uid 1000, not 0: not asking it") {
		t.Errorf("Status: %v; want it to say the listener runs as uid 1000", err)
	}
	if s := said(); strings.Contains(s, "asked") {
		t.Errorf("Status asked uid 1000's socket something: it said %q", s)
	}
}
