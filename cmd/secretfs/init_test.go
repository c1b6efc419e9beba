package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readyKey is the master key id init reports: the RSA key's fingerprint.
var readyKey = regexp.MustCompile(`(?m)^ready: local store .*, key (rsa:sha256:[0-9a-f]{64})$`)

func initOutput(t *testing.T, dataDir string) (stdout, key string) {
	t.Helper()
	stdout, stderr, err := run(t, nil, "init", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, stderr)
	}
	m := readyKey.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("init did not say which key is ready:\n%s", stdout)
	}
	return stdout, m[1]
}

// A store whose key went missing is not a first use: a new key pair would
// leave every stored secret unreadable.
func TestInitRefusesToGenerateAKeyBesideAStoreWhoseKeyIsMissing(t *testing.T) {
	for _, keep := range []string{"", publicKey} {
		dataDir := filepath.Join(t.TempDir(), "data")
		initOutput(t, dataDir)
		for _, f := range []string{privateKey, publicKey} {
			if f != keep {
				if err := os.Remove(filepath.Join(dataDir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}
		_, _, err := run(t, nil, "init", "--data-dir", dataDir)
		want := "the store " + filepath.Join(dataDir, storeFile) + " exists but its key " + filepath.Join(dataDir, privateKey) + " is missing"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("init with %s missing: error %v, want %q", privateKey, err, want)
		}
		if _, err := os.Stat(filepath.Join(dataDir, privateKey)); !os.IsNotExist(err) {
			t.Errorf("init made a new %s beside the store", privateKey)
		}
	}
}
