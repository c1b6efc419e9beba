package handover

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mounts that no /proc/PID/mountinfo lists. A process's mountinfo shows
// the mounts of its namespace below its root directory only; a
// container runtime that moves the container's root over the namespace
// it copied from the host (systemd-nspawn does, with MS_MOVE onto /)
// leaves the whole copied tree beneath every process's root. A copy of
// a mount in that tree holds its file system as long as the container
// lives, and mountinfo never shows it. listmount(2) and statmount(2)
// (Linux 6.8; another namespace's mounts, 6.11) list every mount of a
// namespace, wherever its processes' roots are.

// golang.org/x/sys numbers statmount and listmount (unix.SYS_STATMOUNT,
// unix.SYS_LISTMOUNT) but wraps neither, nor has their structures.

// lsmtRoot asks listmount for the mounts below the namespace's root.
const lsmtRoot = ^uint64(0)

// statmountSBBasic asks statmount for the superblock's device number.
const statmountSBBasic = 0x1

// mntIDReq is struct mnt_id_req, with the namespace's id (its second
// version, unix.MNT_ID_REQ_SIZE_VER1 bytes).
type mntIDReq struct {
	size    uint32
	spare   uint32
	mntID   uint64
	param   uint64
	mntNsID uint64
}

// The structure is the size its size field says (a compile-time check).
var _ = [1]struct{}{}[unsafe.Sizeof(mntIDReq{})-unix.MNT_ID_REQ_SIZE_VER1]

// statmountHead is the start of struct statmount, as far as the device
// number of the mount's superblock.
type statmountHead struct {
	size       uint32
	mntOpts    uint32
	mask       uint64
	sbDevMajor uint32
	sbDevMinor uint32
}

// statmountBufSize is room for struct statmount (512 bytes in Linux
// 6.18), whose strings statmountSBBasic does not ask for.
const statmountBufSize = 1024

// mountsInNamespace counts the mounts of the file system dev in the
// mount namespace whose nsfs file is nsPath (/proc/PID/ns/mnt), all of
// them; ok is false when the kernel cannot say (before Linux 6.11, or
// without CAP_SYS_ADMIN over the namespace).
func mountsInNamespace(nsPath string, dev uint64) (n int, ok bool) {
	nsID, err := mountNamespaceID(nsPath)
	if err != nil {
		return 0, false
	}
	ids := make([]uint64, 512)
	last := uint64(0)
	for {
		req := mntIDReq{size: unix.MNT_ID_REQ_SIZE_VER1, mntID: lsmtRoot, param: last, mntNsID: nsID}
		got, _, errno := unix.Syscall6(unix.SYS_LISTMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&ids[0])), uintptr(len(ids)), 0, 0, 0)
		if errno != 0 {
			return 0, false
		}
		for _, id := range ids[:got] {
			if d, ok := mountDev(id, nsID); ok && d == dev {
				n++
			}
		}
		if int(got) < len(ids) {
			return n, true
		}
		last = ids[got-1]
	}
}

// mountNamespaceID is the 64-bit id of the mount namespace whose nsfs
// file is nsPath (NS_GET_MNTNS_ID, Linux 6.11).
func mountNamespaceID(nsPath string) (uint64, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var id uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.NS_GET_MNTNS_ID, uintptr(unsafe.Pointer(&id))); errno != 0 {
		return 0, errno
	}
	return id, nil
}

// mountDev is the device number of the file system mounted as mount id
// in the namespace nsID.
func mountDev(id, nsID uint64) (uint64, bool) {
	req := mntIDReq{size: unix.MNT_ID_REQ_SIZE_VER1, mntID: id, param: statmountSBBasic, mntNsID: nsID}
	var buf [statmountBufSize / 8]uint64 // aligned for statmountHead
	if _, _, errno := unix.Syscall6(unix.SYS_STATMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&buf[0])), statmountBufSize, 0, 0, 0); errno != 0 {
		return 0, false
	}
	head := (*statmountHead)(unsafe.Pointer(&buf[0]))
	if head.mask&statmountSBBasic == 0 {
		return 0, false
	}
	return unix.Mkdev(head.sbDevMajor, head.sbDevMinor), true
}
