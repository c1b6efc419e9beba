package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each rule of config.validate, once: a bad value, from the command line
// or from the environment, is refused naming its flag, before the verb
// makes anything. The mount runs as it would; --metrics-addr has no port,
// so that a mount which let a bad value through fails after making its
// mountpoint (which the test looks for) instead of mounting.
func TestEachBadValueIsRefusedNamingItsFlagBeforeTheMountMakesAnything(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env, args []string
		want      string
	}{
		{"zero timeout", nil, []string{"--timeout", "0"}, "--timeout 0s: want a positive duration"},
		{"negative timeout", nil, []string{"--timeout", "-1s"}, "--timeout -1s: want a positive duration"},
		{"zero timeout from the environment", []string{"SECRETFS_TIMEOUT", "0s"}, nil, "--timeout 0s: want a positive duration"},
		{"unknown log format", nil, []string{"--log-format", "xml"}, `--log-format "xml": want text or json`},
		{"unknown log level", nil, []string{"--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{"unknown backend", nil, []string{"--backend", "nfs"}, `--backend "nfs": want local or dynamodb`},
		{"unknown backend from the environment", []string{"SECRETFS_BACKEND", "nfs"}, nil, `--backend "nfs": want local or dynamodb`},
		{"unknown format", nil, []string{"--format", "v9"}, "--format: "},
		{"empty table", nil, []string{"--table", ""}, `--table "": want the name of a DynamoDB table`},
		{"empty table from the environment", []string{"SECRETFS_TABLE", ""}, nil, `--table "": want the name of a DynamoDB table`},
		{"negative ttl", nil, []string{"--ttl", "-1s"}, "--ttl -1s: want 0 (ask the store at every open) or a positive duration"},
		{"negative ttl from the environment", []string{"SECRETFS_TTL", "-5m"}, nil, "--ttl -5m0s: want 0"},
		{"zero cache idle", nil, []string{"--cache-idle", "0"}, "--cache-idle 0s: want a positive duration"},
		{"negative stale window", nil, []string{"--stale-if-error", "-1s"}, "--stale-if-error -1s: want 0 (never serve stale) or a positive duration"},
		{"cache size 0", nil, []string{"--cache-size", "0"}, "--cache-size 0: want at least 1"},
		{"negative cache size", nil, []string{"--cache-size", "-3"}, "--cache-size -3: want at least 1"},
		{"application name with a slash", nil, []string{"--apps", "a,b/c"}, `--apps "b/c": `},
		{"empty application name", nil, []string{"--apps", "a,,b"}, `--apps "": `},
		{"application name from the environment", []string{"SECRETFS_APPS", ".."}, nil, `--apps "..": `},
		{"no application at all", nil, []string{"--apps", ""}, `--apps is empty: name the applications to show (a,b), or leave --apps out to show every application`},
		{"no application at all, from the environment", []string{"SECRETFS_APPS", ""}, nil, `--apps is empty`},
		{"watch pattern with a slash", nil, []string{"--watch", "a,b/*"}, `--watch "b/*": want an application, or a pattern`},
		{"bad watch pattern", nil, []string{"--watch", "bill["}, `--watch "bill[": want an application, or a pattern`},
		{"empty watch pattern", nil, []string{"--watch", "a,,b"}, `--watch "": `},
		{"watch pattern from the environment", []string{"SECRETFS_WATCH", "["}, nil, `--watch "[": `},
		{"uid of all ones", nil, []string{"--uid", "4294967295"}, "--uid 4294967295: want a number from 0 to 4294967294"},
		{"gid of all ones", nil, []string{"--gid", "4294967295"}, "--gid 4294967295: want a number from 0 to 4294967294"},
		{"gid of all ones from the environment", []string{"SECRETFS_GID", "4294967295"}, nil, "--gid 4294967295: "},
		{"setuid file mode", nil, []string{"--file-mode", "4755"}, `"4755": want permission bits from 0 to 0777`},
		{"sticky directory mode from the environment", []string{"SECRETFS_DIR_MODE", "1777"}, nil, `"1777": want permission bits from 0 to 0777`},
		{"log level trace", nil, []string{"--log-level", "trace"}, `--log-level "trace": want debug, info, warn or error`},
		{"log level panic, which would hide every error", nil, []string{"--log-level", "panic"}, `--log-level "panic": want debug, info, warn or error`},
		{"log level fatal from the environment", []string{"SECRETFS_LOG_LEVEL", "fatal"}, nil, `--log-level "fatal": want debug, info, warn or error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(tc.env[0], tc.env[1])
			}
			tmp := t.TempDir()
			mountpoint, dataDir := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
			args := append([]string{"mount", mountpoint, "--data-dir", dataDir, "--metrics-addr", "no-port"}, tc.args...)
			_, _, err := run(t, nil, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("mount %v with %v: error %v, want %q", tc.args, tc.env, err, tc.want)
			}
			for _, p := range []string{mountpoint, dataDir} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("the refused mount made %s", p)
				}
			}
		})
	}
}

// The check above would pass for a mount that made nothing for another
// reason: without the bad value, the same command line makes the
// mountpoint and fails at --metrics-addr.
func TestWithoutABadValueTheMountOfTheTestAboveMakesItsMountpoint(t *testing.T) {
	mountpoint := filepath.Join(t.TempDir(), "mnt")
	_, _, err := run(t, nil, "mount", mountpoint, "--data-dir", filepath.Join(t.TempDir(), "data"), "--metrics-addr", "no-port")
	if err == nil || !strings.HasPrefix(err.Error(), "--metrics-addr no-port: ") {
		t.Errorf("error %v, want the one of --metrics-addr", err)
	}
	if _, err := os.Stat(mountpoint); err != nil {
		t.Errorf("the mount did not get as far as making its mountpoint: %v", err)
	}
}

// Every verb validates the flags before it runs: the shared ones are
// checked for each.
func TestEveryVerbRefusesABadSharedValue(t *testing.T) {
	verbs := newRootCommand().Commands()
	if len(verbs) < 8 {
		t.Fatalf("only %d verbs", len(verbs))
	}
	for _, verb := range verbs {
		if _, err := preRun(t, verb.Name(), "--timeout=0"); err == nil || !strings.Contains(err.Error(), "--timeout 0s: want a positive duration") {
			t.Errorf("%s --timeout=0: error %v", verb.Name(), err)
		}
		if _, err := preRun(t, verb.Name(), "--backend=nfs"); err == nil || !strings.Contains(err.Error(), `--backend "nfs"`) {
			t.Errorf("%s --backend=nfs: error %v", verb.Name(), err)
		}
	}
}

// The defaults pass validation for every verb, and so do the edge values
// that mean something: no caching, no stale window, a cache of one, a
// short deadline.
func TestDefaultsAndTTLZeroStaleWindowZeroAndCacheSizeOneAreAccepted(t *testing.T) {
	for _, verb := range newRootCommand().Commands() {
		if _, err := preRun(t, verb.Name()); err != nil {
			t.Errorf("%s with the defaults: %v", verb.Name(), err)
		}
	}
	if _, err := preRun(t, "mount", "--ttl=0", "--stale-if-error=0", "--cache-size=1", "--apps=a,b", "--watch=a,b*", "--timeout=1s"); err != nil {
		t.Errorf("--ttl 0 --stale-if-error 0 --cache-size 1 --apps a,b --watch a,b* --timeout 1s: %v", err)
	}
}
