package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/internal/handover"
)

// These tests drive a succession (the part of a mount that is replaced)
// over real FUSE mounts, as root: small go-fuse file systems with one
// file, hello, saying which server answers, stand for secretfs.

func helloFS(text string) fuse.RawFileSystem {
	root := &gofs.Inode{}
	return gofs.NewNodeFS(root, &gofs.Options{OnAdd: func(ctx context.Context) {
		file := root.NewPersistentInode(ctx, &gofs.MemRegularFile{Data: []byte(text), Attr: fuse.Attr{Mode: 0o644}}, gofs.StableAttr{})
		root.AddChild("hello", file, false)
	}})
}

// lines is a logrus hook that tells who waits for a message when it is
// logged, and passes every line to the test's log.
type lines struct {
	t       *testing.T
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

func (l *lines) Levels() []logrus.Level { return logrus.AllLevels }

func (l *lines) Fire(e *logrus.Entry) error {
	s, _ := e.String()
	l.t.Log(strings.TrimSpace(s))
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.waiting[e.Message]; ok {
		close(c)
		delete(l.waiting, e.Message)
	}
	return nil
}

// when returns a channel closed once msg is logged.
func (l *lines) when(msg string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(chan struct{})
	l.waiting[msg] = c
	return c
}

// oldMount is a hello file system mounted at dir as secretfs mounts
// without --replace, with a succession whose control socket's step-down
// waits, once entered, until release is closed.
type oldMount struct {
	succ    *succession
	server  *fuse.Server
	served  <-chan struct{}
	entered chan struct{} // closed once a step-down began
	release chan struct{} // close to let it go on
	log     *lines
}

func mountOldForReplacement(t *testing.T, dir string, flags replaceFlags) *oldMount {
	t.Helper()
	server, err := fuse.NewServer(helloFS("old"), dir, &fuse.MountOptions{FsName: "secretfs", Name: "secretfs", DirectMount: true, DirectMountStrict: true})
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		t.Fatal(err)
	}
	o := &oldMount{server: server, served: whenServed(server), entered: make(chan struct{}), release: make(chan struct{}),
		log: &lines{t: t, waiting: map[string]chan struct{}{}}}
	t.Cleanup(func() {
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
		select {
		case <-o.served:
		case <-time.After(10 * time.Second):
			t.Error("the old server did not end within 10s of its mount's release")
		}
	})
	log := logrus.New()
	log.SetOutput(discard{})
	log.AddHook(o.log)
	o.succ = &succession{flags: flags, dir: dir, log: log, steppedDown: make(chan struct{})}
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	top, ok := handover.TopAt(all, dir)
	if err != nil || !ok || top.FSType != mountType {
		t.Fatalf("no %s at %s: %+v, %v", mountType, dir, top, err)
	}
	o.succ.dev = top.Dev
	c, err := handover.Listen(handover.SocketPath(dir), handover.Server{Mountpoint: dir, FSType: mountType, Dev: top.Dev, Owner: os.Geteuid(), Log: log,
		StepDown: func(stillBeneath func() error) error {
			close(o.entered)
			<-o.release
			return o.succ.stepDown(stillBeneath)
		},
		SteppedDown: o.succ.steppedDownAndTold})
	if err != nil {
		t.Fatal(err)
	}
	o.succ.control = c
	t.Cleanup(func() { c.Close() })
	return o
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// newMountBeneath makes a hello file system saying text with the kernel's
// mount API, serves it, and attaches it beneath the live mount at dir.
func newMountBeneath(t *testing.T, dir, text string) *handover.Mount {
	t.Helper()
	m, err := handover.Open(handover.Options{Source: "secretfs", Subtype: "secretfs", UserID: uint32(os.Geteuid()), GroupID: uint32(os.Getegid()), DefaultPermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	server, err := fuse.NewServer(helloFS(text), m.DevicePath(), &fuse.MountOptions{FsName: "secretfs", Name: "secretfs"})
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		t.Fatal(err)
	}
	if err := m.DeclinePoll(); err != nil {
		t.Fatal(err)
	}
	if err := m.AttachBeneath(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close() // the mount's root holds it
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
		server.Wait()
	})
	return m
}

func fuseMountpoint(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts FUSE file systems with the kernel's mount API and needs root; run it as root (scripts/test)")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A SIGTERM that comes while the process steps down for a successor does
// not unmount the path, which by then shows the successor's mount: the
// step-down finishes, and the process drains instead (and, the signal
// having asked it to end, ends the drain at once).
func TestASignalDuringAStepDownLeavesTheSuccessorsMount(t *testing.T) {
	dir := fuseMountpoint(t)
	old := mountOldForReplacement(t, dir, replaceFlags{})
	stop := make(chan os.Signal, 1)
	ended := make(chan error, 1)
	go func() { ended <- old.succ.waitForEnd(old.server, dir, old.served, stop) }()

	_, asked := askToStepDown(t, dir, old)
	unmounting := old.log.when("unmounting")
	stop <- syscall.SIGTERM
	<-unmounting // the signal is taken while the step-down is under way
	close(old.release)

	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("waitForEnd: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not end within 10s of the signal")
	}
	t.Logf("the successor's step-down request: %v", <-asked)
	got, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil || string(got) != "new" {
		t.Errorf("the path after the signalled step-down read %q, %v; want the successor's hello", got, err)
	}
	if all, err := handover.ReadMountInfo("/proc/self/mountinfo"); err != nil || len(mountsAtDir(all, dir)) != 1 {
		t.Errorf("mounts at %s: %+v (%v), want the successor's alone", dir, mountsAtDir(all, dir), err)
	}
}

// With --drain-through-sigterm, SIGTERM to a process that stepped down
// does not end its drain: it serves what still holds its detached mount,
// and ends once that is released.
func TestDrainThroughSIGTERMEndsOnlyOnceTheMountIsReleased(t *testing.T) {
	dir := fuseMountpoint(t)
	old := mountOldForReplacement(t, dir, replaceFlags{drainThroughSIGTERM: true, waitAfterDrain: true})
	close(old.release)
	stop := make(chan os.Signal, 1)
	ended := make(chan error, 1)
	go func() { ended <- old.succ.waitForEnd(old.server, dir, old.served, stop) }()
	held, err := os.Open(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	p, err := handover.Find(dir, mountType)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m := newMountBeneath(t, dir, "new")
	draining := old.log.when("stepped down for a successor: the mount is detached; serving what still holds it until the last reference goes")
	if err := p.StepDown(m); err != nil {
		t.Fatal(err)
	}
	<-draining
	throughSIGTERM := old.log.when("draining on through SIGTERM (--drain-through-sigterm): this process ends once the detached mount is released, or --drain-timeout runs out")
	stop <- syscall.SIGTERM
	<-throughSIGTERM
	select {
	case err := <-ended:
		t.Fatalf("the drain ended on SIGTERM (%v) while a descriptor held the detached mount", err)
	case <-time.After(200 * time.Millisecond):
	}
	got := make([]byte, 16)
	if n, err := held.ReadAt(got, 0); string(got[:n]) != "old" {
		t.Errorf("the descriptor held across the replacement and the SIGTERM read %q, %v; want the old server's hello", got[:n], err)
	}
	held.Close()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("waitForEnd: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not end within 10s of its detached mount's release (--wait-after-drain must not wait for a second SIGTERM)")
	}
}

func mountsAtDir(all []handover.MountInfo, dir string) []handover.MountInfo {
	var at []handover.MountInfo
	for _, m := range all {
		if m.Point == dir {
			at = append(at, m)
		}
	}
	return at
}

// askToStepDown attaches a new hello mount beneath old's and asks old
// to step down for it, and returns once old's step-down began, with the
// new mount and where the reply comes.
func askToStepDown(t *testing.T, dir string, old *oldMount) (*handover.Mount, <-chan error) {
	t.Helper()
	p, err := handover.Find(dir, mountType)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	m := newMountBeneath(t, dir, "new")
	asked := make(chan error, 1)
	go func() { asked <- p.StepDown(m) }()
	<-old.entered
	return m, asked
}

// A step-down that finishes after its successor gave up waiting for the
// reply, and withdrew its mount from beneath, does not detach the live
// mount: right before it detaches, it looks again, finds nothing of the
// successor's beneath it, and refuses; the path goes on showing the live
// mount (before, the detach left the plain directory there).
func TestAStepDownWhoseSuccessorWithdrewMeanwhileKeepsTheMount(t *testing.T) {
	dir := fuseMountpoint(t)
	old := mountOldForReplacement(t, dir, replaceFlags{})
	m, asked := askToStepDown(t, dir, old)
	// The successor gives up: its mount leaves from beneath the live one.
	if err := m.Withdraw(dir, old.succ.dev); err != nil {
		t.Fatal(err)
	}
	close(old.release)
	select {
	case err := <-asked:
		if err == nil || !strings.Contains(err.Error(), "no longer beneath") {
			t.Errorf("the step-down, its successor gone from beneath: %v; want a refusal saying so", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no reply to the step-down within 20s")
	}
	got, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil || string(got) != "old" {
		t.Errorf("the path after the refused step-down read %q, %v; want the live mount's hello", got, err)
	}
	if all, err := handover.ReadMountInfo("/proc/self/mountinfo"); err != nil || len(mountsAtDir(all, dir)) != 1 {
		t.Errorf("mounts at %s: %+v (%v), want the live one alone", dir, mountsAtDir(all, dir), err)
	}
	if old.succ.detaching.Load() {
		t.Error("the live mount counts itself as detached")
	}
}

// A --replace --daemon with nothing to replace whose parent passed a
// stop on before the mount was made mounts nothing and says so; it was
// ignored (the parent said the child would withdraw, and it mounted).
func TestAStopPassedOnBeforeAPlainMountOfAReplaceMountsNothing(t *testing.T) {
	parentStop := make(chan os.Signal, 1)
	parentStop <- withdrawSignal
	s := &succession{dir: t.TempDir(), log: logrus.New(), steppedDown: make(chan struct{}), parentStop: parentStop}
	server, err := s.mount(s.dir, nil, fs.Options{})
	if err == nil || server != nil || !strings.Contains(err.Error(), "before mounting: nothing was mounted") {
		t.Errorf("mount with a stop passed on: %v, %v; want nothing mounted, saying so", server, err)
	}
}

// A drain held by processes this one cannot see (another PID namespace:
// a container's consumers) says so, rather than "the holders are named
// above" with none named.
func TestADrainHeldByProcessesItCannotSeeSaysSo(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	s := &succession{dev: 1<<20 | 4095} // a device no mount has
	s.stillHeld(log)
	if e := hook.LastEntry(); e == nil || !strings.Contains(e.Message, "by processes this one cannot see") {
		t.Errorf("the drain's word with no holder in sight: %v", e)
	}
}

// A stop signal during a reload's switch under systemd is systemd's stop
// of the unit, sent once: taken once the switch is done. Outside
// systemd, one during the switch is not a stop (a second signal is).
// (Under systemd it was dropped, and the stop waited for TimeoutStopSec,
// then SIGKILLed the mount dead; found by a review.)
func TestAStopDuringASwitchUnderSystemdIsTakenOnceTheSwitchIsDone(t *testing.T) {
	for _, tc := range []struct {
		notifySocket string
		want         os.Signal
	}{{"/run/systemd/notify", syscall.SIGTERM}, {"", nil}} {
		signals := make(chan os.Signal, 2)
		signals <- syscall.SIGTERM
		s := &succession{log: logrus.New(), notifySocket: tc.notifySocket, stop: signals, replaced: true}
		s.switched() // the signal came while the predecessor stepped down
		stop := make(chan os.Signal, 2)
		s.announced(stop)
		var got os.Signal
		select {
		case got = <-stop:
		default:
		}
		if got != tc.want {
			t.Errorf("notify socket %q: after the switch, the stop channel holds %v, want %v", tc.notifySocket, got, tc.want)
		}
	}
}
