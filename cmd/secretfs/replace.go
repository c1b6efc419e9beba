package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/internal/handover"
	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/vfs"
)

// Upgrading without a gap: `mount --replace` takes over a mount point a
// live secretfs serves (internal/handover says how), and every mount
// answers such a request on its control socket by stepping down:
// detaching its mount, serving what still holds it, and exiting once
// the kernel released it.

// mountType is the type of secretfs's mounts in mountinfo: fs mounts
// with the name secretfs.
const mountType = "fuse.secretfs"

// replaceMode is the value of --replace.
type replaceMode string

const (
	replaceOff replaceMode = ""
	// replaceNoGap (--replace) mounts beneath the live mount, or, on a
	// kernel that cannot, refuses and changes nothing.
	replaceNoGap replaceMode = "true"
	// replaceGap (--replace=gap) does the same where the kernel can, and
	// elsewhere stops the live mount first and mounts after it: the path
	// serves nothing meanwhile.
	replaceGap replaceMode = "gap"
)

func (m *replaceMode) String() string { return string(*m) }
func (m *replaceMode) Type() string   { return "mode" }
func (m *replaceMode) Set(s string) error {
	switch s {
	case "true", "gap":
		*m = replaceMode(s)
	case "false":
		*m = replaceOff
	default:
		return fmt.Errorf("%q: want true (no gap, or refuse), gap (a gap where the kernel cannot mount beneath) or false", s)
	}
	return nil
}

// replaceFlags are mount's flags for replacing and being replaced.
type replaceFlags struct {
	mode replaceMode
	// drainTimeout ends a stepped-down mount this long after it stepped
	// down, even if something still holds it; 0 waits for ever.
	drainTimeout time.Duration
	// waitAfterDrain: once the stepped-down mount is released, wait for
	// SIGTERM instead of exiting (a container that exits would be started
	// again, and take the mount back).
	waitAfterDrain bool
	// drainThroughSIGTERM: once stepped down, SIGTERM does not end the
	// drain (the release of the mount, --drain-timeout or SIGINT does):
	// for a container, which is sent SIGTERM as soon as its successor is
	// ready, and SIGKILL after its grace period.
	drainThroughSIGTERM bool
}

func (r *replaceFlags) register(f *pflag.FlagSet) {
	f.Var(&r.mode, "replace", "take over MOUNTPOINT from the secretfs serving it, with no gap: mount beneath it, then have it detach its mount and serve only what still holds it (Linux 6.5 or later); =gap also where the kernel cannot mount beneath, stopping it first. With nothing served there, mount as usual")
	f.Lookup("replace").NoOptDefVal = string(replaceNoGap)
	f.DurationVar(&r.drainTimeout, "drain-timeout", 0, "once replaced, stop serving what still holds the detached mount after this long (0: until the last descriptor, directory or bind mount is gone)")
	f.BoolVar(&r.waitAfterDrain, "wait-after-drain", false, "once replaced and drained, wait for SIGTERM instead of exiting: for a container that would be started again if it exited")
	f.BoolVar(&r.drainThroughSIGTERM, "drain-through-sigterm", false, "once replaced, SIGTERM does not end the drain: the process exits once the detached mount is released or --drain-timeout runs out (SIGINT still ends it); for a container, stopped with SIGTERM as soon as its successor is ready. Before a replacement SIGTERM unmounts as always")
}

func (r *replaceFlags) validate() error {
	if r.drainTimeout < 0 {
		return fmt.Errorf("--drain-timeout %s: want 0 (wait until released) or a positive duration", r.drainTimeout)
	}
	return nil
}

// succession is one mount's part in replacements: the predecessor it
// takes over, if any, its own control socket, by which a successor asks
// it to step down, and what stepping down stops.
type succession struct {
	flags   replaceFlags
	dir     string // the mount point, as mountinfo names it
	timeout time.Duration
	log     *logrus.Logger

	pred    *handover.Predecessor // nil: this mount replaces nothing (any longer)
	control *handover.Control     // nil until mounted, or when it could not be made
	dev     uint64                // the device number of this mount's file system
	// noBeneath, with pred, says why this kernel cannot mount beneath
	// pred's mount (--replace=gap): pred steps down first (stepDownFirst).
	noBeneath error
	// nothingToReplace, under --replace without pred, says why there is
	// nothing to take over (handover.ErrNothingToReplace), for the log.
	nothingToReplace error

	metricsAddr string
	meter       *metrics.Registry
	mu          sync.Mutex // guards listener
	listener    *metrics.Server

	// detaching is set while the mount is being detached for a
	// successor, and stays set once it is: the mount's release that may
	// follow at once is then no unmount from outside.
	detaching   atomic.Bool
	steppedDown chan struct{} // closed once the mount is detached for a successor

	// notifySocket is systemd's NOTIFY_SOCKET, held back from a --daemon
	// child that replaces the service's main process until its parent
	// has told systemd so (relayMainPID): systemd refuses, and logs,
	// what any other process says.
	notifySocket string
	parent       int // the --daemon parent, whose exit tells that it has

	changes *vfs.Changes // the mount's, whose writers a stop or a step-down waits for (awaitWriters)
	// replaced is set once this mount took its predecessor's place: the
	// switch ends when it announces that it serves (ready).
	replaced bool

	// stop is where the signals that stop the process come (mount's):
	// until this process asks its predecessor to step down, one ends the
	// replacement, which changes nothing (interrupted); once it asked,
	// there is no way back, and one that came meanwhile is not taken as
	// a stop (switched).
	stop <-chan os.Signal
	// parentStop is where the --daemon parent's withdrawSignal comes: a
	// stop signal it caught, passed on. Until this process asks its
	// predecessor to step down, it ends the replacement as a stop does;
	// after, it means nothing, whenever it comes: the parent passes one
	// on until it has read that the mount serves, which may be after
	// the switch ended (see switched).
	parentStop <-chan os.Signal
	// stopAfterSwitch is a stop signal that came during a switch under
	// systemd, taken once the switch is done (see switched).
	stopAfterSwitch os.Signal
}

// parentStops returns the channel where a --daemon parent's
// withdrawSignal comes, for a replacing child (see succession.parentStop):
// subscribed first thing, since Go ignores a SIGUSR1 nobody listens for.
func parentStops() <-chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, withdrawSignal)
	return c
}

// withdrawSignal is what a --daemon parent sends its replacing child for
// a stop signal it caught (passSignalsOn): unlike SIGTERM, it never
// stops a process that took over.
const withdrawSignal = syscall.SIGUSR1

// beneathSupported is handover.BeneathSupported; a test makes it fail,
// to replace a mount as on a kernel before Linux 6.5.
var beneathSupported = handover.BeneathSupported

// beginMount is the part of a mount's start that may refuse it before
// anything is made: with --replace, it finds the live secretfs to take
// over and takes the turn to replace it, or says why it cannot (another
// file system at dir, another user's secretfs, a kernel that cannot
// mount beneath without =gap). It changes nothing and logs nothing, so
// that a refusal leaves no trace, not even the log file a daemon makes
// (logTo): once the log is open, prepare says what was found and
// prepares dir. --replace=gap on a kernel that cannot mount beneath
// stops the live secretfs only as this one mounts (stepDownFirst).
func beginMount(r replaceFlags, dir string, timeout time.Duration, log *logrus.Logger, parentStop <-chan os.Signal) (*succession, error) {
	s := &succession{flags: r, timeout: timeout, log: log, steppedDown: make(chan struct{}), parentStop: parentStop}
	if parentStop != nil {
		s.notifySocket, s.parent = os.Getenv(heldNotifySocketEnv), os.Getppid()
		os.Unsetenv(heldNotifySocketEnv)
	}
	abs, err := resolve(dir)
	if err != nil {
		return nil, err
	}
	s.dir = abs
	if r.mode == replaceOff {
		return s, nil
	}
	pred, err := handover.Find(abs, mountType)
	switch {
	case errors.Is(err, handover.ErrNothingToReplace):
		s.nothingToReplace = err
	case err != nil:
		return nil, fmt.Errorf("--replace: %w", err)
	default:
		beneath := beneathSupported()
		if beneath != nil && r.mode != replaceGap {
			pred.Close()
			return nil, fmt.Errorf("--replace: %w; --replace=gap replaces it anyway, stopping it first, and the path serves nothing until this one mounts", beneath)
		}
		s.pred, s.noBeneath = pred, beneath
	}
	return s, nil
}

// prepare logs what beginMount found and, unless this mount takes over
// a live secretfs, prepares dir for mounting (prepareMountpoint).
func (s *succession) prepare(dir string) error {
	if s.pred != nil {
		entry := s.log.WithFields(logrus.Fields{"mountpoint": s.dir, "pid": s.pred.PID, "predecessor_version": s.pred.Hello.Release})
		if s.pred.PID == 0 { // another PID namespace (another container): its own number there
			entry = entry.WithFields(logrus.Fields{"pid": s.pred.Hello.PID, "pid_namespace": "its own"})
		}
		entry.Info("--replace: taking over from the secretfs serving the mount point")
		return nil
	}
	if s.nothingToReplace != nil {
		s.log.WithField("mountpoint", s.dir).WithError(s.nothingToReplace).Info("--replace: nothing to replace; mounting as usual")
	}
	return prepareMountpoint(dir, s.log)
}

// stepDownFirst is --replace=gap on a kernel that cannot mount beneath:
// the predecessor steps down, detaching its mount, before this one is
// made, and the path serves nothing meanwhile. It is the last step
// before mount(2), once the store is open and the configuration checked
// against it: a mount that cannot start fails with the predecessor still
// serving. It serves the metrics at the address the predecessor closed.
func (s *succession) stepDownFirst(dir string) error {
	if err := s.interrupted(); err != nil {
		return err
	}
	pred := s.pred
	s.pred = nil
	defer pred.Close()
	s.log.WithError(s.noBeneath).Warn("--replace=gap: this kernel cannot mount beneath; asking the running secretfs to step down first: the path serves nothing until this mount is made")
	if err := pred.StepDownWithGap(); err != nil && servedBy(s.dir, pred.Mount.Dev) {
		return fmt.Errorf("--replace=gap: %w", err)
	}
	if err := prepareMountpoint(dir, s.log); err != nil {
		return err
	}
	if s.metricsAddr != "" {
		s.listenMetricsOnceFree()
	}
	return nil
}

// serveMetrics makes the registry that counts what the mount does and,
// unless this mount takes over another, serves it at addr at once. A
// successor serves it once its predecessor stepped down and closed the
// address. The function returned stops serving; it may be called more
// than once. Without an address the registry is made all the same, and
// served nowhere: its judgement of the backend is what `secretfs status`
// asks for over the control socket (succession.healthy).
func (s *succession) serveMetrics(addr string) (*metrics.Registry, func(), error) {
	info, _ := debug.ReadBuildInfo()
	s.meter = metrics.New(buildVersion(version, info), metrics.Options{FailingFor: s.timeout})
	s.metricsAddr = addr
	if addr != "" && (s.pred == nil || !s.predecessorServesMetricsAt(addr)) {
		if err := s.listenMetrics(); err != nil {
			return nil, nil, s.metricsAddrTaken(err)
		}
	}
	return s.meter, s.closeMetrics, nil
}

// predecessorServesMetricsAt reports whether the predecessor serves its
// metrics at addr, which it closes as it steps down: this mount then
// serves them there. A predecessor that does not say (it predates
// Reply.MetricsAddr) is taken to. Any other address is served at once,
// or refused before the switch if it cannot be: it would not come free.
func (s *succession) predecessorServesMetricsAt(addr string) bool {
	theirs := s.pred.Hello.MetricsAddr
	if theirs == "" {
		return true
	}
	if theirs == handover.NoMetrics {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(s.timeout, time.Second))
	defer cancel()
	a, aErr := resolveTCP(ctx, addr)
	b, bErr := resolveTCP(ctx, theirs)
	if aErr != nil || bErr != nil {
		return addr == theirs
	}
	// Its port on every address holds this one's on any (":9090" and
	// "127.0.0.1:9090"), and the other way round: either comes free as
	// it steps down.
	return a.Port == b.Port && (a.IP.Equal(b.IP) || unspecified(a.IP) || unspecified(b.IP))
}

// resolveTCP is net.ResolveTCPAddr within ctx: a host name's lookup
// (DNS, for a --metrics-addr such as "metrics.internal:9090") has the
// deadline every call to another server has.
func resolveTCP(ctx context.Context, addr string) (*net.TCPAddr, error) {
	host, service, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := net.DefaultResolver.LookupPort(ctx, "tcp", service)
	if err != nil {
		return nil, err
	}
	if host == "" {
		return &net.TCPAddr{Port: port}, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return &net.TCPAddr{IP: ip, Port: port}, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	ip := ips[0] // as ResolveTCPAddr: an IPv4 address first
	if i := slices.IndexFunc(ips, func(ip net.IP) bool { return ip.To4() != nil }); i >= 0 {
		ip = ips[i]
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

// unspecified reports whether ip is every address (":9090").
func unspecified(ip net.IP) bool { return ip == nil || ip.IsUnspecified() }

// metricsAddrTaken says why this mount refuses an address for its
// metrics that another process holds.
func (s *succession) metricsAddrTaken(err error) error {
	if s.pred == nil {
		return err
	}
	served := "serves no metrics"
	if a := s.pred.Hello.MetricsAddr; a != handover.NoMetrics {
		served = "serves its metrics at " + a
	}
	return fmt.Errorf("--replace: %w: the secretfs being replaced %s, so this address would not come free; the live mount goes on serving, unchanged", err, served)
}

func (s *succession) listenMetrics() error {
	srv, err := s.meter.Serve(s.metricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", s.metricsAddr, err)
	}
	s.mu.Lock()
	s.listener = srv
	s.mu.Unlock()
	s.log.WithField("address", srv.Addr().String()).Info("serving /metrics and /healthz")
	return nil
}

func (s *succession) closeMetrics() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		s.listener.Close()
		s.listener = nil
	}
}

// mount mounts catalog at the mount point: beneath the predecessor's
// mount, which then steps down, when there is one, or, where the kernel
// cannot mount beneath, once it stepped down; else as usual; and listens
// on the control socket, so that a successor can replace it.
func (s *succession) mount(dir string, catalog *cache.Catalog, opts fs.Options) (*fuse.Server, error) {
	s.changes = opts.Changes
	if s.pred != nil && s.noBeneath == nil {
		return s.mountBeneath(dir, catalog, opts)
	}
	replacing := s.pred != nil
	if replacing {
		if err := s.stepDownFirst(dir); err != nil {
			return nil, err
		}
	}
	if !replacing {
		select {
		case <-s.parentStop:
			// A --replace with nothing to replace: its --daemon parent
			// was stopped before the mount was made. Once it is, as
			// after a switch, a stop passed on means nothing.
			return nil, errors.New("interrupted (a stop signal to the --daemon parent, passed on) before mounting: nothing was mounted")
		default:
		}
	}
	server, err := mountFS(dir, catalog, opts)
	if err != nil {
		return nil, err
	}
	if replacing {
		s.switched()
		s.replaced = true // the --daemon parent makes this process the service's main one, as after a switch beneath
	}
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	if top, ok := handover.TopAt(all, s.dir); err == nil && ok && top.FSType == mountType {
		s.dev = top.Dev
		s.listen(handover.SocketPath(s.dir))
	} else {
		s.log.WithError(err).Warn("this mount is not in the mount table as expected: it cannot be replaced with --replace")
	}
	return server, nil
}

// mountBeneath makes this mount with the kernel's mount API, serves it,
// checks that it answers a listing, attaches it beneath the live mount,
// and has the predecessor step down. A failure changes nothing: after
// the attachment, the new mount is withdrawn from beneath the live one,
// which goes on serving (handover.Mount.Withdraw).
func (s *succession) mountBeneath(dir string, catalog *cache.Catalog, opts fs.Options) (*fuse.Server, error) {
	status(s.log, "mounting "+dir+" beneath the live mount")
	m, err := handover.Open(handover.Options{Source: "secretfs", Subtype: "secretfs",
		UserID: uint32(os.Geteuid()), GroupID: uint32(os.Getegid()),
		AllowOther: opts.AllowOther, DefaultPermissions: true, ReadOnly: opts.KernelReadOnly(), MountReadOnly: opts.MountReadOnly()})
	if err != nil {
		return nil, fmt.Errorf("--replace: %w", err)
	}
	// Closing the mount's root before it is attached dissolves the
	// mount and ends its server; after, the mount no longer holds
	// itself, and is released when unmounted.
	defer m.Close()
	opts.Mounted = m.DevicePath()
	server, err := fs.Mount(dir, catalog, opts)
	if err != nil {
		return nil, fmt.Errorf("--replace: serving the new mount: %w", err)
	}
	if err := m.DeclinePoll(); err != nil {
		s.log.WithError(err).Debug("go-fuse's poll hack failed")
	}
	if s.dev, err = m.Dev(); err != nil {
		return nil, fmt.Errorf("--replace: %w", err)
	}
	// Only a mount that answers may take over: one that does not
	// would serve nothing but errors.
	if err := answersThrough(m.Root(), 2*s.timeout+time.Second); err != nil {
		return nil, fmt.Errorf("--replace: %w; the live mount goes on serving, unchanged", err)
	}
	if err := s.interrupted(); err != nil {
		return nil, err
	}
	// Listening before the switch: the path is never without a
	// secretfs that a later successor can ask.
	s.listen(fmt.Sprintf("%s.%d", handover.SocketPath(s.dir), os.Getpid()))
	if err := m.AttachBeneath(s.dir); err != nil {
		return nil, fmt.Errorf("--replace: %w", err)
	}
	holdAt(holdTakeOverEnv, s.log, s.signalPending)
	if err := s.interrupted(); err != nil {
		return nil, s.withdraw(m, err)
	}
	if err := s.takeOver(m); err != nil {
		return nil, err
	}
	s.switched()
	s.replaced = true
	s.pred.Close()
	s.log.WithFields(logrus.Fields{"mountpoint": s.dir, "pid": s.pred.PID}).
		Info("--replace: the predecessor stepped down: its mount is detached, and this one serves the mount point")
	if w := s.pred.Hello.WatchdogUSec; w > 0 && s.notifySocket != "" {
		// The watchdog (see watchdog) is this process's to keep up now.
		os.Setenv("WATCHDOG_USEC", strconv.FormatInt(w, 10))
		os.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	}
	s.pred = nil
	if s.control != nil {
		if err := s.control.MoveTo(handover.SocketPath(s.dir)); err != nil {
			s.log.WithError(err).Warn("this mount cannot be replaced with --replace")
		}
	}
	if s.metricsAddr != "" {
		s.listenMetricsOnceFree()
	}
	return server, nil
}

// takeOver asks the predecessor to step down for m, attached beneath its
// mount, and settles what the mount point shows: nil once m serves it;
// else m is withdrawn from beneath the live mount, which goes on serving.
func (s *succession) takeOver(m *handover.Mount) error {
	err := s.pred.StepDown(m)
	if err == nil || s.onTop() || (errors.Is(err, handover.ErrNoReply) && afterLostStepDown(s, lostStepDownLimit)) {
		return nil
	}
	return s.withdraw(m, err)
}

// withdraw takes m from beneath the live mount, which goes on serving,
// and returns err, the reason, saying so. If the live mount was
// unmounted meanwhile (its process stopped), m is what the path shows,
// never switched to: it is unmounted too, rather than left there dead
// once this process exits.
func (s *succession) withdraw(m *handover.Mount, err error) error {
	if s.onTop() {
		if undo := unix.Unmount(s.dir, unix.MNT_DETACH); undo != nil {
			return fmt.Errorf("--replace: %w; the live mount stopped meanwhile, and this one, on top now, could not be unmounted (%v): it is left dead there when this process exits", err, undo)
		}
		return fmt.Errorf("--replace: %w; the live mount stopped meanwhile, and this one is unmounted too: nothing serves the path", err)
	}
	if undo := m.Withdraw(s.dir, s.pred.Mount.Dev); undo != nil {
		return fmt.Errorf("--replace: %w; and this mount could not be taken from beneath the live one (%v): it is left dead there when this process exits, and the next mount after the live one stops recovers it", err, undo)
	}
	return fmt.Errorf("--replace: %w; the live mount goes on serving, unchanged", err)
}

// interrupted returns an error if a signal to stop came before this
// process asked its predecessor to step down: the replacement ends
// there, and the predecessor serves on, never asked.
func (s *succession) interrupted() error {
	select {
	case sig := <-s.stop:
		return fmt.Errorf("interrupted (%s) before the switch: this process changed nothing", sig)
	case <-s.parentStop:
		return errors.New("interrupted (a stop signal to the --daemon parent, passed on) before the switch: this process changed nothing")
	default:
		return nil
	}
}

// aboutToBeMain starts, for a replacement its --daemon parent will make
// the service's main process (systemd's ExecReload=), the sentinel that
// makes systemd wait for it at a stop (sentinel.go): before the parent
// tells systemd, so that no stop finds the new main process alone.
func (s *succession) aboutToBeMain() {
	if s.replaced && s.notifySocket != "" {
		startSentinel(s.log)
	}
}

// announced ends a switch once the mount said it serves: a signal that
// came between the step-down and then (a --daemon parent passes one on
// until it hears that the mount serves) is part of the switch, and not
// taken as a stop either; but systemd's stop, which came during a
// reload's switch (stopAfterSwitch), is passed to stop now that the
// switch is done.
func (s *succession) announced(stop chan<- os.Signal) {
	if !s.replaced {
		return
	}
	s.switched()
	if s.stopAfterSwitch != nil {
		select {
		case stop <- s.stopAfterSwitch:
		default: // a newer signal is there already
		}
	}
}

// switched takes the signals that came while the predecessor stepped
// down, once this process asked it to: there was no way back, and the
// switch is done, so they are not taken as a stop, which would unmount
// the path and leave nothing serving it. The next signal stops the
// process as usual. Under systemd (a reload's child), a stop signal
// during the switch is systemd's stop of the unit, which reaches every
// process of it (KillMode=control-group) once: it is kept, and taken
// once the switch is done (announced); without it, systemd would wait
// for TimeoutStopSec and SIGKILL the mount dead.
func (s *succession) switched() {
	for {
		select {
		case sig := <-s.stop:
			if s.notifySocket != "" {
				s.stopAfterSwitch = sig
				s.log.WithField("signal", sig.String()).Warn("--replace: a stop signal came during the switch, under systemd: the switch completes, then this process stops")
				continue
			}
			s.log.WithField("signal", sig.String()).Warn("--replace: a signal came during the switch, once the predecessor had been asked to step down: not taken as a stop; this process serves the mount point (a second signal stops it)")
		case <-s.parentStop:
			s.log.Warn("--replace: a signal came during the switch (to the --daemon parent, which passed it on), once the predecessor had been asked to step down: not taken as a stop; this process serves the mount point")
		default:
			return
		}
	}
}

// lostStepDownLimit bounds the wait of afterLostStepDown: a predecessor
// that a signal is ending unmounts within moments.
const lostStepDownLimit = 5 * time.Second

// stepDownView is what afterLostStepDown looks at and may do.
type stepDownView interface {
	onTop() bool            // this mount serves the mount point
	predecessorAlive() bool // the predecessor's process still runs
	detachPredecessor()     // detach the predecessor's mount, if it is the top one
}

// afterLostStepDown decides whether this mount serves the mount point
// after its step-down request got no reply (handover.ErrNoReply). That is
// what a predecessor being ended by a signal does: it closes its control
// socket before it answers a request it had not begun, then unmounts its
// own mount, which leaves this one, beneath, on top. Withdrawing at once
// would race that unmount and could leave the path with no mount. So it
// waits, up to limit: this mount on top means served. A predecessor whose
// process is gone while its mount is still on top died without
// unmounting (that mount only answers ENOTCONN): its mount is detached,
// which it can no longer do itself. A predecessor still alive and on top
// at the limit keeps serving, and the caller withdraws.
func afterLostStepDown(v stepDownView, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if v.onTop() {
			return true
		}
		if !v.predecessorAlive() {
			v.detachPredecessor()
			return v.onTop()
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// predecessorAlive implements stepDownView.
func (s *succession) predecessorAlive() bool {
	err := unix.Kill(s.pred.PID, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// detachPredecessor implements stepDownView. Only a predecessor whose
// process is gone is detached, so nothing else moves the top mount
// between the look and the detach.
func (s *succession) detachPredecessor() {
	if !servedBy(s.dir, s.pred.Mount.Dev) {
		return
	}
	if err := unix.Unmount(s.dir, unix.MNT_DETACH); err != nil {
		s.log.WithError(err).Warn("--replace: the predecessor died without unmounting, and its dead mount could not be detached")
		return
	}
	s.log.WithField("pid", s.pred.PID).Warn("--replace: the predecessor died in the middle of its step-down; its dead mount is detached")
}

// servedBy reports whether the top mount at dir is the file system dev.
func servedBy(dir string, dev uint64) bool {
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	top, ok := handover.TopAt(all, dir)
	return err == nil && ok && top.Dev == dev
}

// onTop reports whether this process's mount is the top one at the mount
// point: the predecessor's is gone, whoever removed it.
func (s *succession) onTop() bool { return servedBy(s.dir, s.dev) }

// listenMetricsOnceFree serves the metrics at the address the
// predecessor closed as it stepped down; it retries for a while in the
// background if the address is not free yet.
func (s *succession) listenMetricsOnceFree() {
	s.mu.Lock()
	listening := s.listener != nil
	s.mu.Unlock()
	if listening || s.listenMetrics() == nil {
		return
	}
	go func() {
		var err error
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			if err = s.listenMetrics(); err == nil {
				return
			}
		}
		s.log.WithError(err).Error("the predecessor's metrics address did not come free: serving no /metrics or /healthz")
	}()
}

// listen makes this mount's control socket at path; a mount that cannot
// make one serves anyway, and says it cannot be replaced.
func (s *succession) listen(path string) {
	info, _ := debug.ReadBuildInfo()
	interval, _ := daemon.SdWatchdogEnabled(false)
	c, err := handover.Listen(path, handover.Server{Mountpoint: s.dir, FSType: mountType, Dev: s.dev, Watchdog: interval,
		Release: buildVersion(version, info), Owner: os.Geteuid(), MetricsAddr: s.metricsAddr, Healthy: s.healthy, StepDown: s.stepDown, SteppedDown: s.steppedDownAndTold, Log: s.log})
	if err != nil {
		s.log.WithError(err).Warn("no control socket: this mount cannot be replaced with --replace")
		return
	}
	s.control = c
}

func (s *succession) healthy() bool {
	if s.meter == nil {
		return true
	}
	ok, _ := s.meter.Healthy()
	return ok
}

// stepDown detaches this mount for a successor whose mount lies beneath
// it, and stops serving the metrics address, which the successor takes.
// The mount goes on serving what still holds it (waitForEnd drains).
// Right before it detaches, it checks again that the successor's mount
// is beneath (stillBeneath): a successor that gave up waiting for the
// reply withdrew it, and detaching then would leave the path with
// nothing.
func (s *succession) stepDown(stillBeneath func() error) error {
	holdAt(holdStepDownEnv, s.log, s.signalPending)
	s.awaitWriters()
	if err := stillBeneath(); err != nil {
		return fmt.Errorf("the successor's mount is no longer beneath this one (did it give up?): %w", err)
	}
	s.detaching.Store(true)
	// As root directly, else through fusermount3, which may detach the
	// mount of the user that made it.
	if err := detach(s.dir); err != nil {
		s.detaching.Store(false)
		return fmt.Errorf("detach %s: %w", s.dir, err)
	}
	s.closeMetrics()
	if s.meter != nil {
		s.meter.SetServing(false)
	}
	return nil
}

// holdStepDownEnv is a test hook, and nothing else sets it: when set, it
// names a FIFO that every step-down opens and reads to its end before it
// detaches the mount. Opening the FIFO for writing returns once a
// step-down has begun, and closing it lets the step-down go on: so the
// integration tests signal a real process in the middle of its step-down
// (integration: TestReplaceSignalledMidStepDownLeavesThePathServedByTheNewProcess),
// which no timing could do reliably. Unset, it costs one lookup per
// step-down.
const holdStepDownEnv = "SECRETFS_TEST_HOLD_STEPDOWN"

// holdTakeOverEnv is a test hook like holdStepDownEnv, and nothing else
// sets it: a --replace holds at its FIFO once its mount is attached
// beneath the live one, before it asks the predecessor to step down, so
// that a test signals it there (integration:
// TestASignalBeforeTheSwitchWithdrawsTheNewMount).
const holdTakeOverEnv = "SECRETFS_TEST_HOLD_TAKEOVER"

// holdAt waits at the FIFO the variable env names, if it is set, until
// it is opened for writing and closed again. A test that signalled this
// process during the hold writes holdSignalled before it closes: a
// signal reaches the process's signal channels through a goroutine of
// Go's runtime, not at once, so holdAt then waits (at most
// holdSignalWait) until signalled reports one, and the code held goes on
// only once what the test did happened (the hook's whole point).
func holdAt(env string, log logrus.FieldLogger, signalled func() bool) {
	fifo := os.Getenv(env)
	if fifo == "" {
		return
	}
	log.WithField("fifo", fifo).Warn(env + " is set: waiting until the FIFO is opened and closed again")
	f, err := os.Open(fifo)
	if err != nil {
		log.WithError(err).Warn(env + ": not held")
		return
	}
	defer f.Close()
	said, _ := io.ReadAll(f)
	if strings.TrimSpace(string(said)) != holdSignalled {
		return
	}
	for deadline := time.Now().Add(holdSignalWait); !signalled() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// holdSignalled is what a test writes to a hold's FIFO once it signalled
// the process held (see holdAt).
const holdSignalled = "signalled"

// holdSignalWait bounds holdAt's wait for a signal a test says it sent.
const holdSignalWait = 10 * time.Second

// signalPending reports whether a signal to stop (this process's own, or
// one its --daemon parent passed on) waits in its channel, unread.
func (s *succession) signalPending() bool { return len(s.stop)+len(s.parentStop) > 0 }

// steppedDownAndTold lets waitForEnd drain, once the successor heard
// that this mount stepped down.
func (s *succession) steppedDownAndTold() { close(s.steppedDown) }

// untilSteppedDown returns a channel closed when stop is, or when this
// mount steps down: a stepped-down mount's watchdog has nothing to watch
// at the path, and is no longer the service systemd supervises.
func (s *succession) untilSteppedDown(stop <-chan struct{}) <-chan struct{} {
	either := make(chan struct{})
	go func() {
		defer close(either)
		select {
		case <-stop:
		case <-s.steppedDown:
		}
	}()
	return either
}

// waitForEnd serves until the mount is unmounted from outside, a signal
// from stop asks to unmount it, or it steps down for a successor and
// drains.
func (s *succession) waitForEnd(server *fuse.Server, dir string, served <-chan struct{}, stop <-chan os.Signal) error {
	log := s.log
	if s.notifySocket != "" {
		go s.speakOnceMain()
	}
	check := time.NewTicker(unseenCheck)
	defer check.Stop()
	var sig os.Signal
wait:
	for {
		select {
		case <-served:
			if s.detaching.Load() { // and released at once
				<-s.steppedDown
				return s.drain(served, stop, nil)
			}
			log.WithField("mountpoint", dir).Info("unmounted from outside")
			return nil
		case <-s.steppedDown:
			return s.drain(served, stop, nil)
		case <-check.C:
			if s.unseen(dir) {
				check.Stop()
			}
		case sig = <-stop:
			break wait
		}
	}
	log.WithField("signal", sig.String()).Info("unmounting")
	// A successor asking from now on is too late; one whose step-down is
	// under way finishes it first (closeControl waits for it).
	s.closeControl()
	if s.detaching.Load() {
		// The mount was detached for a successor while the signal came:
		// the path shows the successor's mount, which an unmount by path
		// would take away.
		<-s.steppedDown
		return s.drain(served, stop, sig)
	}
	notify(log, daemon.SdNotifyStopping+"\nSTATUS=unmounting "+dir)
	if s.dev != 0 && !s.onTop() {
		// Whatever the path shows is not this mount: someone else's,
		// or a successor's. Unmounting by path would take that away;
		// ending the process ends this mount wherever it is.
		log.WithField("mountpoint", dir).Warn("the mount point does not show this mount any longer: not unmounting it; what still holds this mount loses it as the process ends")
		return nil
	}
	s.awaitWriters()
	err := unmount(s.dir, s.dev, server, served, stop, log)
	removeDeadBeneath(s.dir, log)
	return err
}

// removeDeadBeneath detaches the dead secretfs mounts that this one's
// unmount uncovered at dir: each left by a successor killed after it
// mounted beneath this one and before it asked it to step down. They
// would answer ENOTCONN at the path until the next mount recovered them.
// A live mount there (a replacement under way) is left alone.
func removeDeadBeneath(dir string, log logrus.FieldLogger) {
	for range 8 {
		all, err := handover.ReadMountInfo("/proc/self/mountinfo")
		if err != nil {
			return
		}
		if top, ok := handover.TopAt(all, dir); !ok || top.FSType != mountType {
			return
		}
		if dead, _ := deadMountAt(dir); !dead {
			return
		}
		if err := detach(dir); err != nil {
			log.WithError(err).Warn("a dead secretfs mount lies beneath this one's (a successor killed before it took over), and could not be detached: the next mount at the path recovers it")
			return
		}
		log.WithField("mountpoint", dir).Warn("detached the dead secretfs mount that lay beneath this one's (a successor killed before it took over)")
	}
}

// writersGrace bounds how long a stop or a step-down waits, before it
// unmounts or detaches the mount, for the kernel to release the files
// open for writing (vfs.Changes.WritersReleased). The RELEASE of a last
// close, which may owe a commit (`: > file`), comes after close(2) has
// returned, and one the mount has not read yet when the file system goes
// is cancelled, with that commit: a stop at once after such a close
// would lose it. It comes within milliseconds; only a file a process
// still holds open makes the wait last this long (such a file keeps a
// detached file system alive, and loses what it has not committed when
// the process stops, wait or not).
const writersGrace = 500 * time.Millisecond

// awaitWriters waits, at most writersGrace, until the kernel has
// released every file of the mount open for writing. A second signal
// during the wait is left for the unmount (released), which it tells
// not to wait for the kernel.
func (s *succession) awaitWriters() {
	select {
	case <-s.changes.WritersReleased():
		return
	case <-time.After(writersGrace):
	}
	s.log.WithField("mountpoint", s.dir).Info("a file of the mount is still open for writing: going on without waiting for its release")
}

// unseenCheck is how often a mount checks that its mount point still
// shows it (unseen).
const unseenCheck = 5 * time.Second

// unseen logs, once, that the mount point no longer shows this mount,
// which no successor took over, and what still holds it: it was unmounted
// (umount, fusermount3 -u), but a copy of it in another mount namespace,
// made by a container or unshare while it was mounted, keeps the file
// system, and this process, alive, serving that copy until it is
// released or a signal comes; without this line nothing would tell why
// the process lives on. It reports whether it logged. A mount no longer
// at the mount point at all (not merely covered by another mount there)
// closes its control socket, and removes it while it is its own: the
// socket beside the mount point is for the secretfs that serves it, which
// `secretfs status` asks, and which a new mount there listens as.
func (s *succession) unseen(dir string) bool {
	if s.dev == 0 || s.detaching.Load() || s.onTop() {
		return false
	}
	entry := s.log.WithField("mountpoint", dir)
	for _, h := range handover.Holders(s.dev) {
		entry.WithFields(logrus.Fields{"pid": h.PID, "command": h.Command, "holds": h.What}).Warn("holds this mount's file system")
	}
	entry.Warn("the mount point does not show this mount any longer (unmounted here), but the file system is still held, by a copy of the mount in another mount namespace or a bind mount: serving it until it is released, or SIGTERM")
	if !s.atMountpoint() {
		entry.Warn("closing the control socket: this process no longer serves the mount point, and cannot be asked for it or replaced there")
		s.closeControl()
	}
	return true
}

// atMountpoint reports whether this mount is at the mount point in this
// process's mount table, on top or beneath another.
func (s *succession) atMountpoint() bool {
	all, err := handover.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return true
	}
	for _, m := range all {
		if m.Point == s.dir && m.Dev == s.dev {
			return true
		}
	}
	return false
}

// speakOnceMain gives a --daemon child that replaced the service's main
// process its NOTIFY_SOCKET back once its parent, which told systemd that
// this process is the main one now, has exited.
func (s *succession) speakOnceMain() {
	for range 1500 {
		if os.Getppid() != s.parent {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Setenv("NOTIFY_SOCKET", s.notifySocket)
	if interval, _ := daemon.SdWatchdogEnabled(false); interval > 0 {
		// At once: the predecessor's last keep-alive may be a while ago.
		notify(s.log, daemon.SdNotifyWatchdog)
	}
}

// drain serves the detached mount until the kernel releases it (its
// server returns), --drain-timeout runs out, or a signal comes; in the
// last two cases it logs what still held the mount. With
// --drain-through-sigterm, SIGTERM does not end it. signalled is a
// signal that came as the mount was being detached, nil if none. With
// --wait-after-drain it then waits for a signal, unless one came.
func (s *succession) drain(served <-chan struct{}, stop <-chan os.Signal, signalled os.Signal) error {
	log := s.log.WithField("mountpoint", s.dir)
	s.closeControl()
	// No word to systemd from here on: the successor is the service's
	// main process.
	log.Info("stepped down for a successor: the mount is detached; serving what still holds it until the last reference goes")
	var timeout <-chan time.Time
	if s.flags.drainTimeout > 0 {
		timer := time.NewTimer(s.flags.drainTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	stillHeld := time.NewTimer(unseenCheck)
	defer stillHeld.Stop()
	sig := signalled
	s.drainingOn(log, sig)
	for sig == nil || !s.endsDrain(sig) {
		select {
		case <-served:
			log.Info("the last reference to the detached mount is gone")
			if s.flags.waitAfterDrain && sig == nil {
				log.Info("drained; waiting for SIGTERM (--wait-after-drain)")
				<-stop
			}
			return nil
		case sig = <-stop:
			s.drainingOn(log, sig)
		case <-stillHeld.C:
			s.stillHeld(log)
		case <-timeout:
			log.WithField("drain_timeout", s.flags.drainTimeout.String()).Warn("--drain-timeout ran out: what still holds the detached mount loses it")
			return s.drainEnded(log)
		}
	}
	log.WithField("signal", sig.String()).Warn("ending the drain on a signal: what still holds the detached mount loses it")
	return s.drainEnded(log)
}

// drainingOn logs that sig, if any, does not end the drain.
func (s *succession) drainingOn(log logrus.FieldLogger, sig os.Signal) {
	if sig != nil && !s.endsDrain(sig) {
		log.WithField("signal", sig.String()).Info("draining on through SIGTERM (--drain-through-sigterm): this process ends once the detached mount is released, or --drain-timeout runs out")
	}
}

// stillHeld logs, once a drain has lasted unseenCheck, what still holds
// the detached mount: a descriptor, a working directory, a bind mount,
// or a copy of the mount in another mount namespace, which a private
// namespace (unshare, a container on a host whose / is private) made
// while the mount was attached, and which may hold it for as long as
// that namespace lives; without this line, nothing would tell why the
// process lives on.
func (s *succession) stillHeld(log logrus.FieldLogger) {
	holders := handover.Holders(s.dev)
	for _, h := range holders {
		log.WithFields(logrus.Fields{"pid": h.PID, "command": h.Command, "holds": h.What}).Warn("still holds the detached mount")
	}
	if len(holders) == 0 {
		// In a container, or from a PID namespace that sees none of
		// them: the kernel still holds the mount for someone.
		log.Info("the detached mount is still held, by processes this one cannot see (another PID namespace, a container's consumers): serving it until it is released, --drain-timeout runs out or a signal ends the drain")
		return
	}
	log.WithField("holders", len(holders)).Info("the detached mount is still held (the holders are named above): serving it until it is released, --drain-timeout runs out or a signal ends the drain")
}

// endsDrain reports whether sig ends a drain: every signal that stops
// the process does, but SIGTERM with --drain-through-sigterm.
func (s *succession) endsDrain(sig os.Signal) bool {
	return !(s.flags.drainThroughSIGTERM && sig == syscall.SIGTERM)
}

// drainEnded logs what still held the detached mount as its drain ended
// before the kernel released it.
func (s *succession) drainEnded(log logrus.FieldLogger) error {
	holders := handover.Holders(s.dev)
	for _, h := range holders {
		log.WithFields(logrus.Fields{"pid": h.PID, "command": h.Command, "holds": h.What}).Warn("still open when the drain ended")
	}
	log.WithField("holders", len(holders)).Info("drain ended")
	return nil
}

func (s *succession) closeControl() {
	if s.control != nil {
		s.control.Close()
	}
}

// Close ends what the succession still holds: the turn to replace a
// predecessor, if the mount did not happen, and the control socket.
func (s *succession) Close() {
	if s.pred != nil {
		s.pred.Close()
	}
	s.closeControl()
}

// answersThrough reports whether the mount whose root is root answers a
// listing, within limit. As answers does, it lists from a child process:
// one that inherits root and lists /proc/self/fd/3, since the mount is
// attached nowhere yet.
func answersThrough(root *os.File, limit time.Duration) error {
	closeOnExec()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), listProbeEnv+"=/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{root}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("listing the new mount: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("listing the new mount: %s", strings.TrimSpace(stderr.String()))
		}
		return nil
	case <-time.After(limit):
		cmd.Process.Kill()
		return fmt.Errorf("the new mount did not answer a listing within %s", limit)
	}
}

// heldNotifySocketEnv carries systemd's NOTIFY_SOCKET to a --daemon
// child that replaces a mount, which must not use it before its parent
// told systemd that it is the main process (see succession.notifySocket).
const heldNotifySocketEnv = "SECRETFS_NOTIFY_SOCKET_HELD"

// holdNotifySocket returns env with NOTIFY_SOCKET moved to
// heldNotifySocketEnv.
func holdNotifySocket(env []string) []string {
	var held []string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NOTIFY_SOCKET="); ok {
			held = append(held, heldNotifySocketEnv+"="+v)
			continue
		}
		held = append(held, kv)
	}
	return held
}

// relayMainPID is what a --daemon parent running as systemd's
// ExecReload= tells systemd once its child took the mount over: the child
// is the service's main process now, ready, and alive for the watchdog
// (NotifyAccess=exec accepts this from the reload's own process, and not
// yet from the child). serving is the child's own status.
func relayMainPID(pid int, serving string) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	state := fmt.Sprintf("MAINPID=%d\n%s\n%s\nSTATUS=%s, took over as process %d", pid, daemon.SdNotifyReady, daemon.SdNotifyWatchdog, serving, pid)
	if _, err := daemon.SdNotify(false, state); err != nil {
		fmt.Fprintln(os.Stderr, "secretfs: could not tell systemd the new main process:", err)
	}
}
