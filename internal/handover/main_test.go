package handover

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/internal/mountns"
)

func TestMain(m *testing.M) {
	if root := os.Getenv(chrootedEnv); root != "" {
		chrooted(root)
		return
	}
	if path := os.Getenv(squatterEnv); path != "" {
		squat(path)
		return
	}
	// The tests' mounts in no other process's mount namespace: a
	// namespace made meanwhile elsewhere (a container booted by a test
	// run beside these) would otherwise copy them, and keep a replaced
	// server serving until it ends (internal/mountns).
	mountns.Isolate()
	os.Exit(m.Run())
}

// chrootedEnv makes the test binary play a container's first process,
// as systemd-nspawn leaves it: in a mount namespace copied from the
// test's, with a root directory that holds none of the test's mounts.
// It changes its root to the directory the variable names, says "ready"
// on stdout, and exits when its stdin closes.
const chrootedEnv = "SECRETFS_HANDOVER_TEST_CHROOT"

func chrooted(root string) {
	if err := syscall.Chroot(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.Chdir("/"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// startChild starts cmd, this test binary in one of the roles above,
// which says "ready" on stdout once it plays it and ends when its stdin
// closes. end closes its stdin, waits for it, and returns what it said
// after "ready"; the test's end calls it too.
func startChild(t *testing.T, cmd *exec.Cmd) (end func() string) {
	t.Helper()
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	said := make(chan string, 1)
	ended := false
	end = func() string {
		if ended {
			return ""
		}
		ended = true
		stdin.Close()
		s := <-said
		cmd.Wait()
		return s
	}
	t.Cleanup(func() { end() })
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	go func() {
		rest, _ := io.ReadAll(out)
		said <- string(rest)
	}()
	if line != "ready\n" {
		t.Fatalf("%s said %q, %v", cmd.Path, line, err)
	}
	return end
}

// squatterEnv makes the test binary play another user who made a socket
// at a control socket's path: it listens at the path the variable names
// (leaving the file when it ends), says "ready" on stdout, and to every
// packet it is sent answers as a healthy secretfs would, having said
// "asked" on stdout. It exits when its stdin closes.
const squatterEnv = "SECRETFS_HANDOVER_TEST_SQUAT"

func squat(path string) {
	addr, done, err := socketAddr(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := net.ListenUnix("unixpacket", addr)
	done()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l.SetUnlinkOnClose(false)
	fmt.Println("ready")
	go func() {
		for {
			conn, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, maxMessage)
				if n, _ := conn.Read(buf); n > 0 {
					fmt.Println("asked")
					lie, _ := json.Marshal(Reply{V: Version, Program: Program, Release: "the squatter's", Serving: true, Healthy: true})
					conn.Write(lie)
				}
			}()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
