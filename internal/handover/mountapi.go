package handover

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// MoveMountBeneath is MOVE_MOUNT_BENEATH of linux/mount.h (Linux 6.5),
// which golang.org/x/sys/unix does not define: move_mount attaches the
// mount beneath the top mount at the target instead of on top of it, so
// that it is revealed when the top mount goes.
const MoveMountBeneath = 0x200

// ErrNoBeneath reports a kernel that cannot attach a mount beneath a live
// one (before Linux 6.5, move_mount refuses MOVE_MOUNT_BENEATH).
var ErrNoBeneath = errors.New("this kernel cannot mount beneath a live mount (move_mount with MOVE_MOUNT_BENEATH needs Linux 6.5 or later)")

// BeneathSupported reports whether this kernel can attach a mount beneath
// another: nil, or an error wrapping ErrNoBeneath. It changes nothing:
// move_mount checks its flags before anything else and refuses unknown
// ones with EINVAL; a kernel that knows the flag goes on to look up the
// paths, and fails on the empty one. A kernel without move_mount at all
// (before 5.2) answers ENOSYS. Without CAP_SYS_ADMIN it answers EPERM
// before looking at the flags, and nothing can be told.
func BeneathSupported() error {
	err := unix.MoveMount(-1, "", -1, "", MoveMountBeneath)
	switch {
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("%w (move_mount: %v)", ErrNoBeneath, err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("mounting beneath a live mount needs CAP_SYS_ADMIN (move_mount: %v)", err)
	}
	return nil
}

// Options are the FUSE file system's parameters (fs/fuse/inode.c's
// fuse_fs_parameters) and the mount's flags.
type Options struct {
	Source  string // the "device" mountinfo shows, such as secretfs
	Subtype string // the type is shown as fuse.<Subtype>
	// UserID and GroupID are who mounted it: without AllowOther, the
	// kernel lets no one else in.
	UserID, GroupID    uint32
	AllowOther         bool
	DefaultPermissions bool // the kernel checks modes and owners itself
	ReadOnly           bool // the file system refuses every change (EROFS)
	// MountReadOnly makes this mount read-only (MOUNT_ATTR_RDONLY) while
	// the file system stays writable: through this mount nothing can be
	// written, through a clone of it (open_tree) it can.
	MountReadOnly bool
	MaxRead       int // the largest READ the kernel sends; 0 for its default
}

// Mount is a FUSE file system made with the kernel's mount API: a
// connection on /dev/fuse and a mount not yet attached anywhere. Its
// server serves the connection through DevicePath; AttachBeneath puts
// the mount in place. Close releases what Mount still holds.
type Mount struct {
	mu     sync.Mutex
	device int      // /dev/fuse; -1 once handed to the server
	root   *os.File // fsmount's descriptor: the mount's root
}

// Open opens /dev/fuse and makes a FUSE file system on it with o
// (fsopen, fsconfig, FSCONFIG_CMD_CREATE, fsmount). The kernel queues the
// FUSE INIT request at once; requests to the mount wait until a server
// reads the connection. The mount is attached nowhere: only the returned
// Mount reaches it.
func Open(o Options) (*Mount, error) {
	device, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w", err)
	}
	root, err := makeFUSE(device, o)
	if err != nil {
		unix.Close(device)
		return nil, err
	}
	return &Mount{device: device, root: root}, nil
}

// makeFUSE configures and creates a FUSE file system served on device,
// and returns its detached mount.
func makeFUSE(device int, o Options) (*os.File, error) {
	fsfd, err := unix.Fsopen("fuse", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen fuse: %w", err)
	}
	defer unix.Close(fsfd)
	fail := func(what string, err error) error {
		if msg := contextLog(fsfd); msg != "" {
			return fmt.Errorf("%s: %w (the kernel says: %s)", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	params := [][2]string{
		{"source", o.Source},
		{"subtype", o.Subtype},
		{"fd", strconv.Itoa(device)},
		// The root is a directory: rootmode takes the file type bits,
		// in octal, as fusermount3 passes them.
		{"rootmode", strconv.FormatUint(unix.S_IFDIR, 8)},
		{"user_id", strconv.FormatUint(uint64(o.UserID), 10)},
		{"group_id", strconv.FormatUint(uint64(o.GroupID), 10)},
	}
	if o.MaxRead > 0 {
		params = append(params, [2]string{"max_read", strconv.Itoa(o.MaxRead)})
	}
	for _, p := range params {
		if p[1] == "" {
			continue
		}
		if err := unix.FsconfigSetString(fsfd, p[0], p[1]); err != nil {
			return nil, fail("fsconfig "+p[0]+"="+p[1], err)
		}
	}
	for _, flag := range []struct {
		name string
		on   bool
	}{{"allow_other", o.AllowOther}, {"default_permissions", o.DefaultPermissions}, {"ro", o.ReadOnly}} {
		if !flag.on {
			continue
		}
		if err := unix.FsconfigSetFlag(fsfd, flag.name); err != nil {
			return nil, fail("fsconfig "+flag.name, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fail("fsconfig create", err)
	}
	// nosuid and nodev, as mount(2) of FUSE is always given (and
	// fusermount3 insists on).
	attrs := unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	if o.MountReadOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return nil, fail("fsmount", err)
	}
	return os.NewFile(uintptr(mfd), "secretfs mount"), nil
}

// contextLog returns what the kernel logged in the file system context
// fsfd (lines such as "e fuse: Invalid rootmode"), joined, or "".
func contextLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 8 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, string(bytes.TrimSpace(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

// DevicePath hands the FUSE connection to its server: go-fuse's
// fuse.NewServer takes the returned /dev/fd/N as its mount point, with
// DirectMount off, and owns the descriptor from then on (it closes it
// when Serve returns). Call it once.
func (m *Mount) DevicePath() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	fd := m.device
	m.device = -1
	return fmt.Sprintf("/dev/fd/%d", fd)
}

// goFusePollHack is the name go-fuse answers for itself in every file
// system it serves (fuse/poll.go): a file whose POLL it refuses with
// ENOSYS, after which the kernel never sends POLL to the connection again.
const goFusePollHack = ".go-fuse-epoll-hack"

// DeclinePoll makes the kernel stop sending POLL requests to the mount's
// server, as go-fuse's WaitMount does for the mounts it makes itself and
// cannot for a /dev/fd/N one: it polls go-fuse's poll-hack file once,
// which go-fuse refuses. Without it, a Go program that reads a file of
// the mount it serves itself (a test does) may deadlock: the runtime's
// epoll asks the kernel to poll the file while every thread that could
// answer the POLL waits. Call it once the server serves.
func (m *Mount) DeclinePoll() error {
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d/%s", m.root.Fd(), goFusePollHack), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
	return err
}

// Root returns the mount's root directory, through which it can be
// reached before it is attached (a listing through /proc/self/fd/N), and
// which identifies it to the process it replaces. It stays Mount's:
// Close closes it.
func (m *Mount) Root() *os.File { return m.root }

// Dev returns the device number of the mount's file system, as stat's
// st_dev and mountinfo's major:minor show it. It asks the kernel only
// (AT_STATX_DONT_SYNC): no request reaches the server.
func (m *Mount) Dev() (uint64, error) { return fileDev(int(m.root.Fd())) }

// fileDev returns the device number of the file system of fd, without a
// request to its server.
func fileDev(fd int) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, 0, &stx); err != nil {
		return 0, err
	}
	return unix.Mkdev(stx.Dev_major, stx.Dev_minor), nil
}

// AttachBeneath attaches the mount beneath the top mount at dir: nothing
// that looks up dir sees it until the mount above it goes. It needs
// Linux 6.5 (see BeneathSupported) and CAP_SYS_ADMIN.
func (m *Mount) AttachBeneath(dir string) error {
	return m.attach(dir, unix.MOVE_MOUNT_F_EMPTY_PATH|MoveMountBeneath)
}

// Attach attaches the mount at dir, on top of whatever is there.
func (m *Mount) Attach(dir string) error { return m.attach(dir, unix.MOVE_MOUNT_F_EMPTY_PATH) }

func (m *Mount) attach(dir string, flags int) error {
	err := unix.MoveMount(int(m.root.Fd()), "", unix.AT_FDCWD, dir, flags)
	if err != nil {
		if flags&MoveMountBeneath != 0 && errors.Is(err, unix.EINVAL) && BeneathSupported() != nil {
			return fmt.Errorf("mount beneath %s: %w", dir, ErrNoBeneath)
		}
		return fmt.Errorf("move_mount to %s: %w", dir, err)
	}
	return nil
}

// Close closes the mount's root and, if no server took it, the FUSE
// connection. An attached mount stays where it is; one never attached is
// dissolved. A mount holds a reference to itself through its root, so a
// server whose mount must be released when unmounted closes it once the
// mount is in place and its predecessor has stepped down.
func (m *Mount) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.device >= 0 {
		unix.Close(m.device)
		m.device = -1
	}
	if m.root == nil {
		return nil
	}
	err := m.root.Close()
	m.root = nil
	return err
}

// Withdraw undoes AttachBeneath when the mount above it, the file system
// above (a device number), did not step down: it leaves that file system
// the only mount at dir, as it was, and this mount attached nowhere.
// The kernel offers no direct way: unmounting this mount would take the
// mount above, which sits on its root, along with it, and a path names
// only the top mount. So the mount above is cloned (open_tree), detached
// (the path shows this mount, which still serves, so readers see no
// error), the clone is attached beneath this mount, and this mount is
// detached. Withdraw changes nothing unless the mount above is the top
// one at dir and this one is directly beneath it.
func (m *Mount) Withdraw(dir string, above uint64) error {
	own, err := m.Dev()
	if err != nil {
		return err
	}
	all, err := ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	top, ok := TopAt(all, dir)
	if !ok || top.Dev != above {
		return fmt.Errorf("withdrawing from beneath %s: the mount there is not the one this mount was attached beneath (%s): leaving it", dir, devString(above))
	}
	if beneath, ok := Beneath(all, top); !ok || beneath.Dev != own {
		return fmt.Errorf("withdrawing from beneath %s: this mount (%s) is not directly beneath the top one: leaving it", dir, devString(own))
	}
	cfd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("withdrawing from beneath %s: cloning the mount above: %w", dir, err)
	}
	clone := os.NewFile(uintptr(cfd), "clone of the mount above")
	defer clone.Close()
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("withdrawing from beneath %s: detaching the mount above: %w", dir, err)
	}
	if err := unix.MoveMount(int(clone.Fd()), "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH|MoveMountBeneath); err != nil {
		// Put the file system above back on top at least: this mount
		// stays beneath it.
		if again := unix.MoveMount(int(clone.Fd()), "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); again != nil {
			return fmt.Errorf("withdrawing from beneath %s: the mount above is detached and cannot be put back (%v, %v): the path shows this mount", dir, err, again)
		}
		return fmt.Errorf("withdrawing from beneath %s: attaching the mount above again beneath this one: %w; it is back on top, this mount stays beneath it", dir, err)
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("withdrawing from beneath %s: detaching this mount, now on top: %w", dir, err)
	}
	return nil
}
