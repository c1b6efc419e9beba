package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionPrintsTheModuleVersionVCSRevisionAndGoVersion(t *testing.T) {
	stdout, _, err := run(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("the test binary has no build info")
	}
	// A test binary's module version is "(devel)", or a pseudo-version
	// when go test stamps VCS information (-buildvcs=true).
	want := []string{"secretfs " + info.Main.Version, " " + runtime.Version() + "\n"}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			want = append(want, " ("+s.Value[:12]+") ")
		}
	}
	for _, w := range want {
		if !strings.Contains(stdout, w) {
			t.Errorf("version printed %q, without %q", stdout, w)
		}
	}
}

func TestVersionPrintsTheVersionSetAtBuildTime(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	stdout, _, err := run(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if want := "secretfs v1.2.3 " + runtime.Version() + "\n"; stdout != want {
		t.Errorf("version printed %q, want %q", stdout, want)
	}
}

func TestVersionLineShowsTheVCSRevision(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/secretfs/secretfs", Version: "v0.3.0"},
		Settings:  []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}},
	}
	if got, want := versionLine("", info), "secretfs v0.3.0 (0123456789ab) go1.99.1"; got != want {
		t.Errorf("versionLine = %q, want %q", got, want)
	}
}

func TestVersionLineWithoutBuildInfoSaysUnknown(t *testing.T) {
	if got, want := versionLine("", nil), "secretfs (unknown) unknown"; got != want {
		t.Errorf("versionLine = %q, want %q", got, want)
	}
}
