package fs_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store/memory"
	"github.com/secretfs/secretfs/vfs"
)

// mountMemory mounts, in this process, a file system over an in-memory
// store and a fake key wrapper, as Upspin's upspinfs tests do: the race
// detector then sees the file system's own code. It fails (never skips)
// where FUSE cannot be mounted.
func mountMemory(t *testing.T, opts fs.Options) string {
	t.Helper()
	envelope, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	keeper := secrets.NewKeeper(memory.New(), envelope, secrets.Options{})
	log := logrus.New()
	log.SetOutput(io.Discard)
	opts.Log = log
	opts.FileMode, opts.DirMode = 0o600, 0o700
	opts.UID, opts.GID = uint32(os.Getuid()), uint32(os.Getgid())
	opts.TTL = time.Minute
	dir := t.TempDir()
	server, err := fs.Mount(dir, cache.New(keeper, cache.Options{TTL: time.Minute}), opts)
	if err != nil {
		t.Fatalf("mount (run as root with /dev/fuse and fuse3): %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			// Files left open by a failed test: detach, so that no
			// mount outlives the test either way.
			t.Errorf("unmount: %v", err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// open opens p for the test and closes it when the test ends, whatever
// happens in between.
func open(t *testing.T, p string, flag int) (*os.File, error) {
	f, err := os.OpenFile(p, flag, 0o600)
	if err == nil {
		t.Cleanup(func() { f.Close() })
	}
	return f, err
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

func TestWriteThenReadRoundTrips(t *testing.T) {
	dir := mountMemory(t, fs.Options{})
	p := filepath.Join(dir, "app", "db")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("read back %q, %v", got, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != 7 || fi.Mode() != 0o600 {
		t.Fatalf("stat: %v, %v", fi, err)
	}
}

// The layout's refusals: each with the errno a shell user expects.
func TestLayoutRefusals(t *testing.T) {
	dir := mountMemory(t, fs.Options{})
	app := filepath.Join(dir, "app")
	if err := os.Mkdir(app, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "s"), []byte("v"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "a file at the root", os.WriteFile(filepath.Join(dir, "loose"), nil, 0o600), syscall.EPERM)
	wantErrno(t, "a directory in an application", os.Mkdir(filepath.Join(app, "sub"), 0o700), syscall.EPERM)
	wantErrno(t, "chmod to another mode", os.Chmod(filepath.Join(app, "s"), 0o644), syscall.EPERM)
	if err := os.Chmod(filepath.Join(app, "s"), 0o600); err != nil {
		t.Errorf("chmod to the mode it has: %v", err)
	}
	wantErrno(t, "renaming an application", os.Rename(app, filepath.Join(dir, "other")), syscall.EXDEV)
	wantErrno(t, "mkdir of an existing application", os.Mkdir(app, 0o700), syscall.EEXIST)
	wantErrno(t, "rmdir of a non-empty application", os.Remove(app), syscall.ENOTEMPTY)
	wantErrno(t, "a secret moved out of its application", os.Rename(filepath.Join(app, "s"), filepath.Join(dir, "s")), syscall.EPERM)
}

// A write-only mount replaces values but opens none that would read one.
func TestWriteOnlyMountOpensOnlyForReplacing(t *testing.T) {
	dir := mountMemory(t, fs.Options{Options: vfs.Options{WriteOnly: true}})
	p := filepath.Join(dir, "app", "s")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("v1"), 0o600); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := os.WriteFile(p, []byte("v2"), 0o600); err != nil {
		t.Fatalf("replace: %v", err)
	}
	_, err := os.ReadFile(p)
	wantErrno(t, "read", err, syscall.EACCES)
	_, err = open(t, p, os.O_WRONLY|os.O_APPEND)
	wantErrno(t, "append", err, syscall.EACCES)
	_, err = open(t, p, os.O_RDWR)
	wantErrno(t, "read-write", err, syscall.EACCES)
}

// twoWriters opens the secret p twice for writing, both handles expecting
// the same version.
func twoWriters(t *testing.T) (p string, a, b *os.File) {
	t.Helper()
	p = filepath.Join(mountMemory(t, fs.Options{}), "app", "s")
	os.Mkdir(filepath.Dir(p), 0o700)
	if err := os.WriteFile(p, []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if a, err = open(t, p, os.O_WRONLY|os.O_TRUNC); err != nil {
		t.Fatal(err)
	}
	if b, err = open(t, p, os.O_WRONLY|os.O_TRUNC); err != nil {
		t.Fatal(err)
	}
	return p, a, b
}

// Of two handles that read the same version, the second to commit fails
// with ESTALE at close, and the first value survives.
func TestSecondWriterGetsESTALE(t *testing.T) {
	p, a, b := twoWriters(t)
	a.WriteString("a")
	b.WriteString("b")
	if err := a.Close(); err != nil {
		t.Fatalf("first close: %v", err)
	}
	wantErrno(t, "second close", b.Close(), syscall.ESTALE)
	if got, _ := os.ReadFile(p); string(got) != "a" {
		t.Errorf("value %q, want the first writer's", got)
	}
}

// A commit that failed for good keeps failing: a later fsync does not
// pretend the value is stored.
func TestFailedCommitIsReportedAgainByFsync(t *testing.T) {
	_, a, b := twoWriters(t)
	a.WriteString("a")
	a.Close()
	b.WriteString("b")
	wantErrno(t, "fsync of the stale writer", b.Sync(), syscall.ESTALE)
	wantErrno(t, "second fsync", b.Sync(), syscall.ESTALE)
}

// A write in place (no O_TRUNC) goes to the writer's buffer over the
// value, which the close lays it on; a read through the same descriptor
// sees the value with the write.
func TestAWriteInPlaceIsLaidOverTheValue(t *testing.T) {
	dir := mountMemory(t, fs.Options{})
	p := filepath.Join(dir, "app", "s")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := open(t, p, os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("XY"), 2); err != nil {
		t.Fatalf("write in place: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "abXYef" {
		t.Fatalf("after the close: %q, %v; want abXYef", got, err)
	}
	rw, err := open(t, p, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt([]byte("Z"), 7); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _ := rw.ReadAt(buf, 0)
	if string(buf[:n]) != "abXYef\x00Z" {
		t.Errorf("read through the writer: %q, want the value with the write", buf[:n])
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
}

// On a mount that holds only a public key, a write in place cannot be
// laid over a value the mount cannot read: the write is taken, the close
// fails with EACCES, and the value is left as it was.
func TestWriteOnlyMountRefusesAWriteInPlaceAtClose(t *testing.T) {
	dir := mountMemory(t, fs.Options{Options: vfs.Options{WriteOnly: true}})
	p := filepath.Join(dir, "app", "s")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := open(t, p, os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("XY"), 2); err != nil {
		t.Fatalf("write: %v", err)
	}
	wantErrno(t, "close of a write in place", w.Close(), syscall.EACCES)
	if fi, err := os.Stat(p); err != nil || fi.Size() != 6 {
		t.Errorf("after the refused close: %v, %v; want the 6 bytes as they were", fi, err)
	}
}
