package metrics

import (
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// told is what a meteredRequests told of one request.
type told struct {
	op    string
	errno syscall.Errno
	took  time.Duration
}

// meteredOver returns raw wrapped as WrapRequests wraps it, and what it
// tells.
func meteredOver(raw fuse.RawFileSystem) (fuse.RawFileSystem, *[]told) {
	var got []told
	return &meteredRequests{RawFileSystem: raw, served: func(op string, errno syscall.Errno, took time.Duration) {
		got = append(got, told{op, errno, took})
	}}, &got
}

// Every request the decorator names is passed on and told once, by its
// name and with the errno the file system beneath answered: go-fuse's
// default answers OK to OPEN and FLUSH, ENOSYS to the rest, and nothing
// (told as 0) to those that have no reply.
func TestEveryRequestIsToldByNameWithItsErrno(t *testing.T) {
	cases := []struct {
		op   string
		call func(fuse.RawFileSystem)
		want syscall.Errno
	}{
		{"LOOKUP", func(r fuse.RawFileSystem) { r.Lookup(nil, &fuse.InHeader{}, "x", &fuse.EntryOut{}) }, syscall.ENOSYS},
		{"GETATTR", func(r fuse.RawFileSystem) { r.GetAttr(nil, &fuse.GetAttrIn{}, &fuse.AttrOut{}) }, syscall.ENOSYS},
		{"SETATTR", func(r fuse.RawFileSystem) { r.SetAttr(nil, &fuse.SetAttrIn{}, &fuse.AttrOut{}) }, syscall.ENOSYS},
		{"MKNOD", func(r fuse.RawFileSystem) { r.Mknod(nil, &fuse.MknodIn{}, "x", &fuse.EntryOut{}) }, syscall.ENOSYS},
		{"MKDIR", func(r fuse.RawFileSystem) { r.Mkdir(nil, &fuse.MkdirIn{}, "x", &fuse.EntryOut{}) }, syscall.ENOSYS},
		{"UNLINK", func(r fuse.RawFileSystem) { r.Unlink(nil, &fuse.InHeader{}, "x") }, syscall.ENOSYS},
		{"RMDIR", func(r fuse.RawFileSystem) { r.Rmdir(nil, &fuse.InHeader{}, "x") }, syscall.ENOSYS},
		{"RENAME", func(r fuse.RawFileSystem) { r.Rename(nil, &fuse.RenameIn{}, "x", "y") }, syscall.ENOSYS},
		{"LINK", func(r fuse.RawFileSystem) { r.Link(nil, &fuse.LinkIn{}, "x", &fuse.EntryOut{}) }, syscall.ENOSYS},
		{"SYMLINK", func(r fuse.RawFileSystem) { r.Symlink(nil, &fuse.InHeader{}, "x", "y", &fuse.EntryOut{}) }, syscall.ENOSYS},
		{"ACCESS", func(r fuse.RawFileSystem) { r.Access(nil, &fuse.AccessIn{}) }, syscall.ENOSYS},
		{"CREATE", func(r fuse.RawFileSystem) { r.Create(nil, &fuse.CreateIn{}, "x", &fuse.CreateOut{}) }, syscall.ENOSYS},
		{"OPEN", func(r fuse.RawFileSystem) { r.Open(nil, &fuse.OpenIn{}, &fuse.OpenOut{}) }, 0},
		{"FLUSH", func(r fuse.RawFileSystem) { r.Flush(nil, &fuse.FlushIn{}) }, 0},
		{"FSYNC", func(r fuse.RawFileSystem) { r.Fsync(nil, &fuse.FsyncIn{}) }, syscall.ENOSYS},
		{"OPENDIR", func(r fuse.RawFileSystem) { r.OpenDir(nil, &fuse.OpenIn{}, &fuse.OpenOut{}) }, syscall.ENOSYS},
		{"READDIR", func(r fuse.RawFileSystem) { r.ReadDir(nil, &fuse.ReadIn{}, nil) }, syscall.ENOSYS},
		{"READDIRPLUS", func(r fuse.RawFileSystem) { r.ReadDirPlus(nil, &fuse.ReadIn{}, nil) }, syscall.ENOSYS},
		{"STATFS", func(r fuse.RawFileSystem) { r.StatFs(nil, &fuse.InHeader{}, &fuse.StatfsOut{}) }, syscall.ENOSYS},
		{"READ", func(r fuse.RawFileSystem) { r.Read(nil, &fuse.ReadIn{}, nil) }, syscall.ENOSYS},
		{"WRITE", func(r fuse.RawFileSystem) { r.Write(nil, &fuse.WriteIn{}, nil) }, syscall.ENOSYS},
		{"WRITE", func(r fuse.RawFileSystem) { r.Writev(nil, &fuse.WriteIn{}, nil) }, syscall.ENOSYS},
		{"FORGET", func(r fuse.RawFileSystem) { r.Forget(2, 1) }, 0},
		{"RELEASE", func(r fuse.RawFileSystem) { r.Release(nil, &fuse.ReleaseIn{}) }, 0},
		{"RELEASEDIR", func(r fuse.RawFileSystem) { r.ReleaseDir(&fuse.ReleaseIn{}) }, 0},
	}
	for _, c := range cases {
		raw, got := meteredOver(fuse.NewDefaultRawFileSystem())
		c.call(raw)
		if len(*got) != 1 || (*got)[0].op != c.op || (*got)[0].errno != c.want {
			t.Errorf("%s: told %+v, want once with errno %d", c.op, *got, c.want)
		}
	}
}

// A request the decorator does not name is passed on untold.
func TestAnUnnamedRequestIsPassedOnUntold(t *testing.T) {
	raw, got := meteredOver(fuse.NewDefaultRawFileSystem())
	if _, st := raw.Readlink(nil, &fuse.InHeader{}); st != fuse.ENOSYS {
		t.Errorf("READLINK answered %v, want what the file system beneath answers (ENOSYS)", st)
	}
	if len(*got) != 0 {
		t.Errorf("READLINK was told: %+v", *got)
	}
}

// answering answers LOOKUP, READ and WRITE as a mount might, slowly.
type answering struct {
	fuse.RawFileSystem
	slow time.Duration
}

func (a answering) Lookup(_ <-chan struct{}, _ *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	time.Sleep(a.slow)
	if name != "there" {
		return fuse.ENOENT
	}
	out.NodeId = 7
	return fuse.OK
}

func (a answering) Read(_ <-chan struct{}, _ *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	time.Sleep(a.slow)
	return fuse.ReadResultData(buf[:copy(buf, "value")]), fuse.EIO
}

func (a answering) Write(_ <-chan struct{}, _ *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return uint32(len(data)), fuse.Status(syscall.EACCES)
}

// What the file system beneath answers reaches the kernel unchanged, its
// errno is told, and so is how long it took.
func TestAnswersArePassedOnAndToldWithTheirDuration(t *testing.T) {
	const slow = 20 * time.Millisecond
	raw, got := meteredOver(answering{RawFileSystem: fuse.NewDefaultRawFileSystem(), slow: slow})

	var out fuse.EntryOut
	if st := raw.Lookup(nil, &fuse.InHeader{}, "there", &out); st != fuse.OK || out.NodeId != 7 {
		t.Errorf("LOOKUP of a name there: %v, node %d", st, out.NodeId)
	}
	if st := raw.Lookup(nil, &fuse.InHeader{}, "absent", &out); st != fuse.ENOENT {
		t.Errorf("LOOKUP of an absent name: %v", st)
	}
	buf := make([]byte, 16)
	r, st := raw.Read(nil, &fuse.ReadIn{}, buf)
	if st != fuse.EIO || r == nil || r.Size() != len("value") {
		t.Errorf("READ: %v, result %v", st, r)
	}
	if n, st := raw.Write(nil, &fuse.WriteIn{}, []byte("abc")); n != 3 || st != fuse.Status(syscall.EACCES) {
		t.Errorf("WRITE: %d bytes, %v", n, st)
	}

	want := []told{{"LOOKUP", 0, slow}, {"LOOKUP", syscall.ENOENT, slow}, {"READ", syscall.EIO, slow}, {"WRITE", syscall.EACCES, 0}}
	if len(*got) != len(want) {
		t.Fatalf("told %+v, want %d requests", *got, len(want))
	}
	for i, w := range want {
		g := (*got)[i]
		if g.op != w.op || g.errno != w.errno || g.took < w.took {
			t.Errorf("request %d told as %s errno %d after %v, want %s errno %d after at least %v", i, g.op, g.errno, g.took, w.op, w.errno, w.took)
		}
	}
}

// WrapRequests counts through the registry: what it wraps is told to
// Served.
func TestWrapRequestsCountsInTheRegistry(t *testing.T) {
	r := New("test", Options{})
	raw := r.WrapRequests(answering{RawFileSystem: fuse.NewDefaultRawFileSystem()})
	raw.Lookup(nil, &fuse.InHeader{}, "absent", &fuse.EntryOut{})
	raw.Lookup(nil, &fuse.InHeader{}, "absent", &fuse.EntryOut{})
	if n := counterValue(t, r, "secretfs_fuse_requests_total", map[string]string{"op": "LOOKUP", "errno": "ENOENT"}); n != 2 {
		t.Errorf("secretfs_fuse_requests_total{op=LOOKUP,errno=ENOENT} is %v, want 2", n)
	}
}

// counterValue is the value of the counter name with labels in r, or
// -1 if r has none.
func counterValue(t *testing.T, r *Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
