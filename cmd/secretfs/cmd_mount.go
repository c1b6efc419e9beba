package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
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
	"github.com/secretfs/secretfs/internal/handover"
	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// mountConfig holds mount's own flags (config.mount).
type mountConfig struct {
	// strayVariables are the SECRETFS_* variables set that name no flag
	// (strayVariables), warned of once the log is open.
	strayVariables []string
	// parentStop: for a --daemon child that replaces a mount, where its
	// parent's withdrawSignal comes (parentStops); nil otherwise.
	parentStop <-chan os.Signal

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
	watch        []string // patterns of applications whose changes are signalled (fs.Options.Watched)
	metricsAddr  string   // HOST:PORT for /metrics and /healthz; "" for none
	daemon       bool     // return once the mount answers, and serve in the background
	logFile      string
	auditLog     string // "-" for standard error
	replace      replaceFlags
	config       string // the configuration file (--config, mountconfig.go); "" for none
}

func newMountCommand(c *config) *cobra.Command {
	mc := &c.mount
	mc.fileMode, mc.dirMode = 0o600, 0o700 // the defaults of --file-mode and --dir-mode
	cmd := &cobra.Command{
		Use:   "mount MOUNTPOINT",
		Short: "Mount the secrets at MOUNTPOINT, in the foreground (or with --daemon in the background); SIGINT, SIGTERM or umount unmounts; SIGHUP reopens the log files",
		Args:  argCount(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mc.strayVariables = strayVariables(cmd)
			ready := openReadyPipe()
			if ready != nil && mc.replace.mode != replaceOff {
				mc.parentStop = parentStops()
			}
			if mc.daemon && ready == nil {
				return daemonize(cmd.ErrOrStderr(), mc.replace.mode != replaceOff)
			}
			dir := args[0]
			var err error
			if ready != nil {
				dir, err = c.leaveWorkingDirectory(dir)
			}
			if err == nil {
				err = mount(cmd.Context(), c, dir, cmd.ErrOrStderr(), ready)
			}
			ready.done(err) // if it failed before it was ready
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&mc.ttl, "ttl", 30*time.Second, "how stale a secret may be: after this long the mount asks the store whether it changed (metadata only; it decrypts only what changed); 0 asks at every open")
	f.DurationVar(&mc.cacheIdle, "cache-idle", cache.DefaultIdle, "plaintext nobody read for this long is wiped from memory and from the kernel's page cache")
	f.DurationVar(&mc.staleIfError, "stale-if-error", time.Hour, "while the store cannot answer, keep serving the last known value for up to this long past --ttl; 0 disables")
	f.IntVar(&mc.cacheSize, "cache-size", cache.DefaultSize, "most secrets kept decrypted in memory")
	f.BoolVar(&mc.readOnly, "read-only", false, "refuse every change with EROFS")
	f.BoolVar(&mc.allowOther, "allow-other", false, "let users other than the mounter in (file modes still apply)")
	f.Uint32Var(&mc.uid, "uid", uint32(os.Getuid()), "owner of every file and directory")
	f.Uint32Var(&mc.gid, "gid", uint32(os.Getgid()), "group of every file and directory")
	f.Var(&mc.fileMode, "file-mode", "permission bits of secrets (octal)")
	f.Var(&mc.dirMode, "dir-mode", "permission bits of directories (octal)")
	f.StringVar(&mc.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics and health at /healthz")
	f.BoolVar(&mc.daemon, "daemon", false, "return once the mount answers (non-zero, with the reason, if it fails) and serve in the background until unmounted")
	f.StringVar(&mc.logFile, "log-file", "", "append the log to this file, which SIGHUP reopens (default: standard error; for --daemon, syslog, or where it cannot be reached a file named after the mountpoint, such as run-secrets.log, in /var/log/secretfs when root, else in $XDG_STATE_HOME/secretfs)")
	f.StringVar(&mc.auditLog, "audit-log", "", "write one JSON line per open, commit, unlink and rename of a secret, with who asked, to this file (- for standard error)")
	mc.replace.register(f)
	f.StringSliceVar(&mc.apps, "apps", nil, "show only these applications (a,b,c); needed where IAM allows only some applications, since discovering them all scans the table")
	f.StringSliceVar(&mc.watch, "watch", nil, "applications (names or path.Match patterns: billing,auth or '*') listed once per --ttl even when nobody reads them, so that a program watching them with inotify hears of a change made elsewhere; adds to the config file's watch list")
	f.StringVar(&mc.config, "config", "", "YAML file of owners and modes per path, views (read-only files rendered from secrets) and watched applications")
	return cmd
}

// validate refuses values the cache would otherwise quietly reinterpret
// (a negative TTL as no caching, a size under one as the default size),
// and names of applications that no store can hold. Part of
// config.validate.
func (mc *mountConfig) validate() error {
	if mc.ttl < 0 {
		return fmt.Errorf("--ttl %s: want 0 (ask the store at every open) or a positive duration, such as 30s", mc.ttl)
	}
	if mc.cacheIdle <= 0 {
		return fmt.Errorf("--cache-idle %s: want a positive duration, such as 5m", mc.cacheIdle)
	}
	if mc.staleIfError < 0 {
		return fmt.Errorf("--stale-if-error %s: want 0 (never serve stale) or a positive duration, such as 1h", mc.staleIfError)
	}
	if mc.cacheSize < 1 {
		return fmt.Errorf("--cache-size %d: want at least 1", mc.cacheSize)
	}
	// -1 (all ones) is no one's id: chown(2) reads it as "no change",
	// and the kernel refuses it (a mount with it as --uid failed with
	// "permission denied"). The configuration file refuses it too.
	for _, id := range []struct {
		flag string
		id   uint32
	}{{"--uid", mc.uid}, {"--gid", mc.gid}} {
		if id.id == 1<<32-1 {
			return fmt.Errorf("%s %d: want a number from 0 to 4294967294", id.flag, id.id)
		}
	}
	if mc.apps != nil && len(mc.apps) == 0 {
		// Given, but empty (--apps '', or a blank SECRETFS_APPS= line):
		// a mount that shows nothing is never what was meant.
		return errors.New("--apps is empty: name the applications to show (a,b), or leave --apps out to show every application")
	}
	for _, app := range mc.apps {
		if err := store.ValidName(app); err != nil {
			return fmt.Errorf("--apps %q: %w", app, err)
		}
	}
	for _, pat := range mc.watch {
		if _, err := path.Match(pat, ""); err != nil || pat == "" || strings.Contains(pat, "/") {
			return fmt.Errorf("--watch %q: want an application, or a pattern of applications (path.Match), such as billing or 'bill*'", pat)
		}
	}
	return mc.replace.validate()
}

// watchedBy reports whether patterns (of --watch) match an application;
// nil for no patterns, which turns change signals off.
func watchedBy(patterns []string) func(app string) bool {
	if len(patterns) == 0 {
		return nil
	}
	return func(app string) bool {
		for _, pat := range patterns {
			if ok, _ := path.Match(pat, app); ok {
				return true
			}
		}
		return false
	}
}

// mount mounts the secrets at dir and serves them until SIGINT or SIGTERM
// unmounts them, or an unmount from outside ends the mount. Each step is
// a function given what the steps before it made; what a step opens, a
// deferred call closes, in reverse order, however the mount ends. stderr
// is the command's; ready is the --daemon parent waiting to hear how the
// start went, nil in the foreground.
func mount(ctx context.Context, c *config, dir string, stderr io.Writer, ready *readyPipe) error {
	log := c.log
	// SIGHUP reopens the log files and never ends the mount. Its default
	// action ends the process, which would leave a dead mount behind, so
	// it is caught before anything else, long before the mount is made;
	// one that comes before the files are open waits in hup for them.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Before anything is made (a log file, the data directory, a key
	// pair) or mounted: a mount refused here changes nothing.
	if err := checkMountpoint(dir); err != nil {
		return err
	}
	if c.mount.replace.mode == replaceOff {
		if abs, err := resolve(dir); err != nil {
			return err
		} else if _, err := deadMountAt(abs); err != nil {
			return err
		}
	}
	how := opening{firstUse: true, readOnly: c.mount.readOnly, replacing: c.replacesALiveSecretfs(dir)}
	if err := c.checkStore(how); err != nil {
		return err
	}
	file, err := loadMountConfig(c.mount.config)
	if err != nil {
		return err
	}
	succ, err := beginMount(c.mount.replace, dir, c.timeout, log, c.mount.parentStop)
	if err != nil {
		return err
	}

	logs, notices, err := openLogs(c, dir, stderr, ready)
	if err != nil {
		succ.Close()
		return err
	}
	defer logs.Close()
	defer succ.Close() // before the log closes: what it stops may log
	warnOfStrayVariables(log, c.mount.strayVariables)
	// From here on the mount point as the mount table names it: a
	// symlink to it is followed, as the kernel follows it.
	dir = succ.dir
	status(log, "opening the store")
	// Listen before mounting: a signal in between must not leave a mount
	// behind.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(stop)

	if err := succ.prepare(dir); err != nil {
		return err
	}
	meter, closeMetrics, err := succ.serveMetrics(c.mount.metricsAddr)
	if err != nil {
		return err
	}
	defer closeMetrics()
	auditLog, closeAudit, err := openAuditLog(c.mount.auditLog, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	defer reopenOnHUP(hup, log, logFiles(logs, auditLog, c.mount.auditLog))()

	how.notices, how.meter = notices, meter
	b, err := c.open(ctx, how)
	if err != nil {
		return c.timedOutIn("mount", err, dir)
	}
	defer b.Close()
	if err := checkViewsAgainstStore(ctx, file, b.Keeper); err != nil {
		return c.timedOutIn("mount", err, dir)
	}
	warnOfEmptyAppViews(ctx, file, appHoldsSecrets(b.Keeper), log)
	readOnly := readOnlyMount(c.mount.readOnly, b, log)
	catalog := newCatalog(b, c.mount, meter, log)
	defer catalog.Close() // wipe what is held before the process ends

	// A daemon has no standard error: what fusermount3 says there, such
	// as why it failed, is caught, logged and told to the parent.
	var server *fuse.Server
	changes := &vfs.Changes{}
	err = withStderrCaught(ready != nil, log, func() (err error) {
		opts := fsOptions(c, b.writeOnly, readOnly, meter, auditLog)
		opts.Changes = changes
		succ.stop = stop
		server, err = succ.mount(dir, catalog, withMountConfig(opts, file))
		return err
	})
	if err != nil {
		return err
	}
	defer serving(meter)()
	served := whenServed(server)
	succ.aboutToBeMain()
	announceReady(c, dir, b.about, readOnly, ready)
	succ.announced(stop)

	stopWatchdog := make(chan struct{})
	defer close(stopWatchdog)
	go watchdog(dir, log, succ.untilSteppedDown(stopWatchdog))
	err = succ.waitForEnd(server, dir, served, stop)
	finishChanges(changes, maxCallsOfAChange*c.timeout, log)
	return err
}

// maxCallsOfAChange bounds the backend calls of one change to the store,
// each within --timeout: a rename's 7 (SEMANTICS.md, "Deadlines").
const maxCallsOfAChange = 8

// finishChanges refuses every change to the store from now on and waits,
// at most limit, for those in flight (a commit at a release, which no
// writer waits for, or one a copy of the mount elsewhere made), so that
// none is cut off as the process ends: each lands or fails whole, and is
// logged and audited. A signal does not cut them short: the wait is
// bounded by the backend's deadlines, and SIGKILL remains.
func finishChanges(changes *vfs.Changes, limit time.Duration, log logrus.FieldLogger) {
	idle := changes.Stop()
	select {
	case <-idle:
		return
	default:
	}
	log.Info("letting the changes in flight reach the store")
	select {
	case <-idle:
		log.Info("the changes in flight are done")
	case <-time.After(limit):
		log.WithField("waited", limit.String()).Warn("changes still in flight as the process ends: their outcome is unknown")
	}
}

// openLogs sends the log to --log-file, or for a daemon without one to
// syslog or a file of its choosing (logTo), and returns the log file,
// which SIGHUP reopens (nil if none), and where notices of what the mount
// made on first use go: with stderr's log, or to the log of a daemon,
// which has no terminal, and to its parent, which prints them before it
// returns.
func openLogs(c *config, dir string, stderr io.Writer, ready *readyPipe) (*logFile, io.Writer, error) {
	logs, chosen, err := logTo(c.log, c.mount.logFile, ready != nil, dir, c.dataDir)
	if err != nil {
		return nil, nil, err
	}
	if ready == nil {
		return logs, c.notices(stderr), nil
	}
	if chosen != "" {
		ready.note(chosen)
	}
	return logs, logLines{log: c.log, also: ready.note}, nil
}

// openAuditLog opens the audit log at path ("-": standard error), and
// returns it with the function that closes it; without a path, nil.
func openAuditLog(path string, log logrus.FieldLogger) (*audit.Log, func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	l, err := audit.Open(path, func(err error) {
		log.WithError(err).Error("the audit log cannot be written")
	})
	if err != nil {
		return nil, nil, err
	}
	return l, func() { l.Close() }, nil
}

// readOnlyMount reports whether the mount refuses every change: when
// --read-only asks it to, or when the backend has no key to write with.
func readOnlyMount(asked bool, b *backend, log logrus.FieldLogger) bool {
	if !b.canWrite && !asked {
		log.Warn("no key to write with (--kms-key or --rsa-key): mounting read-only")
		return true
	}
	return asked
}

// newCatalog returns the cache the mount serves: b's secrets, held and
// refreshed as mc says, observed by the stale log and by meter, if any.
func newCatalog(b *backend, mc mountConfig, meter *metrics.Registry, log logrus.FieldLogger) *cache.Catalog {
	observe := observers{staleLog{log: log, window: mc.staleIfError, crowd: &crowdWarning{}}}
	if meter != nil {
		observe = append(observe, meter.Observer())
	}
	catalog := cache.New(b.Keeper, cache.Options{
		TTL:          mc.ttl,
		StaleIfError: mc.staleIfError,
		Idle:         mc.cacheIdle,
		Size:         mc.cacheSize,
		// Nothing decrypted may be served there, not even what was just
		// written.
		WriteOnly: b.writeOnly,
		Observer:  observe,
	})
	if meter != nil {
		meter.Decrypted(catalog.Held)
	}
	return catalog
}

// fsOptions are the file system's options: the mount flags, whether it
// is read-only (readOnlyMount) or write-only (a public key), and the
// hooks that count (meter) and audit (auditLog) what it serves, each nil
// when not asked for.
func fsOptions(c *config, writeOnly, readOnly bool, meter *metrics.Registry, auditLog *audit.Log) fs.Options {
	var countRequests func(fuse.RawFileSystem) fuse.RawFileSystem
	var countCommit func(error)
	if meter != nil {
		countRequests, countCommit = meter.WrapRequests, meter.Committed
	}
	mc := c.mount
	return fs.Options{
		Options: vfs.Options{
			Committed: countCommit,
			Audit:     auditLog.Recorder(),
			ReadOnly:  readOnly,
			WriteOnly: writeOnly,
			UID:       mc.uid,
			GID:       mc.gid,
			FileMode:  uint32(mc.fileMode),
			DirMode:   uint32(mc.dirMode),
			Apps:      mc.apps,
			TTL:       mc.ttl,
			Idle:      mc.cacheIdle,
			Log:       c.log,
		},
		Wrap:       countRequests,
		AllowOther: mc.allowOther,
		Watched:    watchedBy(mc.watch),
	}
}

// mountFS mounts the file system at dir, serving catalog. A failure
// after mount(2) (go-fuse's first request through the new mount, say)
// leaves no mount behind: what this call mounted is detached.
func mountFS(dir string, catalog *cache.Catalog, opts fs.Options) (*fuse.Server, error) {
	status(opts.Log, "mounting "+dir)
	before, _ := topMount(dir)
	server, err := fs.Mount(dir, catalog, opts)
	if err != nil {
		if after, ok := topMount(dir); ok && after.FSType == mountType && after.ID != before.ID {
			if undo := detach(after.Point); undo != nil {
				return nil, fmt.Errorf("mount %s: %w; and the mount it made could not be detached: %v", dir, err, undo)
			}
		}
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return server, nil
}

// topMount returns the top mount at dir in this process's mount table,
// if there is one there.
func topMount(dir string) (handover.MountInfo, bool) {
	abs, err := resolve(dir)
	if err != nil {
		return handover.MountInfo{}, false
	}
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return handover.MountInfo{}, false
	}
	return handover.TopAt(all, abs)
}

// serving tells /healthz that the mount is served, and returns the
// function that tells it the mount stopped. It is called before the log
// says "mounted": whoever waits for that gets 200 from /healthz.
func serving(meter *metrics.Registry) (stopped func()) {
	if meter == nil {
		return func() {}
	}
	meter.SetServing(true)
	return func() { meter.SetServing(false) }
}

// whenServed returns a channel closed once server has stopped serving:
// the mount was unmounted.
func whenServed(server *fuse.Server) <-chan struct{} {
	served := make(chan struct{})
	go func() { server.Wait(); close(served) }()
	return served
}

// announceReady waits until the mount at dir answers a listing of its
// root (an error from the store is an answer too: the mount serves, the
// store may come back). Only then does the log say "mounted", and
// systemd or a --daemon parent hear of it. about describes the backend.
func announceReady(c *config, dir, about string, readOnly bool, ready *readyPipe) {
	log := c.log
	if err := answers(dir, 2*c.timeout+time.Second); err != nil {
		log.WithError(err).Warn("the mount's first listing failed; it serves anyway")
	}
	mc := c.mount
	log.WithFields(logrus.Fields{"mountpoint": dir, "backend": about, "read_only": readOnly, "ttl": mc.ttl.String(),
		"cache_idle": mc.cacheIdle.String(), "stale_if_error": mc.staleIfError.String()}).Info("mounted")
	serving := "serving " + dir + " (" + about + ")"
	notify(log, daemon.SdNotifyReady+"\nSTATUS="+serving)
	ready.status(serving)
	ready.done(nil)
}

// releaseWait is how long a stop waits, once the mount is gone from the
// path, before it asks what else holds the file system (see released).
const releaseWait = 5 * time.Second

// unmount unmounts cleanly if it can. A mount still in use (a shell inside
// it, an open file) cannot be unmounted at once; it is then detached
// lazily, so that the process can exit and no hung mount stays behind.
// Files still open lose what they have not committed; a second signal
// stops waiting for them. dev is the file system's device number, 0 if
// not known; served ends once server has answered its last request.
func unmount(dir string, dev uint64, server *fuse.Server, served <-chan struct{}, signals <-chan os.Signal, log *logrus.Logger) error {
	err := unmountPath(dir, 0)
	for delay := 5 * time.Millisecond; errors.Is(err, unix.EBUSY) && delay <= 80*time.Millisecond; delay *= 2 {
		// Busy for a moment, as when the processes of a unit being
		// stopped close their files in the mount as they exit.
		time.Sleep(delay)
		err = unmountPath(dir, 0)
	}
	if err == nil {
		released(dir, dev, server, served, signals, log)
		return nil
	}
	log.WithError(err).Warn("the mount is busy (a file open in it, or a working directory in it): detaching it lazily, and what open files have not committed is lost")
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

// released waits, once the mount at dir is unmounted, until the kernel
// has released its file system and server has answered its requests
// (served), or a signal comes. The kernel releases it at once unless
// something else holds it: a copy of the mount that a container or
// unshare(1) made while it was mounted, in a mount namespace the unmount
// does not reach, which may hold it for ever. So it waits releaseWait at
// most: then, with the kernel's connection still there, it names what
// holds the file system (the process ends and the holder loses it);
// without, what is left is requests in flight, and finishChanges lets
// the changes among them finish.
func released(dir string, dev uint64, server *fuse.Server, served <-chan struct{}, signals <-chan os.Signal, log *logrus.Logger) {
	entry := log.WithField("mountpoint", dir)
	select {
	case <-served:
		entry.Info("unmounted")
		return
	case <-signals:
		entry.Warn("unmounted; on a second signal, not waiting for the kernel to release the file system")
		return
	case <-time.After(releaseWait):
	}
	if !server.Connected() {
		entry.Info("unmounted; requests still in flight")
		return
	}
	if dev != 0 {
		// The file system lives, so dev is still its own.
		for _, h := range handover.Holders(dev) {
			entry.WithFields(logrus.Fields{"pid": h.PID, "command": h.Command, "holds": h.What}).Warn("still holds the unmounted file system")
		}
	}
	entry.Warn("unmounted, but the file system is still held (a copy of the mount in another mount namespace, made by a container or unshare while it was mounted): ending; what holds it loses it")
}

// unmountPath unmounts dir with flags (0, or MNT_DETACH for a lazy
// unmount): with umount2(2), and where that is not permitted (not root,
// nor CAP_SYS_ADMIN) with fusermount3, or fuse 2's fusermount. Unlike
// go-fuse's Server.Unmount, it does not wait for the kernel to release
// the file system, which a copy of the mount elsewhere may hold for ever.
func unmountPath(dir string, flags int) error {
	err := unix.Unmount(dir, flags)
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	helper, lookErr := exec.LookPath("fusermount3")
	if lookErr != nil {
		if helper, lookErr = exec.LookPath("fusermount"); lookErr != nil {
			return fmt.Errorf("umount: %w, and neither fusermount3 nor fusermount is installed", err)
		}
	}
	args := []string{"-u", dir}
	if flags&unix.MNT_DETACH != 0 {
		args = []string{"-u", "-z", dir}
	}
	out, err := exec.Command(helper, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(helper), strings.Join(args[:len(args)-1], " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// detach lazily unmounts dir.
func detach(dir string) error { return unmountPath(dir, unix.MNT_DETACH) }

// checkMountpoint refuses, before anything is made or mounted, a mount
// point that is not a directory, or that is missing and cannot be made
// (the nearest existing directory above it is not one this process can
// write in). A mount point that is in the mount table is left to
// prepareMountpoint: a dead mount cannot be stat'ed.
func checkMountpoint(dir string) error {
	abs, err := resolve(dir)
	if err != nil {
		return err
	}
	if isMountpoint(abs) {
		return nil
	}
	switch fi, err := os.Stat(abs); {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("mount point %s is not a directory", abs)
	case err == nil:
		return nil
	case !missing(err):
		return fmt.Errorf("mount point: %w", err)
	}
	for above := filepath.Dir(abs); ; above = filepath.Dir(above) {
		fi, err := os.Stat(above)
		switch {
		case missing(err) && above != "/":
			continue
		case err != nil:
			return fmt.Errorf("mount point %s cannot be made: %w", abs, err)
		case !fi.IsDir():
			return fmt.Errorf("mount point %s cannot be made: %s is not a directory", abs, above)
		}
		if err := unix.Access(above, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("mount point %s cannot be made in %s: %w", abs, above, err)
		}
		return nil
	}
}

// missing reports whether err says that a path does not exist: the path,
// or a part of it that is no directory.
func missing(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// prepareMountpoint makes dir if it is missing (mode 0755, less the
// umask, with its missing parents), and recovers it if an earlier
// secretfs was killed and left a dead mount behind ("transport endpoint
// is not connected"). A live mount there is an error: two daemons must
// not stack on one path; so is a mount point that is not a directory.
func prepareMountpoint(dir string, log *logrus.Logger) error {
	abs, err := resolve(dir)
	if err != nil {
		return err
	}
	dead, err := deadMountAt(abs)
	if err != nil {
		return err
	}
	if dead {
		log.WithField("mountpoint", abs).Warn("found a stale mount left by a process that died; recovering it")
		if err := detach(abs); err != nil {
			return fmt.Errorf("recover stale mount %s: %w", abs, err)
		}
	}
	// What was recovered may be no directory: a dead mount on a file.
	if err := checkMountpoint(abs); err != nil {
		return err
	}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(abs, 0o755)
	}
	if d, err := os.Open(abs); err == nil {
		names, _ := d.Readdirnames(1)
		d.Close()
		if len(names) > 0 {
			log.WithField("mountpoint", abs).Warn("the mount point is not empty: what it holds is hidden while the mount is there")
		}
	}
	return nil
}

// replacesALiveSecretfs reports whether this mount is a --replace of a
// live secretfs of this user at dir, as far as it can tell without
// asking it (beginMount asks).
func (c *config) replacesALiveSecretfs(dir string) bool {
	return c.mount.replace.mode != replaceOff && liveSecretfsAt(dir)
}

// liveSecretfsAt reports whether dir shows a live secretfs mount of this
// user (one a --replace takes over).
func liveSecretfsAt(dir string) bool {
	abs, err := resolve(dir)
	if err != nil {
		return false
	}
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	top, ok := handover.TopAt(all, abs)
	if !ok || top.FSType != mountType || !strings.Contains(","+top.SuperOptions+",", ",user_id="+strconv.Itoa(os.Geteuid())+",") {
		return false
	}
	// statfs reaches the secretfs there, which may be stuck (a
	// --replace is how one replaces it): one that does not answer in
	// time is live, as far as this says.
	dead := make(chan bool, 1)
	go func() {
		d, _ := deadMountAt(abs)
		dead <- d
	}()
	select {
	case d := <-dead:
		return !d
	case <-time.After(liveCheckLimit):
		return true
	}
}

// liveCheckLimit bounds liveSecretfsAt's statfs of the mount it asks about.
const liveCheckLimit = 2 * time.Second

// deadMountAt reports whether abs holds a dead mount, left by a process
// that died ("transport endpoint is not connected"), which a mount there
// recovers. A live mount there is an error: two daemons must not stack
// on one path.
func deadMountAt(abs string) (bool, error) {
	if !isMountpoint(abs) {
		return false, nil
	}
	// statfs always reaches the daemon; stat may be answered from the
	// kernel's attribute cache even when the daemon is gone.
	var st unix.Statfs_t
	switch err := unix.Statfs(abs, &st); {
	case errors.Is(err, syscall.ENOTCONN):
		return true, nil
	case err == nil:
		return false, fmt.Errorf("%s is already a mountpoint (is another secretfs serving it?)", abs)
	default:
		return false, fmt.Errorf("%s: %w", abs, err)
	}
}

// resolve returns dir as the mount table names it: absolute, with its
// symlinks resolved, as far as it exists (a missing mount point is made
// with its parents). The last element, when it is a symlink, is followed
// as the kernel follows it to mount there (to its target, made if
// missing); a mount point in the mount table is not looked at, since a
// dead mount cannot be stat'ed.
func resolve(dir string) (string, error) {
	abs, err := resolveParent(dir)
	for range 40 { // as the kernel's limit of symlinks in one lookup
		if err != nil || isMountpoint(abs) {
			return abs, err
		}
		fi, lerr := os.Lstat(abs)
		if lerr != nil || fi.Mode()&os.ModeSymlink == 0 {
			return abs, nil
		}
		target, lerr := os.Readlink(abs)
		if lerr != nil {
			return "", lerr
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(abs), target)
		}
		abs, err = resolveParent(target)
	}
	return "", fmt.Errorf("%s: %w", dir, syscall.ELOOP)
}

// resolveParent returns dir absolute, with the symlinks of its parent
// resolved, as far as the parent exists; the last element is left as it
// is.
func resolveParent(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	parent, missing := filepath.Dir(abs), filepath.Base(abs)
	for {
		resolved, err := filepath.EvalSymlinks(parent)
		switch {
		case err == nil:
			return filepath.Join(resolved, missing), nil
		case !errors.Is(err, os.ErrNotExist) || parent == "/":
			return "", err
		}
		parent, missing = filepath.Dir(parent), filepath.Join(filepath.Base(parent), missing)
	}
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
	if v > 0o777 {
		// The mount is nosuid: ls -l would show an "s" that means nothing.
		return fmt.Errorf("%q: want permission bits from 0 to 0777, without setuid, setgid or sticky", s)
	}
	*o = octal(v)
	return nil
}
