//go:build !darwin

package fuse

import "golang.org/x/sys/unix"

// Connected reports whether the kernel's end of the server's connection
// is still there. It is not once the kernel released the file system
// (its last mount went, in every mount namespace) or the connection was
// aborted; requests read before may still be in flight, and Wait waits
// for them. A FUSE device polls POLLERR once its connection is gone.
//
// secretfs: a stop that unmounted the file system tells one still held
// elsewhere (a copy of the mount in another mount namespace) from
// requests still being answered.
func (ms *Server) Connected() bool {
	connected := true
	ms.fuseFD.conn.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 && p[0].Revents&unix.POLLERR != 0 {
			connected = false
		}
	})
	return connected
}
