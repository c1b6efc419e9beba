package testserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// local-kms is found where `go install` put it, as go env says, and is
// the pinned version.
func TestLocalKMSBinaryIsTheInstalledPinnedOne(t *testing.T) {
	t.Setenv("SECRETFS_LOCAL_KMS", "")
	bin, err := localKMSBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "env", "GOBIN").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(filepath.SplitList(strings.TrimSpace(string(out)))[0], "bin")
	}
	if want := filepath.Join(dir, "local-kms"); bin != want {
		t.Errorf("localKMSBinary() = %s, want %s", bin, want)
	}
}

// Any other binary is refused, with a message naming the pinned version:
// another Go program, a file that is not a Go binary, a missing file.
func TestLocalKMSOfAnotherVersionIsRefused(t *testing.T) {
	self, err := os.Executable() // a Go binary, but not local-kms
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "local-kms")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for what, bin := range map[string]string{
		"another Go program": self,
		"a shell script":     script,
		"a missing file":     filepath.Join(t.TempDir(), "local-kms"),
	} {
		t.Setenv("SECRETFS_LOCAL_KMS", bin)
		_, err := localKMSBinary()
		if err == nil {
			t.Errorf("%s accepted as local-kms", what)
			continue
		}
		if what != "a missing file" && !strings.Contains(err.Error(), LocalKMSModule+"@"+LocalKMSVersion) {
			t.Errorf("%s: error does not name the pinned version: %v", what, err)
		}
		if !strings.Contains(err.Error(), "scripts/install-test-deps") {
			t.Errorf("%s: error does not say how to install it: %v", what, err)
		}
	}
}

// Until scripts/install-test-deps reads the pinned module and version
// from here, the ones it writes out must be these. A script whose lines
// this test cannot find fails it too: a renamed variable must not make
// the check pass by checking nothing.
func TestInstallScriptPinsTheSameLocalKMS(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts", "install-test-deps"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pin := range []struct{ variable, want string }{
		{"LOCAL_KMS", LocalKMSModule},
		{"LOCAL_KMS_VERSION", LocalKMSVersion},
	} {
		m := regexp.MustCompile(`(?m)^` + pin.variable + `=(\S*)$`).FindSubmatch(script)
		switch {
		case m == nil:
			t.Errorf("scripts/install-test-deps has no line %s=...: it no longer pins local-kms as this test expects", pin.variable)
		case string(m[1]) != pin.want:
			t.Errorf("scripts/install-test-deps sets %s=%s, internal/testserver pins %s", pin.variable, m[1], pin.want)
		}
	}
}
