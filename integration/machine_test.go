package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// machine is a real systemd, booted as PID 1 of a systemd-nspawn
// container whose root is a tmpfs with the host's /usr
// (../shared/real-components/systemd-probe.sh shows the recipe and its
// gotchas). The test's secretfs is its /usr/local/bin/secretfs, the unit
// of systemd/ its secretfs@.service, and a data directory of the test its
// /var/lib/secretfs. Everything it starts is ended when the test ends.
type machine struct {
	t      *testing.T
	name   string
	work   string
	bin    string // the directory the container sees as /usr/local/bin
	init   int    // the container's systemd, as the host sees it
	nspawn *exec.Cmd
	exited chan struct{}
	log    string
}

// bootMachine boots the container with secretfs (bin) installed and the
// unit file unit, with the environment file env for the instance
// run-secrets and the data directory data.
func bootMachine(t *testing.T, bin string, unit []byte, env string, data string) *machine {
	t.Helper()
	requireRoot(t)
	requireFUSE(t)
	for _, tool := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to boot a real systemd (apt-get install systemd-container; scripts/install-test-deps does): %v", tool, err)
		}
	}
	m := &machine{t: t, name: fmt.Sprintf("sfs%d%d", os.Getpid(), time.Now().UnixNano()%100000), work: t.TempDir(), exited: make(chan struct{})}
	m.bin = filepath.Join(m.work, "bin")
	for _, d := range []string{m.bin, filepath.Join(m.work, "unit"), filepath.Join(m.work, "etc-secretfs"), filepath.Join(m.work, "preset")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m.install(bin)
	// The empty /etc is filled from presets at first boot: nothing
	// enabled, so that the host's units (docker.socket...) stay off.
	mustWrite(t, filepath.Join(m.work, "preset", "00-test.preset"), "disable *\n", 0o644)
	mustWrite(t, filepath.Join(m.work, "unit", "secretfs@.service"), string(unit), 0o644)
	mustWrite(t, filepath.Join(m.work, "etc-secretfs", "run-secrets.env"), env, 0o600)

	// A cgroup of its own, so that nspawn --keep-unit makes nothing at
	// the roots of the host's hierarchies.
	cg := "test-" + m.name
	var made []string
	for _, h := range []string{"unified", "systemd"} {
		d := filepath.Join("/sys/fs/cgroup", h, cg)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("a cgroup for the container: %v", err)
		}
		made = append(made, d)
	}
	m.log = filepath.Join(m.work, "nspawn.log")
	logFile, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-D", "/", "--volatile=yes", "--register=no", "--keep-unit", "-M", m.name,
		"-b", "--console=read-only", "--capability=CAP_BPF", "--system-call-filter=bpf",
		"--bind=/dev/fuse", "--bind-ro=/etc/alternatives",
		"--bind-ro=" + filepath.Join(m.work, "preset") + ":/etc/systemd/system-preset",
		"--bind-ro=" + m.bin + ":/usr/local/bin",
		"--bind-ro=" + filepath.Join(m.work, "unit", "secretfs@.service") + ":/etc/systemd/system/secretfs@.service",
		"--bind-ro=" + filepath.Join(m.work, "etc-secretfs") + ":/etc/secretfs",
		"--bind=" + data + ":/var/lib/secretfs",
		"systemd.firstboot=off"}
	// The shell moves itself into the cgroups, then becomes nspawn.
	m.nspawn = exec.Command("sh", append([]string{"-c", `echo $$ > "$CG1/cgroup.procs" && echo $$ > "$CG2/cgroup.procs" && exec systemd-nspawn "$@"`, "sh"}, args...)...)
	m.nspawn.Env = append(os.Environ(), "CG1="+made[0], "CG2="+made[1], "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	m.nspawn.Stdout, m.nspawn.Stderr = logFile, logFile
	m.nspawn.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.nspawn.Wait(); logFile.Close(); close(m.exited) }()
	t.Cleanup(func() {
		m.powerOff()
		// nspawn leaves these behind when /run is not a tmpfs, and the
		// cgroups it was given.
		os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", m.name))
		for _, d := range []string{"/run/systemd/nspawn/propagate", "/run/systemd/nspawn", "/run/systemd/nspawn-root"} {
			os.Remove(d)
		}
		for _, d := range made {
			removeCgroup(d)
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for m.init == 0 {
		// nspawn's child is first a helper of nspawn's own (which
		// exits once it has started the container's init) and only then
		// the container's systemd: wait for a child that runs systemd.
		out, _ := exec.Command("ps", "-o", "pid=", "--ppid", strconv.Itoa(m.nspawn.Process.Pid)).Output()
		for _, f := range strings.Fields(string(out)) {
			if comm, err := os.ReadFile("/proc/" + f + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
				m.init, _ = strconv.Atoi(f)
			}
		}
		if time.Now().After(deadline) || !running(m.exited) {
			t.Fatalf("no container init\n%s", m.nspawnLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		state, _ := m.run("systemctl", "is-system-running")
		if state == "running" || state == "degraded" {
			break
		}
		if time.Now().After(deadline) || !running(m.exited) {
			t.Fatalf("systemd did not boot in the container (%q)\n%s", state, m.nspawnLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if comm, _ := m.run("cat", "/proc/1/comm"); comm != "systemd" {
		t.Fatalf("PID 1 in the container is %q, not systemd", comm)
	}
	return m
}

// install makes bin the container's /usr/local/bin/secretfs, replacing
// the file (a new inode, as install(1) does), so that running processes
// keep the binary they started with.
func (m *machine) install(bin string) {
	m.t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		m.t.Fatal(err)
	}
	tmp := filepath.Join(m.bin, ".secretfs.new")
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.bin, "secretfs")); err != nil {
		m.t.Fatal(err)
	}
}

func running(exited <-chan struct{}) bool {
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// run runs a command in the container and returns its output, trimmed.
func (m *machine) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.init), "-a", name}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// must runs a command in the container that must succeed.
func (m *machine) must(name string, args ...string) string {
	m.t.Helper()
	out, err := m.run(name, args...)
	if err != nil {
		m.t.Fatalf("%s %s in the container: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// command returns a command that runs in the container.
func (m *machine) command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(m.init), "-a", name}, args...)...)
}

// inotifywait starts `inotifywait -e event path` in the container and
// returns once its watch is established; the function it returns waits
// (20 s at most) for the one event and returns what it printed.
func (m *machine) inotifywait(t *testing.T, event, path string) (heard func() string) {
	t.Helper()
	cmd := m.command("inotifywait", "-e", event, "-t", "20", path)
	var out lockedBuffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stderr)
	var said string
	for !strings.Contains(said, "Watches established") {
		line, err := r.ReadString('\n')
		said += line
		if err != nil {
			break
		}
	}
	drained := make(chan struct{})
	go func() { io.Copy(io.Discard, r); close(drained) }()
	heard = func() string {
		<-drained
		cmd.Wait()
		return out.String()
	}
	if !strings.Contains(said, "Watches established") {
		heard()
		t.Fatalf("inotifywait -e %s %s in the container: %q", event, path, said)
	}
	return heard
}

// show returns a property of a unit.
func (m *machine) show(unit, property string) string {
	out, _ := m.run("systemctl", "show", "-P", property, unit)
	return out
}

// journal returns the journal of a unit.
func (m *machine) journal(unit string) string {
	out, _ := m.run("journalctl", "-u", unit, "--no-pager", "-o", "short-precise")
	return out
}

func (m *machine) nspawnLog() string {
	b, _ := os.ReadFile(m.log)
	return string(b)
}

// powerOff asks the container's systemd to power off (nspawn does, on
// SIGTERM), and kills it if it has not within 30 s.
func (m *machine) powerOff() {
	if !running(m.exited) {
		return
	}
	m.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		m.nspawn.Process.Kill()
		<-m.exited
		m.t.Errorf("the container did not power off within 30s of SIGTERM")
	}
}

// removeCgroup removes the cgroup d and those below it, deepest first.
func removeCgroup(d string) {
	var dirs []string
	filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i])
	}
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
