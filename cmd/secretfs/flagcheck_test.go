package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTimeoutThatIsNotPositiveIsRefused(t *testing.T) {
	dataDir := newStore(t)
	for _, tc := range []struct {
		name      string
		env, args []string
		want      string
	}{
		{"zero", nil, []string{"--timeout", "0"}, "--timeout 0s: want a positive duration"},
		{"negative", nil, []string{"--timeout", "-1s"}, "--timeout -1s: want a positive duration"},
		{"zero from the environment", []string{"SECRETFS_TIMEOUT", "0s"}, nil, "--timeout 0s: want a positive duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(tc.env[0], tc.env[1])
			}
			_, _, err := run(t, nil, append(append([]string{"ls"}, dataDir...), tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ls %v with %v: error %v, want %q", tc.args, tc.env, err, tc.want)
			}
		})
	}
	if _, _, err := run(t, nil, append([]string{"ls", "--timeout", "1s"}, dataDir...)...); err != nil {
		t.Errorf("ls --timeout 1s: %v", err)
	}
}

func TestBadTTLCacheIdleStaleWindowAndCacheSizeAreRefusedBeforeMounting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env, args []string
		want      string
	}{
		{"negative ttl", nil, []string{"--ttl", "-1s"}, "--ttl -1s: want 0 (ask the store at every open) or a positive duration"},
		{"zero cache idle", nil, []string{"--cache-idle", "0"}, "--cache-idle 0s: want a positive duration"},
		{"negative stale window", nil, []string{"--stale-if-error", "-1s"}, "--stale-if-error -1s: want 0 (never serve stale) or a positive duration"},
		{"negative ttl from the environment", []string{"SECRETFS_TTL", "-5m"}, nil, "--ttl -5m0s: want 0"},
		{"cache size 0", nil, []string{"--cache-size", "0"}, "--cache-size 0: want at least 1"},
		{"negative cache size", nil, []string{"--cache-size", "-3"}, "--cache-size -3: want at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(tc.env[0], tc.env[1])
			}
			tmp := t.TempDir()
			mountpoint, dataDir := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
			// The invalid --apps stops a mount that let the value through
			// before it reaches FUSE, with an error this test does not want.
			args := append([]string{"mount", mountpoint, "--data-dir", dataDir, "--apps", "a/b"}, tc.args...)
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

func TestTTLZeroStaleWindowZeroAndCacheSizeOneAreAccepted(t *testing.T) {
	mf := mountFlags{ttl: 0, cacheSize: 1, cacheIdle: time.Second, staleIfError: 0}
	if err := mf.check(); err != nil {
		t.Errorf("--ttl 0 --stale-if-error 0 --cache-size 1: %v", err)
	}
}
