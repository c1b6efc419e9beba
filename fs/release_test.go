package fs_test

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/fs"
)

// heldReleases passes every request on, counting OPENs and READs, and
// holds every RELEASE until its gate (see hold) is closed.
type heldReleases struct {
	fuse.RawFileSystem
	opens, reads, held atomic.Int32
	gate               atomic.Pointer[chan struct{}]
}

// hold makes RELEASEs from now on wait until the returned function is
// called; the counts start again.
func (h *heldReleases) hold() (let func()) {
	gate := make(chan struct{})
	h.gate.Store(&gate)
	h.opens.Store(0)
	h.reads.Store(0)
	h.held.Store(0)
	return func() { close(gate) }
}

func (h *heldReleases) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	h.opens.Add(1)
	return h.RawFileSystem.Open(cancel, in, out)
}

func (h *heldReleases) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h.reads.Add(1)
	return h.RawFileSystem.Read(cancel, in, buf)
}

func (h *heldReleases) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	h.held.Add(1)
	if gate := h.gate.Load(); gate != nil {
		<-*gate
	}
	h.RawFileSystem.Release(cancel, in)
}

// A hot read on a read-write mount makes the reader wait for one request,
// the OPEN: the page cache answers the read, and the kernel sends the
// RELEASE in the background once close(2) has returned (it never waits
// for the answer), so a reader's open+read+close returns while its
// RELEASE is held unanswered. This is the design's "at most 1 daemon
// request" for a hot read on a read-write mount; docs/BENCHMARKS.md
// counts the RELEASE beside it.
func TestAHotReadOnAReadWriteMountWaitsForTheOpenAlone(t *testing.T) {
	h := &heldReleases{} // nothing held while the secret is written and read cold
	dir := mountMemory(t, fs.Options{Wrap: func(raw fuse.RawFileSystem) fuse.RawFileSystem {
		h.RawFileSystem = raw
		return h
	}})
	p := filepath.Join(dir, "app", "db")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "hunter2" {
		t.Fatalf("cold read: %q, %v", got, err)
	}

	defer h.hold()()
	read := make(chan error, 1)
	go func() {
		got, err := os.ReadFile(p)
		if err == nil && string(got) != "hunter2" {
			err = os.ErrInvalid
		}
		read <- err
	}()
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("hot read: %v", err)
		}
	case <-time.After(30 * time.Second): // a guard against a hang, not a measure of speed
		t.Fatalf("the hot read did not return while its RELEASE was held (%d held): close(2) waits for it", h.held.Load())
	}
	if opens, reads := h.opens.Load(), h.reads.Load(); opens != 1 || reads != 0 {
		t.Errorf("the hot read made %d OPEN and %d READ requests, want 1 and 0", opens, reads)
	}
}
