package handover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNothingToReplace reports a mount point that no live secretfs serves
// and nothing else is mounted on: a plain directory, or the dead mount a
// killed secretfs left, which an ordinary mount recovers.
var ErrNothingToReplace = errors.New("no live secretfs serves it")

// Predecessor is the live secretfs serving a mount point, found by Find,
// which has agreed to hear this process's step-down request and no
// other's until Close.
type Predecessor struct {
	Mountpoint string
	Mount      MountInfo // its mount: the top one at Mountpoint
	Hello      Reply     // what it said of itself
	// PID is its process id as this PID namespace sees it; 0 when it
	// runs in another (a container), where it cannot be seen.
	PID  int
	conn *net.UnixConn
}

// errNoSocket: nothing listens at a mount point's control socket path.
var errNoSocket = errors.New("no control socket")

// answerLimit bounds the wait for a mount to answer statfs.
const answerLimit = 5 * time.Second

// Find looks at what serves mountpoint (absolute, as mountinfo names it)
// and, if it is a live secretfs of this user, asks it who it is and
// takes the turn to replace it (OpHello). It changes nothing. The error
// wraps ErrNothingToReplace when nothing is mounted there or only a dead
// secretfs; any other error says why the mount cannot be replaced.
func Find(mountpoint, fsType string) (*Predecessor, error) {
	all, err := ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	top, ok := TopAt(all, mountpoint)
	if !ok {
		return nil, fmt.Errorf("%w: nothing is mounted at %s", ErrNothingToReplace, mountpoint)
	}
	if top.FSType != fsType {
		return nil, fmt.Errorf("%s is a %s mount, not one a secretfs serves: --replace takes over only a live secretfs", mountpoint, top.FSType)
	}
	euid := os.Geteuid()
	if owner, _ := top.Option("user_id"); owner != strconv.Itoa(euid) {
		return nil, fmt.Errorf("%s is served by another user's secretfs (user_id=%s): only that user may replace it", mountpoint, owner)
	}
	switch err := statfsWithin(mountpoint, answerLimit); {
	case errors.Is(err, syscall.ENOTCONN):
		return nil, fmt.Errorf("%w: the secretfs at %s is dead (its process is gone)", ErrNothingToReplace, mountpoint)
	case err != nil:
		return nil, fmt.Errorf("the secretfs at %s does not answer: %w", mountpoint, err)
	}
	p, err := dial(mountpoint)
	if errors.Is(err, errNoSocket) {
		return nil, fmt.Errorf("%s is served by a secretfs that cannot be asked to step down (it predates --replace): %w", mountpoint, err)
	}
	if err != nil {
		return nil, err
	}
	p.Mount = top
	if err := p.ask(OpHello); err != nil {
		p.Close()
		return nil, err
	}
	if p.Hello.Dev != top.DevString() {
		p.Close()
		return nil, fmt.Errorf("the secretfs answering at %s serves the file system %s, not the one mounted at %s (%s)",
			SocketPath(mountpoint), p.Hello.Dev, mountpoint, top.DevString())
	}
	return p, nil
}

// Status asks the secretfs serving mountpoint how it fares. The
// Predecessor it returns, which holds no turn to replace it, gives the
// reply (Hello) and the process id this namespace sees (PID). Close it.
func Status(mountpoint string) (*Predecessor, error) {
	p, err := dial(mountpoint)
	if errors.Is(err, errNoSocket) {
		return nil, fmt.Errorf("no secretfs answers for %s (none serves it, or one that predates --replace): %w", mountpoint, err)
	}
	if err != nil {
		return nil, err
	}
	if err := p.ask(OpStatus); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// refusedWindow bounds how long dial tries again a control socket that
// refuses connections: during a replacement the predecessor closes its
// socket a moment before the successor moves its own over the same path,
// and a status or a replacement asked in that moment must not fail. A
// socket a killed process left refuses for good, and costs this long.
const refusedWindow = 2 * time.Second

// refusedPause is the pause between two tries of a refusing socket.
const refusedPause = 20 * time.Millisecond

// refused is called each time the control socket refused a connection,
// before dial tries again: a test moves a socket into place there.
var refused = func() {}

// dial connects to the control socket of mountpoint, which must be a
// socket of this user that only this user may use, answered by a process
// of this user. A socket that refuses is tried again, and checked again,
// for refusedWindow.
func dial(mountpoint string) (*Predecessor, error) {
	give := time.Now().Add(refusedWindow)
	for {
		p, err := dialOnce(mountpoint)
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(give) {
			return p, err
		}
		refused()
		time.Sleep(refusedPause)
	}
}

func dialOnce(mountpoint string) (*Predecessor, error) {
	path := SocketPath(mountpoint)
	euid := os.Geteuid()
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s", errNoSocket, path)
	}
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || int(st.Uid) != euid || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is not a control socket only this user (uid %d) may use (%s, owner uid %d): not using it", path, euid, fi.Mode(), st.Uid)
	}
	conn, err := dialSocket(path)
	if err != nil {
		return nil, fmt.Errorf("the secretfs serving %s cannot be reached at %s: %w", mountpoint, path, err)
	}
	cred, err := peer(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if int(cred.Uid) != euid {
		conn.Close()
		return nil, fmt.Errorf("the process listening at %s runs as uid %d, not %d: not asking it", path, cred.Uid, euid)
	}
	return &Predecessor{Mountpoint: mountpoint, PID: int(cred.Pid), conn: conn}, nil
}

// ErrNoReply is in the chain of an error of a request that got no reply:
// the connection ended (or timed out) before the request could be sent
// or answered. A predecessor that a signal is ending closes its
// connections, then unmounts; one in the middle of a step-down may have
// done what it was asked. Either way the caller must look at the mount
// point rather than conclude.
var ErrNoReply = errors.New("no reply")

// ask sends op and keeps the reply in p.Hello.
func (p *Predecessor) ask(op string, fds ...int) error {
	return p.send(request{V: Version, Op: op}, fds...)
}

func (p *Predecessor) send(req request, fds ...int) error {
	if err := send(p.conn, req, fds...); err != nil {
		return fmt.Errorf("asking the secretfs serving %s: %w (%w)", p.Mountpoint, ErrNoReply, err)
	}
	var r Reply
	files, err := receive(p.conn, &r, time.Now().Add(ioTimeout))
	closeAll(files)
	if err != nil {
		return fmt.Errorf("asking the secretfs serving %s: %w (%w)", p.Mountpoint, ErrNoReply, err)
	}
	if r.Program != Program {
		return fmt.Errorf("what answers at %s is not a secretfs (it says it is %q)", SocketPath(p.Mountpoint), r.Program)
	}
	if r.Error != "" {
		return fmt.Errorf("the secretfs serving %s (version %s, process %d) said: %s", p.Mountpoint, r.Release, r.PID, r.Error)
	}
	if r.V != Version {
		return fmt.Errorf("the secretfs serving %s speaks control protocol version %d, this one %d", p.Mountpoint, r.V, Version)
	}
	p.Hello = r
	return nil
}

// StepDown asks the predecessor to detach its mount, which it does once
// it sees m directly beneath it. When StepDown returns nil, the mount
// point shows m.
func (p *Predecessor) StepDown(m *Mount) error {
	root := m.Root()
	if root == nil {
		return errors.New("the mount was closed")
	}
	raw, err := root.SyscallConn()
	if err != nil {
		return err
	}
	var askErr error
	if err := raw.Control(func(fd uintptr) { askErr = p.ask(OpStepDown, int(fd)) }); err != nil {
		return err
	}
	return askErr
}

// StepDownWithGap asks the predecessor to detach its mount now, with
// nothing beneath it: for a kernel that cannot mount beneath
// (--replace=gap). Until the caller mounts, the path serves nothing.
func (p *Predecessor) StepDownWithGap() error {
	return p.send(request{V: Version, Op: OpStepDown, Gap: true})
}

// Close ends the conversation; a predecessor that did not step down goes
// on serving, and may be asked by another successor.
func (p *Predecessor) Close() error { return p.conn.Close() }

// statfsWithin calls statfs on dir, giving up after limit: a hung mount
// must not hang the caller (the call itself goes on in the background).
func statfsWithin(dir string, limit time.Duration) error {
	done := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		done <- unix.Statfs(dir, &st)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		return fmt.Errorf("no answer to statfs within %s", limit)
	}
}
