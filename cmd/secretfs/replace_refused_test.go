package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A refused --replace changes nothing. Here uid 1000 asks to replace
// root's secretfs with `secretfs mount --replace --daemon`, as a user of
// the trial did: the refusal ("another user's secretfs") must leave that
// user's home as it was, without the directory where a daemon with
// neither --log-file nor syslog logs (~/.local/state/secretfs) or the
// data directory (~/.local/share/secretfs). Where syslog can be reached
// (/dev/log), the daemon logs there, and this test passes without
// telling the fallback's directory apart.
func TestARefusedReplaceMakesNothingInTheUsersHome(t *testing.T) {
	dir := fuseMountpoint(t)
	mountOldForReplacement(t, dir, replaceFlags{})
	// uid 1000 must reach the mount point's parent and run the binary.
	for _, d := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(filepath.Dir(dir), "secretfs.test")
	if err := os.WriteFile(binary, self, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(filepath.Dir(dir), "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 1000, 1000); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(binary, "mount", "--replace", "--daemon", dir)
	cmd.Env = append(withoutHome(os.Environ()), runMainEnv+"=1", "HOME="+home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if err == nil || !strings.Contains(stderr.String(), "another user's secretfs") {
		t.Fatalf("uid 1000's mount --replace over root's secretfs: %v; want it refused as another user's\n%s", err, stderr.String())
	}
	made, err := os.ReadDir(home)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range made {
		t.Errorf("the refused --replace made %s in the user's home\n%s", filepath.Join(home, e.Name()), stderr.String())
	}
}

// withoutHome is env without the variables that say where a user's files
// go (HOME and the XDG base directories).
func withoutHome(env []string) []string {
	var out []string
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); name != "HOME" && !strings.HasPrefix(name, "XDG_") {
			out = append(out, kv)
		}
	}
	return out
}
