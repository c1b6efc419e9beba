package handover

import (
	"testing"

	"golang.org/x/sys/unix"
)

// A mount stacked beneath another at /run/sec: the top is the one no
// other mount at the path is mounted on, whatever the order of the lines.
const stacked = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw
90 88 0:61 / /run/sec rw,nosuid,nodev,relatime - fuse.secretfs secretfs ro,user_id=0,group_id=0,default_permissions,allow_other
88 30 0:62 / /run/sec rw,nosuid,nodev,relatime shared:5 - fuse.secretfs secretfs rw,user_id=0,group_id=0
30 27 0:25 / /run rw,nosuid,nodev shared:4 - tmpfs tmpfs rw,mode=755
91 27 0:63 /billing /srv/with\040space rw - fuse.secretfs secretfs\134x rw,user_id=1000,group_id=1000
`

func TestTheTopMountIsTheOneNothingAtThePathIsMountedOn(t *testing.T) {
	all, err := parseMountInfo(stacked)
	if err != nil {
		t.Fatal(err)
	}
	top, ok := TopAt(all, "/run/sec")
	if !ok || top.ID != 90 || top.Dev != unix.Mkdev(0, 61) || top.DevString() != "0:61" {
		t.Fatalf("top at /run/sec: %+v %v, want mount 90 (0:61)", top, ok)
	}
	beneath, ok := Beneath(all, top)
	if !ok || beneath.ID != 88 || beneath.FSType != "fuse.secretfs" {
		t.Errorf("beneath mount 90: %+v %v, want mount 88", beneath, ok)
	}
	if _, ok := Beneath(all, beneath); ok {
		t.Errorf("mount 88 is on /run, not on a mount at /run/sec, yet Beneath found one")
	}
	if v, ok := top.Option("user_id"); !ok || v != "0" {
		t.Errorf("user_id of mount 90: %q %v", v, ok)
	}
	if _, ok := top.Option("allow_other"); !ok {
		t.Errorf("allow_other of mount 90 not found")
	}
	if _, ok := beneath.Option("allow_other"); ok {
		t.Errorf("allow_other of mount 88 found, but it has none")
	}
	if _, ok := TopAt(all, "/nothing"); ok {
		t.Errorf("a top mount at /nothing")
	}
}

func TestMountinfoEscapesAreUndone(t *testing.T) {
	all, err := parseMountInfo(stacked)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := TopAt(all, "/srv/with space")
	if !ok || m.Root != "/billing" || m.Source != `secretfs\x` {
		t.Fatalf("the mount at /srv/with space: %+v %v", m, ok)
	}
}

func TestAMalformedMountinfoLineIsAnError(t *testing.T) {
	for _, line := range []string{
		"22 27 0:21 / /proc rw,relatime proc proc rw",  // no separator
		"x 27 0:21 / /proc rw,relatime - proc proc rw", // id
		"22 27 021 / /proc rw,relatime - proc proc rw", // device
	} {
		if _, err := parseMountInfo(line + "\n"); err == nil {
			t.Errorf("%q parsed without error", line)
		}
	}
}

func TestTheControlSocketIsAHiddenNameBesideTheMountPoint(t *testing.T) {
	for dir, want := range map[string]string{
		"/run/secrets":           "/run/.secrets.secretfs.sock",
		"/run/secretfs/secrets/": "/run/secretfs/.secrets.secretfs.sock",
	} {
		if got := SocketPath(dir); got != want {
			t.Errorf("SocketPath(%q) = %q, want %q", dir, got, want)
		}
	}
}
