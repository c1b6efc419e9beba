package handover

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A new mount at a mount point whose control socket is held by a
// secretfs that no longer serves it (unmounted there, kept alive by a
// copy of its mount in another mount namespace) takes the socket over:
// the path's socket then answers for the file system the path shows. A
// socket whose secretfs serves what the path shows stays its own, and
// the old one's Close leaves the new one's socket in place.
func TestListenTakesOverASocketWhoseSecretfsDoesNotServeTheMountPoint(t *testing.T) {
	requireRootAndFUSE(t)
	dir := t.TempDir()
	mountpoint := filepath.Join(dir, "mnt")
	path := SocketPath(mountpoint)
	oldDev, newDev := unix.Mkdev(0, 61), unix.Mkdev(0, 62)
	showing := func(dev uint64) string {
		f := filepath.Join(t.TempDir(), "mountinfo")
		line := "90 27 " + devString(dev) + " / " + mountpoint + " rw - fuse.secretfs secretfs rw,user_id=0,group_id=0\n"
		if err := os.WriteFile(f, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	server := func(dev uint64, release string, mountinfo string) Server {
		return Server{Mountpoint: mountpoint, FSType: fsType, Dev: dev, Release: release, Owner: os.Geteuid(), Log: quietLog(t), MountInfo: mountinfo}
	}
	orphan, err := Listen(path, server(oldDev, "orphan", showing(oldDev)))
	if err != nil {
		t.Fatal(err)
	}
	defer orphan.Close()
	// The path shows the orphan's file system: its socket is its own.
	if _, err := Listen(path, server(newDev, "new", showing(oldDev))); err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Fatalf("Listen over the socket of the secretfs serving the mount point: %v", err)
	}
	// The path shows another file system: the new mount takes it over.
	c, err := Listen(path, server(newDev, "new", showing(newDev)))
	if err != nil {
		t.Fatalf("Listen over the socket of a secretfs that does not serve the mount point: %v", err)
	}
	defer c.Close()
	orphan.Close()
	p, err := Status(mountpoint)
	if err != nil {
		t.Fatalf("status through the socket at the path: %v", err)
	}
	defer p.Close()
	if p.Hello.Release != "new" || p.Hello.Dev != devString(newDev) {
		t.Errorf("the socket at the path answers for %s (%s), want the new mount's (%s)", p.Hello.Release, p.Hello.Dev, devString(newDev))
	}
}
