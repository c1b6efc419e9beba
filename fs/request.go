package fs

import (
	"context"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// lockOwners recovers what go-fuse's node API does not pass on: the lock
// owner of WRITE, FLUSH and truncating SETATTR requests. The kernel sets
// it to the (scrambled) file table of the calling process, so it tells
// the process that wrote through a descriptor apart from one that only
// inherited it. That matters because every close(2) sends FLUSH: a shell
// closes its copy of a redirection before writing (open, dup2, close,
// write), and every fork+exec of a writer closes the inherited
// descriptor. Committing on those flushes would publish empty or partial
// values.
//
// Each request's cancel channel is unique while the request is in flight
// and reaches the node API unchanged as fuse.Context.Cancel, so it keys
// the owner for the duration of the call.
type lockOwners struct {
	fuse.RawFileSystem
	byRequest sync.Map // <-chan struct{} -> uint64
}

// anyOwner stands for a writer whose lock owner the kernel did not send:
// then any flush commits, as the plain FUSE model would.
const anyOwner uint64 = 0

func (o *lockOwners) track(cancel <-chan struct{}, owner uint64) func() {
	o.byRequest.Store(cancel, owner)
	return func() { o.byRequest.Delete(cancel) }
}

// of returns the lock owner of the request behind ctx, or anyOwner.
func (o *lockOwners) of(ctx context.Context) uint64 {
	if fc, ok := ctx.(*fuse.Context); ok && fc.Cancel != nil {
		if v, ok := o.byRequest.Load(fc.Cancel); ok {
			return v.(uint64)
		}
	}
	return anyOwner
}

func (o *lockOwners) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_LOCKOWNER != 0 {
		defer o.track(cancel, in.LockOwner)()
	}
	return o.RawFileSystem.Write(cancel, in, data)
}

func (o *lockOwners) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_LOCKOWNER != 0 {
		defer o.track(cancel, in.LockOwner)()
	}
	return o.RawFileSystem.Writev(cancel, in, data)
}

func (o *lockOwners) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer o.track(cancel, in.LockOwner)()
	return o.RawFileSystem.Flush(cancel, in)
}

func (o *lockOwners) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_LOCKOWNER != 0 {
		defer o.track(cancel, in.LockOwner)()
	}
	return o.RawFileSystem.SetAttr(cancel, in, out)
}
