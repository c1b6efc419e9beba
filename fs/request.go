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

	"github.com/secretfs/secretfs/vfs"
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
	owner     uint64 // lock owner, or vfs.AnyOwner
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

// need says what a request's vfs.Caller must tell beyond what the
// request itself does (the thread, uid, gid and lock owner): each costs a
// read of /proc, made only for the requests that need it.
type need uint8

const (
	withCommand need = 1 << iota // the command name, for the audit log (read only when there is one)
	withProcess                  // the thread's process, from /proc/<tid>/status
	withExit                     // whether the process is exiting, and on which signal

	audited = withCommand                          // a request the audit log records
	opener  = withCommand | withProcess            // an open for writing, which records who opened it
	closer  = withCommand | withProcess | withExit // a close of a writer's descriptor
)

// caller tells who made the request behind ctx, with what need asks for.
//
// The kernel sends the calling thread's id; a multi-threaded program
// opens and closes on any of its threads, so the process is told by its
// thread group, which /proc/<tid>/status gives. An exiting thread has no
// memory map any more (do_exit releases it before it closes files), so
// its status shows no VmSize; then its exit code tells the signal that
// kills it (see killedBy).
//
// It reads status, never stat, of a thread that is not exiting: reading
// /proc/<tid>/stat waits for the task's exec_update_lock, which a task in
// execve holds while it closes its close-on-exec descriptors, that is,
// while it waits for the very FLUSH being served. That would deadlock;
// status takes no such lock. When /proc does not show the thread (gone,
// another pid namespace), the thread id is the best guess at its process.
func (m *mount) caller(ctx context.Context, need need) vfs.Caller {
	fc, ok := ctx.(*fuse.Context)
	if !ok {
		return vfs.Caller{}
	}
	c := vfs.Caller{Thread: fc.Caller.Pid, UID: fc.Caller.Uid, GID: fc.Caller.Gid, Owner: m.requests.owner(ctx)}
	if c.Thread == 0 {
		return c
	}
	if m.signals.isOwn(ctx) {
		c.Own = true // the mount's own change signal: nothing more is needed
		return c
	}
	if need&withProcess != 0 {
		c.Process = c.Thread
		exiting := false
		if status, err := m.proc.read(c.Thread, "status"); err == nil {
			c.Process, exiting = parseStatus(status, c.Thread)
		}
		if need&withExit != 0 && exiting {
			c.KilledBy = m.killedBy(c.Thread)
		}
	}
	if need&withCommand != 0 && m.opts.Audit != nil {
		if comm, err := m.proc.read(c.Thread, "comm"); err == nil {
			c.Command = strings.TrimSpace(string(comm))
		}
	}
	return c
}

// openFor is what an open with flags needs to know of its caller: who
// opens for writing, which the session records.
func openFor(flags uint32) need {
	if vfs.Writes(flags) {
		return opener
	}
	return audited
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

// killedBy returns the signal that is killing the exiting thread tid, or
// 0 when it exits with a status. A process that a signal kills (kill -9,
// a timeout, a crash) has its descriptors closed by the kernel as it
// exits, and the FLUSH of that close comes from the dying thread, whose
// exit code then holds the signal (proc(5): /proc/<tid>/stat field 52;
// do_exit sets it before it closes files). A program that exits normally
// without closing its descriptors exits with a status, not a signal. Only
// an exiting thread's stat is read: it cannot be in execve (see caller).
// When /proc does not tell, the answer is 0 and the close commits, as the
// plain FUSE model would.
func (m *mount) killedBy(tid uint32) syscall.Signal {
	stat, err := m.proc.read(tid, "stat")
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

// owner returns the lock owner of the request behind ctx, or
// vfs.AnyOwner.
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
