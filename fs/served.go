package fs

import (
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// observed tells served of every request the kernel sends, with its
// errno and how long it took: what the mount's metrics count. Requests
// that have no reply (FORGET, RELEASE, RELEASEDIR) are told with errno 0.
type observed struct {
	fuse.RawFileSystem
	served func(op string, errno syscall.Errno, took time.Duration)
}

// tell tells served of a request begun at start. A caller passes
// time.Now() and the request's call as arguments: Go evaluates calls in
// an argument list left to right, so start is taken before the request
// runs.
func (o *observed) tell(op string, start time.Time, st fuse.Status) fuse.Status {
	o.served(op, syscall.Errno(st), time.Since(start))
	return st
}

func (o *observed) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	return o.tell("LOOKUP", time.Now(), o.RawFileSystem.Lookup(cancel, header, name, out))
}

func (o *observed) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return o.tell("GETATTR", time.Now(), o.RawFileSystem.GetAttr(cancel, input, out))
}

func (o *observed) SetAttr(cancel <-chan struct{}, input *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return o.tell("SETATTR", time.Now(), o.RawFileSystem.SetAttr(cancel, input, out))
}

func (o *observed) Mknod(cancel <-chan struct{}, input *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return o.tell("MKNOD", time.Now(), o.RawFileSystem.Mknod(cancel, input, name, out))
}

func (o *observed) Mkdir(cancel <-chan struct{}, input *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return o.tell("MKDIR", time.Now(), o.RawFileSystem.Mkdir(cancel, input, name, out))
}

func (o *observed) Unlink(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	return o.tell("UNLINK", time.Now(), o.RawFileSystem.Unlink(cancel, header, name))
}

func (o *observed) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	return o.tell("RMDIR", time.Now(), o.RawFileSystem.Rmdir(cancel, header, name))
}

func (o *observed) Rename(cancel <-chan struct{}, input *fuse.RenameIn, oldName string, newName string) fuse.Status {
	return o.tell("RENAME", time.Now(), o.RawFileSystem.Rename(cancel, input, oldName, newName))
}

func (o *observed) Link(cancel <-chan struct{}, input *fuse.LinkIn, filename string, out *fuse.EntryOut) fuse.Status {
	return o.tell("LINK", time.Now(), o.RawFileSystem.Link(cancel, input, filename, out))
}

func (o *observed) Symlink(cancel <-chan struct{}, header *fuse.InHeader, pointedTo string, linkName string, out *fuse.EntryOut) fuse.Status {
	return o.tell("SYMLINK", time.Now(), o.RawFileSystem.Symlink(cancel, header, pointedTo, linkName, out))
}

func (o *observed) Access(cancel <-chan struct{}, input *fuse.AccessIn) fuse.Status {
	return o.tell("ACCESS", time.Now(), o.RawFileSystem.Access(cancel, input))
}

func (o *observed) Create(cancel <-chan struct{}, input *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return o.tell("CREATE", time.Now(), o.RawFileSystem.Create(cancel, input, name, out))
}

func (o *observed) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return o.tell("OPEN", time.Now(), o.RawFileSystem.Open(cancel, input, out))
}

func (o *observed) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status {
	return o.tell("FLUSH", time.Now(), o.RawFileSystem.Flush(cancel, input))
}

func (o *observed) Fsync(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	return o.tell("FSYNC", time.Now(), o.RawFileSystem.Fsync(cancel, input))
}

func (o *observed) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return o.tell("OPENDIR", time.Now(), o.RawFileSystem.OpenDir(cancel, input, out))
}

func (o *observed) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return o.tell("READDIR", time.Now(), o.RawFileSystem.ReadDir(cancel, input, out))
}

func (o *observed) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return o.tell("READDIRPLUS", time.Now(), o.RawFileSystem.ReadDirPlus(cancel, input, out))
}

func (o *observed) StatFs(cancel <-chan struct{}, input *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	return o.tell("STATFS", time.Now(), o.RawFileSystem.StatFs(cancel, input, out))
}

func (o *observed) Read(cancel <-chan struct{}, input *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	start := time.Now()
	r, st := o.RawFileSystem.Read(cancel, input, buf)
	o.tell("READ", start, st)
	return r, st
}

func (o *observed) Write(cancel <-chan struct{}, input *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := o.RawFileSystem.Write(cancel, input, data)
	o.tell("WRITE", start, st)
	return n, st
}

func (o *observed) Writev(cancel <-chan struct{}, input *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := o.RawFileSystem.Writev(cancel, input, data)
	o.tell("WRITE", start, st)
	return n, st
}

func (o *observed) Forget(nodeid, nlookup uint64) {
	start := time.Now()
	o.RawFileSystem.Forget(nodeid, nlookup)
	o.tell("FORGET", start, fuse.OK)
}

func (o *observed) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	start := time.Now()
	o.RawFileSystem.Release(cancel, input)
	o.tell("RELEASE", start, fuse.OK)
}

func (o *observed) ReleaseDir(input *fuse.ReleaseIn) {
	start := time.Now()
	o.RawFileSystem.ReleaseDir(input)
	o.tell("RELEASEDIR", start, fuse.OK)
}
