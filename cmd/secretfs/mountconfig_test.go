package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/mountconfig"
)

// The applications whose changes are signalled are those of --watch and
// those of the configuration file's watch list, together; with neither,
// change signals are off (a nil Options.Watched).
func TestWatchedApplicationsAreTheFlagsAndTheFilesTogether(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte("watch:\n  - auth\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadMountConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := loadMountConfig(writeEmptyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		flags   []string
		file    *mountconfig.Config
		watched []string
	}{
		{"neither", nil, nil, nil},
		{"a file with no watch list", nil, empty, nil},
		{"the flag", []string{"bill*"}, nil, []string{"billing", "bill"}},
		{"the flag and a file with no watch list", []string{"bill*"}, empty, []string{"billing", "bill"}},
		{"the file", nil, cfg, []string{"auth"}},
		{"both", []string{"bill*"}, cfg, []string{"auth", "billing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := withMountConfig(fs.Options{Watched: watchedBy(tc.flags)}, tc.file)
			if tc.watched == nil {
				if o.Watched != nil {
					t.Fatal("change signals are on, want off")
				}
				return
			}
			for _, app := range append(tc.watched, "other", "xbilling", "authx") {
				want := false
				for _, w := range tc.watched {
					want = want || w == app
				}
				if got := o.Watched(app); got != want {
					t.Errorf("Watched(%q) = %v, want %v", app, got, want)
				}
			}
		})
	}
}

func writeEmptyConfig(t *testing.T) string {
	file := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(file, []byte("owners: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// A mount that lets other users in warns at start of a view that a user
// may read while it may not read the view's input; one that lets nobody
// else in does not.
func TestAViewWiderThanItsInputIsWarnedOfOnAMountOthersMayEnter(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	text := "owners:\n  - match: auth/*\n    uid: 1002\n    mode: \"0400\"\n  - match: billing/*\n    uid: 1001\n    mode: \"0400\"\n" +
		"views:\n  - path: billing/peek\n    template: '{{ secret \"auth/secret\" }}'\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadMountConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, allowOther := range []bool{true, false} {
		log, hook := logtest.NewNullLogger()
		withMountConfig(fs.Options{AllowOther: allowOther, DirMode: 0o755, FileMode: 0o600, Log: log}, cfg)
		var warned []string
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel {
				warned = append(warned, e.Message)
			}
		}
		want := 0
		if allowOther {
			want = 1
		}
		if len(warned) != want || want == 1 && !strings.Contains(warned[0], "config.yaml:9: the view billing/peek is readable by uid 1001, who cannot read its input auth/secret") {
			t.Errorf("--allow-other %v: warnings %q, want %d naming billing/peek, uid 1001 and auth/secret", allowOther, warned, want)
		}
	}
}
