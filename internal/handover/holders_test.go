package handover

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A mount namespace made while the old mount was attached (a container
// booted then) holds a private copy of it, which the step-down does not
// reach: the old server serves on until that namespace ends. When the
// copy lies outside the root of the namespace's processes, as beneath a
// systemd-nspawn container's, no mountinfo lists it, and Holders names
// it all the same (listmount, Linux 6.11 or later).
func TestACopyOfTheOldMountOutsideAContainersRootHoldsItAndIsNamed(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")

	container := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0])
	container.Env = append(os.Environ(), chrootedEnv+"="+t.TempDir())
	end := startChild(t, container)

	replace(t, dir, "new")
	holders := Holders(old.dev)
	if len(holders) != 1 || holders[0].PID != container.Process.Pid || !strings.Contains(holders[0].What, "outside the root directory") {
		t.Errorf("holders of the old mount: %v, want its copy in the mount namespace of process %d, outside its root", holders, container.Process.Pid)
	}
	select {
	case <-old.done:
		t.Fatal("the old server stopped serving while a namespace still held a copy of its mount")
	case <-time.After(200 * time.Millisecond):
	}
	end()
	waitDone(t, old, "the old server, once the namespace holding a copy of its mount ended")
	// The device number is free once the old server ended, and a mount
	// another test makes meanwhile may take it: only this test's holder
	// must be gone.
	for _, h := range Holders(old.dev) {
		if h.PID == container.Process.Pid {
			t.Errorf("the namespace that ended still holds the old mount: %v", h)
		}
	}
}
