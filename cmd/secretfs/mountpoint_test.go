package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/crypto"
)

// A failure after mount(2) leaves no mount behind. mount(2) on a regular
// file succeeds (the file system's root is then a file), and go-fuse's
// first request through the new mount fails with ENOTDIR: mountFS is
// given such a path directly, past the check of the mount point that
// mount makes first. Mounting takes root, as the integration tests do.
func TestAMountThatFailsAfterMount2IsDetached(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test calls mount(2) and needs root; run the tests as root (scripts/test)")
	}
	c := &config{log: logrus.New(), dataDir: filepath.Join(t.TempDir(), "data"), timeout: 5 * time.Second, writeFormat: crypto.FormatV3}
	c.log.SetOutput(io.Discard)
	c.mount = mountConfig{ttl: time.Second, cacheIdle: time.Minute, cacheSize: 10, fileMode: 0o600, dirMode: 0o700}
	b, err := c.open(context.Background(), opening{firstUse: true, notices: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	catalog := newCatalog(b, c.mount, nil, c.log)
	defer catalog.Close()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if isMountpoint(file) {
			_ = detach(file)
		}
	})
	server, err := mountFS(file, catalog, fsOptions(c, false, false, nil, nil))
	if err == nil {
		server.Unmount()
		t.Fatal("mounting on a regular file succeeded")
	}
	if !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("the error is %q, want it to say not a directory", err)
	}
	if isMountpoint(file) {
		t.Errorf("the failed mount left a mount on %s", file)
	}
}

// A mount point given as a symlink is the symlink's target, as the
// kernel follows it to mount there: what the mount table names, and what
// --replace and a plain mount look for there. A symlink whose target is
// missing gives the target (made at the mount); a chain of them is
// followed to its end, relative ones from their own directory.
func TestAMountPointThatIsASymlinkIsItsTarget(t *testing.T) {
	top, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(top, "mnt")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	links := filepath.Join(top, "links")
	if err := os.Mkdir(links, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ name, to string }{
		{"abs", target},
		{"rel", "../mnt"},
		{"chain", "rel"},
		{"dangling", "../missing/mnt"},
	} {
		if err := os.Symlink(l.to, filepath.Join(links, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{
		"abs":      target,
		"rel":      target,
		"chain":    target,
		"dangling": filepath.Join(top, "missing", "mnt"),
		"plain":    filepath.Join(links, "plain"),
	} {
		if got, err := resolve(filepath.Join(links, name)); err != nil || got != want {
			t.Errorf("resolve(%s): %q, %v; want %q", name, got, err, want)
		}
	}
	if err := os.Symlink("loop", filepath.Join(links, "loop")); err != nil {
		t.Fatal(err)
	}
	if got, err := resolve(filepath.Join(links, "loop")); err == nil {
		t.Errorf("resolve of a symlink to itself: %q, want an error", got)
	}
}
