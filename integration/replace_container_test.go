package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// dockerHost is a private dockerd (Debian's docker.io) with its state in a
// directory of the test, no iptables and no bridge
// (../shared/real-components/container-probe.sh shows the recipe). No
// registry is reachable: images are built FROM scratch. Everything it
// starts is removed when the test ends.
type dockerHost struct {
	t      *testing.T
	work   string
	host   string // DOCKER_HOST
	daemon *exec.Cmd
	exited chan struct{}
}

func startDockerd(t *testing.T) *dockerHost {
	t.Helper()
	for _, bin := range []string{"/usr/sbin/dockerd", "/usr/bin/docker", "/bin/busybox"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is needed to run real containers (apt-get install docker.io busybox-static; scripts/install-test-deps does): %v", bin, err)
		}
	}
	// A short path: dockerd and containerd put Unix sockets below it.
	work, err := os.MkdirTemp("", "sfs-ct-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerHost{t: t, work: work, host: "unix://" + filepath.Join(work, "docker.sock")}
	// What dockerd and containerd make outside the work directory,
	// removed afterwards if it was not there before.
	var made []string
	for _, dir := range []string{"/etc/docker", "/etc/docker/key.json", "/run/docker", "/run/containerd", "/run/runc"} {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			made = append(made, dir)
		}
	}
	t.Cleanup(func() {
		d.stop()
		// whatever is still mounted below the work directory, deepest
		// first (dead FUSE mounts too)
		for {
			lines := mountinfoBelow(work)
			if len(lines) == 0 {
				break
			}
			if err := syscall.Unmount(lines[len(lines)-1], syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", lines[len(lines)-1], err)
				break
			}
		}
		for _, dir := range made {
			os.RemoveAll(dir)
		}
		filepath.WalkDir("/sys/fs/cgroup", func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() && e.Name() == "test-sfs-docker" {
				removeCgroup(p)
				return filepath.SkipDir
			}
			return nil
		})
		os.RemoveAll(work)
	})
	for _, driver := range []string{"overlay2", "vfs"} {
		logFile, err := os.Create(filepath.Join(work, "dockerd-"+driver+".log"))
		if err != nil {
			t.Fatal(err)
		}
		d.daemon = exec.Command("/usr/sbin/dockerd", "--data-root", filepath.Join(work, "data-root"), "--exec-root", filepath.Join(work, "exec"),
			"--pidfile", filepath.Join(work, "dockerd.pid"), "-H", d.host, "--iptables=false", "--ip6tables=false", "--bridge=none",
			"--storage-driver="+driver, "--cgroup-parent=test-sfs-docker")
		d.daemon.Stdout, d.daemon.Stderr = logFile, logFile
		d.daemon.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		if err := d.daemon.Start(); err != nil {
			t.Fatal(err)
		}
		d.exited = make(chan struct{})
		go func(f *os.File, exited chan struct{}) { d.daemon.Wait(); f.Close(); close(exited) }(logFile, d.exited)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && running(d.exited) {
			if _, err := d.run("version"); err == nil {
				return d
			}
			time.Sleep(100 * time.Millisecond)
		}
		log, _ := os.ReadFile(logFile.Name())
		t.Logf("dockerd with %s did not start:\n%s", driver, lastLines(string(log), 5))
		d.stop()
	}
	t.Fatal("no dockerd")
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// mountinfoBelow returns the mount points at or below dir, sorted.
func mountinfoBelow(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var below []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			if p := unescapeMountPath(f[4]); p == dir || strings.HasPrefix(p, dir+"/") {
				below = append(below, p)
			}
		}
	}
	return below
}

// stop removes every container and stops dockerd.
func (d *dockerHost) stop() {
	if d.daemon == nil || !running(d.exited) {
		return
	}
	if ids, err := d.run("ps", "-aq"); err == nil && ids != "" {
		d.run(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	}
	d.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.daemon.Process.Kill()
		<-d.exited
	}
}

// run runs the docker CLI and returns its output, trimmed.
func (d *dockerHost) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_BUILDKIT=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func (d *dockerHost) must(args ...string) string {
	d.t.Helper()
	out, err := d.run(args...)
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// image builds an image FROM scratch holding files (name in the image ->
// path on the host), with the given entrypoint.
func (d *dockerHost) image(tag string, files map[string]string, entrypoint string) {
	d.t.Helper()
	ctx := filepath.Join(d.work, "ctx-"+strings.NewReplacer(":", "-", "/", "-").Replace(tag))
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		d.t.Fatal(err)
	}
	dockerfile := "FROM scratch\n"
	for inImage, onHost := range files {
		data, err := os.ReadFile(onHost)
		if err != nil {
			d.t.Fatal(err)
		}
		name := filepath.Base(inImage)
		if err := os.WriteFile(filepath.Join(ctx, name), data, 0o755); err != nil {
			d.t.Fatal(err)
		}
		dockerfile += fmt.Sprintf("COPY %s %s\n", name, inImage)
	}
	dockerfile += fmt.Sprintf("ENTRYPOINT [%q]\n", entrypoint)
	mustWrite(d.t, filepath.Join(ctx, "Dockerfile"), dockerfile, 0o644)
	d.must("build", "-q", "-t", tag, ctx)
}

// staticSecretfs builds secretfs as deploy/Dockerfile does (static,
// CGO_ENABLED=0), stamped with version.
func staticSecretfs(t *testing.T, version string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "secretfs")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+version, "-o", bin, "../cmd/secretfs")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	return bin
}

// daemonSetContainer returns the args and the readiness probe's command
// of deploy/daemonset.yaml's secretfs container.
func daemonSetContainer(t *testing.T) (args, probe []string) {
	t.Helper()
	data, err := os.ReadFile("../deploy/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Args           []string `yaml:"args"`
							ReadinessProbe struct {
								Exec struct {
									Command []string `yaml:"command"`
								} `yaml:"exec"`
							} `yaml:"readinessProbe"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err == io.EOF {
			t.Fatal("no DaemonSet in deploy/daemonset.yaml")
		} else if err != nil {
			t.Fatal(err)
		}
		if doc.Kind == "DaemonSet" {
			c := doc.Spec.Template.Spec.Containers[0]
			return c.Args, c.ReadinessProbe.Exec.Command
		}
	}
}

// freePort returns a TCP port free on loopback now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// An upgrade of the DaemonSet, played on one host with real containers
// under a real dockerd: the old image's secretfs container runs with the
// DaemonSet's arguments (its backend a local store), a consumer container
// reads through an `ro,rslave` bind as uid 1000, and the new image's
// container, with the same arguments, starts beside the old one, as the
// DaemonSet's surge pod does. It takes the mount over: 0 failed reads,
// the readiness probe passes in the new container and no longer in the
// old, the metrics address is the new one's, one secretfs mount is left on
// the host and in the consumer; the old container waits, its mount
// released, until it is stopped (the old pod's deletion), and exits 0.
func TestContainerUpgradeReplacesTheMountWithNoGap(t *testing.T) {
	requireRoot(t)
	requireFUSE(t)
	args, probe := daemonSetContainer(t)
	if len(args) < 2 || args[0] != "mount" || len(probe) < 2 {
		t.Fatalf("the DaemonSet's container runs %q, probes with %q", args, probe)
	}
	mountpoint := args[1] // in the container
	port := freePort(t)
	var flags []string
	for _, a := range args[2:] {
		if strings.HasPrefix(a, "--metrics-addr=") {
			a = fmt.Sprintf("--metrics-addr=127.0.0.1:%d", port)
		}
		flags = append(flags, a)
	}
	app := ""
	for _, a := range flags {
		if v, ok := strings.CutPrefix(a, "--apps="); ok {
			app = strings.Split(v, ",")[0]
		}
	}
	if app == "" {
		t.Fatalf("the DaemonSet's secretfs has no --apps: %q", args)
	}

	d := startDockerd(t)
	d.image("test/secretfs:old", map[string]string{"/usr/local/bin/secretfs": staticSecretfs(t, "old")}, "/usr/local/bin/secretfs")
	d.image("test/secretfs:new", map[string]string{"/usr/local/bin/secretfs": staticSecretfs(t, "new")}, "/usr/local/bin/secretfs")
	d.image("test/reader", map[string]string{"/bin/busybox": "/bin/busybox"}, "/bin/busybox")

	// The store, and the node's directory that holds the mountpoint: a
	// shared mount, as the kubelet needs for Bidirectional.
	data := filepath.Join(d.work, "data")
	b := &backend{name: "local", flags: []string{"--data-dir", data}}
	value := unique("hunter2")
	b.cli(t, nil, "init")
	b.cli(t, []byte(value), "put", app+"/db-password")
	nodeDir := filepath.Join(d.work, "mnt")
	if err := os.MkdirAll(filepath.Join(nodeDir, filepath.Base(mountpoint)), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", "--bind", nodeDir, nodeDir)
	mustRun(t, "mount", "--make-shared", nodeDir)
	onNode := filepath.Join(nodeDir, filepath.Base(mountpoint))
	volume := nodeDir + ":" + filepath.Dir(mountpoint)

	// The consumer first, as consumer-pod.yaml's: uid 1000, no
	// capabilities, read-only, HostToContainer (rslave).
	file := filepath.Join(mountpoint, app, "db-password")
	d.must("run", "-d", "--name", "reader", "--network", "none", "--user", "1000:1000", "--cap-drop", "ALL", "--read-only",
		"-v", volume+":ro,rslave", "test/reader", "sh", "-c",
		`i=0; while [ $i -lt 100000 ]; do i=$((i+1)); if v=$(cat `+file+` 2>&1); then echo "$i ok $v"; else echo "$i error $v"; fi; usleep 10000; done`)
	// Its reads, from its first that succeeded: it started before the
	// mount, as a pod may, and found the directory empty until then.
	reads := func() (oks int, failed []string) {
		out, _ := d.run("logs", "reader")
		for _, l := range strings.Split(out, "\n") {
			switch f := strings.SplitN(l, " ", 3); {
			case len(f) == 3 && f[1] == "ok" && f[2] == value:
				oks++
			case len(f) == 3 && oks > 0:
				failed = append(failed, l)
			}
		}
		return oks, failed
	}

	secretfsContainer := func(name, image string) {
		t.Helper()
		d.must(append([]string{"run", "-d", "--name", name, "--network", "host", "--device", "/dev/fuse", "--cap-add", "SYS_ADMIN",
			"-v", volume + ":rshared", "-v", data + ":/data", image, "--data-dir", "/data", "mount", mountpoint}, flags...)...)
	}
	ready := func(name string) (string, bool) {
		out, err := d.run(append([]string{"exec", name}, probe...)...)
		return out, err == nil
	}
	secretfsContainer("sfs-old", "test/secretfs:old")
	eventually(t, 60*time.Second, "the old container's mount reaches the host", func() bool {
		at := mountsAt(t, os.Getpid(), onNode)
		return len(at) == 1 && at[0].fstype == "fuse.secretfs"
	})
	oldMount := mountsAt(t, os.Getpid(), onNode)[0]
	eventually(t, 30*time.Second, "the old container is ready", func() bool { _, ok := ready("sfs-old"); return ok })
	eventually(t, 30*time.Second, "the consumer reads", func() bool { oks, _ := reads(); return oks >= 5 })
	if _, failed := reads(); len(failed) != 0 {
		t.Fatalf("the consumer failed before the upgrade: %q", failed)
	}
	// A second consumer holds a descriptor open on the old mount, and
	// its current directory in it, across the upgrade and the old pod's
	// deletion: it reads through the descriptor (reopening it by
	// /proc/self/fd/3, a file of the mount that descriptor is on) and by
	// a path relative to its directory, until it is killed.
	d.must("run", "-d", "--name", "holder", "--network", "none", "--user", "1000:1000", "--cap-drop", "ALL", "--read-only",
		"-v", volume+":ro,rslave", "test/reader", "sh", "-c",
		`exec 3<`+file+` && cd `+filepath.Dir(file)+` && i=0; while :; do i=$((i+1)); `+
			`if v=$(cat /proc/self/fd/3 2>&1); then echo "$i ok $v"; else echo "$i error $v"; fi; `+
			`if v=$(cat `+filepath.Base(file)+` 2>&1); then echo "$i ok $v"; else echo "$i error $v"; fi; usleep 20000; done`)
	held := func() (oks int, failed []string) {
		out, _ := d.run("logs", "holder")
		for _, l := range strings.Split(out, "\n") {
			switch f := strings.SplitN(l, " ", 3); {
			case len(f) == 3 && f[1] == "ok" && f[2] == value:
				oks++
			case l != "":
				failed = append(failed, l)
			}
		}
		return oks, failed
	}
	eventually(t, 30*time.Second, "the holder reads", func() bool { oks, _ := held(); return oks >= 5 })

	// The upgrade: the new image's container, beside the old one.
	secretfsContainer("sfs-new", "test/secretfs:new")
	eventually(t, 60*time.Second, "the new container is ready", func() bool { _, ok := ready("sfs-new"); return ok })
	if out, ok := ready("sfs-old"); ok {
		t.Errorf("the old container is still ready once the new one is: %s", out)
	}
	at := mountsAt(t, os.Getpid(), onNode)
	if len(at) != 1 || at[0].id == oldMount.id {
		t.Errorf("on the host after the upgrade: %+v at %s; want one mount, not the old one (%d)", at, onNode, oldMount.id)
	}
	before, _ := reads()
	eventually(t, 30*time.Second, "the consumer reads from the new mount", func() bool { oks, _ := reads(); return oks >= before+5 })
	if inReader := d.must("exec", "reader", "/bin/busybox", "grep", "-c", "fuse.secretfs", "/proc/self/mountinfo"); inReader != "1" {
		t.Errorf("the consumer's mount namespace holds %s secretfs mounts, want 1", inReader)
	}
	eventually(t, 30*time.Second, "the new secretfs serves the metrics address", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return regexp.MustCompile(`secretfs_build_info\{[^}]*version="new"`).Match(body)
	})
	if state := d.must("inspect", "-f", "{{.State.Running}}", "sfs-old"); state != "true" {
		t.Errorf("the old container is not running once replaced: %s", state)
	}

	// The old pod's deletion: Kubernetes sends SIGTERM as soon as the new
	// pod is ready, and SIGKILL after the grace period (docker stop -t).
	// The old secretfs drains on through SIGTERM (--drain-through-sigterm)
	// while the holder holds its detached mount.
	stopped := make(chan string, 1)
	go func() {
		out, err := d.run("stop", "-t", "120", "sfs-old")
		stopped <- fmt.Sprintf("%s %v", out, err)
	}()
	eventually(t, 30*time.Second, "the old secretfs drains on through SIGTERM", func() bool {
		logs, _ := d.run("logs", "sfs-old")
		return strings.Contains(logs, "draining on through SIGTERM")
	})
	before, _ = held()
	eventually(t, 30*time.Second, "the holder reads on after the old container's SIGTERM", func() bool { oks, _ := held(); return oks >= before+10 })
	select {
	case out := <-stopped:
		t.Fatalf("the old container stopped while the holder held its mount: %s", out)
	default:
	}
	if state := d.must("inspect", "-f", "{{.State.Running}}", "sfs-old"); state != "true" {
		t.Errorf("the old container is not running after SIGTERM while its mount is held: %s", state)
	}
	holderOKs, holderFailed := held()
	d.must("kill", "holder") // its descriptor and directory go with it
	select {
	case out := <-stopped:
		t.Logf("docker stop sfs-old: %s", out)
	case <-time.After(60 * time.Second):
		t.Fatal("the old container did not exit within 60s of the holder's end")
	}
	if code := d.must("inspect", "-f", "{{.State.ExitCode}}", "sfs-old"); code != "0" {
		t.Errorf("the old container exited with %s", code)
	}
	if logs, _ := d.run("logs", "sfs-old"); !strings.Contains(logs, "the last reference to the detached mount is gone") {
		t.Errorf("the old secretfs does not say its mount was released:\n%s", logs)
	}
	t.Logf("the holder read the secret %d times through its descriptor and directory on the old mount, across the upgrade and the old container's SIGTERM; %d reads failed", holderOKs, len(holderFailed))
	if len(holderFailed) != 0 {
		t.Errorf("%d of the holder's reads failed; the first: %q", len(holderFailed), holderFailed[:min(3, len(holderFailed))])
	}
	before, _ = reads()
	eventually(t, 30*time.Second, "the consumer reads after the old container stopped", func() bool { oks, _ := reads(); return oks >= before+5 })
	oks, failed := reads()
	t.Logf("the consumer read the secret %d times across the upgrade; %d reads failed", oks, len(failed))
	if len(failed) != 0 {
		t.Errorf("%d of the consumer's reads failed; the first: %q", len(failed), failed[:min(3, len(failed))])
	}
	if lines := mountinfoLines(t, os.Getpid(), onNode); len(lines) != 1 {
		t.Errorf("on the host after the upgrade, %d mounts at %s, want 1: %q", len(lines), onNode, lines)
	}

	d.must("stop", "sfs-new")
	if code := d.must("inspect", "-f", "{{.State.ExitCode}}", "sfs-new"); code != "0" {
		t.Errorf("the new container exited with %s", code)
	}
	if lines := mountinfoLines(t, os.Getpid(), onNode); len(lines) != 0 {
		t.Errorf("after the new container stopped, mounts are left at %s: %q", onNode, lines)
	}
}
