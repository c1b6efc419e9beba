package testserver

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// local-kms is pinned here, once: scripts/install-test-deps installs this
// module at this version, and the tests refuse any other, so that they
// pass against the server they were written for, not whichever local-kms
// a machine happens to have.
const (
	LocalKMSModule  = "github.com/nsmithuk/local-kms"
	LocalKMSVersion = "v0.0.0-20260228092603-2a5e92d09ab6"
)

// localKMSBinary finds local-kms where scripts/install-test-deps installs
// it, asking the go command the same way the script does: $(go env GOBIN),
// or else bin/ under the first entry of $(go env GOPATH). $SECRETFS_LOCAL_KMS,
// when set, names the binary instead. Either way it must be the pinned
// version.
func localKMSBinary() (string, error) {
	bin := os.Getenv("SECRETFS_LOCAL_KMS")
	if bin == "" {
		dir, err := goInstallDir()
		if err != nil {
			return "", err
		}
		bin = filepath.Join(dir, "local-kms")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("local-kms is not installed (%v): run scripts/install-test-deps", err)
	}
	if err := checkLocalKMS(bin); err != nil {
		return "", err
	}
	return bin, nil
}

// goInstallDir is where `go install` puts binaries. The environment alone
// does not say: GOBIN and GOPATH may be set in go env's configuration file
// (go env -w) rather than in the environment, and GOPATH has a default.
func goInstallDir() (string, error) {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOBIN GOPATH (to find local-kms): %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 2 {
		return "", fmt.Errorf("go env GOBIN GOPATH printed %q, want two lines", out)
	}
	if gobin := lines[0]; gobin != "" {
		return gobin, nil
	}
	gopath := filepath.SplitList(lines[1])
	if len(gopath) == 0 || gopath[0] == "" {
		return "", errors.New("go env: neither GOBIN nor GOPATH is set: cannot find local-kms")
	}
	return filepath.Join(gopath[0], "bin"), nil
}

// checkLocalKMS refuses bin unless its Go build information says it is
// LocalKMSModule at LocalKMSVersion (what `go version -m` shows, and what
// scripts/install-test-deps checks).
func checkLocalKMS(bin string) error {
	want := LocalKMSModule + "@" + LocalKMSVersion
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("%s is not a Go binary with build information (%v); want local-kms %s: run scripts/install-test-deps", bin, err, want)
	}
	if got := info.Main.Path + "@" + info.Main.Version; got != want {
		return fmt.Errorf("%s is %s, not the pinned local-kms %s: run scripts/install-test-deps", bin, got, want)
	}
	return nil
}
