package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fuseSuperMagic is what statfs says of a FUSE mount (f_type).
const fuseSuperMagic = 0x65735546

// backend is where a mount keeps its secrets: the flags and environment
// every secretfs command needs to reach it.
type backend struct {
	name  string // "local" or "dynamodb"
	flags []string
	env   []string
}

// remote reports whether the backend is reached over the network, through
// the counting proxies.
func (be backend) remote() bool { return be.name == "dynamodb" }

// cli runs a secretfs verb against be and returns its output.
func (b *bench) cli(be backend, args ...string) (string, error) {
	cmd := exec.CommandContext(b.ctx, b.opt.binary, append(args, be.flags...)...)
	cmd.Env = append(os.Environ(), be.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("secretfs %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mount is one running `secretfs mount`.
type mount struct {
	dir     string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
	// metrics is the daemon's /metrics URL; empty when the binary serves
	// none.
	metrics string
}

// mount starts `secretfs mount` on a new directory with be's flags and
// extra, waits until it is mounted, and registers its stop as a cleanup.
func (b *bench) mount(be backend, extra ...string) (*mount, error) {
	b.mounts++
	dir := filepath.Join(b.opt.work, fmt.Sprintf("mnt-%d-%s", b.mounts, be.name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	m := &mount{dir: dir, logPath: dir + ".log", exited: make(chan struct{})}
	args := append([]string{"mount", dir}, be.flags...)
	args = append(args, extra...)
	if b.metrics {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args = append(args, "--metrics-addr", addr)
		m.metrics = "http://" + addr + "/metrics"
	}
	log, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	m.cmd = exec.Command(b.opt.binary, args...)
	m.cmd.Env = append(os.Environ(), be.env...)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	// The mount dies with this program, however it ends.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { m.waitErr = m.cmd.Wait(); close(m.exited) }()
	b.atExit(func() { m.stop() })

	deadline := time.Now().Add(30 * time.Second)
	for {
		var st syscall.Statfs_t
		if syscall.Statfs(dir, &st) == nil && st.Type == fuseSuperMagic {
			break
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("secretfs %s exited before mounting: %v\n%s", strings.Join(args, " "), m.waitErr, m.log())
		case <-b.ctx.Done():
			return nil, b.ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("secretfs did not mount %s within 30s\n%s", dir, m.log())
		}
	}
	if m.metrics != "" {
		// Listing the root surely reaches the daemon; from then on its
		// counter must be there, or requests would read as 0.
		if _, err := os.ReadDir(dir); err != nil {
			return nil, err
		}
		if _, err := m.requests(); err != nil {
			return nil, fmt.Errorf("secretfs has --metrics-addr, but its daemon requests cannot be read: %w", err)
		}
	}
	return m, nil
}

// path is the absolute path of rel inside the mount.
func (m *mount) path(rel string) string { return filepath.Join(m.dir, rel) }

func (m *mount) log() string {
	out, _ := os.ReadFile(m.logPath)
	return string(out)
}

// stop unmounts: SIGTERM, then after 20s SIGKILL; a mount still there
// after the process is gone is detached. Stopping twice is harmless.
func (m *mount) stop() error {
	select {
	case <-m.exited:
	default:
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(20 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
	var st syscall.Statfs_t
	if syscall.Statfs(m.dir, &st) == nil && st.Type == fuseSuperMagic {
		_ = syscall.Unmount(m.dir, syscall.MNT_DETACH)
	}
	if m.waitErr != nil {
		return fmt.Errorf("secretfs mount %s: %w\n%s", m.dir, m.waitErr, m.log())
	}
	return nil
}

// requests returns the daemon's request counters by FUSE operation, from
// its Prometheus metrics; nil when the binary serves none.
func (m *mount) requests() (map[string]float64, error) {
	if m.metrics == "" {
		return nil, nil
	}
	resp, err := http.Get(m.metrics)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", m.metrics, resp.Status)
	}
	return parseRequests(resp.Body)
}

// requestsMetric counts the requests the kernel sent the daemon, labelled
// by operation: secretfs_fuse_requests_total{op="LOOKUP"} 12.
const requestsMetric = "secretfs_fuse_requests_total"

// parseRequests reads requestsMetric from Prometheus text exposition.
func parseRequests(r io.Reader) (map[string]float64, error) {
	byOp := map[string]float64{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		rest, ok := strings.CutPrefix(line, requestsMetric)
		if !ok {
			continue // a comment or another metric
		}
		op := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			labels, after, ok := strings.Cut(rest[1:], "}")
			if !ok {
				return nil, fmt.Errorf("%s: unclosed labels in %q", requestsMetric, line)
			}
			op, rest = label(labels, "op"), after
		case strings.HasPrefix(rest, " "):
		default:
			continue // a metric whose name only starts so
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%s: no value in %q", requestsMetric, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", requestsMetric, line, err)
		}
		byOp[op] += v
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if len(byOp) == 0 {
		return nil, errors.New("the metrics have no " + requestsMetric)
	}
	return byOp, nil
}

// label returns the value of label name in a Prometheus label set
// (a="x",b="y"); values here hold no commas or escaped quotes.
func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// freeAddr is a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// mountTmpfs mounts a tmpfs on a new directory, the baseline every hot
// path is compared with, and registers its unmount as a cleanup.
func (b *bench) mountTmpfs() (string, error) {
	dir := filepath.Join(b.opt.work, "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=512m,mode=0700"); err != nil {
		return "", fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	b.atExit(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir, nil
}

// runLoop runs the compiled loop program (internal/bench/loop) and
// returns what it printed, a number a line.
func (b *bench) runLoop(args ...string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.opt.loop, args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("loop %s: %w", strings.Join(args, " "), err)
	}
	var nums []float64
	for _, f := range strings.Fields(string(out)) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("loop %s printed %q", strings.Join(args, " "), out)
		}
		nums = append(nums, v)
	}
	return nums, nil
}
