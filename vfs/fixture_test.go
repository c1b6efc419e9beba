package vfs

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/audit"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs/vfstest"
)

// The tests of this package drive the file semantics as the kernel would,
// through the calls package fs makes, against a fake catalog
// (vfs/vfstest): no FUSE, no store, no keys.

var ctx = context.Background()

// The processes of the tests: a shell, a command it runs (its child, with
// a file table of its own), and an unrelated writer.
var (
	shell   = Caller{Thread: 10, Process: 10, Owner: 1, UID: 1000, GID: 1000, Command: "sh"}
	command = Caller{Thread: 20, Process: 20, Owner: 2, UID: 1000, GID: 1000, Command: "cat"}
	other   = Caller{Thread: 30, Process: 30, Owner: 3, UID: 1001, GID: 1001, Command: "vi"}
)

var (
	db  = store.Key{App: "app", Name: "db"}
	db2 = store.Key{App: "app", Name: "db2"}
)

// fixture is a file system over a fake catalog, with what it told.
type fixture struct {
	t   testing.TB
	cat *vfstest.Catalog
	fs  *FS
	log *logtest.Hook

	mu       sync.Mutex
	events   []Event
	audits   []audit.Entry
	outcomes []error // Options.Committed
}

// testErrno is the errno mapping of the audit log's results in these
// tests: the kinds they meet.
func testErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrLookUpAgain), fault.Is(fault.Conflict, err):
		return syscall.ESTALE
	case fault.Is(fault.NotFound, err):
		return syscall.ENOENT
	case fault.Is(fault.ReadOnly, err):
		return syscall.EROFS
	}
	return syscall.EIO
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	f := &fixture{t: t, cat: vfstest.New()}
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	log.SetOutput(io.Discard)
	f.log = hook
	opts.Log = log
	if opts.FileMode == 0 {
		opts.FileMode, opts.DirMode = 0o600, 0o700
	}
	if opts.UID == 0 && opts.GID == 0 {
		// The shell's files, as a mount of --uid 1000 shows them: the
		// tests' callers make and move them (ownership.go).
		opts.UID, opts.GID = shell.UID, shell.GID
	}
	opts.Events = func(e Event) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.events = append(f.events, e)
	}
	opts.Audit = func(e audit.Entry) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.audits = append(f.audits, e)
	}
	opts.Committed = func(err error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.outcomes = append(f.outcomes, err)
	}
	opts.Errno = testErrno
	f.fs = New(f.cat, opts)
	f.fs.self = 0 // the mount runs as root, whoever runs the tests: shell and other are other users
	return f
}

// told returns the events of kind told so far, by key.
func (f *fixture) told(kind EventKind) []store.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Key
	for _, e := range f.events {
		if e.Kind == kind {
			out = append(out, e.Key)
		}
	}
	return out
}

// recorded returns the audit log so far.
func (f *fixture) recorded() []audit.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]audit.Entry(nil), f.audits...)
}

// revision returns the file the name k points at, as a lookup finds it.
func (f *fixture) revision(k store.Key) *Revision {
	f.t.Helper()
	e, err := f.fs.Lookup(ctx, k)
	if err != nil || e.Created != nil {
		f.t.Fatalf("lookup %v: %+v, %v; want a committed revision", k, e, err)
	}
	return f.fs.NewRevision(k, e.Meta, func() {}, func() {})
}

// open opens the revision k points at with flags, for c.
func (f *fixture) open(k store.Key, c Caller, flags uint32) *Handle {
	f.t.Helper()
	h, err := f.revision(k).Open(ctx, c, flags)
	if err != nil || h == nil {
		f.t.Fatalf("open %v for writing: %v", k, err)
	}
	return h
}

// create opens k with O_CREAT (and flags), for c.
func (f *fixture) create(k store.Key, c Caller, flags uint32) (*Handle, Entry) {
	f.t.Helper()
	h, e, err := f.fs.Create(ctx, c, k, flags|syscall.O_CREAT)
	if err != nil {
		f.t.Fatalf("create %v: %v", k, err)
	}
	if e.Created != nil {
		f.t.Cleanup(e.Created.Unhold)
	}
	return h, e
}

func (f *fixture) write(h *Handle, c Caller, data string, off int64) {
	f.t.Helper()
	if _, err := h.Write(c, []byte(data), off); err != nil {
		f.t.Fatalf("write: %v", err)
	}
}

// replaceWith writes data through h for c, as the whole value, closes
// it (which must commit) and releases it.
func (f *fixture) replaceWith(h *Handle, c Caller, data string) {
	f.t.Helper()
	f.write(h, c, data, 0)
	f.mustNot("close", h.Flush(ctx, c))
	h.Release(ctx)
}

// value returns what the store holds at k ("<none>" for nothing).
func (f *fixture) value(k store.Key) string {
	v, ok := f.cat.Value(k)
	if !ok {
		return "<none>"
	}
	return v
}

// puts is the number of conditional writes the store was asked for.
func (f *fixture) puts() int { return f.cat.Calls("Put") }

func (f *fixture) mustNot(what string, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
}

func wantKind(t *testing.T, what string, err error, kind fault.Kind) {
	t.Helper()
	if !fault.Is(kind, err) {
		t.Errorf("%s: %v, want %v", what, err, kind)
	}
}

// hangBound is how long a test waits for what must happen before it
// calls it a hang and fails: it turns a regression that would hang the
// test into a failure that says what never came. It measures nothing: no
// test asserts how long anything took.
const hangBound = 10 * time.Second

// await returns what ch gives, failing t if it gave nothing within
// hangBound: what says what was awaited ("the lookup to return").
func await[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	bound := time.NewTimer(hangBound)
	defer bound.Stop()
	select {
	case v := <-ch:
		return v
	case <-bound.C:
	}
	t.Fatalf("waited %v for %s: it never came", hangBound, what)
	var zero T
	return zero
}

// until yields until cond holds, failing t if it did not within
// hangBound: what says what was awaited.
func until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: it never came", hangBound, what)
		}
		runtime.Gosched()
	}
}

func sizeTo(n int64) Change { return Change{Size: &n} }

const (
	wronly = syscall.O_WRONLY
	trunc  = syscall.O_WRONLY | syscall.O_TRUNC
)
