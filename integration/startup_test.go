package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/sqlite"
)

// Start-up that catches mistakes: the local backend refuses a key that
// wrapped none of its secrets and a store file emptied beside its keys,
// before anything is mounted, so that a service on the wrong key or an
// emptied file does no harm quietly.

// keyIDOf matches the key id `secretfs init` reports.
var keyIDOf = regexp.MustCompile(`(?m)^ready: local store .*, key (rsa:sha256:[0-9a-f]{64})$`)

// initKey runs `secretfs init` for b and returns the id of its key.
func initKey(t *testing.T, b *backend) string {
	t.Helper()
	m := keyIDOf.FindStringSubmatch(b.cli(t, nil, "init"))
	if m == nil {
		t.Fatal("init did not say which key is ready")
	}
	return m[1]
}

// mountRefused runs `secretfs mount` on a new mountpoint; it must exit
// with status 1 before mounting anything. It returns what it wrote to
// stderr. A mount that starts after all is stopped and detached.
func mountRefused(t *testing.T, b *backend, extra ...string) string {
	t.Helper()
	requireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(append([]string{"mount", dir}, b.flags...), extra...)...)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if isMounted(dir) {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		t.Errorf("secretfs mounted %s", dir)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("secretfs mount: %v, want exit status 1\n%s", err, stderr.String())
	}
	return stderr.String()
}

func TestMountAndVerbsRefuseAKeyThatWrappedNoneOfTheSecretsNamingBothKeys(t *testing.T) {
	b, other := localBackend(t), localBackend(t)
	storeKey, otherKey := initKey(t, b), initKey(t, other)
	b.cli(t, []byte("value"), "put", "app/s")
	dbPath := filepath.Join(b.dataDir(), "secrets.db")
	for _, key := range []string{filepath.Join(other.dataDir(), "key.pem"), filepath.Join(other.dataDir(), "key.pub.pem")} {
		want := "secretfs: the store " + dbPath + ` holds secrets wrapped under "` + storeKey + `" and none under the key ` +
			key + " (" + otherKey + "), which could read none of them: restore the key the store was written with, or pass --rsa-key with it"
		if got := mountRefused(t, b, "--rsa-key", key); !strings.HasPrefix(got, want) || strings.Count(got, "\n") != 1 {
			t.Errorf("mount with the other store's %s says:\n%s\nwant one line starting:\n%s", filepath.Base(key), got, want)
		}
		if _, stderr, err := b.run([]byte("new"), "put", "app/s", "--rsa-key", key); err == nil || !strings.HasPrefix(stderr, want) {
			t.Errorf("put with the other store's %s: %v\n%s", filepath.Base(key), err, stderr)
		}
	}
	if got := b.cli(t, nil, "get", "app/s"); got != "value" {
		t.Errorf("after the refusals, get reads %q, want value", got)
	}
}

// A mount whose private key every user may read (key.pem chmod 0644) is
// refused at start, in one line naming the file, who may read it and the
// fix, and nothing is mounted; once it is 0600 again, it mounts.
func TestAMountOfAPrivateKeyOthersMayReadIsRefused(t *testing.T) {
	b := localBackend(t)
	initKey(t, b)
	key := filepath.Join(b.dataDir(), "key.pem")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	want := "secretfs: invalid argument: key file " + key + ": every user may read it (mode 0644), and it decrypts every secret: chmod go-r it\n"
	if got := mountRefused(t, b); got != want {
		t.Errorf("a mount with key.pem of mode 0644 says:\n%s\nwant:\n%s", got, want)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	mount(t, b).mustSh("ls")
}

func TestMountAndVerbsRefuseAnEmptyStoreFileBesideItsKeyPair(t *testing.T) {
	b := localBackend(t)
	initKey(t, b)
	b.cli(t, []byte("value"), "put", "app/s")
	dbPath := filepath.Join(b.dataDir(), "secrets.db")
	if err := os.Truncate(dbPath, 0); err != nil {
		t.Fatal(err)
	}
	want := "secretfs: the store " + dbPath + " is empty (0 bytes) but its key pair is beside it: the file was probably truncated"
	if got := mountRefused(t, b); !strings.HasPrefix(got, want) || !strings.Contains(got, "restore it from a backup") {
		t.Errorf("mount of an empty store file says:\n%s\nwant:\n%s...", got, want)
	}
	if _, stderr, err := b.run(nil, "ls"); err == nil || !strings.HasPrefix(stderr, want) {
		t.Errorf("ls of an empty store file: %v\n%s", err, stderr)
	}
	if fi, err := os.Stat(dbPath); err != nil || fi.Size() != 0 {
		t.Errorf("the refused mount and ls wrote to the empty store file (%v)", err)
	}
}

// A store may still come to hold items under two keys: a backup restored
// into it, a file merged. A mount on either key starts, and reading an
// item under the other key fails with EIO ("Input/output error"), logged
// with both keys; EACCES is for a host that holds only the public key
// (TestPublicKeyOnlyMountWritesButCannotRead).
func TestASecretWrappedUnderAnotherKeyReadsAsEIO(t *testing.T) {
	b, other := localBackend(t), localBackend(t)
	storeKey, otherKey := initKey(t, b), initKey(t, other)
	mine, theirs := unique("mine"), unique("theirs")
	b.cli(t, []byte(mine), "put", "app/mine")
	other.cli(t, []byte(theirs), "put", "app/theirs")
	copyItem(t, filepath.Join(other.dataDir(), "secrets.db"), filepath.Join(b.dataDir(), "secrets.db"), store.Key{App: "app", Name: "theirs"})

	m := mount(t, b)
	m.secret(mine)
	m.secret(theirs)
	if got := m.mustSh("cat app/mine"); got != mine {
		t.Errorf("cat app/mine: %q, want %q", got, mine)
	}
	m.failSh("cat app/theirs", "Input/output error")
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	log := m.log()
	if !strings.Contains(log, "the store holds items wrapped under 2 keys") {
		t.Errorf("the mount did not log that the store is under two keys:\n%s", log)
	}
	if !strings.Contains(log, `document key was wrapped by \"`+otherKey+`\", this key is `+storeKey) {
		t.Errorf("the failed read was not logged naming both keys:\n%s", log)
	}
}

// copyItem copies the stored item at k from one store file to another.
func copyItem(t *testing.T, from, to string, k store.Key) {
	t.Helper()
	src, err := sqlite.Open(t.Context(), from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	it, err := src.Get(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := sqlite.Open(t.Context(), to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Put(t.Context(), it, store.NoItem); err != nil {
		t.Fatal(err)
	}
}

// `secretfs ls` prints names as GNU ls does in its shell-escape quoting
// style: byte for byte the same listing of the same names, read through
// the mount. (Names with a space or other shell characters but no control
// character are left out: GNU ls quotes them, secretfs prints them as they
// are.)
func TestLsQuotesNamesWithControlCharactersAsGNULsDoes(t *testing.T) {
	b := localBackend(t)
	m := mount(t, b)
	apps := []string{"plain", "new\nline", "tab\there"}
	secrets := []string{"db-password", "a\nb", "\nleading", "trailing\n", "esc\x1b[31mred", "del\x7f", "c1\u0085", "café\n", "bell\a\b\f\r\v", "\x01"}
	for _, app := range apps {
		// An application is listed by the store once it holds a secret.
		if err := os.Mkdir(m.path(app), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.path(filepath.Join(app, "s")), []byte("v"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range secrets {
		if err := os.WriteFile(m.path(filepath.Join("plain", s)), []byte("v"), 0o600); err != nil {
			t.Fatalf("writing %q: %v", s, err)
		}
	}
	gnuLs := func(dir string) string {
		t.Helper()
		cmd := exec.Command("ls", "--quoting-style=shell-escape", dir)
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ls %s: %v", dir, err)
		}
		return string(out)
	}
	if got, want := b.cli(t, nil, "ls"), gnuLs(m.dir); got != want {
		t.Errorf("secretfs ls:\n%q\nGNU ls:\n%q", got, want)
	}
	if got, want := b.cli(t, nil, "ls", "plain"), gnuLs(m.path("plain")); got != want {
		t.Errorf("secretfs ls plain:\n%q\nGNU ls:\n%q", got, want)
	}
}
