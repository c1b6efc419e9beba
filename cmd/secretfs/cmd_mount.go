package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/audit"
	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/store"
)

type mountFlags struct {
	ttl          time.Duration
	cacheIdle    time.Duration
	staleIfError time.Duration
	cacheSize    int
	readOnly     bool
	allowOther   bool
	uid, gid     uint32
	fileMode     octal
	dirMode      octal
	apps         []string
	metricsAddr  string // HOST:PORT for /metrics and /healthz; "" for none
	daemon       bool   // return once the mount answers, and serve in the background
	logFile      string
	auditLog     string // "-" for standard error
}

func newMountCommand(c *config) *cobra.Command {
	mf := mountFlags{fileMode: 0o600, dirMode: 0o700}
	cmd := &cobra.Command{
		Use:   "mount MOUNTPOINT",
		Short: "Mount the secrets at MOUNTPOINT, in the foreground (or with --daemon in the background); SIGINT, SIGTERM or umount unmounts; SIGHUP reopens the log files",
		Args:  cobra.ExactArgs(1),
		// After the root's PersistentPreRunE, so values from SECRETFS_*
		// are checked too.
		PreRunE: func(cmd *cobra.Command, args []string) error { return mf.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			ready := openReadyPipe()
			if mf.daemon && ready == nil {
				return daemonize(cmd.ErrOrStderr())
			}
			err := c.mount(cmd.Context(), args[0], mf, c.notices(cmd.ErrOrStderr()), ready)
			ready.done(err) // if it failed before it was ready
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&mf.ttl, "ttl", 30*time.Second, "how stale a secret may be: after this long the mount asks the store whether it changed (metadata only; it decrypts only what changed); 0 asks at every open")
	f.DurationVar(&mf.cacheIdle, "cache-idle", cache.DefaultIdle, "plaintext nobody read for this long is wiped from memory and from the kernel's page cache")
	f.DurationVar(&mf.staleIfError, "stale-if-error", time.Hour, "while the store cannot answer, keep serving the last known value for up to this long past --ttl; 0 disables")
	f.IntVar(&mf.cacheSize, "cache-size", cache.DefaultSize, "most secrets kept decrypted in memory")
	f.BoolVar(&mf.readOnly, "read-only", false, "refuse every change with EROFS")
	f.BoolVar(&mf.allowOther, "allow-other", false, "let users other than the mounter in (file modes still apply)")
	f.Uint32Var(&mf.uid, "uid", uint32(os.Getuid()), "owner of every file and directory")
	f.Uint32Var(&mf.gid, "gid", uint32(os.Getgid()), "group of every file and directory")
	f.Var(&mf.fileMode, "file-mode", "permission bits of secrets (octal)")
	f.Var(&mf.dirMode, "dir-mode", "permission bits of directories (octal)")
	f.StringVar(&mf.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics and health at /healthz")
	f.BoolVar(&mf.daemon, "daemon", false, "return once the mount answers (non-zero, with the reason, if it fails) and serve in the background until unmounted")
	f.StringVar(&mf.logFile, "log-file", "", "append the log to this file, which SIGHUP reopens (default: standard error; for --daemon, syslog, or where it cannot be reached a file named after the mountpoint, such as run-secrets.log, in /var/log/secretfs when root, else in $XDG_STATE_HOME/secretfs)")
	f.StringVar(&mf.auditLog, "audit-log", "", "write one JSON line per open, commit, unlink and rename of a secret, with who asked, to this file (- for standard error)")
	f.StringSliceVar(&mf.apps, "apps", nil, "show only these applications (a,b,c); needed where IAM allows only some applications, since discovering them all scans the table")
	return cmd
}

// check refuses values the cache would otherwise quietly reinterpret: a
// negative TTL as no caching, a size under one as the default size.
func (mf *mountFlags) check() error {
	if mf.ttl < 0 {
		return fmt.Errorf("--ttl %s: want 0 (ask the store at every open) or a positive duration, such as 30s", mf.ttl)
	}
	if mf.cacheIdle <= 0 {
		return fmt.Errorf("--cache-idle %s: want a positive duration, such as 5m", mf.cacheIdle)
	}
	if mf.staleIfError < 0 {
		return fmt.Errorf("--stale-if-error %s: want 0 (never serve stale) or a positive duration, such as 1h", mf.staleIfError)
	}
	if mf.cacheSize < 1 {
		return fmt.Errorf("--cache-size %d: want at least 1", mf.cacheSize)
	}
	return nil
}

func (c *config) mount(ctx context.Context, dir string, mf mountFlags, notices io.Writer, ready *readyPipe) error {
	// SIGHUP reopens the log files and never ends the mount. Its default
	// action ends the process, which would leave a dead mount behind, so
	// it is caught before anything else, long before the mount is made;
	// one that comes before the files are open waits in hup for them.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := c.log
	logs, chosen, err := logTo(log, mf.logFile, ready != nil, dir, c.dataDir)
	if err != nil {
		return err
	}
	defer logs.Close()
	if chosen != "" {
		ready.note(chosen)
	}
	if ready != nil {
		notices = logLines{log} // no terminal: first-use notices go to the log
	}
	status(log, "opening the store")
	for _, app := range mf.apps {
		if err := store.ValidName(app); err != nil {
			return fmt.Errorf("--apps %q: %w", app, err)
		}
	}
	// Listen before mounting: a signal in between must not leave a mount
	// behind.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := prepareMountpoint(dir, log); err != nil {
		return err
	}
	if mf.metricsAddr != "" {
		info, _ := debug.ReadBuildInfo()
		c.meter = metrics.New(buildVersion(version, info), metrics.Options{FailingFor: c.timeout})
		srv, err := c.meter.Serve(mf.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", mf.metricsAddr, err)
		}
		defer srv.Close()
		log.WithField("address", srv.Addr().String()).Info("serving /metrics and /healthz")
	}
	var auditLog *audit.Log
	if mf.auditLog != "" {
		if auditLog, err = audit.Open(mf.auditLog, func(err error) {
			log.WithError(err).Error("the audit log cannot be written")
		}); err != nil {
			return err
		}
		defer auditLog.Close()
	}
	defer reopenOnHUP(hup, log, logFiles(logs, auditLog, mf.auditLog))()
	b, err := c.open(ctx, true, notices)
	if err != nil {
		return err
	}
	defer b.Close()

	if !b.canWrite && !mf.readOnly {
		log.Warn("no key to write with (--kms-key or --rsa-key): mounting read-only")
		mf.readOnly = true
	}
	observe := observers{staleLog{log: log, window: mf.staleIfError}}
	var countRequest func(string, syscall.Errno, time.Duration)
	var countCommit func(error)
	if c.meter != nil {
		observe = append(observe, c.meter.Observer())
		countRequest, countCommit = c.meter.Served, c.meter.Committed
	}
	catalog := cache.New(b.Keeper, cache.Options{
		TTL:          mf.ttl,
		StaleIfError: mf.staleIfError,
		Idle:         mf.cacheIdle,
		Size:         mf.cacheSize,
		// Nothing decrypted may be served there, not even what was just
		// written.
		WriteOnly: b.writeOnly,
		Observer:  observe,
	})
	defer catalog.Close() // wipe what is held before the process ends
	if c.meter != nil {
		c.meter.Decrypted(catalog.Held)
	}
	status(log, "mounting "+dir)
	server, err := fs.Mount(dir, catalog, fs.Options{
		Served:     countRequest,
		Committed:  countCommit,
		Audit:      auditLog.Recorder(),
		ReadOnly:   mf.readOnly,
		WriteOnly:  b.writeOnly,
		AllowOther: mf.allowOther,
		UID:        mf.uid,
		GID:        mf.gid,
		FileMode:   uint32(mf.fileMode),
		DirMode:    uint32(mf.dirMode),
		Apps:       mf.apps,
		TTL:        mf.ttl,
		Log:        log,
	})
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	if c.meter != nil {
		c.meter.SetServing(true) // before "mounted": whoever waits for that gets 200 from /healthz
		defer c.meter.SetServing(false)
	}
	served := make(chan struct{})
	go func() { server.Wait(); close(served) }()

	// Ready once the mount answers a listing of its root (an error from
	// the store is an answer too: the mount serves, the store may come
	// back). Only then does the log say "mounted", and systemd or a
	// --daemon parent hear of it.
	if err := answers(dir, 2*c.timeout+time.Second); err != nil {
		log.WithError(err).Warn("the mount's first listing failed; it serves anyway")
	}
	log.WithFields(logrus.Fields{"mountpoint": dir, "backend": b.about, "read_only": mf.readOnly, "ttl": mf.ttl.String(),
		"cache_idle": mf.cacheIdle.String(), "stale_if_error": mf.staleIfError.String()}).Info("mounted")
	notify(log, daemon.SdNotifyReady+"\nSTATUS=serving "+dir+" ("+b.about+")")
	ready.done(nil)
	stopWatchdog := make(chan struct{})
	defer close(stopWatchdog)
	go watchdog(dir, log, stopWatchdog)

	select {
	case <-served:
		log.WithField("mountpoint", dir).Info("unmounted from outside")
		return nil
	case sig := <-signals:
		log.WithField("signal", sig.String()).Info("unmounting")
	}
	notify(log, daemon.SdNotifyStopping+"\nSTATUS=unmounting "+dir)
	return unmount(server, dir, served, signals, log)
}

// unmount unmounts cleanly if it can. A mount still in use (a shell inside
// it, an open file) cannot be unmounted at once; it is then detached
// lazily, so that the process can exit and no hung mount stays behind.
// Files still open lose what they have not committed; a second signal
// stops waiting for them.
func unmount(server *fuse.Server, dir string, served <-chan struct{}, signals <-chan os.Signal, log *logrus.Logger) error {
	err := server.Unmount()
	if err == nil {
		<-served
		log.WithField("mountpoint", dir).Info("unmounted")
		return nil
	}
	log.WithError(err).Warn("the mount is busy: files are open in it; detaching it lazily, and uncommitted writes in open files are lost")
	if err := detach(dir); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	select {
	case <-served:
	case <-signals:
	case <-time.After(2 * time.Second):
	}
	log.WithField("mountpoint", dir).Info("detached")
	return nil
}

// detach lazily unmounts dir: directly when root, else with fusermount3.
func detach(dir string) error {
	if os.Geteuid() == 0 {
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u -z: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// prepareMountpoint makes dir if it is missing, and recovers it if an
// earlier secretfs was killed and left a dead mount behind ("transport
// endpoint is not connected"). A live mount there is an error: two
// daemons must not stack on one path.
func prepareMountpoint(dir string, log *logrus.Logger) error {
	abs, err := resolve(dir)
	if err != nil {
		return err
	}
	if isMountpoint(abs) {
		// statfs always reaches the daemon; stat may be answered from
		// the kernel's attribute cache even when the daemon is gone.
		var st unix.Statfs_t
		switch err := unix.Statfs(abs, &st); {
		case errors.Is(err, syscall.ENOTCONN):
			log.WithField("mountpoint", abs).Warn("found a stale mount left by a process that died; recovering it")
			if err := detach(abs); err != nil {
				return fmt.Errorf("recover stale mount %s: %w", abs, err)
			}
		case err == nil:
			return fmt.Errorf("%s is already a mountpoint (is another secretfs serving it?)", abs)
		default:
			return fmt.Errorf("%s: %w", abs, err)
		}
	}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(abs, 0o755)
	}
	return nil
}

// resolve returns dir as the mount table names it: absolute, with the
// symlinks of its parent resolved. The last element is not followed: a
// dead mount cannot be stat'ed.
func resolve(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}

// isMountpoint reports whether dir, an absolute path, is in the mount
// table.
func isMountpoint(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	for _, line := range strings.Split(string(data), "\n") {
		// Field 5 is the mount point (proc(5)).
		if f := strings.Fields(line); len(f) > 4 && unescape.Replace(f[4]) == dir {
			return true
		}
	}
	return false
}

// octal is a file mode flag written in octal, as chmod takes it.
type octal uint32

func (o *octal) String() string { return fmt.Sprintf("%#o", uint32(*o)) }
func (o *octal) Type() string   { return "mode" }
func (o *octal) Set(s string) error {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("%q is not an octal file mode such as 0600", s)
	}
	*o = octal(v)
	return nil
}
