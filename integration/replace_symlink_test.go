package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A mount point given as a symlink is its target, as the kernel follows
// it: `mount --replace LINK` replaces the secretfs serving the target,
// leaving one mount there, and a plain mount through the symlink refuses
// the live mount as it would at the target. (Both mounted a second
// secretfs on top of the live one.)
func TestASymlinkToAMountPointIsTheMountPoint(t *testing.T) {
	b, value := replacedSecret(t, "symlink")
	dir, logPath, old := liveAt(t, b, value)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}

	plainLog := filepath.Join(t.TempDir(), "plain.log")
	killAllRunningWith(t, plainLog, dir)
	_, errOut, err := b.run(nil, "mount", link, "--daemon", "--log-file", plainLog)
	if err == nil || !strings.Contains(errOut, "already a mountpoint") {
		t.Errorf("a plain mount through a symlink to a live mount: %v, %q; want a refusal", err, errOut)
	}
	if at := mountsAt(t, os.Getpid(), dir); len(at) != 1 {
		t.Fatalf("mounts at %s after the plain mount: %+v, want the live one alone", dir, at)
	}

	_, errOut, err = b.run(nil, "mount", link, "--replace", "--daemon", "--log-format", "json", "--log-file", logPath)
	if err != nil {
		t.Fatalf("mount --replace --daemon through a symlink: %v\n%s", err, errOut)
	}
	pid := daemonPID(t, errOut)
	t.Cleanup(func() { stopDaemon(t, pid, dir) })
	if at := mountsAt(t, os.Getpid(), dir); len(at) != 1 {
		t.Errorf("mounts at %s after --replace through a symlink: %+v, want one", dir, at)
	}
	wantServedBy(t, dir, pid, "the new process")
	if got, err := os.ReadFile(filepath.Join(link, "app", "s")); err != nil || string(got) != value {
		t.Errorf("cat LINK/app/s: %q, %v", got, err)
	}
	waitExited(t, old, "the replaced secretfs did not exit:")
	if !strings.Contains(old.log(), "stepped down for a successor") {
		t.Errorf("the replaced secretfs does not say it stepped down:\n%s", old.log())
	}
}
