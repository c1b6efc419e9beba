package handover

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holder is something that still references a detached mount: a
// process's descriptor, current or root directory, or a mount (a bind of
// a directory in it, or a copy) in some process's mount namespace, also
// one beneath the process's root that its mountinfo does not list.
type Holder struct {
	PID     int
	Command string // the process's name (/proc/PID/comm)
	What    string // "descriptor 3: /billing/db-password", "current directory: /billing", "mount at /srv/billing"
}

func (h Holder) String() string { return fmt.Sprintf("%s (process %d, %s)", h.What, h.PID, h.Command) }

// Holders lists what references the file system whose device number is
// dev, among the processes this process can see in /proc (not those of
// other PID namespaces, such as other containers), and the mounts of
// their mount namespaces (Linux 6.11 or later lists those beneath the
// processes' roots too: listmount.go). It asks the kernel
// only (AT_STATX_DONT_SYNC): no request reaches the file system's
// server, which may be the caller. Paths are as each process sees them;
// a descriptor of a detached mount shows the path inside the mount.
func Holders(dev uint64) []Holder {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var found []Holder
	namespaces := map[string]bool{}
	for _, dir := range procs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		comm := readComm(dir)
		add := func(what string) { found = append(found, Holder{PID: pid, Command: comm, What: what}) }
		for _, link := range []struct{ name, what string }{{"cwd", "current directory"}, {"root", "root directory"}} {
			if onDev(filepath.Join(dir, link.name), dev) {
				target, _ := os.Readlink(filepath.Join(dir, link.name))
				add(link.what + ": " + target)
			}
		}
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			p := filepath.Join(dir, "fd", fd.Name())
			if onDev(p, dev) {
				target, _ := os.Readlink(p)
				add("descriptor " + fd.Name() + ": " + target)
			}
		}
		// The mounts of each mount namespace, once.
		ns, err := os.Readlink(filepath.Join(dir, "ns", "mnt"))
		if err != nil || namespaces[ns] {
			continue
		}
		namespaces[ns] = true
		mounts, err := ReadMountInfo(filepath.Join(dir, "mountinfo"))
		if err != nil {
			continue
		}
		listed := 0
		for _, m := range mounts {
			if m.Dev == dev {
				add("mount at " + m.Point + " (" + ns + ")")
				listed++
			}
		}
		// And those its mountinfo does not list (listmount.go).
		if all, ok := mountsInNamespace(filepath.Join(dir, "ns", "mnt"), dev); ok && all > listed {
			add(fmt.Sprintf("%d mount(s) in %s outside the root directory of process %d, listed in no mountinfo (a namespace copied while the file system was mounted, such as a systemd-nspawn container's)", all-listed, ns, pid))
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].PID < found[j].PID })
	return found
}

// onDev reports whether the file path leads to is on the file system dev.
func onDev(path string, dev uint64) bool {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_STATX_DONT_SYNC, 0, &stx); err != nil {
		return false
	}
	return unix.Mkdev(stx.Dev_major, stx.Dev_minor) == dev
}

func readComm(procDir string) string {
	b, err := os.ReadFile(filepath.Join(procDir, "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
