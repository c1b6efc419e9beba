package fs

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"

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

// anyOwner stands for a writer whose lock owner the kernel did not send:
// then any flush commits, as the plain FUSE model would.
const anyOwner uint64 = 0

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

// process returns the process (thread group) that made the request behind
// ctx, or 0 when it cannot be told. The kernel sends the calling thread's
// id; a multi-threaded program opens and closes on any of its threads, so
// the thread id alone would not recognise it.
func process(ctx context.Context) uint32 {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return 0
	}
	tid := fc.Caller.Pid
	status, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(tid), 10) + "/status")
	if err != nil {
		return tid // gone already, or not visible: the thread id is the best guess
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			if tgid, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
				return uint32(tgid)
			}
		}
	}
	return tid
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
