package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/internal/handover"
)

// withoutBeneath makes this process replace mounts as on a kernel that
// cannot mount beneath a live mount (before Linux 6.5), until the test
// ends.
func withoutBeneath(t *testing.T) {
	saved := beneathSupported
	beneathSupported = func() error { return fmt.Errorf("%w (a test says so)", handover.ErrNoBeneath) }
	t.Cleanup(func() { beneathSupported = saved })
}

// --replace=gap on a kernel that cannot mount beneath stops the live
// secretfs only once nothing the new mount depends on can refuse it: a
// configuration whose view the store contradicts (here a view over a
// stored secret) fails the new mount and leaves the old one serving,
// never asked to step down, rather than leave the path with no secretfs.
func TestReplaceWithAGapThatFailsItsChecksLeavesTheOldMountServing(t *testing.T) {
	dir := fuseMountpoint(t)
	withoutBeneath(t)
	old := mountOldForReplacement(t, dir, replaceFlags{})
	close(old.release) // a step-down, if asked for, goes through
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/app.env": "stored", "billing/db": `{"password": "pw"}`})

	_, stderr, err := run(t, nil, append([]string{"mount", dir, "--replace=gap", "--config", writeConfig(t, execViewConfig)}, dataDir...)...)
	if err == nil || !strings.Contains(err.Error(), "names a secret the store holds") {
		t.Errorf("mount --replace=gap with a view over a stored secret: %v; want the view refused\n%s", err, stderr)
	}
	select {
	case <-old.entered:
		t.Error("the old mount was asked to step down by a replacement that could not mount")
	default:
	}
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "old" {
		t.Errorf("the path after the failed replacement read %q, %v; want the old mount's hello", got, err)
	}
}

// --replace=gap on a kernel that cannot mount beneath, with nothing to
// refuse the new mount, has the old one step down and then mounts in its
// place.
func TestReplaceWithAGapMountsOnceTheOldMountSteppedDown(t *testing.T) {
	dir := fuseMountpoint(t)
	withoutBeneath(t)
	old := mountOldForReplacement(t, dir, replaceFlags{})
	close(old.release)
	dataDir := newStore(t)
	putAll(t, dataDir, map[string]string{"billing/db": "pw"})

	ended := make(chan error, 1)
	var stderr string
	go func() {
		var err error
		_, stderr, err = run(t, nil, append([]string{"mount", dir, "--replace=gap"}, dataDir...)...)
		ended <- err
	}()
	t.Cleanup(func() {
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("mount --replace=gap: %v\n%s", err, stderr)
			}
		case <-time.After(30 * time.Second):
			t.Error("mount --replace=gap did not end within 30s of its mount's detachment")
		}
	})
	// The old server has ended (its mount, detached, was released), and
	// a secretfs serves the path: the new one. Not told by the device
	// number, which the new mount may be given again.
	newServes := func() bool {
		select {
		case <-old.served:
			top, ok := topMount(dir)
			return ok && top.FSType == mountType
		default:
			return false
		}
	}
	for deadline := time.Now().Add(30 * time.Second); !newServes(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			all, _ := handover.ReadMountInfo("/proc/self/mountinfo")
			t.Fatalf("no new secretfs serves the path within 30s: %+v", mountsAtDir(all, dir))
		}
	}
	select {
	case <-old.entered:
	default:
		t.Error("the new mount serves the path, and the old one was never asked to step down")
	}
	if names, err := os.ReadDir(dir); err != nil || len(names) != 1 || names[0].Name() != "billing" {
		t.Errorf("the path lists %v, %v; want the new mount's billing", names, err)
	}
	if all, err := handover.ReadMountInfo("/proc/self/mountinfo"); err != nil || len(mountsAtDir(all, dir)) != 1 {
		t.Errorf("mounts at %s: %+v (%v), want the new one alone", dir, mountsAtDir(all, dir), err)
	}
}
