package fs

import (
	"context"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/internal/proc"
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

// What a request's vfs.Caller must tell beyond what the request itself
// does (the thread, uid, gid and lock owner), read from /proc (package
// proc) only for the requests that need it. The command is read only when
// there is an audit log, and groups only for a caller other than root.
const (
	audited = proc.WantCommand           // a request the audit log records
	opener  = audited | proc.WantProcess // an open for writing, which records who opened it
	closer  = opener | proc.WantExit     // a close of a writer's descriptor: was its process killed?
	maker   = opener | proc.WantGroups   // a creation, whose caller vfs checks against the new file's mode
	mover   = audited | proc.WantGroups  // a rename, likewise
)

// thread is the id of the thread that made the request behind ctx, or 0
// when the kernel sent none.
func thread(ctx context.Context) uint32 {
	if fc, ok := ctx.(*fuse.Context); ok {
		return fc.Caller.Pid
	}
	return 0
}

// caller tells who made the request behind ctx, with what need asks
// for (audited, opener, ...).
func (m *mount) caller(ctx context.Context, need proc.Want) vfs.Caller {
	fc, ok := ctx.(*fuse.Context)
	if !ok {
		return vfs.Caller{}
	}
	c := vfs.Caller{Thread: fc.Caller.Pid, UID: fc.Caller.Uid, GID: fc.Caller.Gid, Owner: m.requests.owner(ctx)}
	if c.Thread == 0 {
		return c
	}
	if m.isOwnSignal(ctx) {
		c.Own = true // the mount's own change signal: nothing more is needed
		return c
	}
	if m.opts.Audit == nil {
		need &^= proc.WantCommand
	}
	if c.UID == 0 {
		need &^= proc.WantGroups // root's groups decide nothing: every mode lets it
	}
	f := proc.Describe(c.Thread, need)
	c.Process, c.KilledBy, c.Groups, c.Command = f.Process, f.KilledBy, f.Groups, f.Command
	return c
}

// openFor is what an open with flags needs to know of its caller: who
// opens for writing, which the session records.
func openFor(flags uint32) proc.Want {
	if vfs.Writes(flags) {
		return opener
	}
	return audited
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
