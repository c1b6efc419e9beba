// Command bench measures secretfs on this machine and writes the figures
// as Markdown (docs/BENCHMARKS.md): hot reads and stats against tmpfs;
// cold, uncached and cached reads, with their backend calls, against
// nodecredstash reading from the same dynalite and local-kms; `ls -l` of a
// large application; writes; and the backend calls of a steady state.
// Every ratio compares two figures of the same run.
//
// It runs as root (it mounts tmpfs and FUSE) from the repository's root.
// scripts/bench builds secretfs and the loop program, makes the scratch
// directory, runs this and cleans up after it: run it through that script.
// Times are measured here and nowhere else; the tests of this package
// assert counts only.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/secretfs/secretfs/internal/testserver"
)

type options struct {
	quick  bool
	out    string // the Markdown file to write
	binary string // the secretfs binary
	loop   string // internal/bench/loop/loop.c, compiled
	work   string // an empty scratch directory, removed by the caller
}

// sizes says how much of each measurement a run makes.
type sizes struct {
	mode       string
	hotRounds  int           // hot loops: rounds, each interleaved with tmpfs
	hotOps     int           // operations per round
	cold       int           // distinct secrets read once each on a fresh mount
	reads      int           // uncached (--ttl 0) and cached single reads timed
	peer       int           // nodecredstash getSecret calls timed
	writes     int           // writes timed
	listed     int           // secrets in the application listed with ls -l
	listRounds int           // ls -l runs, each on a fresh mount
	steady     time.Duration // how long the steady state reads
}

var (
	fullSizes = sizes{mode: "full", hotRounds: 15, hotOps: 5000, cold: 50, reads: 300, peer: 300,
		writes: 100, listed: 2500, listRounds: 5, steady: 30 * time.Second}
	// quickSizes keep the run short (CI runs it so that it keeps working);
	// its figures decide nothing.
	quickSizes = sizes{mode: "quick", hotRounds: 3, hotOps: 300, cold: 5, reads: 20, peer: 20,
		writes: 10, listed: 250, listRounds: 1, steady: 4 * time.Second}
)

const (
	valueSize     = 1024 // bytes of every secret read
	steadySecrets = 10
	steadyTTL     = 2 * time.Second
	defaultTTL    = 30 * time.Second // secretfs mount's --ttl default
	peerWarmup    = 5
	// The fleet the steady state is extrapolated to: hosts that each read
	// fleetApps applications like the measured one (steadySecrets secrets).
	fleetHosts = 1000
	fleetApps  = 2
)

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "measure briefly (for CI: the figures decide nothing)")
	flag.StringVar(&o.out, "out", "docs/BENCHMARKS.md", "the Markdown file to write")
	flag.StringVar(&o.binary, "binary", "bin/secretfs", "the secretfs binary to measure")
	flag.StringVar(&o.loop, "loop", "", "the compiled internal/bench/loop/loop.c")
	flag.StringVar(&o.work, "work", "", "an empty scratch directory (the caller removes it)")
	flag.Parse()
	if o.loop == "" || o.work == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: bench [--quick] [--out FILE] [--binary PATH] --loop PATH --work DIR (run it through scripts/bench)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{ctx: ctx, opt: o, n: fullSizes}
	if o.quick {
		b.n = quickSizes
	}
	err := b.run()
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is one run.
type bench struct {
	ctx     context.Context
	opt     options
	n       sizes
	root    string // the repository
	exits   []func()
	mounts  int  // mounts made so far, to name their directories
	metrics bool // the binary serves daemon request counts (--metrics-addr)
	tmpfs   string
	srv     *servers
	res     results
}

// atExit registers f to run at the end of the run, however it ends, in
// the reverse order of registration.
func (b *bench) atExit(f func()) { b.exits = append(b.exits, f) }

func (b *bench) cleanup() {
	for i := len(b.exits) - 1; i >= 0; i-- {
		b.exits[i]()
	}
	b.exits = nil
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func (b *bench) run() error {
	var err error
	if b.root, err = testserver.RepoRoot(); err != nil {
		return err
	}
	help, err := exec.Command(b.opt.binary, "mount", "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s mount --help: %w\n%s", b.opt.binary, err, help)
	}
	b.metrics = strings.Contains(string(help), "--metrics-addr")
	if b.res.machine, err = b.machine(); err != nil {
		return err
	}
	if b.tmpfs, err = b.mountTmpfs(); err != nil {
		return err
	}
	if err := b.tmpfsFiles(); err != nil {
		return err
	}
	b.progress("starting dynalite and local-kms")
	if b.srv, err = startServers(); err != nil {
		return err
	}
	b.atExit(b.srv.close)

	local := backend{name: "local", flags: []string{"--backend", "local", "--data-dir", filepath.Join(b.opt.work, "data")}}
	alias, err := b.srv.newKey(b.ctx, "secretfs-bench")
	if err != nil {
		return err
	}
	dynamo := backend{name: "dynamodb", env: b.srv.env(),
		flags: []string{"--backend", "dynamodb", "--table", "secretfs-bench", "--kms-key", alias, "--region", testserver.Region}}
	for _, be := range []backend{local, dynamo} {
		if _, err := b.cli(be, "init"); err != nil {
			return err
		}
		for _, step := range []func(backend) error{b.populate, b.hot, b.reads, b.list} {
			if err := step(be); err != nil {
				return fmt.Errorf("%s backend: %w", be.name, err)
			}
		}
	}
	if err := b.steady(dynamo); err != nil {
		return err
	}
	if err := b.peer(); err != nil {
		return err
	}

	report := b.report()
	if err := os.MkdirAll(filepath.Dir(b.opt.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(b.opt.out, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Print(report)
	b.progress("wrote %s", b.opt.out)
	return nil
}

// value is the content of every secret read: valueSize printable bytes.
var value = bytes.Repeat([]byte("x"), valueSize)

// Applications and secrets, the same on tmpfs and in each backend.
const (
	hotSecret   = "bench/hot"     // read hot, uncached and cached
	writeTarget = "bench/written" // rewritten by the write loop
	coldApp     = "cold"          // cold/c-000...: each read once, cold
	listApp     = "many"          // many/s-0000...: listed
	steadyApp   = "steady"        // steady/s-0...: read at steady state
)

func numbered(app, prefix string, n, width int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s/%s-%0*d", app, prefix, width, i)
	}
	return names
}

// tmpfsFiles lays out on tmpfs what the baselines read and list.
func (b *bench) tmpfsFiles() error {
	for _, app := range []string{"bench", listApp} {
		if err := os.Mkdir(filepath.Join(b.tmpfs, app), 0o700); err != nil {
			return err
		}
	}
	for _, name := range append([]string{hotSecret}, numbered(listApp, "s", b.n.listed, 4)...) {
		if err := os.WriteFile(filepath.Join(b.tmpfs, name), value, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// cost is what something cost, per operation: calls to each server by
// API operation, and the daemon's requests by FUSE operation (nil when
// the binary does not count them).
type cost struct {
	dynamo, kms, requests counts
}

// calls is the calls to both servers (their operations' names differ).
func (c cost) calls() counts { return sum(c.dynamo, c.kms) }

func (c cost) plus(d cost) cost {
	r := cost{dynamo: sum(c.dynamo, d.dynamo), kms: sum(c.kms, d.kms)}
	if d.requests != nil {
		r.requests = sum(c.requests, d.requests)
	}
	return r
}

// snap is what has been counted so far; m is the mount whose requests
// count (nil: none).
func (b *bench) snap(m *mount) (cost, error) {
	c := cost{dynamo: counts{}, kms: counts{}}
	for op, n := range b.srv.dynamo.Counts() {
		c.dynamo[op] = float64(n)
	}
	for op, n := range b.srv.kms.Counts() {
		c.kms[op] = float64(n)
	}
	if m == nil {
		return c, nil
	}
	r, err := m.requests()
	if r != nil {
		c.requests = counts(r)
	}
	return c, err
}

// since is what was counted between before and c, divided by n: per
// operation when n operations were made.
func (c cost) since(before cost, n float64) cost {
	d := cost{dynamo: c.dynamo.minus(before.dynamo).per(n), kms: c.kms.minus(before.kms).per(n)}
	if c.requests != nil {
		d.requests = c.requests.minus(before.requests).per(n)
	}
	return d
}

// counted runs f, which makes n operations, and returns what they cost
// each, with m's requests (m nil: none).
func (b *bench) counted(m *mount, n float64, f func() error) (cost, error) {
	before, err := b.snap(m)
	if err != nil {
		return cost{}, err
	}
	if err := f(); err != nil {
		return cost{}, err
	}
	after, err := b.snap(m)
	if err != nil {
		return cost{}, err
	}
	return after.since(before, n), nil
}

// populate writes, through a read-write mount, every secret the other
// steps read, and times writes on the way.
func (b *bench) populate(be backend) error {
	b.progress("%s: writing the secrets (%d to list)", be.name, b.n.listed)
	m, err := b.mount(be)
	if err != nil {
		return err
	}
	for _, app := range []string{"bench", coldApp, listApp, steadyApp} {
		if err := os.Mkdir(m.path(app), 0o700); err != nil {
			return err
		}
	}
	if err := b.write(be, m); err != nil {
		return err
	}
	names := append([]string{hotSecret}, numbered(coldApp, "c", b.n.cold, 3)...)
	names = append(names, numbered(steadyApp, "s", steadySecrets, 1)...)
	names = append(names, numbered(listApp, "s", b.n.listed, 4)...)
	if err := writeAll(b.ctx, m, names); err != nil {
		return err
	}
	return m.stop()
}

// writeAll writes value to each name through m, a few at a time.
func writeAll(ctx context.Context, m *mount, names []string) error {
	const writers = 4
	work := make(chan string)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				if err := os.WriteFile(m.path(name), value, 0o600); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, name := range names {
		select {
		case work <- name:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs // nil once closed and empty
	}
	return err
}

// write times rewriting a secret of valueSize bytes (what `echo value >
// file` does) through m and on tmpfs.
func (b *bench) write(be backend, m *mount) error {
	b.progress("%s: writes", be.name)
	target, base := m.path(writeTarget), filepath.Join(b.tmpfs, writeTarget)
	// The first write creates the secret; the timed ones rewrite it.
	for _, p := range []string{target, base} {
		if _, err := b.runLoop("write", "1", p); err != nil {
			return err
		}
	}
	var samples []float64
	c, err := b.counted(m, float64(b.n.writes), func() (err error) {
		samples, err = b.runLoop("-s", "write", fmt.Sprint(b.n.writes), target)
		return err
	})
	if err != nil {
		return err
	}
	baseline, err := b.runLoop("-s", "write", fmt.Sprint(b.n.writes), base)
	if err != nil {
		return err
	}
	b.res.writes = append(b.res.writes, opResult{backend: be, d: summarize(samples), base: summarize(baseline), cost: c})
	return nil
}

// hot times loops of open+read+close and of stat on a secret already
// read, on a read-only and a read-write mount, against the same loop on
// tmpfs, rounds of each interleaved.
func (b *bench) hot(be backend) error {
	b.progress("%s: hot reads and stats (%d rounds of %d)", be.name, b.n.hotRounds, b.n.hotOps)
	ro, err := b.mount(be, "--read-only")
	if err != nil {
		return err
	}
	rw, err := b.mount(be)
	if err != nil {
		return err
	}
	config := filepath.Join(b.opt.work, "watched.yaml")
	if err := os.WriteFile(config, []byte(watchedConfig), 0o600); err != nil {
		return err
	}
	watched, err := b.mount(be, "--read-only", "--config", config)
	if err != nil {
		return err
	}
	targets := []struct {
		mount string
		m     *mount
		path  string
	}{
		{"tmpfs", nil, filepath.Join(b.tmpfs, hotSecret)},
		{"read-only", ro, ro.path(hotSecret)},
		{"read-write", rw, rw.path(hotSecret)},
		{watchedMount, watched, watched.path(hotSecret)},
		{watchedMount + ": a view", watched, watched.path(hotView)},
	}
	for _, op := range []string{"read", "stat"} {
		for _, t := range targets {
			if _, err := b.runLoop(op, "3", t.path); err != nil { // now hot
				return err
			}
		}
		means := map[string][]float64{}
		costs := map[string]cost{}
		for range b.n.hotRounds {
			for _, t := range targets {
				var mean []float64
				c, err := b.counted(t.m, float64(b.n.hotRounds*b.n.hotOps), func() (err error) {
					mean, err = b.runLoop(op, fmt.Sprint(b.n.hotOps), t.path)
					return err
				})
				if err != nil {
					return err
				}
				means[t.mount] = append(means[t.mount], mean[0])
				costs[t.mount] = costs[t.mount].plus(c)
			}
		}
		for _, t := range targets[1:] {
			b.res.hot = append(b.res.hot, hotResult{op: op, mount: t.mount, opResult: opResult{
				backend: be, d: summarize(means[t.mount]), base: summarize(means["tmpfs"]), cost: costs[t.mount]}})
		}
	}
	for _, m := range []*mount{ro, rw} {
		if err := m.stop(); err != nil {
			return err
		}
	}
	return watched.stop()
}

// A read-only mount whose configuration file watches every application,
// which makes it read-only per mount rather than per file system (its
// change signals are changes through a clone of the mount), and renders
// hotView from hotSecret, byte for byte.
const (
	hotView       = "bench/view"
	watchedMount  = "read-only, --config"
	watchedConfig = "watch:\n  - \"*\"\nviews:\n  - path: " + hotView + "\n    template: '{{ secret \"" + hotSecret + "\" }}'\n"
)

// sum adds b to a, name by name.
func sum(a, b counts) counts {
	c := counts{}
	for k, v := range a {
		c[k] += v
	}
	for k, v := range b {
		c[k] += v
	}
	return c
}

// reads times single reads (open+read+close) of valueSize bytes: cold
// (each secret's first read on a fresh mount), uncached (--ttl 0) and
// cached (a hot secret on a default mount).
func (b *bench) reads(be backend) error {
	b.progress("%s: cold, uncached and cached reads", be.name)
	cold, err := b.mount(be)
	if err != nil {
		return err
	}
	// The application is looked up first: what is counted is each
	// secret's own cost.
	if _, err := os.Stat(cold.path(coldApp)); err != nil {
		return err
	}
	var paths []string
	for _, name := range numbered(coldApp, "c", b.n.cold, 3) {
		paths = append(paths, cold.path(name))
	}
	if err := b.timeReads(be, cold, "cold: a secret's first read on a fresh mount", 1, paths...); err != nil {
		return err
	}
	if err := cold.stop(); err != nil {
		return err
	}

	for _, c := range []struct {
		what  string
		flags []string
	}{
		{"uncached: `--ttl 0`", []string{"--ttl", "0"}},
		{"cached: a secret read before, default `--ttl`", nil},
	} {
		m, err := b.mount(be, c.flags...)
		if err != nil {
			return err
		}
		if _, err := b.runLoop("read", "1", m.path(hotSecret)); err != nil {
			return err
		}
		if err := b.timeReads(be, m, c.what, b.n.reads, m.path(hotSecret)); err != nil {
			return err
		}
		if err := m.stop(); err != nil {
			return err
		}
	}
	return nil
}

// timeReads times each open+read+close of passes over paths on m.
func (b *bench) timeReads(be backend, m *mount, what string, passes int, paths ...string) error {
	var samples []float64
	c, err := b.counted(m, float64(passes*len(paths)), func() (err error) {
		samples, err = b.runLoop(append([]string{"-s", "read", fmt.Sprint(passes)}, paths...)...)
		return err
	})
	if err != nil {
		return err
	}
	b.res.reads = append(b.res.reads, readResult{what: what, opResult: opResult{backend: be, d: summarize(samples), cost: c}})
	return nil
}

// list times `ls -l` of an application of b.n.listed secrets, each run on
// a fresh mount, against ls -l of as many files on tmpfs.
func (b *bench) list(be backend) error {
	b.progress("%s: ls -l of %d secrets", be.name, b.n.listed)
	var times, baseline []float64
	var total cost
	for range b.n.listRounds {
		m, err := b.mount(be)
		if err != nil {
			return err
		}
		c, err := b.counted(m, float64(b.n.listRounds), func() error {
			d, err := b.ls(m.path(listApp))
			times = append(times, d)
			return err
		})
		if err != nil {
			return err
		}
		total = total.plus(c)
		if err := m.stop(); err != nil {
			return err
		}
	}
	if _, err := b.ls(filepath.Join(b.tmpfs, listApp)); err != nil {
		return err
	}
	for range b.n.listRounds {
		d, err := b.ls(filepath.Join(b.tmpfs, listApp))
		if err != nil {
			return err
		}
		baseline = append(baseline, d)
	}
	b.res.lists = append(b.res.lists, opResult{backend: be, d: summarize(times), base: summarize(baseline), cost: total})
	return nil
}

// ls runs ls -l dir, checks that it listed b.n.listed entries, and returns
// how long it took in nanoseconds.
func (b *bench) ls(dir string) (float64, error) {
	cmd := exec.CommandContext(b.ctx, "ls", "-l", dir)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	start := time.Now()
	out, err := cmd.Output()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("ls -l %s: %w", dir, err)
	}
	// "total N", then one line a file.
	if lines := bytes.Count(out, []byte("\n")) - 1; lines != b.n.listed {
		return 0, fmt.Errorf("ls -l %s listed %d entries, want %d", dir, lines, b.n.listed)
	}
	return float64(d.Nanoseconds()), nil
}

// steady reads steadySecrets unchanged secrets in a loop for b.n.steady
// on a mount with --ttl steadyTTL, and counts the backend calls.
func (b *bench) steady(be backend) error {
	b.progress("%s: steady state (%s, --ttl %s)", be.name, b.n.steady, steadyTTL)
	m, err := b.mount(be, "--ttl", steadyTTL.String())
	if err != nil {
		return err
	}
	var paths []string
	for _, name := range numbered(steadyApp, "s", steadySecrets, 1) {
		paths = append(paths, m.path(name))
	}
	for _, p := range paths { // now cached
		if _, err := os.ReadFile(p); err != nil {
			return err
		}
	}
	r := steadyResult{backend: be}
	r.cost, err = b.counted(m, 1, func() error {
		start := time.Now()
		for time.Since(start) < b.n.steady {
			if err := b.ctx.Err(); err != nil {
				return err
			}
			for _, p := range paths {
				got, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, value) {
					return fmt.Errorf("%s: read %d bytes that are not the value written", p, len(got))
				}
				r.reads++
			}
		}
		r.window = time.Since(start)
		return nil
	})
	if err != nil {
		return err
	}
	b.res.steady = append(b.res.steady, r)
	return m.stop()
}

// peer times nodecredstash reading a credstash secret of valueSize bytes
// (its latest version, as credstash's `get` does) from the same servers,
// and counts its calls.
func (b *bench) peer() error {
	b.progress("nodecredstash: %d getSecret calls", b.n.peer)
	alias, err := b.srv.newKey(b.ctx, "credstash-bench")
	if err != nil {
		return err
	}
	common := []string{"--table", "credential-store-bench", "--name", "bench-hot", "--size", fmt.Sprint(valueSize)}
	var setup map[string]any
	if err := b.srv.runPeer(b.ctx, b.root, &setup, append([]string{"setup", "--kms-key", alias}, common...)...); err != nil {
		return err
	}
	var run peerRun
	before, err := b.snap(nil)
	if err != nil {
		return err
	}
	if err := b.srv.runPeer(b.ctx, b.root, &run, append([]string{"get", "--n", fmt.Sprint(b.n.peer), "--warmup", fmt.Sprint(peerWarmup)}, common...)...); err != nil {
		return err
	}
	if run.Calls == 0 || len(run.SamplesNS) != b.n.peer {
		return errors.New("peer.js get timed nothing")
	}
	after, err := b.snap(nil)
	if err != nil {
		return err
	}
	b.res.peer = &opResult{d: summarize(run.SamplesNS), cost: after.since(before, float64(run.Calls))}
	return nil
}
