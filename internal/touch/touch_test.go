package touch

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/store"
)

// A directory standing for a mount that shows s's marker directory, with
// one file, app/name, holding "value".
func fakeMount(t *testing.T, s *Signaller, marker bool) string {
	t.Helper()
	dir := t.TempDir()
	if marker {
		if err := os.Mkdir(filepath.Join(dir, s.DirName()), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "app"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app", "name"), []byte("value"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// inotifyOn watches dir's entries for modifications and close-after-write.
func inotifyOn(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY|unix.IN_CLOSE_WRITE); err != nil {
		t.Fatal(err)
	}
	return fd
}

// events returns the masks of the events waiting on fd.
func events(t *testing.T, fd int) []uint32 {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	if err == unix.EAGAIN {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var masks []uint32
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		masks = append(masks, ev.Mask)
		off += unix.SizeofInotifyEvent + int(ev.Len)
	}
	return masks
}

func TestTouchMakesModifyAndCloseWriteAndChangesNothing(t *testing.T) {
	s := New(logrus.New(), nil)
	dir := fakeMount(t, s, true)
	in := inotifyOn(t, filepath.Join(dir, "app"))
	tree := &Tree{s: s, dir: dir, fd: -1}
	defer tree.close()
	if !tree.Touch("app/name") {
		t.Fatal("Touch reported no touch")
	}
	got := events(t, in)
	if len(got) != 2 || got[0]&unix.IN_MODIFY == 0 || got[1]&unix.IN_CLOSE_WRITE == 0 {
		t.Errorf("events %x, want IN_MODIFY then IN_CLOSE_WRITE", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "app", "name")); err != nil || string(b) != "value" {
		t.Errorf("the touched file holds %q (%v), want it unchanged", b, err)
	}
}

// A tree whose mount point does not show the marker directory is another
// mount (a successor's, or the one beneath a detached mount): nothing in
// it is touched.
func TestTouchReachesNothingWhereTheMarkerIsMissing(t *testing.T) {
	s := New(logrus.New(), nil)
	dir := fakeMount(t, s, false)
	in := inotifyOn(t, filepath.Join(dir, "app"))
	tree := &Tree{s: s, dir: dir, fd: -1}
	defer tree.close()
	if tree.Touch("app/name") {
		t.Error("Touch touched a file of a mount without the marker")
	}
	if got := events(t, in); len(got) != 0 {
		t.Errorf("events %x, want none", got)
	}
}

func TestTouchOfAMissingFileIsNoTouch(t *testing.T) {
	s := New(logrus.New(), nil)
	dir := fakeMount(t, s, true)
	tree := &Tree{s: s, dir: dir, fd: -1}
	defer tree.close()
	if tree.Touch("app/gone") {
		t.Error("Touch of a missing file reported a touch")
	}
}

// Changes queued together are signalled once each, to the widest scope
// asked, on a thread Own recognises while the signal runs and forgets
// after; nothing is signalled before Start.
func TestQueuedChangesAreSignalledOnceOnAnOwnThread(t *testing.T) {
	var mu sync.Mutex
	calls := map[store.Key]int{}
	scopes := map[store.Key]Scope{}
	var tids []uint32
	signalled := make(chan struct{}, 10)
	var s *Signaller
	s = New(logrus.New(), func(k store.Key, scope Scope, tree *Tree) {
		tid := uint32(unix.Gettid())
		mu.Lock()
		calls[k]++
		scopes[k] = scope
		if s.Own(tid) {
			tids = append(tids, tid)
		}
		mu.Unlock()
		signalled <- struct{}{}
	})
	defer s.Stop()
	a, b := store.Key{App: "app", Name: "a"}, store.Key{App: "app", Name: "b"}
	s.Queue(a, Changed) // before Start: dropped
	s.Start(fakeMount(t, s, true))
	s.Queue(a, Replaced)
	s.Queue(a, Changed)
	s.Queue(b, Replaced)
	for range 2 {
		select {
		case <-signalled:
		case <-time.After(10 * time.Second):
			t.Fatal("no signal")
		}
	}
	select {
	case <-signalled:
		t.Error("a third signal for two changed names")
	case <-time.After(5 * Debounce):
	}
	mu.Lock()
	defer mu.Unlock()
	if calls[a] != 1 || calls[b] != 1 {
		t.Errorf("signals %v, want one for each name", calls)
	}
	if scopes[a] != Changed || scopes[b] != Replaced {
		t.Errorf("scopes %v, want the widest asked of each name: a Changed, b Replaced", scopes)
	}
	if len(tids) != 2 {
		t.Fatalf("%d of 2 signals ran on a thread Own knew", len(tids))
	}
	for _, tid := range tids {
		if s.Own(tid) {
			t.Errorf("thread %d is still Own after its signal", tid)
		}
	}
}

func TestStopEndsEvery(t *testing.T) {
	s := New(logrus.New(), nil)
	ticks := make(chan struct{}, 100)
	s.Every(time.Millisecond, func() { ticks <- struct{}{} })
	<-ticks
	s.Stop()
	s.Stop() // twice is harmless
	time.Sleep(20 * time.Millisecond)
	for len(ticks) > 0 {
		<-ticks
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(ticks); n != 0 {
		t.Errorf("%d ticks after Stop", n)
	}
}

// withoutDACOverride runs f on a thread whose effective capabilities lack
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, as the unit's root bounded to
// CAP_SYS_ADMIN alone was: the kernel then applies file modes to it.
func withoutDACOverride(t *testing.T, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	saved := data
	data[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			t.Fatal(err)
		}
	}()
	f()
}

// A file the kernel will not let this process open for writing (a mount
// showing 0400, or a view, to a root without CAP_DAC_OVERRIDE) is no
// touch, and the first refusal, not every one, is a warning: nobody
// watching the mount hears of any change then.
func TestARefusedTouchIsWarnedOfOncePerMount(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	s := New(log, nil)
	dir := fakeMount(t, s, true)
	if err := os.Chmod(filepath.Join(dir, "app", "name"), 0o400); err != nil {
		t.Fatal(err)
	}
	withoutDACOverride(t, func() {
		for range 3 {
			tree := &Tree{s: s, dir: dir, fd: -1}
			if tree.Touch("app/name") {
				t.Error("Touch of a file this process may not write reported a touch")
			}
			tree.close()
		}
	})
	var warnings int
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("%d warnings of refused touches, want 1", warnings)
	}
	// A missing file is no refusal: a mount that never met one warns of
	// nothing.
	log, hook = logtest.NewNullLogger()
	fresh := New(log, nil)
	dir = fakeMount(t, fresh, true)
	tree := &Tree{s: fresh, dir: dir, fd: -1}
	defer tree.close()
	if tree.Touch("app/gone") || len(hook.AllEntries()) != 0 {
		t.Errorf("a touch of a missing file logged %d entries at info level or above, want none", len(hook.AllEntries()))
	}
}
