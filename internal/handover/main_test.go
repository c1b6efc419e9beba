package handover

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/internal/mountns"
)

func TestMain(m *testing.M) {
	if root := os.Getenv(chrootedEnv); root != "" {
		chrooted(root)
		return
	}
	// The tests' mounts in no other process's mount namespace: a
	// namespace made meanwhile elsewhere (a container booted by a test
	// run beside these) would otherwise copy them, and keep a replaced
	// server serving until it ends (internal/mountns).
	mountns.Isolate()
	os.Exit(m.Run())
}

// chrootedEnv makes the test binary play a container's first process,
// as systemd-nspawn leaves it: in a mount namespace copied from the
// test's, with a root directory that holds none of the test's mounts.
// It changes its root to the directory the variable names, says "ready"
// on stdout, and exits when its stdin closes.
const chrootedEnv = "SECRETFS_HANDOVER_TEST_CHROOT"

func chrooted(root string) {
	if err := syscall.Chroot(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.Chdir("/"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
