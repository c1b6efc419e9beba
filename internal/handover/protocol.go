package handover

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Version is the version of the control protocol this package speaks.
// A request of another version is answered with an error that names both
// and changes nothing; a new version may add operations and fields, and
// changes Version when an old peer would misread what it sends.
const Version = 1

// Program is what every reply names as the program that answers:
// something else listening at the socket is not a secretfs.
const Program = "secretfs"

// The operations of the control protocol.
const (
	// OpHello asks who serves the mount, and makes the asking
	// connection the one successor allowed to ask OpStepDown: a second
	// successor is refused until this one goes away without it.
	OpHello = "hello"
	// OpStepDown asks the server to detach its mount, which it does only
	// once it sees the asker's mount beneath its own; the request
	// carries that mount's root as a descriptor (SCM_RIGHTS).
	OpStepDown = "step-down"
	// OpStatus asks who serves the mount and how it fares.
	OpStatus = "status"
)

// request is what a client sends.
type request struct {
	V  int    `json:"v"`
	Op string `json:"op"`
	// Gap, in an OpStepDown, asks to step down with no mount beneath:
	// the successor's kernel cannot mount beneath (--replace=gap), and
	// the path serves nothing until it mounts.
	Gap bool `json:"gap,omitempty"`
}

// Reply is what the server answers, to every operation. Error is empty
// when the request was done.
type Reply struct {
	V       int    `json:"v"`
	Error   string `json:"error,omitempty"`
	Program string `json:"program"`
	Release string `json:"release"` // the server's version (secretfs version)
	// PID is the server's process id in its own PID namespace; the
	// client learns the one its namespace sees from SO_PEERCRED.
	PID        int    `json:"pid"`
	Mountpoint string `json:"mountpoint"`
	Dev        string `json:"dev"`     // major:minor of the file system it serves
	Serving    bool   `json:"serving"` // false once it stepped down
	Healthy    bool   `json:"healthy"` // the mount is served and its backend answers
	// Goroutines and Descriptors count the server's goroutines and open
	// descriptors, to check that nothing leaks.
	Goroutines  int `json:"goroutines"`
	Descriptors int `json:"descriptors"`
	// GoroutinesByCreator counts the goroutines by the function that
	// started them ("main" for the main goroutine): function names
	// only, never a value.
	GoroutinesByCreator map[string]int `json:"goroutines_by_creator,omitempty"`
	// WatchdogUSec is the interval of systemd's watchdog the server
	// keeps up (WatchdogSec=), in microseconds; 0 for none. A successor
	// that becomes the service's main process must keep it up in its
	// place, and systemd tells it only to the process it started.
	WatchdogUSec int64 `json:"watchdog_usec,omitempty"`
	// MetricsAddr is the address the server serves its metrics at
	// (--metrics-addr), or NoMetrics; empty from a server that predates
	// it. A successor may take that address, and no other that is
	// taken.
	MetricsAddr string `json:"metrics_addr,omitempty"`
}

// NoMetrics is Reply.MetricsAddr of a server that serves no metrics.
const NoMetrics = "none"

// maxMessage bounds one packet of the protocol.
const maxMessage = 64 << 10

// ioTimeout bounds each exchange on the control socket: the server
// answers from memory, except for a step-down, which detaches a mount.
const ioTimeout = 30 * time.Second

// SocketPath is the control socket of the mount at mountpoint: a hidden
// name in the directory holding the mount point, so that it is found
// wherever the mount point is (a container sharing that directory with
// the host sees it too), and not inside the mount, which is the file
// system's.
func SocketPath(mountpoint string) string {
	dir, base := filepath.Split(filepath.Clean(mountpoint))
	return filepath.Join(dir, "."+base+".secretfs.sock")
}

// maxSocketPath is the longest path a Unix socket address holds
// (sun_path, 108 bytes with its terminating NUL).
const maxSocketPath = 107

// socketAddr returns an address for the socket at path, and a function
// to call once it has been used. A path too long for an address is
// reached through a descriptor of its directory: /proc/self/fd/N/name.
func socketAddr(path string) (*net.UnixAddr, func(), error) {
	if len(path) <= maxSocketPath {
		return &net.UnixAddr{Name: path, Net: "unixpacket"}, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	short := fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(short) > maxSocketPath {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("the socket's name %q is too long", filepath.Base(path))
	}
	return &net.UnixAddr{Name: short, Net: "unixpacket"}, func() { unix.Close(fd) }, nil
}

// dialSocket connects to the socket at path.
func dialSocket(path string) (*net.UnixConn, error) {
	addr, done, err := socketAddr(path)
	if err != nil {
		return nil, err
	}
	defer done()
	return net.DialUnix("unixpacket", nil, addr)
}

// send writes v as one packet, with fds (SCM_RIGHTS) if any.
func send(c *net.UnixConn, v any, fds ...int) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, _, err = c.WriteMsgUnix(data, oob, nil)
	return err
}

// receive reads one packet into v, and returns the descriptors it
// carried as files, which the caller closes.
func receive(c *net.UnixConn, v any, deadline time.Time) ([]*os.File, error) {
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*4))
	c.SetReadDeadline(deadline)
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	files, ferr := rights(oob[:oobn])
	if n == 0 {
		closeAll(files)
		return nil, errors.New("the peer closed the connection")
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		return nil, errors.New("a message too long for the control protocol")
	}
	if ferr != nil {
		closeAll(files)
		return nil, ferr
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		closeAll(files)
		return nil, fmt.Errorf("not a control protocol message: %w", err)
	}
	return files, nil
}

// rights returns the descriptors of SCM_RIGHTS messages in oob as files.
func rights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// peer returns the credentials of the process at the other end of c.
func peer(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}
