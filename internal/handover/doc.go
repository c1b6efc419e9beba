// Package handover lets a new secretfs take over a mount point that a live
// secretfs serves, with no moment at which the path serves nothing, and
// lets the old one step down.
//
// The new process makes its FUSE file system with the kernel's mount API
// (fsopen, fsconfig, fsmount: Open), serves it through go-fuse's /dev/fd/N
// form (Mount.DevicePath), and attaches it beneath the live mount
// (move_mount with MOVE_MOUNT_BENEATH, Linux 6.5 and later:
// Mount.AttachBeneath), where nobody sees it yet. It then asks the old
// process, through the control socket beside the mount point (Dial,
// Predecessor.StepDown), to step down: the old process checks that a
// secretfs mount of the asker lies beneath its own, detaches its own
// mount (umount2 with MNT_DETACH), and the path shows the new mount. The
// old process keeps serving whatever still references its detached mount
// (open descriptors, current directories, bind mounts of a directory in
// it) until the kernel drops the last reference, which go-fuse reports by
// returning from Serve.
//
// The control socket (Listen, Control) is a Unix SOCK_SEQPACKET socket at
// SocketPath(mountpoint), owned by the serving user and mode 0600. Each
// message is one JSON object in one packet, carrying the protocol's
// version; the step-down request carries the asker's mount as a
// descriptor (SCM_RIGHTS). Only a peer of the same user (SO_PEERCRED) is
// answered at all, and a client asks nothing of a socket that is not its
// user's and 0600, or whose listener is of another user (SO_PEERCRED).
// The socket is made only where nobody but root and the serving user may
// put another in its place (every directory from / to it: theirs, and
// writable by others only if sticky), and what another user put at its
// path is neither asked anything nor removed: the mount then serves
// without one, and cannot be replaced.
//
// This package never reads or logs a secret: it sees mounts, descriptors
// and process ids. It does not import go-fuse; the caller serves the
// descriptor.
//
// # Lock order
//
// Two locks, both leaves: Control.mu (the socket's path, its connections
// and the step-down's state) and Mount.mu (the FUSE device and the
// detached mount's descriptor). Neither is taken while the other is held.
// Control.mu is held across closing or renaming the socket, never while a
// message is sent or awaited, nor while a mount is detached.
package handover
