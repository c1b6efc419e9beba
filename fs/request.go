package fs

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// requests recovers two facts about a request that go-fuse's node API
// does not pass on.
//
// The lock owner of WRITE, FLUSH and truncating SETATTR requests: the
// kernel sets it to the (scrambled) file table of the calling process, so
// it tells the process that wrote through a descriptor from one that only
// inherited it. Every close(2) sends FLUSH: a shell closes its copy of a
// redirection before writing (open, dup2, close, write), and every
// fork+exec of a writer closes the inherited descriptor. Committing on
// those flushes would publish empty or partial values.
//
// Whether a GETATTR came through an open descriptor (fstat) or a path
// (stat): go-fuse hands Getattr some open file of the inode in both cases,
// and a stat by another process must not see a writer's private buffer.
//
// Each request's cancel channel is unique while the request is in flight
// and reaches the node API unchanged as fuse.Context.Cancel, so it keys
// the facts for the duration of the call.
type requests struct {
	fuse.RawFileSystem
	facts sync.Map // <-chan struct{} -> requestFacts
}

type requestFacts struct {
	owner     uint64 // lock owner, or anyOwner
	viaHandle bool   // GETATTR through a descriptor
}

func (r *requests) note(cancel <-chan struct{}, f requestFacts) func() {
	r.facts.Store(cancel, f)
	return func() { r.facts.Delete(cancel) }
}

func (r *requests) of(ctx context.Context) requestFacts {
	if fc, ok := ctx.(*fuse.Context); ok && fc.Cancel != nil {
		if v, ok := r.facts.Load(fc.Cancel); ok {
			return v.(requestFacts)
		}
	}
	return requestFacts{}
}

// caller is what /proc tells of the thread that made a request.
type caller struct {
	tid     uint32 // the calling thread, as the kernel sent it; 0 if it sent none
	process uint32 // its thread group: the process
	exiting bool   // the thread is exiting: the kernel is closing its descriptors
}

// callerOf reads /proc/<tid>/status for the thread behind ctx. The kernel
// sends the calling thread's id; a multi-threaded program opens and
// closes on any of its threads, so the process is told by its thread
// group. An exiting thread has no memory map any more (do_exit releases
// it before it closes files), so its status shows no VmSize.
//
// It reads status, never stat: reading /proc/<tid>/stat waits for the
// task's exec_update_lock, which a task in execve holds while it closes
// its close-on-exec descriptors, that is, while it waits for the very
// FLUSH being served. That would deadlock; status takes no such lock.
// When /proc does not show the thread (gone, another pid namespace), the
// thread id is the best guess at its process.
func (m *mount) callerOf(ctx context.Context) caller {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return caller{}
	}
	c := caller{tid: fc.Caller.Pid, process: fc.Caller.Pid}
	if status, err := m.proc.read(c.tid, "status"); err == nil {
		c.process, c.exiting = parseStatus(status, c.tid)
	}
	return c
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

// threadOf returns the thread that made the request behind ctx (the
// kernel sends the calling thread's id), or 0.
func threadOf(ctx context.Context) uint32 {
	if fc, ok := ctx.(*fuse.Context); ok {
		return fc.Caller.Pid
	}
	return 0
}

// process returns the process that made the request behind ctx, or 0
// when it cannot be told.
func (m *mount) process(ctx context.Context) uint32 { return m.callerOf(ctx).process }

// killedBy returns the signal that is killing the caller, or 0 when it is
// not exiting on a signal. A process that a signal kills (kill -9, a
// timeout, a crash) has its descriptors closed by the kernel as it exits,
// and the FLUSH of that close comes from the dying thread, whose exit
// code then holds the signal (proc(5): /proc/<tid>/stat field 52; do_exit
// sets it before it closes files). A program that exits normally without
// closing its descriptors exits with a status, not a signal. Only an
// exiting thread's stat is read: it cannot be in execve (see mount.callerOf).
// When /proc does not tell, the answer is 0 and the close commits, as the
// plain FUSE model would.
func (m *mount) killedBy(c caller) syscall.Signal {
	if !c.exiting {
		return 0
	}
	stat, err := m.proc.read(c.tid, "stat")
	if err != nil {
		return 0
	}
	return exitSignal(stat)
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

// procfs reads what the kernel tells of a thread in /proc/<tid>/<name>:
// the one place this package looks at other processes.
type procfs interface {
	read(tid uint32, name string) ([]byte, error)
}

// realProc reads /proc.
type realProc struct{}

func (realProc) read(tid uint32, name string) ([]byte, error) {
	return os.ReadFile("/proc/" + strconv.FormatUint(uint64(tid), 10) + "/" + name)
}

// owner returns the lock owner of the request behind ctx, or anyOwner.
func (r *requests) owner(ctx context.Context) uint64 { return r.of(ctx).owner }

// viaHandle reports whether the GETATTR behind ctx came through an open
// descriptor of the caller.
func (r *requests) viaHandle(ctx context.Context) bool { return r.of(ctx).viaHandle }

func (r *requests) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_LOCKOWNER != 0 {
		defer r.note(cancel, requestFacts{owner: in.LockOwner})()
	}
	return r.RawFileSystem.Write(cancel, in, data)
}

func (r *requests) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_LOCKOWNER != 0 {
		defer r.note(cancel, requestFacts{owner: in.LockOwner})()
	}
	return r.RawFileSystem.Writev(cancel, in, data)
}

func (r *requests) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer r.note(cancel, requestFacts{owner: in.LockOwner})()
	return r.RawFileSystem.Flush(cancel, in)
}

func (r *requests) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_LOCKOWNER != 0 {
		defer r.note(cancel, requestFacts{owner: in.LockOwner})()
	}
	return r.RawFileSystem.SetAttr(cancel, in, out)
}

func (r *requests) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Flags()&fuse.FUSE_GETATTR_FH != 0 {
		defer r.note(cancel, requestFacts{viaHandle: true})()
	}
	return r.RawFileSystem.GetAttr(cancel, in, out)
}
