package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/mountconfig"
	"github.com/secretfs/secretfs/vfs"
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
	text := "owners:\n  - match: auth/*\n    uid: 1002\n    mode: \"0400\"\n  - match: billing/*\n    uid: 1001\n    mode: \"0400\"\n" +
		"views:\n  - path: billing/peek\n    template: '{{ secret \"auth/secret\" }}'\n"
	for _, allowOther := range []bool{true, false} {
		warned := slices.DeleteFunc(warningsAtStart(t, text, fs.Options{AllowOther: allowOther, Options: vfs.Options{DirMode: 0o755, FileMode: 0o600}}),
			func(w string) bool { return !strings.Contains(w, "the view") })
		want := 0
		if allowOther {
			want = 1
		}
		if len(warned) != want || want == 1 && !strings.Contains(warned[0], "config.yaml:9: the view billing/peek is readable by uid 1001, who cannot read its input auth/secret") {
			t.Errorf("--allow-other %v: warnings %q, want %d naming billing/peek, uid 1001 and auth/secret", allowOther, warned, want)
		}
	}
}

// An owner rule that names a user who cannot enter the mount is warned
// of at start: with --allow-other, one the root's mode keeps out; without
// it, any user but the one who mounts and root. (A README reader gave
// uid 1001 billing with --allow-other and a root of mode 0700, and got
// EACCES with no word why.)
func TestAnOwnerWhoCannotEnterTheMountIsWarnedOfAtStart(t *testing.T) {
	text := "owners:\n  - match: billing/*\n    uid: 1001\n    mode: \"0400\"\n"
	for _, tc := range []struct {
		allowOther bool
		dirMode    uint32
		want       string
	}{
		{true, 0o700, "config.yaml:2: the owner rule \"billing/*\" gives uid 1001 what it matches, but they may not enter the mount's root"},
		{true, 0o755, ""},
		{false, 0o755, "config.yaml:2: the owner rule \"billing/*\" gives uid 1001 what it matches, but without --allow-other"},
	} {
		warned := warningsAtStart(t, text, fs.Options{AllowOther: tc.allowOther, Options: vfs.Options{DirMode: tc.dirMode, FileMode: 0o600}})
		if tc.want == "" && len(warned) != 0 || tc.want != "" && (len(warned) != 1 || !strings.Contains(warned[0], tc.want)) {
			t.Errorf("--allow-other %v, --dir-mode %#o: warnings %q, want %q", tc.allowOther, tc.dirMode, warned, tc.want)
		}
	}
}

// An owner rule that an earlier pattern takes paths from is warned of at
// start, naming the file and the lines of both rules, whether or not
// other users may enter the mount.
func TestAnOwnerRuleShadowedByAnEarlierOneIsWarnedOf(t *testing.T) {
	text := "owners:\n  - match: \"*/*\"\n    mode: \"0440\"\n  - match: billing/*\n    uid: 1001\n    mode: \"0400\"\n"
	warned := slices.DeleteFunc(warningsAtStart(t, text, fs.Options{Options: vfs.Options{DirMode: 0o700, FileMode: 0o600}}),
		func(w string) bool { return !strings.Contains(w, "does not apply") })
	if len(warned) != 1 || !strings.Contains(warned[0], `config.yaml:4: the owner rule for "billing/*" does not apply to billing/x, nor to the other paths the rule for "*/*" at line 2 also matches`) {
		t.Errorf("warnings %q, want one naming billing/* at line 4 and */* at line 2", warned)
	}
}

// A view whose path is written as a pattern (billing/*.json) is warned
// of at start, naming the file's line, whether or not other users may
// enter the mount; the view is kept, under that very name.
func TestAViewPathWrittenAsAPatternIsWarnedOfAtStart(t *testing.T) {
	text := "views:\n  - path: billing/*.json\n    app: billing\n    format: json\n"
	o := fs.Options{Options: vfs.Options{DirMode: 0o700, FileMode: 0o600}}
	warned := warningsAtStart(t, text, o)
	if len(warned) != 1 || !strings.Contains(warned[0], `/config.yaml:2: the view path "billing/*.json" is a literal file name, not a pattern`) {
		t.Errorf("warnings %q, want one naming line 2 and billing/*.json", warned)
	}
}

// warningsAtStart are the messages withMountConfig logs at warn level
// for a configuration file of text, read as a mount reads it, on a
// mount of options o.
func warningsAtStart(t *testing.T, text string, o fs.Options) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadMountConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	log, hook := logtest.NewNullLogger()
	o.Log = log
	withMountConfig(o, cfg)
	var warned []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warned = append(warned, e.Message)
		}
	}
	return warned
}

// A view of every secret of an application that holds none (a mistyped
// app:, say) is warned of at start, naming the file's line; one of an
// application that holds some, or whose listing fails, is not.
func TestAnApplicationViewOfAnApplicationWithNoSecretsIsWarnedOf(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	text := "views:\n  - path: billing/all.json\n    app: billing\n    format: json\n" +
		"  - path: billing/auth.env\n    app: auht\n    format: dotenv\n" +
		"  - path: billing/down.env\n    app: down\n    format: dotenv\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadMountConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	holds := func(_ context.Context, app string) (bool, error) {
		switch app {
		case "billing":
			return true, nil
		case "down":
			return false, errors.New("no answer")
		}
		return false, nil
	}
	log, hook := logtest.NewNullLogger()
	warnOfEmptyAppViews(t.Context(), cfg, holds, log)
	var warned []string
	for _, e := range hook.AllEntries() {
		warned = append(warned, e.Message)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "config.yaml:5: the view billing/auth.env renders every secret of the application auht, which holds none") {
		t.Fatalf("warnings %q; want one, naming the line, the view and auht", warned)
	}
}
