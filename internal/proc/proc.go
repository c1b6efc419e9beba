// Package proc reads what Linux tells of another thread in /proc: the
// facts about a FUSE request's caller that the request does not carry
// (the kernel sends only the calling thread's id, uid and gid). It is the
// one place secretfs looks at other processes.
//
// It reads status, never stat, of a thread that is not exiting: reading
// /proc/<tid>/stat waits for the task's exec_update_lock, which a task in
// execve holds while it closes its close-on-exec descriptors, that is,
// while it may wait for the very FUSE request being served. That would
// deadlock; status takes no such lock.
package proc

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Want says which facts about a thread Describe reads: each costs a read
// of /proc, made only for the requests that need it.
type Want uint8

const (
	WantProcess Want = 1 << iota // the thread's process (status)
	// WantExit asks, with WantProcess, whether the thread is exiting,
	// and on which signal (stat, then). Without WantProcess it asks
	// nothing, even beside WantCommand, which gives the process too.
	WantExit
	WantGroups  // its supplementary groups (status)
	WantCommand // its command name (comm), and its process
)

// Facts are what /proc told of a thread: what Describe was asked for,
// zero where /proc does not tell (a thread gone, or in another pid
// namespace: then the process is the thread id, the best guess).
type Facts struct {
	Process  uint32
	KilledBy syscall.Signal // the signal killing an exiting thread, or 0
	Groups   []uint32       // nil when not known; a thread with none has an empty list
	Command  string
}

// Describe reads what want asks of thread tid, reading its status once
// for the process, whether it is exiting and its groups.
//
// The process is the thread group: a multi-threaded program opens and
// closes on any of its threads. An exiting thread has no memory map any
// more (do_exit releases it before it closes files), so its status shows
// no VmSize. The groups are what a FUSE request does not carry (only the
// uid and gid): a mount that checks a file's mode itself, where the
// kernel did not, needs them to apply the group's bits as the kernel
// would.
func Describe(tid uint32, want Want) Facts {
	var f Facts
	if want == 0 {
		return f
	}
	status, err := read(tid, "status")
	if want&(WantProcess|WantCommand) != 0 {
		f.Process = tid
		if err == nil {
			var exiting bool
			f.Process, exiting = parseStatus(status, tid)
			if want&(WantProcess|WantExit) == WantProcess|WantExit && exiting {
				f.KilledBy = KilledBy(tid)
			}
		}
	}
	if want&WantGroups != 0 && err == nil {
		f.Groups = parseGroups(status)
	}
	if want&WantCommand != 0 {
		f.Command, _ = Command(tid)
	}
	return f
}

// parseGroups reads the Groups line of a /proc/<tid>/status: never nil.
func parseGroups(status []byte) []uint32 {
	groups := []uint32{}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(v) {
				if g, err := strconv.ParseUint(f, 10, 32); err == nil {
					groups = append(groups, uint32(g))
				}
			}
		}
	}
	return groups
}

// KilledBy returns the signal that is killing the exiting thread tid, or
// 0 when it exits with a status. A process that a signal kills (kill -9,
// a timeout, a crash) has its descriptors closed by the kernel as it
// exits, and the FLUSH of that close comes from the dying thread, whose
// exit code then holds the signal (proc(5): /proc/<tid>/stat field 52;
// do_exit sets it before it closes files). A program that exits normally
// without closing its descriptors exits with a status, not a signal.
// Call it only for a thread found exiting (Describe): it reads stat, and an
// exiting thread cannot be in execve (see the package comment). When
// /proc does not tell, the answer is 0.
func KilledBy(tid uint32) syscall.Signal {
	stat, err := read(tid, "stat")
	if err != nil {
		return 0
	}
	return exitSignal(stat)
}

// Command returns the thread's command name, from /proc/<tid>/comm.
func Command(tid uint32) (string, error) {
	comm, err := read(tid, "comm")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(comm)), nil
}

func read(tid uint32, name string) ([]byte, error) {
	return os.ReadFile("/proc/" + strconv.FormatUint(uint64(tid), 10) + "/" + name)
}

// parseStatus reads a /proc/<tid>/status: the thread group (fallback when
// the file names none) and whether the thread is exiting (no VmSize line:
// no memory map).
func parseStatus(status []byte, fallback uint32) (process uint32, exiting bool) {
	process, hasMemory := fallback, false
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			if tgid, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
				process = uint32(tgid)
			}
		}
		hasMemory = hasMemory || strings.HasPrefix(line, "VmSize:")
	}
	return process, !hasMemory
}

// exitSignal reads the exit code in a /proc/<tid>/stat (field 52) and
// returns the signal in it, as WTERMSIG does: 0 for an exit with a status,
// or when the line cannot be read.
func exitSignal(stat []byte) syscall.Signal {
	// The command name, field 2, is in parentheses and may hold spaces
	// or parentheses itself: count fields from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(stat[i+1:])) // fields[0] is field 3
	const exitCodeField, first = 52, 3
	if len(fields) <= exitCodeField-first {
		return 0
	}
	code, err := strconv.ParseUint(fields[exitCodeField-first], 10, 64)
	if err != nil {
		return 0
	}
	return syscall.Signal(code & 0x7f) // the core-dump bit and the status are above
}
