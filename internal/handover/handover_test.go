package handover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// These tests mount real FUSE file systems (as root): a small go-fuse
// file system of their own, one file "hello" whose content says which
// server answers, stands for secretfs.

const fsType = "fuse.secretfs"

func requireRootAndFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests mount FUSE file systems with the kernel's mount API and need root; run them as root (scripts/test)")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("FUSE is not usable here: %v", err)
	}
	f.Close()
}

// helloFS is a file system with one file, hello, holding text.
func helloFS(text string) fuse.RawFileSystem { return helloFSOn(&gofs.Inode{}, text) }

// helloFSOn is helloFS with root as its root node.
func helloFSOn(root gofs.InodeEmbedder, text string) fuse.RawFileSystem {
	return gofs.NewNodeFS(root, &gofs.Options{OnAdd: func(ctx context.Context) {
		file := root.EmbeddedInode().NewPersistentInode(ctx, &gofs.MemRegularFile{Data: []byte(text), Attr: fuse.Attr{Mode: 0o644}}, gofs.StableAttr{})
		root.EmbeddedInode().AddChild("hello", file, false)
	}})
}

// served is a running go-fuse server and what it serves.
type served struct {
	server *fuse.Server
	done   chan struct{} // closed when Serve returned: the kernel released the file system
	dev    uint64
}

func serve(t *testing.T, server *fuse.Server) *served {
	s := &served{server: server, done: make(chan struct{})}
	go func() { server.Serve(); close(s.done) }()
	if err := server.WaitMount(); err != nil {
		t.Fatal(err)
	}
	return s
}

// mountOld mounts a hello file system at dir the way secretfs mounts
// without --replace (mount(2) through go-fuse), and gives it a control
// socket whose step-down detaches it.
func mountOld(t *testing.T, dir, text string) (*served, *Control) {
	t.Helper()
	server, err := fuse.NewServer(helloFS(text), dir, &fuse.MountOptions{FsName: "secretfs", Name: "secretfs", DirectMount: true, DirectMountStrict: true})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, server)
	t.Cleanup(func() { detachAll(dir); waitDone(t, s, "old server") })
	defer func() { guard(t, s.dev) }()
	all, err := ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	top, ok := TopAt(all, dir)
	if !ok || top.FSType != fsType {
		t.Fatalf("no %s at %s: %+v", fsType, dir, top)
	}
	s.dev = top.Dev
	c, err := Listen(SocketPath(dir), Server{Mountpoint: dir, FSType: fsType, Dev: s.dev, Release: "old", Owner: os.Geteuid(),
		Log:      quietLog(t),
		StepDown: func(func() error) error { return unix.Unmount(dir, unix.MNT_DETACH) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

// mountNew makes a hello file system with the mount API, serves it
// through /dev/fd/N, and checks that it answers through its root before
// it is attached anywhere.
func mountNew(t *testing.T, text string) (*Mount, *served) {
	t.Helper()
	return mountNewOf(t, text, helloFS(text))
}

// mountNewOf is mountNew serving fs, a hello file system saying text.
func mountNewOf(t *testing.T, text string, fs fuse.RawFileSystem) (*Mount, *served) {
	t.Helper()
	m, err := Open(Options{Source: "secretfs", Subtype: "secretfs", UserID: uint32(os.Geteuid()), GroupID: uint32(os.Getegid()), DefaultPermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	server, err := fuse.NewServer(fs, m.DevicePath(), &fuse.MountOptions{FsName: "secretfs", Name: "secretfs"})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, server)
	if err := m.DeclinePoll(); err != nil {
		t.Fatal(err)
	}
	if s.dev, err = m.Dev(); err != nil {
		t.Fatal(err)
	}
	guard(t, s.dev)
	got, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d/hello", m.Root().Fd()))
	if err != nil || string(got) != text {
		t.Fatalf("reading hello through the unattached mount's root: %q, %v", got, err)
	}
	return m, s
}

// guard aborts the FUSE connection of dev (through fusectl) if the test
// is still running after a minute: a test that hangs while serving its
// own mount would otherwise never end, not even when killed, since its
// threads would wait on a server that no longer runs.
func guard(t *testing.T, dev uint64) {
	t.Helper()
	const conns = "/sys/fs/fuse/connections"
	if _, err := os.Stat(filepath.Join(conns, "..")); err == nil {
		if entries, _ := os.ReadDir(conns); len(entries) == 0 {
			unix.Mount("fusectl", conns, "fusectl", 0, "")
		}
	}
	abort := filepath.Join(conns, strconv.Itoa(int(unix.Minor(dev))), "abort")
	timer := time.AfterFunc(time.Minute, func() {
		t.Errorf("still running after a minute: aborting the FUSE connection %s", devString(dev))
		os.WriteFile(abort, []byte("1"), 0o200)
	})
	t.Cleanup(func() { timer.Stop() })
}

func waitDone(t *testing.T, s *served, what string) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: Serve did not return within 10s of its mount's last reference going", what)
	}
}

// detachAll lazily unmounts every mount at dir.
func detachAll(dir string) {
	for unix.Unmount(dir, unix.MNT_DETACH) == nil {
	}
}

func quietLog(t *testing.T) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mountpoint(t *testing.T) string {
	t.Helper()
	requireRootAndFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mountsAt(t *testing.T, dir string) []MountInfo {
	t.Helper()
	all, err := ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var at []MountInfo
	for _, m := range all {
		if m.Point == dir {
			at = append(at, m)
		}
	}
	return at
}

func TestThisKernelMountsBeneath(t *testing.T) {
	requireRootAndFUSE(t)
	if err := BeneathSupported(); err != nil {
		t.Fatalf("BeneathSupported: %v (these tests need Linux 6.5 or later)", err)
	}
}

// The whole replacement, as secretfs does it: readers looping by path see
// no error and, from the step-down on, only the new server; a descriptor
// opened on the old mount keeps reading from the old server, which goes
// on serving it and whose Serve returns only once that descriptor is
// closed; one mount is left at the path.
func TestAReplacementBeneathTheLiveMountLeavesNoGap(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")
	held, err := os.Open(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	var reads, failures, fromNew atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := os.ReadFile(filepath.Join(dir, "hello"))
				reads.Add(1)
				switch {
				case err != nil:
					failures.Add(1)
					lastErr.Store(err.Error())
				case string(got) == "new":
					fromNew.Add(1)
				case string(got) != "old":
					failures.Add(1)
					lastErr.Store(fmt.Sprintf("read %q", got))
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)

	p, err := Find(dir, fsType)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Hello.Release != "old" || !p.Hello.Serving || p.PID != os.Getpid() || p.Mount.Dev != old.dev {
		t.Errorf("Find: %+v (pid %d)", p.Hello, p.PID)
	}
	m, fresh := mountNew(t, "new")
	if err := m.AttachBeneath(dir); err != nil {
		t.Fatal(err)
	}
	if at := mountsAt(t, dir); len(at) != 2 {
		t.Fatalf("after attaching beneath: %d mounts at %s, want 2: %+v", len(at), dir, at)
	}
	if top, _ := TopAt(mustMountInfo(t), dir); top.Dev != old.dev {
		t.Errorf("after attaching beneath, the top mount is %s, want the old one %s", top.DevString(), devString(old.dev))
	}
	if err := p.StepDown(m); err != nil {
		t.Fatal(err)
	}
	m.Close() // the new mount must not hold itself
	before := reads.Load()
	eventually(t, 5*time.Second, "readers read the new server's hello", func() bool { return fromNew.Load() > 0 && reads.Load() > before+100 })
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d reads by path failed across the replacement; last: %v", n, reads.Load(), lastErr.Load())
	}
	t.Logf("%d reads by path across the replacement, %d from the new server, %d failed", reads.Load(), fromNew.Load(), failures.Load())
	at := mountsAt(t, dir)
	if len(at) != 1 || at[0].Dev != fresh.dev {
		t.Errorf("after the step-down: %+v at %s, want the new mount (%s) alone", at, dir, devString(fresh.dev))
	}

	// The old server serves what still holds its detached mount.
	got := make([]byte, 16)
	n, err := held.ReadAt(got, 0)
	if (err != nil && err != io.EOF) || string(got[:n]) != "old" {
		t.Errorf("the descriptor held across the replacement read %q, %v; want the old server's hello", got[:n], err)
	}
	holders := Holders(old.dev)
	if len(holders) != 1 || holders[0].PID != os.Getpid() || !strings.HasPrefix(holders[0].What, fmt.Sprintf("descriptor %d: ", held.Fd())) {
		t.Errorf("holders of the old mount: %v, want this process's descriptor %d", holders, held.Fd())
	}
	select {
	case <-old.done:
		t.Fatal("the old server stopped serving while a descriptor still held its mount")
	case <-time.After(200 * time.Millisecond):
	}
	held.Close()
	waitDone(t, old, "the old server, once the held descriptor was closed")
	if holders := Holders(old.dev); len(holders) != 0 {
		t.Errorf("holders after the old server ended: %v", holders)
	}

	// The new mount is an ordinary one: unmounting it ends its server.
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	waitDone(t, fresh, "the new server, once unmounted")
}

func mustMountInfo(t *testing.T) []MountInfo {
	t.Helper()
	all, err := ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A bind mount of a directory of the old mount (Kubernetes' subPath)
// keeps it alive: it is a holder, read from the old server, until it is
// unmounted, when the old server's Serve returns.
func TestABindOfTheOldMountKeepsTheOldServerUntilUnmounted(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")
	bind := filepath.Join(t.TempDir(), "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(bind, unix.MNT_DETACH) })
	replace(t, dir, "new")
	if got, err := os.ReadFile(filepath.Join(bind, "hello")); err != nil || string(got) != "old" {
		t.Errorf("the bind after the replacement read %q, %v; want the old server's", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "new" {
		t.Errorf("the path after the replacement read %q, %v; want the new server's", got, err)
	}
	holders := Holders(old.dev)
	if len(holders) != 1 || !strings.HasPrefix(holders[0].What, "mount at "+bind+" (mnt:[") {
		t.Errorf("holders of the old mount: %v, want the bind at %s", holders, bind)
	}
	select {
	case <-old.done:
		t.Fatal("the old server stopped serving while a bind still held its mount")
	case <-time.After(200 * time.Millisecond):
	}
	if err := unix.Unmount(bind, 0); err != nil {
		t.Fatal(err)
	}
	waitDone(t, old, "the old server, once the bind was unmounted")
}

// replace takes over dir with a new hello server saying text, and returns
// it once the old one stepped down.
func replace(t *testing.T, dir, text string) *served {
	t.Helper()
	p, err := Find(dir, fsType)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m, s := mountNew(t, text)
	if err := m.AttachBeneath(dir); err != nil {
		t.Fatal(err)
	}
	if err := p.StepDown(m); err != nil {
		t.Fatal(err)
	}
	m.Close()
	t.Cleanup(func() { detachAll(dir); waitDone(t, s, text+" server") })
	return s
}

func TestFindRefusesWhatIsNotALiveSecretfsOfThisUser(t *testing.T) {
	t.Run("a plain directory", func(t *testing.T) {
		dir := mountpoint(t)
		if _, err := Find(dir, fsType); !errors.Is(err, ErrNothingToReplace) {
			t.Errorf("Find on a plain directory: %v, want ErrNothingToReplace", err)
		}
	})
	t.Run("another file system", func(t *testing.T) {
		dir := mountpoint(t)
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		_, err := Find(dir, fsType)
		if err == nil || errors.Is(err, ErrNothingToReplace) || !strings.Contains(err.Error(), "is a tmpfs mount, not one a secretfs serves") {
			t.Errorf("Find on a tmpfs: %v", err)
		}
	})
	t.Run("a dead secretfs", func(t *testing.T) {
		dir := mountpoint(t)
		m, err := Open(Options{Source: "secretfs", Subtype: "secretfs", UserID: 0, GroupID: 0})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Attach(dir); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		m.Close() // no server ever read the connection: the mount is dead
		if _, err := Find(dir, fsType); !errors.Is(err, ErrNothingToReplace) || !strings.Contains(err.Error(), "is dead") {
			t.Errorf("Find on a dead mount: %v, want ErrNothingToReplace (dead)", err)
		}
	})
	t.Run("another user's secretfs", func(t *testing.T) {
		dir := mountpoint(t)
		m, err := Open(Options{Source: "secretfs", Subtype: "secretfs", UserID: 1000, GroupID: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Attach(dir); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		defer m.Close()
		_, err = Find(dir, fsType)
		if err == nil || !strings.Contains(err.Error(), "another user's secretfs (user_id=1000)") {
			t.Errorf("Find on uid 1000's mount: %v", err)
		}
	})
	t.Run("a secretfs without a control socket", func(t *testing.T) {
		dir := mountpoint(t)
		server, err := fuse.NewServer(helloFS("old"), dir, &fuse.MountOptions{FsName: "secretfs", Name: "secretfs", DirectMount: true, DirectMountStrict: true})
		if err != nil {
			t.Fatal(err)
		}
		s := serve(t, server)
		defer waitDone(t, s, "server")
		defer server.Unmount()
		_, err = Find(dir, fsType)
		if err == nil || !strings.Contains(err.Error(), "no control socket") {
			t.Errorf("Find on a secretfs without a socket: %v", err)
		}
	})
}

// The control socket answers only its owner: a server whose owner is
// another uid refuses this process, and says why.
func TestTheControlSocketAnswersOnlyItsOwner(t *testing.T) {
	dir := mountpoint(t)
	server, err := fuse.NewServer(helloFS("old"), dir, &fuse.MountOptions{FsName: "secretfs", Name: "secretfs", DirectMount: true, DirectMountStrict: true})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, server)
	defer waitDone(t, s, "server")
	defer server.Unmount()
	stepped := false
	c, err := Listen(SocketPath(dir), Server{Mountpoint: dir, FSType: fsType, Owner: 4242, Log: quietLog(t),
		StepDown: func(func() error) error { stepped = true; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fi, err := os.Stat(SocketPath(dir))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("the control socket: %v %v, want a socket of mode 0600", fi.Mode(), err)
	}
	_, err = Find(dir, fsType)
	if err == nil || !strings.Contains(err.Error(), "refused: only uid 4242 may ask this secretfs anything, and you are uid 0") {
		t.Errorf("Find with a socket owned by uid 4242: %v", err)
	}
	if stepped {
		t.Error("the server stepped down for another user")
	}
}

// A second successor is refused while the first holds its turn, and gets
// it once the first went away; a step-down without a mount beneath, or
// in another protocol version, is refused and changes nothing.
func TestOneSuccessorAtATimeAndOnlyWithItsMountBeneath(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")
	first, err := Find(dir, fsType)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Find(dir, fsType); err == nil || !strings.Contains(err.Error(), "another replacement of this mount is in progress") {
		t.Errorf("a second successor: %v", err)
	}
	// A mount that is not beneath the old one.
	m, _ := mountNew(t, "elsewhere")
	if err := first.StepDown(m); err == nil || !strings.Contains(err.Error(), "is not directly beneath") {
		t.Errorf("step-down with an unattached mount: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "old" {
		t.Errorf("after a refused step-down the path reads %q, %v", got, err)
	}
	first.Close()
	eventually(t, 5*time.Second, "the turn is free again", func() bool {
		p, err := Find(dir, fsType)
		if err == nil {
			p.Close()
		}
		return err == nil
	})

	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: SocketPath(dir), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := send(conn, request{V: Version + 1, Op: OpStepDown}); err != nil {
		t.Fatal(err)
	}
	var r Reply
	if _, err := receive(conn, &r, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("control protocol version %d is not understood: this secretfs speaks version %d", Version+1, Version); r.Error != want || r.V != Version {
		t.Errorf("a request of version %d: %+v, want the error %q", Version+1, r, want)
	}
	if at := mountsAt(t, dir); len(at) != 1 || at[0].Dev != old.dev {
		t.Errorf("after the refused requests: %+v at %s, want the old mount alone", at, dir)
	}
}

// stuckRoot is a root node whose statfs waits until release is closed:
// the file system of a successor stopped or stuck after it asked.
type stuckRoot struct {
	gofs.Inode
	release chan struct{}
}

func (r *stuckRoot) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	<-r.release
	return 0
}

// A successor whose file system stops answering after it asked to step
// down (stopped, stuck) is refused within askerAnswerLimit, and the old
// mount stays at the path. (The step-down's statfs had no deadline: the
// old process waited for ever, and its close with it.)
func TestAStepDownWhoseSuccessorDoesNotAnswerIsRefused(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")
	root := &stuckRoot{release: make(chan struct{})}
	m, _ := mountNewOf(t, "stuck", helloFSOn(root, "stuck"))
	defer close(root.release) // before the cleanups unmount it
	if err := m.AttachBeneath(dir); err != nil {
		t.Fatal(err)
	}
	p, err := Find(dir, fsType)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.StepDown(m); err == nil || !strings.Contains(err.Error(), "does not answer (no answer to statfs within") {
		t.Errorf("step-down with a successor that does not answer: %v, want it refused as not answering", err)
	}
	if top, _ := TopAt(mustMountInfo(t), dir); len(mountsAt(t, dir)) != 2 || top.Dev != old.dev {
		at := mountsAt(t, dir)
		t.Errorf("after the refused step-down: %+v at %s, want the old mount on top of the successor's", at, dir)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "old" {
		t.Errorf("after the refused step-down the path reads %q, %v", got, err)
	}
}

// A server whose predecessor died (a stale socket file) listens in its
// place; a live one at the path is an error.
func TestListenReplacesAStaleSocketOnly(t *testing.T) {
	requireRootAndFUSE(t)
	path := filepath.Join(t.TempDir(), ".x.secretfs.sock")
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	if _, err := Listen(path, Server{Log: quietLog(t)}); err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Errorf("Listen over a live socket: %v", err)
	}
	l.Close() // as a killed process leaves it
	c, err := Listen(path, Server{Log: quietLog(t)})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	c.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket file: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, Server{Log: quietLog(t)}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
}

// steppedDown mounts "old" at a mount point, and "new" beneath it, which
// asks old to step down; it returns the mount point, both control
// sockets (new's still beside it under another name) and new's server.
func steppedDown(t *testing.T) (dir string, oldControl, newControl *Control, s *served) {
	t.Helper()
	dir = mountpoint(t)
	_, oldControl = mountOld(t, dir, "old")
	p, err := Find(dir, fsType)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m, s := mountNew(t, "new")
	t.Cleanup(func() { detachAll(dir); waitDone(t, s, "new server") })
	if err := m.AttachBeneath(dir); err != nil {
		t.Fatal(err)
	}
	newControl, err = Listen(SocketPath(dir)+".new", Server{Mountpoint: dir, FSType: fsType, Dev: s.dev, Release: "new", Owner: os.Geteuid(), Log: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { newControl.Close() })
	if err := p.StepDown(m); err != nil {
		t.Fatal(err)
	}
	m.Close()
	return dir, oldControl, newControl, s
}

// A socket moved into place over a predecessor's: the predecessor's Close
// leaves it there.
func TestAPredecessorLeavesItsSuccessorsSocket(t *testing.T) {
	dir, oldControl, newControl, s := steppedDown(t)
	if err := newControl.MoveTo(SocketPath(dir)); err != nil {
		t.Fatal(err)
	}
	oldControl.Close()
	st, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Hello.Release != "new" || !st.Hello.Serving || st.Hello.Dev != devString(s.dev) || st.Hello.Goroutines <= 0 || st.Hello.Descriptors <= 0 {
		t.Errorf("status after the replacement: %+v", st.Hello)
	}
}

// A status asked after the predecessor closed its control socket and
// before the successor moved its own over the path (the socket file is
// there, nothing listens) reaches the successor: it failed with
// "connection refused" for that moment of every replacement.
func TestStatusBetweenThePredecessorsCloseAndTheSuccessorsMoveReachesTheSuccessor(t *testing.T) {
	dir, oldControl, newControl, _ := steppedDown(t)
	// The predecessor's socket file stays once it stepped down (see
	// Close): a closed listener, refusing, as between the two.
	oldControl.Close()
	if _, err := os.Lstat(SocketPath(dir)); err != nil {
		t.Fatalf("the predecessor's socket file after its Close: %v", err)
	}
	refusals := 0
	refused = func() {
		if refusals++; refusals == 1 {
			if err := newControl.MoveTo(SocketPath(dir)); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { refused = func() {} })
	st, err := Status(dir)
	if err != nil {
		t.Fatalf("status between the predecessor's close and the successor's move: %v", err)
	}
	defer st.Close()
	if st.Hello.Release != "new" || refusals != 1 {
		t.Errorf("status answered by %q after %d refusals; want the successor, after 1", st.Hello.Release, refusals)
	}
}

// The readiness listing secretfs makes runs in a child process, never in
// the server's own: a child lists the unattached mount through the root
// descriptor it inherits, as /proc/self/fd/3.
func TestAChildListsTheUnattachedMountThroughAnInheritedRoot(t *testing.T) {
	requireRootAndFUSE(t)
	m, _ := mountNew(t, "new")
	ls := exec.Command("ls", "/proc/self/fd/3/")
	ls.ExtraFiles = []*os.File{m.Root()}
	out, err := ls.CombinedOutput()
	if err != nil || string(out) != "hello\n" {
		t.Errorf("ls of the inherited root: %q, %v", out, err)
	}
}

// --replace=gap, for a kernel that cannot mount beneath: the predecessor
// detaches its mount with nothing beneath it when asked to, and the path
// is a plain directory until the successor mounts.
func TestAStepDownWithAGapLeavesThePlainDirectory(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")
	p, err := Find(dir, fsType)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.StepDownWithGap(); err != nil {
		t.Fatal(err)
	}
	if at := mountsAt(t, dir); len(at) != 0 {
		t.Errorf("after a step-down with a gap: %+v at %s, want nothing", at, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "hello")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat hello in the gap: %v, want ENOENT (the plain directory)", err)
	}
	waitDone(t, old, "the old server, with nothing holding its mount")
}

// A mount point whose socket path is longer than a Unix socket address
// holds (108 bytes) still gets a control socket that answers.
func TestAControlSocketBesideALongPathAnswers(t *testing.T) {
	requireRootAndFUSE(t)
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100), "mnt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(SocketPath(dir)) <= maxSocketPath {
		t.Fatalf("%s is short enough for an address: the test tests nothing", SocketPath(dir))
	}
	c, err := Listen(SocketPath(dir), Server{Mountpoint: dir, Release: "long", Owner: os.Geteuid(), Log: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Hello.Release != "long" {
		t.Errorf("status through a long path: %+v", p.Hello)
	}
}

// A control socket a successor killed mid-replacement left beside the
// mount point's (.NAME.secretfs.sock.PID), which nobody listens on, is
// removed by the next Listen at that mount point; one still listened on
// (a replacement under way), or that is no socket, is left alone. (They
// stayed for ever.)
func TestListenRemovesTheSocketsOfSuccessorsThatDied(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	main := SocketPath(dir)
	dead, live, other := main+".4194999", main+".4194998", main+".7"
	for _, p := range []string{dead, live} {
		l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: p, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		if p == dead {
			l.Close() // as a killed process leaves it
		} else {
			t.Cleanup(func() { l.Close(); os.Remove(p) })
		}
	}
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Listen(main, Server{Mountpoint: dir, Log: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Lstat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead successor's socket: %v, want it removed", err)
	}
	for _, p := range []string{live, other} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v, want it left", p, err)
		}
	}
}
