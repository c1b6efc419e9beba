package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	lsyslog "github.com/sirupsen/logrus/hooks/syslog"
	"golang.org/x/sys/unix"
)

// Running as a service: systemd's notifications, --daemon, and where the
// log goes.

// readyFDEnv names the descriptor on which a mount started by --daemon
// tells its parent that it answers ("ready") or why it failed.
const readyFDEnv = "SECRETFS_READY_FD"

// invocation is the command line as cobra runs it: os.Args[1:], or its
// translation from the mount(8) form (see mountHelperArgs). --daemon
// starts the mount again with it.
var invocation []string

// notify sends state to systemd: nothing without NOTIFY_SOCKET.
func notify(log logrus.FieldLogger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.WithError(err).Warn("could not notify systemd")
	}
}

// status says what the mount is doing, in `systemctl status`.
func status(log logrus.FieldLogger, what string) { notify(log, "STATUS="+what) }

// daemonize starts the same mount again in the background, in a session
// of its own with no terminal, and returns once it answers, or with why
// it failed. The mount runs on until unmounted (umount, fusermount3 -u)
// or stopped with SIGTERM.
func daemonize(stderr io.Writer) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	args := make([]string, 0, len(invocation))
	for _, a := range invocation {
		if a != "--daemon" && !strings.HasPrefix(a, "--daemon=") {
			args = append(args, a)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), "SECRETFS_DAEMON=false", readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Stdin, err = os.Open(os.DevNull); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start the daemon: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		fmt.Fprintf(stderr, "secretfs: mounted, serving as process %d\n", cmd.Process.Pid)
		cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "error: "):
		cmd.Wait()
		return errors.New(strings.TrimPrefix(line, "error: "))
	}
	err = cmd.Wait()
	return fmt.Errorf("the mount exited before it answered (%v); its log says why", err)
}

// readyPipe is how a mount started by --daemon reports to its parent;
// nil when it was not.
type readyPipe struct{ f *os.File }

func openReadyPipe() *readyPipe {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	return &readyPipe{f: os.NewFile(uintptr(fd), "ready")}
}

// done tells the parent how starting ended, once.
func (p *readyPipe) done(err error) {
	if p == nil || p.f == nil {
		return
	}
	if err == nil {
		fmt.Fprintln(p.f, "ready")
	} else {
		fmt.Fprintln(p.f, "error: "+strings.ReplaceAll(err.Error(), "\n", " "))
	}
	p.f.Close()
	p.f = nil
}

// logTo sends the mount's log to path (appending, mode 0600), or, for a
// daemon without one, to syslog (journald reads it). It returns what to
// close at exit.
func logTo(log *logrus.Logger, path string, daemon bool) (io.Closer, error) {
	switch {
	case path != "":
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--log-file: %w", err)
		}
		log.SetOutput(f)
		return f, nil
	case daemon:
		hook, err := lsyslog.NewSyslogHook("", "", syslog.LOG_INFO|syslog.LOG_DAEMON, "secretfs")
		if err != nil {
			return nil, fmt.Errorf("a daemon without --log-file logs to syslog, which cannot be reached here (%v): pass --log-file", err)
		}
		log.AddHook(hook)
		log.SetOutput(io.Discard)
		return io.NopCloser(nil), nil
	}
	return io.NopCloser(nil), nil
}

// answers reports whether the mount at dir answers: a listing of its
// root, within limit. It runs in its own goroutine: a mount that does
// not answer must not hang the caller.
func answers(dir string, limit time.Duration) error {
	done := make(chan error, 1)
	go func() {
		f, err := os.Open(dir)
		if err == nil {
			_, err = f.Readdirnames(-1)
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		return fmt.Errorf("%s did not answer a listing within %s", dir, limit)
	}
}

// statfsAnswers reports whether the mount at dir answers statfs (which
// the mount answers itself, without the store) within limit.
func statfsAnswers(dir string, limit time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		done <- unix.Statfs(dir, &st)
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(limit):
		return false
	}
}

// watchdog sends WATCHDOG=1 to systemd at half the interval it asks for
// (WatchdogSec=), but only while the mount answers, so that systemd
// restarts a mount that hangs. It stops when stop is closed.
func watchdog(dir string, log logrus.FieldLogger, stop <-chan struct{}) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if statfsAnswers(dir, interval/2) {
			notify(log, daemon.SdNotifyWatchdog)
		} else {
			log.WithField("mountpoint", dir).Warn("the mount did not answer: no watchdog keep-alive sent")
		}
	}
}
