package handover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/internal/owned"
)

// Server describes the serving process to its control socket, and what
// the socket may ask of it.
type Server struct {
	Mountpoint string // absolute, as mountinfo names it
	FSType     string // the type of its mount, which a successor's must share: fuse.secretfs
	Dev        uint64 // the device number of the file system it serves
	Release    string // its version, told to whoever asks
	// Owner is the only user whose processes are answered (SO_PEERCRED):
	// the user that serves the mount.
	Owner int
	// Watchdog is the interval of systemd's watchdog this process keeps
	// up, 0 for none (Reply.WatchdogUSec).
	Watchdog time.Duration
	// MetricsAddr is the address the metrics are served at, "" for
	// none (Reply.MetricsAddr).
	MetricsAddr string
	// Healthy reports whether the mount's backend answers; nil: always.
	Healthy func() bool
	// Successor, if set, is told when a successor announces itself
	// (true), and when it goes away without having asked to step down
	// (false).
	Successor func(present bool)
	// StepDown detaches the mount. It is called after the successor's
	// mount was seen beneath this one, and is given a check that it
	// still is, to call right before it detaches: the step-down may
	// take a while (writers to wait for), and a successor that gave up
	// meanwhile withdrew its mount, which a detach would leave the path
	// without (the check never fails for a step-down with a gap). Once
	// it returned nil the socket stops listening: the successor puts its
	// own in place.
	StepDown func(stillBeneath func() error) error
	// SteppedDown, if set, is called once the successor was told that
	// this process stepped down: only then may the process end, or the
	// successor would not hear it.
	SteppedDown func()
	Log         logrus.FieldLogger
	// MountInfo is the mount table to check, /proc/self/mountinfo when
	// empty (tests give another).
	MountInfo string
}

// Control is the control socket of a serving process. It answers one
// request at a time per connection, each connection in a goroutine of
// its own, until Close.
type Control struct {
	s     Server
	l     *net.UnixListener
	ident fileIdent // the socket file, to remove it only while it is ours

	mu   sync.Mutex // guards what follows
	path string
	// conns are the open connections, each true while one of its
	// requests is being answered: Close lets that answer be sent.
	conns       map[*net.UnixConn]bool
	successor   *net.UnixConn // the connection that said hello, if any
	steppedDown bool
	closed      bool
	wg          sync.WaitGroup
}

// fileIdent identifies a file by device and inode.
type fileIdent struct{ dev, ino uint64 }

func identify(path string) (fileIdent, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileIdent{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileIdent{uint64(st.Dev), st.Ino}, nil
}

// successorIdle is how long a successor may keep its turn between its
// hello and its step-down: it opens its store and mounts meanwhile.
const successorIdle = 2 * time.Minute

// Listen makes the control socket at path (mode 0600) and answers it
// until Close. A socket left at path by a process that died is replaced,
// and so is one whose secretfs does not serve the file system the mount
// point shows (one unmounted there that a copy in another mount
// namespace keeps alive): nobody can reach it through the path any
// longer. A live one that serves the mount point, or anything else
// there, is an error.
//
// The socket is made only where nobody but root and this process's user
// may put another in its place (owned.Dir): beside a mount point
// in a directory others may change, they could take the path before the
// mount makes its socket, or after. Whatever another user put at path is
// neither asked anything nor removed: it is an error.
func Listen(path string, s Server) (*Control, error) {
	if s.Log == nil {
		s.Log = logrus.StandardLogger()
	}
	if s.MountInfo == "" {
		s.MountInfo = "/proc/self/mountinfo"
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	path = filepath.Join(dir, filepath.Base(path))
	if err := owned.Dir(dir, "secretfs status and --replace would ask the socket they put in its place"); err != nil {
		return nil, fmt.Errorf("control socket: none made at %s: %w", path, err)
	}
	if err := removeStale(path, s); err != nil {
		return nil, err
	}
	if s.Mountpoint != "" {
		removeDeadSuccessors(SocketPath(s.Mountpoint), path, s.Log)
	}
	addr, done, err := socketAddr(path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l, err := net.ListenUnix("unixpacket", addr)
	done()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The file outlives this listener when a successor renamed its own
	// over it; Close removes it only while it is this one.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ident, err := identify(path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	c := &Control{s: s, l: l, ident: ident, path: path, conns: map[*net.UnixConn]bool{}}
	c.wg.Add(1)
	go c.accept()
	return c, nil
}

// removeStale removes a socket at path that nobody listens on, or whose
// secretfs does not serve s.Mountpoint (notServing).
func removeStale(path string, s Server) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 0 && int(uid) != os.Geteuid() {
		return fmt.Errorf("%s is uid %d's (%s), not root's or this user's: not asking it anything, nor removing it", path, uid, fi.Mode())
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: not replacing it", path)
	}
	conn, err := dialSocket(path)
	if err == nil {
		why := notServing(conn, s)
		conn.Close()
		if why == "" {
			return fmt.Errorf("another process listens at %s", path)
		}
		s.Log.WithField("socket", path).Warn(why + ": taking its control socket over")
		return os.Remove(path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.Remove(path)
}

// removeDeadSuccessors removes the sockets beside main (main.PID) that a
// successor listened at until it took main over, and that nobody listens
// on: each was left by a successor killed mid-replacement (a listener
// ends with its process). One still listened on is a replacement under
// way, and mine is the caller's own.
func removeDeadSuccessors(main, mine string, log logrus.FieldLogger) {
	found, _ := filepath.Glob(main + ".*")
	for _, p := range found {
		if p == mine {
			continue
		}
		if _, err := strconv.Atoi(strings.TrimPrefix(p, main+".")); err != nil {
			continue
		}
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSocket == 0 {
			continue
		}
		conn, err := dialSocket(p)
		if err == nil {
			conn.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) && os.Remove(p) == nil {
			log.WithField("socket", p).Info("removed the control socket of a successor that died mid-replacement")
		}
	}
}

// staleAnswerLimit bounds the wait for the answer of a process found
// listening at the socket's path: one that does not answer keeps it.
const staleAnswerLimit = 2 * time.Second

// notServing asks the secretfs at the other end of conn which file
// system it serves, and says why it does not serve s.Mountpoint: the
// top mount there is another file system. It says nothing ("") when it
// does, or when it cannot tell (no answer, a refusal, no mount table).
func notServing(conn *net.UnixConn, s Server) string {
	if err := send(conn, request{V: Version, Op: OpStatus}); err != nil {
		return ""
	}
	var r Reply
	files, err := receive(conn, &r, time.Now().Add(staleAnswerLimit))
	closeAll(files)
	if err != nil || r.Program != Program || r.Error != "" {
		return ""
	}
	all, err := ReadMountInfo(s.MountInfo)
	if err != nil {
		return ""
	}
	top, ok := TopAt(all, s.Mountpoint)
	shown := "nothing is mounted there"
	switch {
	case ok && top.DevString() == r.Dev:
		return ""
	case ok:
		shown = "it shows " + top.DevString()
	}
	return fmt.Sprintf("the secretfs listening there (process %d, version %s) serves the file system %s, not what the mount point %s shows (%s)", r.PID, r.Release, r.Dev, s.Mountpoint, shown)
}

// Path returns where the socket is.
func (c *Control) Path() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.path
}

// MoveTo renames the socket to path, replacing whatever socket is there:
// a successor listens at a name of its own until its predecessor stepped
// down, and then takes the predecessor's name in one step.
func (c *Control) MoveTo(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.Rename(c.path, path); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	c.path = path
	return nil
}

// Close stops answering, ends every connection and waits for their
// handlers, and removes the socket file if it is still this one (a
// successor's, put in its place, stays). A request being answered is
// answered first: a step-down under way detaches the mount, and its
// successor must hear that it did, or it would take its own mount back
// from beneath a path that is about to show it. A request not yet being
// answered is not answered.
func (c *Control) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	err := c.l.Close()
	for conn, answering := range c.conns {
		if !answering {
			conn.Close()
		}
	}
	path, steppedDown := c.path, c.steppedDown
	c.mu.Unlock()
	c.wg.Wait()
	if id, statErr := identify(path); !steppedDown && statErr == nil && id == c.ident {
		os.Remove(path)
	}
	return err
}

func (c *Control) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.l.AcceptUnix()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return
		}
		// Not answering until it has asked something: Close ends a
		// connection that has not, rather than wait for its request.
		c.conns[conn] = false
		c.wg.Add(1)
		c.mu.Unlock()
		go c.serve(conn)
	}
}

// serve answers the requests of one connection until it ends.
func (c *Control) serve(conn *net.UnixConn) {
	defer c.wg.Done()
	defer c.forget(conn)
	cred, err := peer(conn)
	if err != nil {
		return
	}
	stranger := int(cred.Uid) != c.s.Owner
	for {
		idle := ioTimeout
		if c.isSuccessor(conn) {
			idle = successorIdle
		}
		var req request
		files, err := receive(conn, &req, time.Now().Add(idle))
		if err != nil {
			return
		}
		if stranger {
			// Refused after its request is read: a socket closed with
			// unread data would reset the connection, and the refusal
			// with it.
			closeAll(files)
			c.s.Log.WithFields(logrus.Fields{"uid": cred.Uid, "pid": cred.Pid, "socket": c.Path()}).
				Warn("refused a control connection from another user")
			// Nothing about this process but that it refuses.
			send(conn, Reply{V: Version, Program: Program,
				Error: fmt.Sprintf("refused: only uid %d may ask this secretfs anything, and you are uid %d", c.s.Owner, cred.Uid)})
			return
		}
		if !c.answering(conn, true) {
			closeAll(files) // Close came first: too late
			return
		}
		reply := c.answer(conn, req, files)
		closeAll(files)
		err = send(conn, reply)
		if req.Op == OpStepDown && reply.Error == "" && c.s.SteppedDown != nil {
			c.s.SteppedDown()
		}
		if !c.answering(conn, false) || err != nil {
			return
		}
	}
}

// answering marks conn as answering a request, or done with it, and
// reports whether the control socket is still open: a connection Close
// found answering is ended by its handler once the answer is sent.
func (c *Control) answering(conn *net.UnixConn, busy bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns[conn] = busy
	return !c.closed
}

func (c *Control) isSuccessor(conn *net.UnixConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.successor == conn
}

// forget drops a finished connection; a successor that leaves without
// having its predecessor step down gives up its turn.
func (c *Control) forget(conn *net.UnixConn) {
	conn.Close()
	c.mu.Lock()
	delete(c.conns, conn)
	left := c.successor == conn && !c.steppedDown
	if left {
		c.successor = nil
	}
	closed := c.closed
	c.mu.Unlock()
	if left {
		if closed {
			// Closing ended the connection: this mount is stopping.
			c.s.Log.Info("stopping while a successor that announced itself has not asked this mount to step down")
		} else {
			c.s.Log.Info("the process that announced itself as a successor went away; still serving")
		}
		if c.s.Successor != nil {
			c.s.Successor(false)
		}
	}
}

func (c *Control) answer(conn *net.UnixConn, req request, files []*os.File) Reply {
	if req.V != Version {
		return c.refusal(fmt.Sprintf("control protocol version %d is not understood: this secretfs speaks version %d", req.V, Version))
	}
	switch req.Op {
	case OpHello:
		return c.hello(conn)
	case OpStepDown:
		return c.stepDown(conn, req.Gap, files)
	case OpStatus:
		return c.status()
	}
	return c.refusal(fmt.Sprintf("unknown operation %q", req.Op))
}

func (c *Control) hello(conn *net.UnixConn) Reply {
	c.mu.Lock()
	switch {
	case c.steppedDown:
		c.mu.Unlock()
		return c.refusal("this secretfs has stepped down already")
	case c.successor != nil && c.successor != conn:
		c.mu.Unlock()
		return c.refusal("another replacement of this mount is in progress")
	}
	first := c.successor == nil
	c.successor = conn
	c.mu.Unlock()
	if first {
		c.s.Log.Info("a successor announced itself; it will ask this mount to step down once its own is beneath it")
		if c.s.Successor != nil {
			c.s.Successor(true)
		}
	}
	return c.status()
}

// stepDown detaches the mount once the asker's mount, whose root the
// request carries, is seen directly beneath it: the path then shows the
// asker's mount, and never nothing. Asked for a gap, it detaches without
// one, and the path serves nothing until the asker mounts.
func (c *Control) stepDown(conn *net.UnixConn, gap bool, files []*os.File) Reply {
	c.mu.Lock()
	turn, done := c.successor == conn, c.steppedDown
	c.mu.Unlock()
	switch {
	case done:
		return c.refusal("this secretfs has stepped down already")
	case !turn:
		return c.refusal("say hello first: only the announced successor may ask to step down")
	case gap:
		c.s.Log.Warn("stepping down with a gap, as the successor asks (its kernel cannot mount beneath): the path serves nothing until it mounts")
	case len(files) != 1:
		return c.refusal(fmt.Sprintf("a step-down request carries the root of the asker's mount, one descriptor; it carried %d", len(files)))
	default:
		if err := c.checkBeneath(files[0]); err != nil {
			c.s.Log.WithError(err).Warn("refused to step down")
			return c.refusal(err.Error())
		}
	}
	stillBeneath := func() error { return nil }
	if !gap {
		stillBeneath = func() error { return c.checkBeneath(files[0]) }
	}
	if err := c.s.StepDown(stillBeneath); err != nil {
		c.s.Log.WithError(err).Error("could not step down")
		return c.refusal("could not step down: " + err.Error())
	}
	c.mu.Lock()
	c.steppedDown = true
	c.mu.Unlock()
	// The successor now renames its socket over this one's name.
	c.l.Close()
	return c.status()
}

// checkBeneath checks that this process's mount is the top one at its
// mount point, that the mount directly beneath it is the asker's (its
// file system is root's device and of this one's type), and that the
// asker's file system still answers: a successor killed after it asked
// leaves its mount there, dead (ENOTCONN), and detaching this one would
// leave the path to it.
func (c *Control) checkBeneath(root *os.File) error {
	dev, err := fileDev(int(root.Fd()))
	if err != nil {
		return fmt.Errorf("the descriptor sent is not a mount's root: %w", err)
	}
	all, err := ReadMountInfo(c.s.MountInfo)
	if err != nil {
		return err
	}
	top, ok := TopAt(all, c.s.Mountpoint)
	if !ok || top.Dev != c.s.Dev {
		return fmt.Errorf("this secretfs's mount (%s) is not the top mount at %s: refusing to detach whatever is", devString(c.s.Dev), c.s.Mountpoint)
	}
	beneath, ok := Beneath(all, top)
	if !ok || beneath.Dev != dev || beneath.FSType != c.s.FSType {
		return fmt.Errorf("the asker's mount (%s) is not directly beneath this secretfs's mount at %s: detaching would leave the path without a secretfs", devString(dev), c.s.Mountpoint)
	}
	if err := answers(root, askerAnswerLimit); err != nil {
		return fmt.Errorf("the asker's mount (%s) does not answer (%w): its secretfs is gone or stuck, and detaching would leave the path to a dead mount", devString(dev), err)
	}
	return nil
}

// askerAnswerLimit bounds the wait for the asker's file system to answer
// a statfs: a successor stopped (SIGSTOP) or stuck after it asked would
// otherwise hold the step-down, and with it this process's end, for ever.
const askerAnswerLimit = 2 * time.Second

// answers asks the file system of root for its statfs, and gives up
// after within. A FUSE request cannot be withdrawn: the call given up on
// goes on, on a duplicate of root's descriptor, until the file system
// answers or its connection ends.
func answers(root *os.File, within time.Duration) error {
	fd, err := unix.FcntlInt(root.Fd(), unix.F_DUPFD_CLOEXEC, 0) // a child started meanwhile must not hold the asker's mount
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		defer unix.Close(fd)
		var st unix.Statfs_t
		done <- unix.Fstatfs(fd, &st)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		return fmt.Errorf("no answer to statfs within %v", within)
	}
}

func (c *Control) status() Reply {
	c.mu.Lock()
	serving := !c.steppedDown
	c.mu.Unlock()
	healthy := serving && (c.s.Healthy == nil || c.s.Healthy())
	metricsAddr := c.s.MetricsAddr
	if metricsAddr == "" {
		metricsAddr = NoMetrics
	}
	return Reply{MetricsAddr: metricsAddr, V: Version, Program: Program, Release: c.s.Release, PID: os.Getpid(),
		Mountpoint: c.s.Mountpoint, Dev: devString(c.s.Dev), Serving: serving, Healthy: healthy,
		Goroutines: runtime.NumGoroutine(), Descriptors: openDescriptors(), WatchdogUSec: c.s.Watchdog.Microseconds(),
		GoroutinesByCreator: goroutinesByCreator()}
}

func (c *Control) refusal(why string) Reply {
	r := c.status()
	r.Error = why
	return r
}

// goroutinesByCreator counts this process's goroutines by the function
// that started each, read from the "created by" lines of a dump of every
// stack (which names functions and never shows their arguments' values).
func goroutinesByCreator() map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		creator := "main"
		for _, line := range strings.Split(g, "\n") {
			if rest, ok := strings.CutPrefix(line, "created by "); ok {
				creator, _, _ = strings.Cut(rest, " in goroutine ")
			}
		}
		counts[creator]++
	}
	return counts
}

// openDescriptors counts this process's open descriptors, not counting
// the one that lists them.
func openDescriptors() int {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return -1
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return -1
	}
	return len(names) - 1
}
