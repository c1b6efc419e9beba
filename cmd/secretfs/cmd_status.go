package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/secretfs/secretfs/internal/handover"
)

// newStatusCommand is `secretfs status MOUNTPOINT`: it asks the secretfs
// serving MOUNTPOINT, through its control socket, how it fares. It exits
// 0 only when that secretfs serves the mount point (the path shows its
// file system, in this mount namespace), its backend answers,
// and it runs where this command can see it (this PID namespace or one
// below): in a container, the mount point is then served by this
// container's secretfs and not by another's it replaced or that replaced
// it. That makes it the readiness probe of a DaemonSet that upgrades with
// --replace (deploy/daemonset.yaml).
func newStatusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status MOUNTPOINT",
		Short: "Say which secretfs serves MOUNTPOINT and how it fares; exit 0 only if it serves it, its backend answers, and it runs in this PID namespace (a container's readiness probe)",
		Args:  argCount(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := resolve(args[0])
			if err != nil {
				return err
			}
			if dead, _ := deadMountAt(dir); dead {
				return fmt.Errorf("%s: the secretfs that served it is gone, and its mount is dead (transport endpoint is not connected); a new mount there recovers it", dir)
			}
			if _, err := os.Stat(dir); err != nil {
				return err // "no such file or directory", said of the path given
			}
			p, err := handover.Status(dir)
			if err != nil {
				return err
			}
			defer p.Close()
			r := p.Hello
			where := fmt.Sprintf("process %d", p.PID)
			if p.PID == 0 {
				where = fmt.Sprintf("a process of another PID namespace (its own pid %d)", r.PID)
			}
			shown := shows(dir, r.Dev, where)
			notReady := shown
			if shown == nil {
				notReady = readiness(dir, r, p.PID)
			}
			if asJSON {
				// The reply as the secretfs gave it, with the process id
				// as this namespace sees it, and this command's verdict:
				// "serving" is that process's own word, "ready" whether
				// it serves this path as seen from here.
				out := struct {
					handover.Reply
					SeenPID  int    `json:"seen_pid"`
					Ready    bool   `json:"ready"`
					NotReady string `json:"not_ready,omitempty"`
				}{Reply: r, SeenPID: p.PID, Ready: notReady == nil}
				if notReady != nil {
					out.NotReady = notReady.Error()
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
				return notReady
			}
			if shown != nil {
				return shown
			}
			health := "its backend answers"
			if !r.Healthy {
				health = "its backend does not answer"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: served by secretfs %s, %s; %s; %d goroutines, %d open descriptors\n",
				dir, r.Release, where, health, r.Goroutines, r.Descriptors)
			return notReady
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the secretfs's reply as JSON: its version, process id, health, and its open descriptors and goroutines (counted by the function that started them), and whether it is ready to serve MOUNTPOINT as seen from here (\"ready\"; \"not_ready\" says why not)")
	return cmd
}

// readiness says why the secretfs that answered, r (seen here as
// process seenPID), though the path shows its file system, is not ready
// to serve dir, or nil.
func readiness(dir string, r handover.Reply, seenPID int) error {
	switch {
	case !r.Serving:
		return fmt.Errorf("%s: that secretfs has stepped down", dir)
	case seenPID == 0:
		return fmt.Errorf("%s: served by a secretfs in another PID namespace (another container), not this one's", dir)
	case !r.Healthy:
		return fmt.Errorf("%s: its backend does not answer", dir)
	}
	return nil
}

// shows checks that the path dir shows, in this process's mount
// namespace, the file system dev ("major:minor") that the secretfs
// answering its control socket (where) serves: a socket beside a path
// is no proof that the path is served (an unmounted mount that another
// namespace keeps alive, or a mount namespace the mount never reached).
func shows(dir, dev, where string) error {
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	top, ok := handover.TopAt(all, dir)
	switch {
	case !ok:
		return fmt.Errorf("%s: nothing is mounted there in this mount namespace; the secretfs answering its control socket (%s) serves the file system %s elsewhere", dir, where, dev)
	case top.DevString() != dev:
		return fmt.Errorf("%s: not served by the secretfs answering its control socket (%s): the path shows the file system %s (%s) in this mount namespace, and that secretfs serves %s", dir, where, top.DevString(), top.FSType, dev)
	}
	return nil
}
