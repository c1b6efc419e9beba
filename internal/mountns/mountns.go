// Package mountns keeps the mounts a test binary makes out of every other
// process's mount namespace.
//
// A process that makes a mount namespace (unshare -m, systemd-nspawn,
// a container runtime) copies every mount of the namespace it starts
// from. Where propagation does not reach the copy (a host whose / is
// private, as on the CI machine; a namespace made private), the copy
// keeps the file system alive until that namespace ends, and nobody
// outside sees it: systemd-nspawn moves the container's root over the
// copied tree, so no /proc/PID/mountinfo lists it. A FUSE mount copied
// that way is not released when its owner unmounts or detaches it, and
// its server goes on serving the copy. Tests run side by side (the
// integration shards, the unit tests, another engineer's run): one
// booting a container copies the mounts another test made, whose
// server then does not exit when the test expects it to.
//
// Isolate, called first in TestMain, runs the test binary in a mount
// namespace of its own, so that the namespaces other processes make
// copy none of its mounts, and its mounts go with it when it ends.
package mountns

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// isolatedEnv marks the test binary Isolate executed again; Isolate
// removes it, so that the processes the tests start do not inherit it.
const isolatedEnv = "SECRETFS_TEST_OWN_MOUNT_NAMESPACE"

// Isolate executes the running test binary again, as the same process
// (the same PID, streams and arguments, so go test's timeout and
// signals reach it as before), in a new mount namespace whose mounts are
// private copies of the present ones: unshare(1) --mount --propagation
// private. It returns in the binary executed again; and without
// isolating anything when not root (unshare needs CAP_SYS_ADMIN, and the
// tests that mount need root anyway), or when unshare cannot be run, of
// which it warns on stderr.
func Isolate() {
	if os.Getenv(isolatedEnv) != "" {
		os.Unsetenv(isolatedEnv)
		return
	}
	if os.Geteuid() != 0 {
		return
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		fmt.Fprintf(os.Stderr, "mountns: %v: the tests' mounts are in the mount namespace they were started in, where other processes' namespaces may copy them\n", err)
		return
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mountns: %v: the tests' mounts are in the mount namespace they were started in\n", err)
		return
	}
	args := append([]string{"unshare", "--mount", "--propagation", "private", "--", self}, os.Args[1:]...)
	err = syscall.Exec(unshare, args, append(os.Environ(), isolatedEnv+"=1"))
	fmt.Fprintf(os.Stderr, "mountns: executing %s: %v: the tests' mounts are in the mount namespace they were started in\n", unshare, err)
}
