package main

import (
	"os"
	"path/filepath"
	"testing"

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
