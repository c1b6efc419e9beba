package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/syslog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/sirupsen/logrus"
	lsyslog "github.com/sirupsen/logrus/hooks/syslog"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/audit"
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
// or stopped with SIGTERM. replacing: the mount takes another's place
// (--replace), and under systemd becomes the service's main process,
// which this process tells systemd once it is ready (relayMainPID).
func daemonize(stderr io.Writer, replacing bool) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd, err := daemonCommand(w, replacing)
	if err != nil {
		w.Close()
		return err
	}
	sigs, release := catchStopSignals(replacing)
	defer release()
	// The daemon inherits nothing of this process but its ready pipe.
	closeOnExec()
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start the daemon: %w", err)
	}
	w.Close()
	defer passSignalsOn(sigs, cmd.Process, stderr)()
	lines := bufio.NewReader(r)
	serving := "serving"
	for {
		line, readErr := lines.ReadString('\n')
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "note: "):
			fmt.Fprintln(stderr, "secretfs:", strings.TrimPrefix(line, "note: "))
			continue
		case strings.HasPrefix(line, "status: "):
			serving = strings.TrimPrefix(line, "status: ")
			continue
		case line == "ready":
			if replacing {
				relayMainPID(cmd.Process.Pid, serving)
			}
			fmt.Fprintf(stderr, "secretfs: mounted, serving as process %d\n", cmd.Process.Pid)
			cmd.Process.Release()
			return nil
		case strings.HasPrefix(line, "error: "):
			cmd.Wait()
			return errors.New(strings.TrimPrefix(line, "error: "))
		}
		if readErr != nil {
			break
		}
	}
	err = cmd.Wait()
	return fmt.Errorf("the mount exited before it answered (%v); its log says why", err)
}

// daemonCommand is the command that runs the mount in the background:
// this command line without --daemon, in a session of its own, telling
// how its start went on ready.
func daemonCommand(ready *os.File, replacing bool) (*exec.Cmd, error) {
	args := make([]string, 0, len(invocation))
	for _, a := range invocation {
		if a != "--daemon" && !strings.HasPrefix(a, "--daemon=") {
			args = append(args, a)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), "SECRETFS_DAEMON=false", readyFDEnv+"=3")
	if replacing {
		cmd.Env = holdNotifySocket(cmd.Env)
	}
	cmd.ExtraFiles = []*os.File{ready}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Stdin, err = os.Open(os.DevNull); err != nil {
		return nil, err
	}
	return cmd, nil
}

// passSignalsOn passes the signals that would end this --daemon parent
// (SIGINT, SIGTERM, SIGHUP: a terminal's ^C or hang-up, a stop) on to
// its child while the child replaces a mount, and returns the
// function that stops. The parent then waits for the child's word as
// before and exits with it: a child that had not yet asked its
// predecessor to step down withdraws and says it was interrupted, one
// that had finishes the switch; the parent never ends on its own while
// the child takes over anyway. It passes withdrawSignal, not the signal
// it caught: one passed on after the child's switch (the parent reads
// that the mount serves a moment after the child said so) must not stop
// the child, as a SIGTERM would, and the child takes SIGHUP as a
// reopening of its log files.
// sigs is what catchStopSignals caught, nil for nothing to pass on.
func passSignalsOn(sigs <-chan os.Signal, child *os.Process, stderr io.Writer) (stop func()) {
	if sigs == nil {
		return func() {}
	}
	done := make(chan struct{})
	passed := make(chan struct{})
	go func() {
		defer close(passed)
		for {
			select {
			case sig := <-sigs:
				fmt.Fprintf(stderr, "secretfs: %s: passed on to the replacing process %d, which withdraws unless it already asked the running secretfs to step down\n", sig, child.Pid)
				_ = child.Signal(withdrawSignal)
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-passed
	}
}

// catchStopSignals catches, when replacing, the signals passSignalsOn
// passes on, from before the child starts, and returns them (nil when
// not replacing) with the function that lets them go.
func catchStopSignals(replacing bool) (<-chan os.Signal, func()) {
	if !replacing {
		return nil, func() {}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return sigs, func() { signal.Stop(sigs) }
}

// awsFileVariables name files the AWS SDK reads, which a daemon resolves
// before it leaves its working directory.
var awsFileVariables = []string{"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CA_BUNDLE"}

// leaveWorkingDirectory is what a mount started by --daemon does first:
// it makes every relative path it was given absolute (the mount point,
// which it returns, --data-dir, --rsa-key, --log-file, --audit-log,
// --config, and the AWS SDK's files), then changes to /, as daemon(3)
// does. A daemon's working directory keeps busy whatever it lies in: a
// directory inside the mount that a --replace takes over would keep the
// replaced process serving until the daemon ends.
func (c *config) leaveWorkingDirectory(mountpoint string) (string, error) {
	paths := []*string{&mountpoint, &c.dataDir, &c.rsaKey, &c.mount.logFile, &c.mount.config}
	if c.mount.auditLog != "-" {
		paths = append(paths, &c.mount.auditLog)
	}
	for _, p := range paths {
		if *p == "" || filepath.IsAbs(*p) {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return "", err
		}
		*p = abs
	}
	for _, name := range awsFileVariables {
		if v := os.Getenv(name); v != "" && !filepath.IsAbs(v) {
			abs, err := filepath.Abs(v)
			if err != nil {
				return "", fmt.Errorf("%s: %w", name, err)
			}
			os.Setenv(name, abs)
		}
	}
	return mountpoint, os.Chdir("/")
}

// withStderrCaught runs f; when catch is set (a daemon, whose standard
// error is /dev/null), with this process's standard error sent to a pipe
// meanwhile. go-fuse runs fusermount3 with that standard error, and
// fusermount3 says there why it failed ("fusermount3: failed to open
// /dev/fuse: Permission denied"), while go-fuse's error says only
// "fusermount exited with code 256". What was caught is logged, at warn
// level, and added to f's error.
func withStderrCaught(catch bool, log logrus.FieldLogger, f func() error) error {
	if !catch {
		return f()
	}
	r, w, err := os.Pipe()
	if err != nil {
		return f()
	}
	defer r.Close()
	saved, err := unix.FcntlInt(2, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		w.Close()
		return f()
	}
	var caught bytes.Buffer
	read := make(chan struct{})
	go func() {
		// At most 64 KiB are kept; the rest is read and dropped, so that
		// no writer blocks.
		_, _ = io.Copy(&caught, io.LimitReader(r, 64<<10))
		_, _ = io.Copy(io.Discard, r)
		close(read)
	}()
	redirected := unix.Dup3(int(w.Fd()), 2, 0) == nil
	w.Close()
	ferr := f()
	if redirected {
		_ = unix.Dup3(saved, 2, 0)
	}
	unix.Close(saved)
	// The pipe ends once nobody holds its write end: fusermount3 has
	// exited by now. A child of f that kept it (none does) would leave
	// what it said untold.
	select {
	case <-read:
	case <-time.After(2 * time.Second):
		return ferr
	}
	said := strings.TrimSpace(caught.String())
	if said == "" {
		return ferr
	}
	log.WithField("stderr", said).Warn("said on standard error while mounting")
	if ferr == nil {
		return nil
	}
	return stderrError{err: ferr, said: said}
}

// stderrError is an error with what was said on standard error as it
// happened.
type stderrError struct {
	err  error
	said string
}

func (e stderrError) Error() string {
	return strings.TrimSpace(e.err.Error()) + ": " + strings.Join(strings.Fields(e.said), " ")
}

func (e stderrError) Unwrap() error { return e.err }

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

// note tells the parent something to print on its standard error before
// it returns (the daemon has none).
func (p *readyPipe) note(text string) {
	if p == nil || p.f == nil {
		return
	}
	fmt.Fprintln(p.f, "note: "+strings.ReplaceAll(text, "\n", " "))
}

// status tells the parent what the daemon says to systemd once ready
// (STATUS=), for a parent that speaks to systemd on its behalf
// (relayMainPID).
func (p *readyPipe) status(text string) {
	if p == nil || p.f == nil {
		return
	}
	fmt.Fprintln(p.f, "status: "+strings.ReplaceAll(text, "\n", " "))
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

// logFile is the mount's log file, appended to (mode 0600). Reopen opens
// its path again: logrotate's convention is to rename the file away and
// send SIGHUP, after which new lines go to a new file at the path. Safe for
// concurrent use.
type logFile struct {
	path string
	mu   sync.Mutex // guards f, which Reopen swaps
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path again, creating the file if it is gone, and
// writes there from then on. If it cannot, the log goes on to the file it
// had, and Reopen says why.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the file; a nil logFile (the log goes elsewhere) has none.
func (l *logFile) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// systemLogDir is where a daemon run by root logs when it has neither
// --log-file nor syslog.
const systemLogDir = "/var/log/secretfs"

// logTo sends the mount's log to path, or, for a daemon without one, to
// syslog (journald reads it), or, where syslog cannot be reached
// (containers, minimal hosts), to a file in the first of daemonLogDirs
// that can be made, named after the mountpoint (daemonLogName): a daemon
// always has a log. It returns the log file, if any, which SIGHUP reopens,
// and, when the daemon chose the file itself, a sentence saying where, for
// its parent to print before it returns.
func logTo(log *logrus.Logger, path string, daemon bool, mountpoint, dataDir string) (file *logFile, chosen string, err error) {
	switch {
	case path != "":
		f, err := openLogFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("--log-file: %w", err)
		}
		log.SetOutput(f)
		return f, "", nil
	case !daemon:
		return nil, "", nil
	}
	hook, syslogErr := lsyslog.NewSyslogHook("", "", syslog.LOG_INFO|syslog.LOG_DAEMON, "secretfs")
	if syslogErr == nil {
		log.AddHook(hook)
		log.SetOutput(io.Discard)
		return nil, "", nil
	}
	// Go's error says only "Unix syslog delivery error".
	unreachable := fmt.Sprintf("syslog cannot be reached here (nothing takes messages at %s)", syslogSockets)
	f, err := openDaemonLog(daemonLogDirs(os.Geteuid() == 0, os.Getenv, dataDir), daemonLogName(mountpoint))
	if err != nil {
		return nil, "", fmt.Errorf("a daemon without --log-file logs to syslog, but %s, or else to a file, which could not be made (%v): pass --log-file", unreachable, err)
	}
	log.SetOutput(f)
	log.WithError(syslogErr).WithField("log_file", f.path).Info("no --log-file, and syslog cannot be reached: logging to this file")
	return f, fmt.Sprintf("no --log-file, and %s: logging to %s", unreachable, f.path), nil
}

// syslogSockets are where log/syslog looks for the local syslog.
const syslogSockets = "/dev/log, /var/run/syslog or /var/run/log"

// daemonLogDirs lists, best first, the directories where a daemon with
// neither --log-file nor syslog logs: /var/log/secretfs when root; then
// $XDG_STATE_HOME/secretfs (by default ~/.local/state/secretfs, where the
// XDG base directory specification keeps logs); then the data directory.
// getenv reads the environment (mount(8) may give it none).
func daemonLogDirs(root bool, getenv func(string) string, dataDir string) []string {
	var dirs []string
	if root {
		dirs = append(dirs, systemLogDir)
	}
	// The specification ignores a relative XDG_STATE_HOME.
	if state := getenv("XDG_STATE_HOME"); filepath.IsAbs(state) {
		dirs = append(dirs, filepath.Join(state, "secretfs"))
	} else if home := getenv("HOME"); filepath.IsAbs(home) {
		dirs = append(dirs, filepath.Join(home, ".local", "state", "secretfs"))
	}
	if dataDir != "" {
		if abs, err := filepath.Abs(dataDir); err == nil && !slices.Contains(dirs, abs) {
			dirs = append(dirs, abs)
		}
	}
	return dirs
}

// daemonLogName is the name of the log file of the mount at mountpoint:
// the path escaped as `systemd-escape --path` does, which for a plain path
// turns each / into -, as the secretfs@.service instance is named
// (/run/secrets: run-secrets.log).
func daemonLogName(mountpoint string) string {
	if abs, err := filepath.Abs(mountpoint); err == nil {
		mountpoint = abs
	}
	return unit.UnitNamePathEscape(mountpoint) + ".log"
}

// openDaemonLog opens name in the first of dirs that can be made (mode
// 0700) and written in.
func openDaemonLog(dirs []string, name string) (*logFile, error) {
	var tried []string
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			// The error names the part of the path that failed.
			tried = append(tried, fmt.Sprintf("%s: %v", dir, err))
			continue
		}
		f, err := openLogFile(filepath.Join(dir, name))
		if err == nil {
			return f, nil
		}
		tried = append(tried, err.Error())
	}
	if len(tried) == 0 {
		return nil, errors.New("no directory to try")
	}
	return nil, errors.New(strings.Join(tried, "; "))
}

// reopenable is a log file that SIGHUP reopens at its path.
type reopenable struct {
	what string // which log, for the log line saying it could not be reopened
	file interface {
		// Reopen opens the path again and writes there from then on; if
		// it cannot, it goes on writing where it did and says why.
		Reopen() error
	}
}

// logFiles lists the files SIGHUP reopens: the log file and the audit log,
// if they are files.
func logFiles(logs *logFile, auditLog *audit.Log, auditPath string) []reopenable {
	var files []reopenable
	if logs != nil {
		files = append(files, reopenable{"log file " + logs.path, logs})
	}
	if auditLog != nil && auditPath != "-" {
		files = append(files, reopenable{"audit log " + auditPath, auditLog})
	}
	return files
}

// reopenOnHUP reopens files at each signal from hup, SIGHUP, until the
// function it returns is called, which waits for it to stop. SIGHUP never
// ends the mount: with no file to reopen it is logged and ignored.
func reopenOnHUP(hup <-chan os.Signal, log logrus.FieldLogger, files []reopenable) (stop func()) {
	quit, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-quit:
				return
			case <-hup:
			}
			if len(files) == 0 {
				log.Info("SIGHUP: no log file to reopen; ignored")
				continue
			}
			log.Info("SIGHUP: reopening the log files") // the last line of a renamed log
			for _, f := range files {
				if err := f.file.Reopen(); err != nil {
					log.WithError(err).Errorf("SIGHUP: could not reopen the %s; still writing to the file it had", f.what)
				}
			}
			log.Info("SIGHUP: reopened the log files") // the first line of a new one
		}
	}()
	return func() { close(quit); <-stopped }
}

// listProbeEnv makes secretfs list the directory it names and exit, 0 if
// that worked, else 1 with the error on standard error (see answers).
const listProbeEnv = "SECRETFS_LIST_PROBE"

// A secretfs started with listProbeEnv is the mount's own readiness
// probe: it lists and exits before anything else runs.
func init() {
	if dir, ok := os.LookupEnv(listProbeEnv); ok {
		f, err := os.Open(dir)
		if err == nil {
			_, err = f.Readdirnames(-1)
			f.Close()
		}
		if errors.Is(err, fs.ErrPermission) && unix.Access(dir, unix.R_OK|unix.X_OK) != nil {
			// A root whose owner and mode keep this process out (root
			// without CAP_DAC_OVERRIDE, --uid 1000 --dir-mode 0500):
			// the kernel refused from the attributes, as access(2)
			// does, and the mount answers if it answers a statfs,
			// which the kernel always asks it. (An EACCES access(2)
			// does not give came from the mount: the store refused.)
			var st unix.Statfs_t
			err = unix.Statfs(dir, &st)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// answers reports whether the mount at dir answers: a listing of its
// root, within limit. The listing is made by a child process, secretfs
// again (as /proc/self/exe, which holds even if the binary was replaced),
// never by the process that serves the mount: a thread of that process
// waiting on its own mount, for an answer the store may take seconds to
// give, cannot be killed, so a SIGKILL or the OOM killer meanwhile would
// leave a process that can never exit and a mount that hangs every
// caller, instead of a dead mount that the next start recovers. The child
// runs in its own goroutine: a mount that does not answer must not hang
// the caller.
func answers(dir string, limit time.Duration) error {
	closeOnExec()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), listProbeEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("listing %s: %s", dir, strings.TrimSpace(stderr.String()))
		}
		return nil
	case <-time.After(limit):
		cmd.Process.Kill() // it ends once the mount answers, if not at once
		return fmt.Errorf("%s did not answer a listing within %s", dir, limit)
	}
}

// closeOnExec marks every descriptor of this process above standard error
// close-on-exec, so that no child inherits one. go-fuse's direct mount
// (as root) leaves /dev/fuse inheritable: a child holding it would keep
// the mount's connection alive after this process died, and a child
// waiting on the mount would then wait forever for an answer that only a
// reader of that descriptor could give. And whoever ran secretfs may have
// left descriptors to it without close-on-exec (a shell's `exec 5<
// /mnt/secrets/app/x`): a --daemon child holding one on a mount it
// replaces would keep the replaced process draining for as long as it
// serves. What a child is given (exec.Cmd.ExtraFiles) still reaches it:
// os/exec duplicates it onto the child's descriptor, which clears the
// flag there. close_range(2) does it in one call; where it fails (before
// Linux 5.11: ENOSYS or EINVAL; EPERM from a seccomp filter that does not
// know it), each descriptor /proc/self/fd lists is marked.
func closeOnExec() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	closeOnExecEach()
}

// closeOnExecEach is closeOnExec without close_range(2).
func closeOnExecEach() {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range fds {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
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
