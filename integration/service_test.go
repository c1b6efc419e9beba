package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Running secretfs as a service (issue 8): its Prometheus metrics, its
// health check, and a consumer in a mount namespace of its own that keeps
// reading while the daemon is killed and started again.

// httpGet GETs path from the mount's metrics server: the status code and
// the body.
func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// healthz GETs the mount's /healthz: the status code and the body.
func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	return httpGet(t, addr, "/healthz")
}

// scrapeMetrics GETs the mount's /metrics and parses it with Prometheus'
// own text parser. It returns the raw body too, to be searched.
func scrapeMetrics(t *testing.T, addr string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	code, body := httpGet(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v\n%s", err, body)
	}
	return body, families
}

// sampleSum adds up the values of the samples of family name whose labels
// include every label in want.
func sampleSum(families map[string]*dto.MetricFamily, name string, want map[string]string) (sum float64, samples int) {
	f := families[name]
	if f == nil {
		return 0, 0
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		matches := true
		for k, v := range want {
			if labels[k] != v {
				matches = false
			}
		}
		if !matches {
			continue
		}
		samples++
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, samples
}

// A cold read on a DynamoDB mount, seen in /metrics as Prometheus parses
// it: names follow the conventions, the read cost exactly one GetItem and
// one Decrypt (as the servers themselves counted), the FUSE requests and
// the plaintext held are counted, and nothing names an application, a
// secret or a value.
func TestMetricsFollowPrometheusConventionsCountAColdReadAndNameNoSecret(t *testing.T) {
	b := dynamoBackend(t)
	app, name, value := unique("metricsapp"), unique("metricsname"), unique("metricsvalue")
	b.cli(t, []byte(value), "put", app+"/"+name)
	addr := metricsAddr(t)
	m := mount(t, b, "--metrics-addr", addr)
	m.secret(value)

	gets, decrypts := dynalite.Calls("GetItem"), localKMS.Calls("Decrypt")
	got, err := os.ReadFile(m.path(app + "/" + name))
	if err != nil || string(got) != value {
		t.Fatalf("cold read: %q, %v", got, err)
	}
	gets, decrypts = dynalite.Calls("GetItem")-gets, localKMS.Calls("Decrypt")-decrypts
	body, families := scrapeMetrics(t, addr)

	// Conventions.
	snake := regexp.MustCompile(`^secretfs_[a-z0-9]+(_[a-z0-9]+)*$`)
	ours := 0
	for fname, f := range families {
		if !strings.HasPrefix(fname, "secretfs_") {
			continue
		}
		ours++
		if !snake.MatchString(fname) {
			t.Errorf("%s: not a snake-case secretfs_ name", fname)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", fname)
		}
		counter := strings.HasSuffix(fname, "_total")
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			if !counter {
				t.Errorf("counter %s does not end in _total", fname)
			}
		case dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY:
			// Every distribution secretfs measures is a duration.
			if !strings.HasSuffix(fname, "_seconds") {
				t.Errorf("%s %s does not end in _seconds", f.GetType(), fname)
			}
		default:
			if counter {
				t.Errorf("%s %s ends in _total but is not a counter", f.GetType(), fname)
			}
		}
		for _, unit := range []string{"duration", "latency", "_time", "_millis", "_ms", "_us", "_ns", "_minutes"} {
			if strings.Contains(fname, unit) && !strings.Contains(fname, "_seconds") {
				t.Errorf("%s measures time but not in _seconds", fname)
			}
		}
	}
	if ours < 5 {
		t.Fatalf("only %d secretfs_ metric families in /metrics:\n%s", ours, body)
	}
	if info := families["secretfs_build_info"]; info == nil || len(info.GetMetric()) != 1 || info.GetType() != dto.MetricType_GAUGE {
		t.Errorf("secretfs_build_info is missing or not one gauge sample: %v", info)
	} else {
		s := info.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if s.GetGauge().GetValue() != 1 || labels["version"] == "" || !strings.HasPrefix(labels["goversion"], "go") {
			t.Errorf("secretfs_build_info: value %v, labels %v; want 1 with version and goversion", s.GetGauge().GetValue(), labels)
		}
	}

	// The cold read: one item read and one key unwrapped, by the mount's
	// count and by the servers'.
	requests := func(service, operation, result string) float64 {
		want := map[string]string{"service": service, "operation": operation}
		if result != "" {
			want["result"] = result
		}
		v, _ := sampleSum(families, "secretfs_backend_requests_total", want)
		return v
	}
	if v := requests("kms", "Decrypt", "ok"); v != 1 {
		t.Errorf(`secretfs_backend_requests_total{service="kms",operation="Decrypt",result="ok"} = %v after one cold read, want 1`, v)
	}
	if v := requests("kms", "Decrypt", ""); v != 1 {
		t.Errorf("Decrypt requests of every result: %v, want 1", v)
	}
	if v := requests("dynamodb", "GetItem", "ok"); v != 1 {
		t.Errorf(`secretfs_backend_requests_total{service="dynamodb",operation="GetItem",result="ok"} = %v after one cold read, want 1`, v)
	}
	if v := requests("dynamodb", "GetItem", ""); v != 1 {
		t.Errorf("GetItem requests of every result: %v, want 1", v)
	}
	if decrypts != 1 || gets != 1 {
		t.Errorf("the servers counted %d Decrypt and %d GetItem for one cold read, want 1 and 1", decrypts, gets)
	}
	for _, op := range []string{"LOOKUP", "READ"} {
		if v, n := sampleSum(families, "secretfs_fuse_requests_total", map[string]string{"op": op, "errno": "OK"}); n == 0 || v < 1 {
			t.Errorf(`secretfs_fuse_requests_total{op=%q,errno="OK"}: %d samples adding up to %v, want at least 1`, op, n, v)
		}
	}
	if v, n := sampleSum(families, "secretfs_secrets_decrypted", nil); n != 1 || v < 1 {
		t.Errorf("secretfs_secrets_decrypted: %d samples, value %v; want one, at least 1", n, v)
	}

	// Nothing names what the mount holds: no label value, and nowhere in
	// the body (HELP texts included).
	labels := 0
	for fname, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				labels++
				for _, word := range []string{app, name, value} {
					if strings.Contains(l.GetValue(), word) {
						t.Errorf("%s has a label %s=%q holding an application name, a secret name or a value", fname, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	if labels == 0 {
		t.Fatal("no labels at all in /metrics: the check above proves nothing")
	}
	for _, word := range []string{app, name, value} {
		if strings.Contains(body, word) {
			t.Errorf("/metrics holds an application name, a secret name or a value")
		}
	}
}

// /healthz answers 200 while the mount serves and its store answers; 503
// once calls that need the store have been failing for longer than
// --timeout (the store frozen, reads of a secret never read, so no stale
// answer hides the failure); and 200 again as soon as one read succeeded
// after the store came back. secretfs_healthy says the same.
func TestHealthzFailsWhileTheStoreIsFrozenAndRecoversAfterOneSuccessfulRead(t *testing.T) {
	b, own := ownDynamo(t, false, "--timeout", "1s")
	app := unique("healthapp")
	b.cli(t, []byte("known"), "put", app+"/known")
	b.cli(t, []byte("never read"), "put", app+"/unread")
	addr := metricsAddr(t)
	// --ttl 0: every open asks the store.
	m := mount(t, b, "--ttl", "0", "--metrics-addr", addr)
	healthy := func() float64 {
		_, families := scrapeMetrics(t, addr)
		v, n := sampleSum(families, "secretfs_healthy", nil)
		if n != 1 {
			t.Fatalf("secretfs_healthy has %d samples, want 1", n)
		}
		return v
	}

	// The mount logs "mounted" (what mount() waits for) a moment before
	// its /healthz learns that it serves.
	eventually(t, 5*time.Second, "/healthz of a fresh mount answers 200 ok", func() bool {
		code, body := healthz(t, addr)
		return code == http.StatusOK && body == "ok\n"
	})
	if got := m.mustSh("cat " + app + "/known"); got != "known" {
		t.Fatalf("read %q", got)
	}
	if code, body := healthz(t, addr); code != http.StatusOK || healthy() != 1 {
		t.Fatalf("/healthz while the store answers: %d %q", code, body)
	}

	own.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			own.Thaw()
		}
	}()
	failedReads := 0
	var code int
	var reason string
	eventually(t, 30*time.Second, "/healthz answers 503 while reads fail", func() bool {
		if code, reason = healthz(t, addr); code == http.StatusServiceUnavailable {
			return true
		}
		if code != http.StatusOK {
			t.Fatalf("/healthz answered %d %q, want 200 or 503", code, reason)
		}
		m.failSh("cat "+app+"/unread", "Input/output error")
		failedReads++
		return false
	})
	t.Logf("/healthz answered 503 after %d failed reads: %q", failedReads, reason)
	if failedReads == 0 {
		t.Errorf("/healthz answered 503 before any read failed")
	}
	if !strings.Contains(reason, "backend calls failing") || strings.Contains(reason, app) {
		t.Errorf("/healthz's reason is %q, want one that says backend calls fail and names no application", reason)
	}
	if v := healthy(); v != 0 {
		t.Errorf("secretfs_healthy is %v while /healthz answers 503", v)
	}

	own.Thaw()
	thawed = true
	// A read right after the thaw may still be refused at once (a call
	// that just failed is not retried for a second); it is not asked
	// about before one read succeeds.
	eventually(t, 30*time.Second, "a read succeeds once the store is thawed", func() bool {
		out, _, err := m.sh("cat " + app + "/unread")
		return err == nil && out == "never read"
	})
	if code, body := healthz(t, addr); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz after a successful read: %d %q, want 200 ok", code, body)
	}
	if v := healthy(); v != 1 {
		t.Errorf("secretfs_healthy is %v after a successful read, want 1", v)
	}
}

// mountEntry is one line of a mountinfo file.
type mountEntry struct {
	id                     int
	target, fstype, vfsOpt string
	optional               []string // shared:N, master:N...
}

// mountsAt returns the entries of /proc/<pid>/mountinfo mounted at target.
func mountsAt(t *testing.T, pid int, target string) []mountEntry {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []mountEntry
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 6 || len(fields) < sep+2 || unescapeMountPath(fields[4]) != target {
			continue
		}
		id, _ := strconv.Atoi(fields[0])
		found = append(found, mountEntry{id: id, target: target, fstype: fields[sep+1], vfsOpt: fields[5], optional: fields[6:sep]})
	}
	return found
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// consumerScript runs in the consumer's own mount namespace, as root at
// first: it does what the kubelet and the container runtime do for the
// consumer pod of docs/CONTAINERS.md (a hostPath volume of the directory
// holding the mountpoint, no subPath, HostToContainer, readOnly), then
// drops to uid and gid 1000 with no capabilities and reads the secret in
// a loop, printing "N ok VALUE" or "N error MESSAGE" for each read N. It
// stops when $STOP exists, when the test process is gone, or after 20000
// reads.
const consumerScript = `set -eu
mount --rbind "$HOST" "$CONT"
mount --make-rslave "$CONT"
mount -o remount,bind,ro "$CONT"
exec setpriv --reuid=1000 --regid=1000 --clear-groups --inh-caps=-all --bounding-set=-all sh -c '
echo "consumer uid $(id -u) gid $(id -g)"
if err=$( (echo x >"$CONT/secrets/$APP/db-password") 2>&1 ); then echo "write succeeded"; else echo "write refused: $err"; fi
i=0
while [ ! -e "$STOP" ] && [ -e "/proc/$TESTPID" ] && [ "$i" -lt 20000 ]; do
	i=$((i+1))
	if v=$(cat "$CONT/secrets/$APP/db-password" 2>&1); then echo "$i ok $v"; else echo "$i error $v"; fi
	sleep 0.02
done
echo "$i stopped"
'`

// consumerRead is one line of the consumer's loop.
type consumerRead struct {
	n    int
	ok   bool
	text string // the value read, or the error
}

// A container node, played with the tools a node has: the directory
// holding the mountpoint is a shared mount (the DaemonSet's Bidirectional
// hostPath); secretfs serves below it, read-only for uid 1000; a consumer
// in a mount namespace of its own (slave propagation, HostToContainer)
// reads through a read-only bind mount of that directory as uid 1000. The
// daemon is killed with SIGKILL and started again on the same path. The
// same consumer process, never restarted, read the value before the kill,
// got errors (not a hang) while no daemon served, and reads the value
// again from the new mount, which reached it by propagation.
func TestAConsumerInItsOwnMountNamespaceKeepsReadingAcrossAKilledAndRestartedDaemon(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	for _, tool := range []string{"unshare", "setpriv", "mount", "sh", "cat", "sleep", "id"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to play the node (util-linux, coreutils): %v", tool, err)
		}
	}
	b := dynamoBackend(t)
	const app = "billing"
	value := unique("db-password")
	b.cli(t, []byte(value), "put", app+"/db-password")

	// The node. Its /run/secretfs: a directory bind-mounted on itself and
	// made shared, as the kubelet's Bidirectional hostPath needs.
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	host := filepath.Join(base, "node-run-secretfs")
	container := filepath.Join(base, "consumer-run-secretfs") // where the consumer sees it
	for _, d := range []string{host, container} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "mount", "--bind", host, host)
	t.Cleanup(func() { _ = syscall.Unmount(host, syscall.MNT_DETACH) })
	mustRun(t, "mount", "--make-rshared", host)
	if e := mountsAt(t, os.Getpid(), host); len(e) != 1 || !strings.HasPrefix(strings.Join(e[0].optional, " "), "shared:") {
		t.Fatalf("the node's directory is not one shared mount: %+v", e)
	}
	mountpoint := filepath.Join(host, "secrets")
	// The DaemonSet's flags. --ttl 1s: after a SIGKILL the kernel keeps
	// answering hot reads from its caches (no request reaches the dead
	// daemon) until the names' TTL runs out; a short one makes the gap
	// come soon.
	daemonFlags := []string{"--read-only", "--allow-other", "--uid", "1000", "--gid", "1000",
		"--file-mode", "0400", "--dir-mode", "0500", "--apps", app, "--ttl", "1s"}
	first := mountAt(t, b, mountpoint, daemonFlags...)
	first.secret(value)

	// The consumer.
	consumer := startSlaveConsumer(t, consumerScript, base, host, container, app)
	// Before the mounts' own cleanups: a consumer reading in a propagated
	// copy would keep the daemon's unmount busy.
	t.Cleanup(consumer.kill)
	pid := consumer.cmd.Process.Pid

	reads := func() (header []string, all []consumerRead) {
		data, _ := os.ReadFile(consumer.out)
		line := regexp.MustCompile(`^(\d+) (ok|error) (.*)$`)
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			mm := line.FindStringSubmatch(l)
			if mm == nil {
				header = append(header, l)
				continue
			}
			n, _ := strconv.Atoi(mm[1])
			all = append(all, consumerRead{n: n, ok: mm[2] == "ok", text: mm[3]})
		}
		return header, all
	}
	alive := func() {
		t.Helper()
		select {
		case <-consumer.exited:
			header, all := reads()
			t.Fatalf("the consumer exited (%v): %q, %d reads", consumer.err, header, len(all))
		default:
		}
	}
	okSince := func(after int) (n int) {
		_, all := reads()
		for _, r := range all {
			if r.n > after && r.ok && r.text == value {
				n++
			}
		}
		return n
	}

	eventually(t, 30*time.Second, "the consumer reads the value", func() bool { alive(); return okSince(0) >= 3 })
	header, before := reads()
	for _, r := range before {
		if !r.ok || r.text != value {
			t.Fatalf("read %d of the consumer before the kill: %+v", r.n, r)
		}
	}
	if len(header) != 2 || header[0] != "consumer uid 1000 gid 1000" || !strings.HasPrefix(header[1], "write refused: ") || !strings.HasSuffix(header[1], "Read-only file system") {
		t.Errorf("the consumer said %q, want that it runs as 1000:1000 and that its write was refused with EROFS", header)
	}
	// What the consumer holds: a read-only slave of the node's directory,
	// and below it the daemon's mount, received by propagation.
	cont := mountsAt(t, pid, container)
	if len(cont) != 1 || !strings.HasPrefix(cont[0].vfsOpt, "ro") || !strings.HasPrefix(strings.Join(cont[0].optional, " "), "master:") {
		t.Errorf("the consumer's directory is %+v, want one read-only mount, a slave (master:N)", cont)
	}
	served := mountsAt(t, pid, filepath.Join(container, "secrets"))
	if len(served) != 1 || served[0].fstype != "fuse.secretfs" {
		t.Fatalf("below the consumer's directory: %+v, want the one secretfs mount", served)
	}

	first.kill()
	killedAt := before[len(before)-1].n
	var gap []consumerRead
	eventually(t, 30*time.Second, "the consumer's reads fail while no daemon serves", func() bool {
		alive()
		_, all := reads()
		gap = gap[:0]
		for _, r := range all {
			if r.n > killedAt && !r.ok {
				gap = append(gap, r)
			}
		}
		return len(gap) >= 3
	})
	_, all := reads()
	cached := 0
	for _, r := range all {
		if r.n > killedAt && r.n < gap[0].n {
			cached++
		}
	}
	t.Logf("after the SIGKILL the kernel's caches answered %d reads before the first error", cached)
	for _, r := range gap {
		if !strings.Contains(r.text, "Transport endpoint is not connected") {
			t.Errorf("read %d of the consumer during the gap failed with %q, want ENOTCONN", r.n, r.text)
		}
	}

	second := mountAt(t, b, mountpoint, daemonFlags...)
	second.secret(value)
	t.Cleanup(consumer.kill) // again: before the second mount's cleanup
	if !strings.Contains(second.log(), "found a stale mount left by a process that died; recovering it") {
		t.Errorf("the new daemon does not say it recovered the stale mount")
	}
	_, all = reads()
	lastError := all[len(all)-1].n
	eventually(t, 30*time.Second, "the same consumer reads the value from the new daemon", func() bool {
		alive()
		return okSince(lastError) >= 3
	})
	after := mountsAt(t, pid, filepath.Join(container, "secrets"))
	if len(after) != 1 || after[0].fstype != "fuse.secretfs" || after[0].id == served[0].id {
		t.Errorf("below the consumer's directory after the restart: %+v, want one secretfs mount other than the dead one (id %d)", after, served[0].id)
	}

	if err := os.WriteFile(consumer.stopFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-consumer.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer did not stop within 30s of being asked")
	}
	if consumer.err != nil {
		t.Errorf("the consumer's loop ended with %v", consumer.err)
	}
	header, all = reads()
	if len(header) != 3 || header[2] != fmt.Sprintf("%d stopped", len(all)) {
		t.Errorf("the consumer printed %q around %d reads: it was started more than once or stopped early", header, len(all))
	}
	var oks, errs int
	for i, r := range all {
		if r.n != i+1 {
			t.Fatalf("read %d of the consumer is numbered %d: its loop was restarted", i+1, r.n)
		}
		switch {
		case r.ok && r.text == value:
			oks++
		case r.ok:
			t.Errorf("read %d of the consumer returned %q, not the value", r.n, r.text)
		default:
			errs++
		}
	}
	t.Logf("one consumer, never restarted: %d reads of the value, %d errors while no daemon served", oks, errs)
}

// slaveConsumer is a shell script run by unshare in a mount namespace of
// its own whose mounts are slaves of this one's (Kubernetes'
// HostToContainer propagation), with HOST, CONT, APP, STOP and TESTPID in
// its environment, in a process group of its own so that it is killed
// whole (setpriv in a script clears the parent-death signal, so scripts
// also end when TESTPID is gone).
type slaveConsumer struct {
	cmd      *exec.Cmd
	out      string // the file it writes to
	stopFile string // made to ask it to end
	exited   chan struct{}
	err      error // how it ended, once exited
}

func startSlaveConsumer(t *testing.T, script, base, host, container, app string) *slaveConsumer {
	t.Helper()
	c := &slaveConsumer{out: filepath.Join(t.TempDir(), "consumer.out"), stopFile: filepath.Join(base, "stop"), exited: make(chan struct{})}
	out, err := os.Create(c.out)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	c.cmd = exec.Command("unshare", "--mount", "--propagation", "slave", "sh", "-c", script)
	c.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOST=" + host, "CONT=" + container, "APP=" + app,
		"STOP=" + c.stopFile, "TESTPID=" + strconv.Itoa(os.Getpid())}
	c.cmd.Stdout, c.cmd.Stderr = out, out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.exited) }()
	return c
}

// kill ends the consumer at once, if it has not ended. Call it from one
// goroutine.
func (c *slaveConsumer) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.exited
}

// stop asks the consumer to end, and kills it if it has not within 10 s.
func (c *slaveConsumer) stop() {
	os.WriteFile(c.stopFile, nil, 0o644)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}

// `secretfs status` judges the backend as /healthz does, whether or not
// the mount serves metrics: exit 0 while the store answers; non-zero,
// saying so, once reads have been failing for longer than --timeout; 0
// again once a read succeeded after the store came back.
func TestStatusSaysTheBackendDoesNotAnswerWithoutMetrics(t *testing.T) {
	b, own := ownDynamo(t, false, "--timeout", "1s")
	app := unique("statusapp")
	b.cli(t, []byte("known"), "put", app+"/known")
	b.cli(t, []byte("never read"), "put", app+"/unread")
	m := mount(t, b, "--ttl", "0") // no --metrics-addr
	status := func() (string, error) {
		out, err := exec.Command(binary, "status", m.dir).CombinedOutput()
		return string(out), err
	}
	eventually(t, 5*time.Second, "status of a fresh mount exits 0", func() bool {
		_, err := status()
		return err == nil
	})
	own.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			own.Thaw()
		}
	}()
	var out string
	eventually(t, 30*time.Second, "status exits non-zero while reads fail", func() bool {
		var err error
		if out, err = status(); err != nil {
			return true
		}
		m.failSh("cat "+app+"/unread", "Input/output error")
		return false
	})
	if !strings.Contains(out, "its backend does not answer") {
		t.Errorf("status while the store is frozen: %q, want it to say the backend does not answer", out)
	}
	own.Thaw()
	thawed = true
	eventually(t, 30*time.Second, "status exits 0 after a read succeeded", func() bool {
		m.sh("cat " + app + "/known")
		_, err := status()
		return err == nil
	})
}
