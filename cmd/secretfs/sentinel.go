package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// The sentinel: a process a secretfs that became a systemd service's
// main process by a reload (MAINPID=) keeps beside it in the unit's
// cgroup. systemd (252, and every version that cannot follow a main
// process that is not its child) waits, at a stop, only for its own
// children and for the processes its cgroup kill reached: with the main
// process alien and alone in the cgroup, it sent SIGKILL at once, the
// unmount never ran, and the mount was left dead (ENOTCONN) at the path.
// With the sentinel there, KillMode=control-group's SIGTERM reaches one
// process besides the main one, so systemd waits until the cgroup is
// empty, as long as TimeoutStopSec=: the main process unmounts and exits
// as on any stop. The sentinel ends on SIGTERM or SIGINT, or once its
// parent is gone; SIGHUP it ignores.

// sentinelCommand is the hidden subcommand the sentinel runs.
const sentinelCommand = "sentinel"

// sentinelComm is the sentinel's process name (run as /proc/self/exe,
// it would show as "exe" in ps and systemctl status).
var sentinelComm = []byte("secretfs\x00")

// sentinelPoll is how often the sentinel looks whether its parent is
// still there (a SIGKILLed parent sends nothing).
const sentinelPoll = time.Second

func newSentinelCommand() *cobra.Command {
	return &cobra.Command{
		Use:    sentinelCommand,
		Short:  "Wait beside a secretfs that became a service's main process by a reload, so that systemd waits for it at a stop (internal)",
		Hidden: true,
		Args:   argCount(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			// SIGHUP is not a stop: `systemctl kill -s HUP` (to have
			// the logs reopened) reaches every process of the unit.
			signal.Ignore(syscall.SIGHUP)
			_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&sentinelComm[0])), 0, 0, 0)
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
			parent := os.Getppid()
			tick := time.NewTicker(sentinelPoll)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return nil
				case <-tick.C:
					if os.Getppid() != parent {
						return nil
					}
				}
			}
		},
	}
}

// startSentinel starts this process's sentinel, and reaps it when it
// ends. A sentinel that cannot start is logged: the mount serves on, and
// a stop may then leave it dead, as before.
func startSentinel(log logrus.FieldLogger) {
	closeOnExec()                                          // a direct mount leaves /dev/fuse inheritable: the sentinel must not hold the connection
	cmd := exec.Command("/proc/self/exe", sentinelCommand) // the binary this process runs, even if replaced on disk
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Start(); err != nil {
		log.WithError(err).Warn("could not start the sentinel that makes systemd wait for this process at a stop: a stop may leave the mount dead")
		return
	}
	go func() { _ = cmd.Wait() }()
}
