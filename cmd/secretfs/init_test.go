package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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

func TestInitCreatesDataDir0700AndKeyPair0600AndSaysWhere(t *testing.T) {
	// With no umask, only the code's own modes keep these private. The
	// test's own directory is made first: t.TempDir leaves its mode to
	// the umask, and one every user may write would be refused as a
	// place for the key.
	base := t.TempDir()
	defer unix.Umask(unix.Umask(0))
	dataDir := filepath.Join(base, "nested", "data")
	stdout, _ := initOutput(t, dataDir)
	private, public := filepath.Join(dataDir, privateKey), filepath.Join(dataDir, publicKey)
	for path, want := range map[string]os.FileMode{
		dataDir:                           0o700 | os.ModeDir,
		private:                           0o600,
		public:                            0o644,
		filepath.Join(dataDir, storeFile): 0o600,
	} {
		if fi, err := os.Stat(path); err != nil {
			t.Error(err)
		} else if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	for _, want := range []string{
		"created the data directory " + dataDir + " (mode 0700)\n",
		"\n  " + private + "  private: ",
		"\n  " + public + "  public: ",
		"ready: local store " + filepath.Join(dataDir, storeFile) + ", key rsa:sha256:",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("init's output does not say %q:\n%s", want, stdout)
		}
	}
}

func TestSecondInitKeepsTheKeyPair(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	_, firstKey := initOutput(t, dataDir)
	private := filepath.Join(dataDir, privateKey)
	before, err := os.ReadFile(private)
	if err != nil {
		t.Fatal(err)
	}
	stdout, secondKey := initOutput(t, dataDir)
	if secondKey != firstKey {
		t.Errorf("the second init reports key %s, the first %s", secondKey, firstKey)
	}
	if after, err := os.ReadFile(private); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the second init changed %s (err %v)", private, err)
	}
	if strings.Contains(stdout, "generated") || strings.Contains(stdout, "created") {
		t.Errorf("the second init says it made something:\n%s", stdout)
	}
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
