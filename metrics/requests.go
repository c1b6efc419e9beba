package metrics

import (
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// WrapRequests returns raw, the mount's requests, counting each one the
// kernel sends with its errno and how long it took (Served): pass it as
// fs.Options.Wrap. Requests that have no reply (FORGET, RELEASE,
// RELEASEDIR) are counted with errno 0. Any request it does not name
// (xattrs, locks, READLINK...) goes to raw uncounted.
func (r *Registry) WrapRequests(raw fuse.RawFileSystem) fuse.RawFileSystem {
	return &meteredRequests{RawFileSystem: raw, served: r.Served}
}

// meteredRequests tells served of every request it passes on to the
// RawFileSystem it wraps.
type meteredRequests struct {
	fuse.RawFileSystem
	served func(op string, errno syscall.Errno, took time.Duration)
}

// tell tells served of a request begun at start. A caller passes
// time.Now() and the request's call as arguments: Go evaluates calls in
// an argument list left to right, so start is taken before the request
// runs.
func (o *meteredRequests) tell(op string, start time.Time, st fuse.Status) fuse.Status {
	o.served(op, syscall.Errno(st), time.Since(start))
	return st
}

func (o *meteredRequests) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	return o.tell("LOOKUP", time.Now(), o.RawFileSystem.Lookup(cancel, header, name, out))
}

func (o *meteredRequests) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return o.tell("GETATTR", time.Now(), o.RawFileSystem.GetAttr(cancel, input, out))
}

func (o *meteredRequests) SetAttr(cancel <-chan struct{}, input *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return o.tell("SETATTR", time.Now(), o.RawFileSystem.SetAttr(cancel, input, out))
}

func (o *meteredRequests) Mknod(cancel <-chan struct{}, input *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return o.tell("MKNOD", time.Now(), o.RawFileSystem.Mknod(cancel, input, name, out))
}

func (o *meteredRequests) Mkdir(cancel <-chan struct{}, input *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return o.tell("MKDIR", time.Now(), o.RawFileSystem.Mkdir(cancel, input, name, out))
}

func (o *meteredRequests) Unlink(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	return o.tell("UNLINK", time.Now(), o.RawFileSystem.Unlink(cancel, header, name))
}

func (o *meteredRequests) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	return o.tell("RMDIR", time.Now(), o.RawFileSystem.Rmdir(cancel, header, name))
}

func (o *meteredRequests) Rename(cancel <-chan struct{}, input *fuse.RenameIn, oldName string, newName string) fuse.Status {
	return o.tell("RENAME", time.Now(), o.RawFileSystem.Rename(cancel, input, oldName, newName))
}

func (o *meteredRequests) Link(cancel <-chan struct{}, input *fuse.LinkIn, filename string, out *fuse.EntryOut) fuse.Status {
	return o.tell("LINK", time.Now(), o.RawFileSystem.Link(cancel, input, filename, out))
}

func (o *meteredRequests) Symlink(cancel <-chan struct{}, header *fuse.InHeader, pointedTo string, linkName string, out *fuse.EntryOut) fuse.Status {
	return o.tell("SYMLINK", time.Now(), o.RawFileSystem.Symlink(cancel, header, pointedTo, linkName, out))
}

func (o *meteredRequests) Access(cancel <-chan struct{}, input *fuse.AccessIn) fuse.Status {
	return o.tell("ACCESS", time.Now(), o.RawFileSystem.Access(cancel, input))
}

func (o *meteredRequests) Create(cancel <-chan struct{}, input *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return o.tell("CREATE", time.Now(), o.RawFileSystem.Create(cancel, input, name, out))
}

func (o *meteredRequests) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return o.tell("OPEN", time.Now(), o.RawFileSystem.Open(cancel, input, out))
}

func (o *meteredRequests) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status {
	return o.tell("FLUSH", time.Now(), o.RawFileSystem.Flush(cancel, input))
}

func (o *meteredRequests) Fsync(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	return o.tell("FSYNC", time.Now(), o.RawFileSystem.Fsync(cancel, input))
}

func (o *meteredRequests) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return o.tell("OPENDIR", time.Now(), o.RawFileSystem.OpenDir(cancel, input, out))
}

func (o *meteredRequests) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return o.tell("READDIR", time.Now(), o.RawFileSystem.ReadDir(cancel, input, out))
}

func (o *meteredRequests) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return o.tell("READDIRPLUS", time.Now(), o.RawFileSystem.ReadDirPlus(cancel, input, out))
}

func (o *meteredRequests) StatFs(cancel <-chan struct{}, input *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	return o.tell("STATFS", time.Now(), o.RawFileSystem.StatFs(cancel, input, out))
}

func (o *meteredRequests) Read(cancel <-chan struct{}, input *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	start := time.Now()
	r, st := o.RawFileSystem.Read(cancel, input, buf)
	o.tell("READ", start, st)
	return r, st
}

func (o *meteredRequests) Write(cancel <-chan struct{}, input *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := o.RawFileSystem.Write(cancel, input, data)
	o.tell("WRITE", start, st)
	return n, st
}

func (o *meteredRequests) Writev(cancel <-chan struct{}, input *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := o.RawFileSystem.Writev(cancel, input, data)
	o.tell("WRITE", start, st)
	return n, st
}

func (o *meteredRequests) Forget(nodeid, nlookup uint64) {
	start := time.Now()
	o.RawFileSystem.Forget(nodeid, nlookup)
	o.tell("FORGET", start, fuse.OK)
}

func (o *meteredRequests) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	start := time.Now()
	o.RawFileSystem.Release(cancel, input)
	o.tell("RELEASE", start, fuse.OK)
}

func (o *meteredRequests) ReleaseDir(input *fuse.ReleaseIn) {
	start := time.Now()
	o.RawFileSystem.ReleaseDir(input)
	o.tell("RELEASEDIR", start, fuse.OK)
}
