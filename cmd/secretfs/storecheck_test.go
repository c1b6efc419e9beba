package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/sqlite"
	"github.com/secretfs/secretfs/store/storetest"
)

// putT stores value at k in the store in dataDir.
func putT(t *testing.T, dataDir, k, value string) {
	t.Helper()
	if _, stderr, err := run(t, strings.NewReader(value), "put", k, "--data-dir", dataDir); err != nil {
		t.Fatalf("put %s: %v\n%s", k, err, stderr)
	}
}

// addForeignItem stores an item at k that names masterKeyID as its key, as
// a restored backup or a merged file would bring one into the store. Its
// protected fields are no real envelope: it only has to fail to read.
func addForeignItem(t *testing.T, dataDir string, k store.Key, masterKeyID string) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(dataDir, storeFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	it := storetest.NewCounter(k, 1)
	it.MasterKeyID = masterKeyID
	if err := st.Put(t.Context(), it, store.NoItem); err != nil {
		t.Fatal(err)
	}
}

func TestVerbsRefuseAKeyThatWrappedNoneOfTheStoredSecretsNamingBothKeys(t *testing.T) {
	dir := t.TempDir()
	storeDir, otherDir := filepath.Join(dir, "store"), filepath.Join(dir, "other")
	_, storeKey := initOutput(t, storeDir)
	_, otherKey := initOutput(t, otherDir)
	putT(t, storeDir, "app/s", "value")
	dbPath := filepath.Join(storeDir, storeFile)
	before, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{filepath.Join(otherDir, privateKey), filepath.Join(otherDir, publicKey)} {
		for _, verb := range [][]string{{"get", "app/s"}, {"ls"}, {"ls", "app"}, {"rm", "app/s"}, {"put", "app/new"}, {"init"}} {
			args := append(verb, "--data-dir", storeDir, "--rsa-key", key)
			stdout, _, err := run(t, strings.NewReader("new"), args...)
			want := regexp.MustCompile(`^the store ` + regexp.QuoteMeta(dbPath) + ` holds secrets wrapped under "` + storeKey +
				`" and none under the key ` + regexp.QuoteMeta(key) + ` \(` + otherKey + `\), which could read none of them: ` +
				`restore the key the store was written with, or pass --rsa-key with it \(`)
			if err == nil || !want.MatchString(err.Error()) {
				t.Errorf("%s with the other store's %s: error %v, want one matching %s", verb, filepath.Base(key), err, want)
			}
			if stdout != "" {
				t.Errorf("%s with the other store's key printed %q", verb, stdout)
			}
		}
	}
	if got, err := os.ReadFile(dbPath); err != nil || string(got) != string(before) {
		t.Error("the refused verbs changed the store file")
	}
	if got, _, err := run(t, nil, "get", "app/s", "--data-dir", storeDir); err != nil || got != "value" {
		t.Errorf("get with the store's own key: %q, %v", got, err)
	}
}

func TestAnEmptyStoreOrOneWithASecretUnderTheKeyIsFine(t *testing.T) {
	dir := t.TempDir()
	storeDir, otherDir := filepath.Join(dir, "store"), filepath.Join(dir, "other")
	_, storeKey := initOutput(t, storeDir)
	initOutput(t, otherDir)
	// Empty: any key may start writing it.
	if stdout, stderr, err := run(t, nil, "ls", "--data-dir", storeDir, "--rsa-key", filepath.Join(otherDir, privateKey)); err != nil || stdout != "" || stderr != "" {
		t.Fatalf("ls of an empty store with another key: %q, %q, %v", stdout, stderr, err)
	}
	// One secret under this key and one under another: this key starts,
	// reads its own secret, and says that the other one's fail.
	putT(t, storeDir, "app/mine", "mine")
	foreign := "rsa:sha256:" + strings.Repeat("0", 64)
	addForeignItem(t, storeDir, store.Key{App: "app", Name: "theirs"}, foreign)
	stdout, stderr, err := run(t, nil, "get", "app/mine", "--data-dir", storeDir)
	if err != nil || stdout != "mine" {
		t.Errorf("get app/mine in a store under two keys: %q, %v", stdout, err)
	}
	if want := `the store holds items wrapped under 2 keys: \"` + foreign + `\", \"` + storeKey + `\"; reading those not under ` + storeKey + ` fails with EIO`; !strings.Contains(stderr, want) {
		t.Errorf("a store under two keys was logged as:\n%s\nwant:\n%s", stderr, want)
	}
	if _, _, err := run(t, nil, "get", "app/theirs", "--data-dir", storeDir); err == nil || !strings.Contains(err.Error(), "integrity check failed") {
		t.Errorf("get app/theirs: error %v, want an integrity failure", err)
	}
}

func TestVerbsRefuseAnEmptyStoreFileBesideItsKeyPair(t *testing.T) {
	for _, keep := range []string{privateKey, publicKey} {
		dataDir := filepath.Join(t.TempDir(), "data")
		initOutput(t, dataDir)
		putT(t, dataDir, "app/s", "value")
		dbPath := filepath.Join(dataDir, storeFile)
		if err := os.Truncate(dbPath, 0); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{privateKey, publicKey} {
			if f != keep {
				if err := os.Remove(filepath.Join(dataDir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}
		rsaKey := []string{}
		if keep == publicKey {
			rsaKey = []string{"--rsa-key", filepath.Join(dataDir, publicKey)}
		}
		for _, verb := range [][]string{{"get", "app/s"}, {"ls"}, {"put", "app/s"}, {"init"}} {
			args := append(append(verb, "--data-dir", dataDir), rsaKey...)
			_, _, err := run(t, strings.NewReader("new"), args...)
			want := "the store " + dbPath + " is empty (0 bytes) but its key pair is beside it: the file was probably truncated"
			if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "restore it from a backup") {
				t.Errorf("%s beside %s: error %v, want %q...", verb, keep, err, want)
			}
		}
		if fi, err := os.Stat(dbPath); err != nil || fi.Size() != 0 {
			t.Errorf("the refused verbs wrote to the empty store file (%v)", err)
		}
	}
}

// Every verb refuses a store whose key.pem is missing with the same
// advice, before it opens anything: restore the key or pass --rsa-key.
func TestEveryVerbRefusesAStoreWhoseKeyIsMissingWithTheAdvice(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	initOutput(t, dataDir)
	putT(t, dataDir, "app/s", "value")
	private := filepath.Join(dataDir, privateKey)
	if err := os.Remove(private); err != nil {
		t.Fatal(err)
	}
	want := "the store " + filepath.Join(dataDir, storeFile) + " exists but its key " + private + " is missing: restore the key, or pass --rsa-key"
	mnt := filepath.Join(t.TempDir(), "mnt")
	for _, verb := range [][]string{{"ls"}, {"get", "app/s"}, {"env", "app"}, {"migrate", "--dry-run"}, {"put", "app/s"}, {"rm", "app/s"},
		{"exec", "--app", "app", "--", "true"}, {"init"}, {"mount", mnt}, {"mount", mnt, "--read-only"}} {
		args := append([]string{verb[0], "--data-dir", dataDir}, verb[1:]...)
		_, _, err := run(t, strings.NewReader("new"), args...)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s without %s: error %v, want %q", verb, privateKey, err, want)
		}
	}
	if _, err := os.Stat(private); !os.IsNotExist(err) {
		t.Errorf("a verb made a new %s beside the store", privateKey)
	}
}

// A private key every user may read is refused by every verb that loads
// it, naming the file, who may read it and the fix, and
// nothing of the key; a public key of mode 0644 (as init makes it) is
// loaded, to write with.
func TestEveryVerbRefusesAPrivateKeyOthersMayRead(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	initOutput(t, dataDir)
	putT(t, dataDir, "app/s", "value")
	private, public := filepath.Join(dataDir, privateKey), filepath.Join(dataDir, publicKey)
	if err := os.Chmod(private, 0o644); err != nil {
		t.Fatal(err)
	}
	want := "key file " + private + ": every user may read it (mode 0644), and it decrypts every secret: chmod go-r it"
	// mount is TestAMountOfAPrivateKeyOthersMayReadIsRefused's, through
	// the binary: here one let through would serve until the test timed out.
	for _, verb := range [][]string{{"ls"}, {"get", "app/s"}, {"env", "app"}, {"migrate", "--dry-run"}, {"put", "app/s"}, {"rm", "app/s"},
		{"exec", "--app", "app", "--", "true"}, {"init"}} {
		args := append([]string{verb[0], "--data-dir", dataDir}, verb[1:]...)
		_, _, err := run(t, strings.NewReader("new"), args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s with %s of mode 0644: error %v, want %q", verb, privateKey, err, want)
		}
	}
	if _, stderr, err := run(t, strings.NewReader("new"), "put", "app/s", "--data-dir", dataDir, "--rsa-key", public); err != nil {
		t.Errorf("put with the public key of mode 0644: %v\n%s", err, stderr)
	}
}
