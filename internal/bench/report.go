package main

import (
	"cmp"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/secretfs/secretfs/internal/testserver"
)

// opResult is one measured operation: its times on secretfs and on the
// baseline (tmpfs, when there is one), and what each cost.
type opResult struct {
	backend backend
	d, base dist
	cost    cost
}

type hotResult struct {
	op    string // "read" (open+read+close) or "stat"
	mount string // "read-only", "read-write" or watchedMount (a secret, or ": a view")
	opResult
}

type readResult struct {
	what string
	opResult
}

// steadyResult is what reading unchanged secrets for a window cost, in
// all (not per read).
type steadyResult struct {
	backend backend
	window  time.Duration
	reads   int
	cost    cost
}

type results struct {
	machine       [][2]string
	hot           []hotResult
	reads         []readResult
	writes, lists []opResult
	steady        []steadyResult
	peer          *opResult // nodecredstash getSecret
}

// machine names what the figures were measured on and with.
func (b *bench) machine() ([][2]string, error) {
	cpu := "unknown"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return nil, err
	}
	memory := "unknown"
	if info, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(info), "MemTotal: %d kB", &kb); err == nil {
			memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}

	commit := strings.TrimSpace(output("git", "describe", "--always", "--dirty", "--abbrev=12"))
	goFuse := "unknown"
	if info, err := buildinfo.ReadFile(b.opt.binary); err == nil {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/hanwen/go-fuse/v2" {
				goFuse = dep.Version
			}
		}
	}
	daemon := "from the mount's `/metrics` (`--metrics-addr`)"
	if !b.metrics {
		daemon = "not available: this secretfs has no `--metrics-addr`"
	}
	n := b.n
	return [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"CPU", fmt.Sprintf("%s, %d cores", cpu, runtime.NumCPU())},
		{"memory", memory},
		{"kernel", fmt.Sprintf("Linux %s (%s)", strings.TrimSpace(string(release)), runtime.GOARCH)},
		{"Go", runtime.Version()},
		{"secretfs", fmt.Sprintf("commit %s, go-fuse %s", commit, goFuse)},
		{"servers", fmt.Sprintf("dynalite %s and local-kms %s on loopback, each behind the call-counting proxy of internal/testserver",
			npmVersion(filepath.Join(b.root, "internal", "testserver"), "dynalite"), testserver.LocalKMSVersion)},
		{"peer", fmt.Sprintf("nodecredstash %s (aws-sdk %s) on node %s",
			npmVersion(filepath.Join(b.root, "internal", "bench", "peer"), "nodecredstash"),
			npmVersion(filepath.Join(b.root, "internal", "bench", "peer"), "aws-sdk"),
			strings.TrimSpace(output("node", "--version")))},
		{"load average", "at the start " + loadavg() + " (1, 5, 15 min)"},
		{"daemon requests", daemon},
		{"run", fmt.Sprintf("%s: hot loops %d rounds × %s operations; %d cold reads; %d uncached, cached and nodecredstash reads each; %d writes; ls -l %d× of %s secrets; steady state %s",
			n.mode, n.hotRounds, thousands(int64(n.hotOps)), n.cold, n.reads, n.writes, n.listRounds, thousands(int64(n.listed)), n.steady)},
	}, nil
}

// loadavg is the machine's load over the last 1, 5 and 15 minutes: other
// work running meanwhile skews the figures.
func loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

func output(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return string(out)
}

// npmVersion is the version of package pkg installed under dir.
func npmVersion(dir, pkg string) string {
	raw, err := os.ReadFile(filepath.Join(dir, "node_modules", pkg, "package.json"))
	if err != nil {
		return "unknown"
	}
	var p struct{ Version string }
	if json.Unmarshal(raw, &p) != nil {
		return "unknown"
	}
	return p.Version
}

// rank orders backends: the remote one first.
func rank(be backend) int {
	if be.remote() {
		return 0
	}
	return 1
}

// table writes a Markdown table.
func table(w *strings.Builder, header []string, rows [][]string) {
	line := func(cells []string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	w.WriteString("\n")
}

// calls is a cell of backend calls: none on the local backend, whose
// store is a file.
func (r opResult) calls() string {
	if !r.backend.remote() {
		return "– (local store)"
	}
	return r.cost.calls().String()
}

func (r opResult) requests() string {
	switch {
	case r.cost.requests == nil:
		return "not available"
	case len(r.cost.requests) == 0:
		return "0"
	}
	return fmt.Sprintf("%s (%s)", num(r.cost.requests.total()), r.cost.requests)
}

func (b *bench) report() string {
	var w strings.Builder
	r := b.res
	mode := ""
	if b.opt.quick {
		mode = " --quick (brief: these figures decide nothing)"
	}
	fmt.Fprintf(&w, "# Benchmarks\n\n")
	fmt.Fprintf(&w, "Written by `scripts/bench`%s. Every ratio compares two figures measured in the same run, on this machine; "+
		"backend calls are counted by the proxies in front of dynalite and local-kms, never by secretfs itself. "+
		"Tests assert counts; times live here only. Targets are those of issue 7.\n\n", mode)
	var rows [][]string
	for _, kv := range r.machine {
		if kv[0] == "load average" {
			kv[1] += "; at the end " + loadavg()
		}
		rows = append(rows, []string{kv[0], kv[1]})
	}
	table(&w, []string{"machine", ""}, rows)

	w.WriteString("## Hot paths against tmpfs\n\n")
	fmt.Fprintf(&w, "A C loop (`internal/bench/loop`) makes %s operations a round on a secret of %d bytes already read, or on the same file on a tmpfs mounted for the run; "+
		"rounds alternate tmpfs, a `--read-only` mount, a read-write mount and a `--read-only` mount with a configuration file (`--config`) that watches every application, "+
		"which makes it read-only per mount rather than per file system, and renders a view, `"+hotView+"`, from the same secret, byte for byte (all default `--ttl`, one store). "+
		"Times are the median of the %d per-round means (lowest–highest); daemon requests are per operation.\n\n",
		thousands(int64(b.n.hotOps)), valueSize, b.n.hotRounds)
	rows = nil
	for _, h := range r.hot {
		what, target := "open+read+close", "≤ 1.5× tmpfs, 0 daemon requests"
		if h.op == "stat" {
			what, target = "stat", "≤ 1.2× tmpfs"
		} else if h.mount == "read-write" {
			target = "≤ 1 daemon request waited for"
		}
		rows = append(rows, []string{what, h.mount, h.backend.name, h.d.medianRange(), h.base.medianRange(), ratio(h.d.median, h.base.median), h.requests(), target})
	}
	table(&w, []string{"what", "mount", "backend", "secretfs", "tmpfs", "ratio", "daemon requests", "target"}, rows)
	w.WriteString("On a read-write mount a hot read waits for one request, the OPEN: the page cache answers the read, and the kernel sends " +
		"the RELEASE once close(2) has returned, without waiting for its answer (fs: `TestAHotReadOnAReadWriteMountWaitsForTheOpenAlone` " +
		"holds every RELEASE, and the read returns). The kernel sends a RELEASE for every file it sent an OPEN for; only a mount that " +
		"answers no OPEN at all, a read-only one, is sent neither.\n\n")

	w.WriteString("## Reads, and their backend calls, against nodecredstash\n\n")
	fmt.Fprintf(&w, "Single open+read+close of a %d-byte secret, each timed: median (p90). "+
		"Cold: %d secrets, each read once on a fresh mount, after their application was looked up. "+
		"nodecredstash: `getSecret` of the latest version of a credstash secret of the same size, stored by it in its own table on the same servers, "+
		"%d calls one after another in one node process, after %d untimed ones. Calls and requests are per read.\n\n",
		valueSize, b.n.cold, b.n.peer, peerWarmup)
	rows = nil
	peer := 0.0
	if r.peer != nil {
		peer = r.peer.d.median
		rows = append(rows, []string{"nodecredstash `getSecret`", "dynamodb", r.peer.d.medianP90(), "1×", r.peer.cost.calls().String(), "–"})
	}
	// DynamoDB's rows next to the peer's, which reads from DynamoDB too.
	remoteFirst := func(a, b readResult) int { return cmp.Compare(rank(a.backend), rank(b.backend)) }
	for _, rd := range slices.SortedStableFunc(slices.Values(r.reads), remoteFirst) {
		rows = append(rows, []string{"secretfs " + rd.what, rd.backend.name, rd.d.medianP90(), ratio(rd.d.median, peer), rd.calls(), rd.requests()})
	}
	table(&w, []string{"reader", "backend", "latency", "× nodecredstash", "backend calls", "daemon requests"}, rows)
	w.WriteString("Target: a cold read costs exactly 1 store read and 1 key unwrap (KMS Decrypt).\n\n")

	fmt.Fprintf(&w, "## `ls -l` of an application of %s secrets\n\n", thousands(int64(b.n.listed)))
	fmt.Fprintf(&w, "`ls -l` (GNU coreutils, LC_ALL=C), each of %d runs on a fresh mount, against `ls -l` of as many files on tmpfs: median (lowest–highest). Calls and requests are per `ls -l`.\n\n", b.n.listRounds)
	rows = nil
	for _, l := range r.lists {
		rows = append(rows, []string{l.backend.name, l.d.medianRange(), l.base.medianRange(), ratio(l.d.median, l.base.median), l.calls(), l.requests()})
	}
	table(&w, []string{"backend", "secretfs", "tmpfs", "ratio", "backend calls", "daemon requests"}, rows)
	w.WriteString("Target: Query pages only; no key unwraps and no per-file reads.\n\n")

	w.WriteString("## Writes\n\n")
	fmt.Fprintf(&w, "open(O_WRONLY|O_CREAT|O_TRUNC), write of %d bytes, close: what `echo value > file` does, rewriting an existing secret, %d times, each timed: median (p90). Calls and requests are per write.\n\n", valueSize, b.n.writes)
	rows = nil
	for _, wr := range r.writes {
		rows = append(rows, []string{wr.backend.name, wr.d.medianP90(), wr.base.medianP90(), ratio(wr.d.median, wr.base.median), wr.calls(), wr.requests()})
	}
	table(&w, []string{"backend", "secretfs", "tmpfs", "ratio", "backend calls", "daemon requests"}, rows)
	w.WriteString("Target: 1 data-key generation (KMS GenerateDataKey) and 1 conditional write (PutItem).\n\n")

	for _, st := range r.steady {
		b.steadyReport(&w, st)
	}
	return w.String()
}

// steadyReport extrapolates the calls of the steady state: per hour at the
// measured TTL, at the default TTL (calls per TTL period being the same),
// and for a fleet of hosts each reading fleetApps applications like the
// measured one.
func (b *bench) steadyReport(w *strings.Builder, st steadyResult) {
	fmt.Fprintf(w, "## Steady state: unchanged secrets read in a loop (%s)\n\n", st.backend.name)
	secs := st.window.Seconds()
	fmt.Fprintf(w, "%d unchanged secrets of one application, read in a loop (Go, os.ReadFile) for %.1f s on a mount with `--ttl %s`: %s reads (%s a second). "+
		"Per hour at the default `--ttl %s` assumes the mount makes the same calls per TTL period; "+
		"the fleet is %s hosts each reading %d applications like this one.\n\n",
		steadySecrets, secs, steadyTTL, thousands(int64(st.reads)), thousands(int64(float64(st.reads)/secs)), defaultTTL, thousands(fleetHosts), fleetApps)
	perHour := 3600 / secs
	atDefault := perHour * steadyTTL.Seconds() / defaultTTL.Seconds()
	fleet := atDefault * fleetApps * fleetHosts
	row := func(what string, k float64) []string {
		return []string{what, num(st.cost.dynamo.total() * k), st.cost.dynamo.per(1 / k).String(), num(st.cost.kms.total() * k), st.cost.kms.per(1 / k).String()}
	}
	table(w, []string{"", "DynamoDB calls", "by operation", "KMS calls", "by operation"}, [][]string{
		row(fmt.Sprintf("measured, %.1f s, `--ttl %s`", secs, steadyTTL), 1),
		row(fmt.Sprintf("per hour, `--ttl %s`", steadyTTL), perHour),
		row(fmt.Sprintf("per hour, `--ttl %s`", defaultTTL), atDefault),
		row(fmt.Sprintf("fleet per hour, `--ttl %s`", defaultTTL), fleet),
		row(fmt.Sprintf("fleet per second, `--ttl %s`", defaultTTL), fleet/3600),
	})
	daemon := "not available"
	if st.cost.requests != nil {
		daemon = num(st.cost.requests.total()/float64(st.reads)) + " a read"
	}
	fmt.Fprintf(w, "Daemon requests meanwhile: %s. Target: 0 KMS calls, and at most one DynamoDB request per application per TTL, whatever the read rate.\n\n", daemon)
}
