package integration

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/internal/testserver"
)

// What editors and tools do with temporary files: create, close, then at
// once remove or rename (vim's swap file, sed -i). The close commits only
// at the kernel's RELEASE, which close(2) does not wait for; the next step
// must still find the file.
func TestCreateCloseThenUnlinkOrRenameAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app")
		for i := range 10 {
			p := m.path(fmt.Sprintf("app/.swp%d", i))
			f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := os.Remove(p); err != nil {
				t.Fatalf("remove right after create and close: %v", err)
			}
			final := m.path(fmt.Sprintf("app/final%d", i))
			f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := os.Rename(p, final); err != nil {
				t.Fatalf("rename right after create and close: %v", err)
			}
		}
		if got := m.mustSh("ls -a app | tr '\\n' ' '"); got != ". .. final0 final1 final2 final3 final4 final5 final6 final7 final8 final9 " {
			t.Errorf("app lists %q; want the renamed files only", got)
		}
	})
}

// An open file follows a rename, as on any file system: what its writer
// commits lands under the new name.
func TestRenameWithAnOpenWriterMovesItsWrite(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo old > app/s")
		f, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		m.mustSh("mv app/s app/t")
		if _, err := f.WriteString("written after the rename\n"); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close after the rename: %v", err)
		}
		if got := m.mustSh("cat app/t; ls app"); got != "written after the rename\nt\n" {
			t.Errorf("after rename and close: %q", got)
		}
	})
}

// Writes to a removed file vanish; its close does not bring it back.
func TestUnlinkWithAnOpenWriterDiscardsItsWrite(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo old > app/s")
		f, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		m.mustSh("rm app/s")
		if _, err := f.WriteString("into the void\n"); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close of a removed file: %v", err)
		}
		if got := m.mustSh("ls app"); got != "" {
			t.Errorf("the removed secret came back: ls shows %q", got)
		}
	})
}

// A secret removed elsewhere while the kernel still has its name cached
// is written anew by the next `echo >`, not refused.
func TestWriteAfterRemovalElsewhereCreatesItAgain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo one > app/g")
		b.cli(t, nil, "rm", "app/g")
		m.mustSh("echo two > app/g")
		if got := m.mustSh("cat app/g"); got != "two\n" {
			t.Errorf("cat: %q", got)
		}
	})
}

// A reader reads the whole value it opened, even after a rewrite; stat
// describes what is committed, never another process's uncommitted
// buffer (the writer works on an inode of its own: its fstat shows its
// buffer, see TestAWriterThatResizesThenWritesAtTheEndWritesWhereItMeans).
func TestReadersKeepTheirSnapshotAndStatShowsTheCommittedSize(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && printf %0100d 0 > app/s")
		r, err := os.Open(m.path("app/s"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		m.mustSh("printf %010d 1 > app/s")
		buf := make([]byte, 200)
		if n, _ := r.Read(buf); n != 100 {
			t.Errorf("the reader read %d bytes, want its snapshot's 100", n)
		}

		w, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.Write(make([]byte, 5000)); err != nil {
			t.Fatal(err)
		}
		if got := m.mustSh("stat -c %s app/s"); got != "10\n" {
			t.Errorf("another process's stat during the write shows %q, want the committed 10", got)
		}
	})
}

// A value over the store's limit is refused with EFBIG, and what was
// written before the refusal is not committed either.
func TestValueOverTheLimitIsEFBIGAndChangesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo keep > app/s")
		m.failSh("head -c 1100000 /dev/zero > "+m.path("app/s"), "File too large")
		m.failSh("cp "+writeTemp(t, make([]byte, 1100000))+" app/s", "File too large")
		m.failSh("head -c 1100000 /dev/zero > app/new", "File too large")
		if got := m.mustSh("cat app/s; ls app"); got != "keep\ns\n" {
			t.Errorf("after refused writes: %q", got)
		}
	})
}

// What fsync and close say is true: a commit whose request went out to a
// store that then froze has an unknown outcome, which fsync reports
// (EIO) and the log names as unknown, never as lost. That buffer is never
// committed afterwards, not by a later fsync, the close or the release,
// even once the store is back; the next read asks the store.
func TestAnUnsureCommitIsReportedAndNeverCommittedLater(t *testing.T) {
	b, own := ownDynamo(t, false, "--timeout", "1s")
	b.cli(t, []byte("before"), "put", "app/s")
	m := mount(t, b)
	f, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(m.secret(unique("after"))); err != nil {
		t.Fatal(err)
	}
	own.Pause()
	err = f.Sync()
	own.Resume()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync with the store frozen: %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync once the store is back: %v, want the same EIO: the buffer is not committed later", err)
	}
	if err := f.Close(); !errors.Is(err, syscall.EIO) {
		t.Errorf("close: %v, want EIO", err)
	}
	if got := b.cli(t, nil, "get", "app/s"); got != "before" {
		t.Errorf("stored value %q, want the value before: the failed buffer was committed", got)
	}
	if got := m.mustSh("cat app/s"); got != "before" {
		t.Errorf("the mount reads %q, want what the store holds", got)
	}
	log := m.log()
	if !strings.Contains(log, "outcome is unknown") {
		t.Errorf("the log does not call the outcome unknown:\n%s", log)
	}
	if strings.Contains(log, "lost") {
		t.Errorf("the log calls an unknown outcome lost:\n%s", log)
	}
}

// Every flag can be given as SECRETFS_<FLAG>.
func TestEnvironmentVariablesSetFlags(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	b := &backend{name: "local", env: []string{"SECRETFS_DATA_DIR=" + dataDir, "SECRETFS_FORMAT=v1"}}
	b.cli(t, nil, "init")
	b.cli(t, []byte("from the environment"), "put", "app/s")
	if got := b.cli(t, nil, "ls", "-l", "app"); !strings.Contains(got, " v1 ") {
		t.Errorf("SECRETFS_FORMAT=v1 did not apply: %q", got)
	}
	if got := b.cli(t, nil, "get", "app/s", "--data-dir", dataDir); got != "from the environment" {
		t.Errorf("get: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "secrets.db")); err != nil {
		t.Errorf("SECRETFS_DATA_DIR did not apply: %v", err)
	}
}

// The first mount makes a private data directory and a private key.
func TestFirstMountCreatesAPrivateDataDirAndKey(t *testing.T) {
	b := localBackend(t)
	m := mount(t, b)
	m.mustSh("mkdir app && echo x > app/s")
	for path, want := range map[string]os.FileMode{
		b.dataDir():                                  0o700 | os.ModeDir,
		filepath.Join(b.dataDir(), "key.pem"):        0o600,
		filepath.Join(b.dataDir(), "key.pub.pem"):    0o644,
		filepath.Join(b.dataDir(), "secrets.db"):     0o600,
		filepath.Join(b.dataDir(), "secrets.db-wal"): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		} else if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

// ^C (SIGINT) unmounts and exits cleanly, like SIGTERM.
func TestSIGINTUnmountsCleanly(t *testing.T) {
	m := mount(t, localBackend(t))
	m.mustSh("mkdir app && echo x > app/s")
	if err := m.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := m.stop(); err != nil {
		t.Fatalf("after SIGINT: %v", err)
	}
	if isMounted(m.dir) {
		t.Error("still mounted after SIGINT")
	}
}

// A writer that read a secret since deleted and created again cannot
// overwrite the new one: the Versions start over and may match, but the
// revision it expects is gone. (Conditions name a write, not a number.)
func TestWriterOfADeletedAndRecreatedSecretGetsESTALE(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b, "--ttl", "0")
		m.mustSh("mkdir app && echo original > app/s")
		f, err := os.OpenFile(m.path("app/s"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b.cli(t, nil, "rm", "app/s")
		b.cli(t, []byte("new value from the admin"), "put", "app/s") // Version 1 again
		if _, err := f.WriteAt([]byte("STALE"), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); !errors.Is(err, syscall.ESTALE) {
			t.Errorf("close of the stale writer: %v, want ESTALE", err)
		}
		if got := b.cli(t, nil, "get", "app/s"); got != "new value from the admin" {
			t.Errorf("the admin's value became %q", got)
		}
	})
}

// A writer that was already stale when its file was renamed stays stale
// at the new name.
func TestStaleWriterFollowingARenameGetsESTALE(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo v1 > app/a")
		f, err := os.OpenFile(m.path("app/a"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m.mustSh("echo v2-from-another-writer > app/a && mv app/a app/b")
		f.WriteAt([]byte("stale buffer\n"), 0)
		if err := f.Close(); !errors.Is(err, syscall.ESTALE) {
			t.Errorf("close of the stale writer after the rename: %v, want ESTALE", err)
		}
		if got := m.mustSh("cat app/b"); got != "v2-from-another-writer\n" {
			t.Errorf("app/b is %q", got)
		}
	})
}

// While a file is being created, others see no file: not its partial
// content, not an error that says otherwise.
func TestFileBeingCreatedIsNotThereForReaders(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app")
		f, err := os.OpenFile(m.path("app/new"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteString("partial")
		m.failSh("cat app/new", "No such file or directory")
		f.WriteString(" and the rest\n")
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := m.mustSh("cat app/new"); got != "partial and the rest\n" {
			t.Errorf("after the close: %q", got)
		}
	})
}

// The editors people use on secrets: vim (with its swap file) and sed -i
// (a temporary file renamed over the original).
func TestEditingWithVimAndSed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && printf 'user=admin\npassword=old\n' > app/config")
		m.mustSh("vim -u NONE -i NONE -Es -c '%s/password=old/password=new/' -c wq app/config")
		if got := m.mustSh("cat app/config; ls -a app"); got != "user=admin\npassword=new\n.\n..\nconfig\n" {
			t.Errorf("after vim: %q (a leftover swap file would show here)", got)
		}
		m.mustSh("sed -i 's/user=admin/user=root/' app/config")
		if got := m.mustSh("cat app/config; ls -a app"); got != "user=root\npassword=new\n.\n..\nconfig\n" {
			t.Errorf("after sed -i: %q", got)
		}
	})
}

// A commit at the last close may take as long as the backend allows. An
// unlink or rename that follows waits for it, and acts on what it
// committed.
func TestUnlinkAndRenameWaitForACommitInFlight(t *testing.T) {
	own, err := testserver.StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	alias := localKMSKey(t)
	b := &backend{name: "dynamodb", env: append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+own.URL, "AWS_ENDPOINT_URL_KMS="+localKMS.URL),
		flags: []string{"--backend", "dynamodb", "--table", "slow", "--kms-key", alias}}
	b.cli(t, nil, "init")
	m := mount(t, b)
	m.mustSh("mkdir app")
	for _, step := range []struct{ name, then string }{
		{"swap", "rm app/swap"},
		{"tmp", "mv app/tmp app/final"},
	} {
		f, err := os.Create(m.path("app/" + step.name)) // nothing written: commits at RELEASE
		if err != nil {
			t.Fatal(err)
		}
		own.Pause() // the RELEASE commit hangs until Resume
		f.Close()
		resumed := make(chan struct{})
		go func() { time.Sleep(1500 * time.Millisecond); own.Resume(); close(resumed) }()
		m.mustSh(step.then)
		<-resumed
	}
	if got := m.mustSh("ls app"); got != "final\n" {
		t.Errorf("after rm and mv behind slow commits, app lists %q, want only final", got)
	}
}

// Throttling is retried by the SDK with backoff; throttling that does not
// stop ends in EIO and a log line, not a hang.
func TestThrottlingIsRetriedThenEIO(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("value"), "put", "app/s")
	b.cli(t, []byte("value"), "put", "app/t")
	m := mount(t, b, "--ttl", "0")
	m.mustSh("ls app >/dev/null")
	dynalite.Throttle(1)
	if got := m.mustSh("cat app/s"); got != "value" {
		t.Errorf("cat after one throttled request: %q", got)
	}
	dynalite.Throttle(1000)
	defer dynalite.Throttle(0)
	m.failSh("cat app/t", "Input/output error")
	if !strings.Contains(m.log(), "backend unavailable") {
		t.Errorf("the log does not say the backend is unavailable")
	}
}

// A writer killed before it closes the file (kill -9, a timeout, a crash)
// commits nothing: what it wrote is a part of what it meant, and the old
// value stays whole. So does a truncation that the killed child of a
// shell was to fill. A writer that exits without closing its descriptor
// still commits, and so does one whose helper child, holding an inherited
// copy, is killed. (Each writer here is a shell whose stdout is the secret
// and which writes with its builtin printf, so that nothing closes a
// descriptor of the file before the kernel does at exit.)
func TestAKilledWriterCommitsNothing(t *testing.T) {
	m := mount(t, localBackend(t))
	m.mustSh("mkdir app && echo old > app/s")
	for _, tc := range []struct{ what, script, want string }{
		{"killed after writing a part", `sh -c 'printf part; kill -9 $$' > app/s`, "old\n"},
		{"killed after truncating", `sh -c 'kill -9 $$' > app/s`, "old\n"},
		{"killed while creating a new secret", `sh -c 'printf part; kill -9 $$' > app/new`, "old\n"},
		{"killed by SIGTERM after appending", `sh -c 'printf more; kill -TERM $$' >> app/s`, "old\n"},
		{"a writer whose helper child is killed", `sh -c 'printf whole; sh -c "kill -9 \$\$"; true' > app/s`, "whole"},
		{"a writer that exits without closing", `sh -c 'printf new; exit 0' > app/s`, "new"},
	} {
		m.sh(tc.script) // killed or not, what counts is what it left
		if got := m.mustSh("cat app/s"); got != tc.want {
			t.Errorf("%s: app/s is %q, want %q", tc.what, got, tc.want)
		}
		if got := m.mustSh("ls app"); got != "s\n" {
			t.Errorf("%s: app lists %q", tc.what, got)
		}
	}
	if !strings.Contains(m.log(), "killed by signal 9") {
		t.Errorf("the log does not say why a write was discarded:\n%s", m.log())
	}
}

// The mount and the admin verbs write one store at the same time: every
// write of either lands, and neither sees a locked or torn store.
func TestMountAndCLIWriteTheStoreAtOnce(t *testing.T) {
	b := localBackend(t)
	m := mount(t, b, "--ttl", "0")
	m.mustSh("mkdir app")
	const n = 20
	cliDone := make(chan error, 1)
	go func() {
		for i := range n {
			if _, errOut, err := b.run([]byte(fmt.Sprintf("cli %d", i)), "put", fmt.Sprintf("app/cli-%02d", i)); err != nil {
				cliDone <- fmt.Errorf("secretfs put #%d: %v: %s", i, err, errOut)
				return
			}
		}
		cliDone <- nil
	}()
	m.mustSh(fmt.Sprintf(`i=0; while [ $i -lt %d ]; do /bin/echo "mount $i" > app/mount-$(printf %%02d $i) || exit 1; i=$((i+1)); done`, n))
	if err := <-cliDone; err != nil {
		t.Fatal(err)
	}
	listed := strings.Fields(b.cli(t, nil, "ls", "app"))
	if len(listed) != 2*n {
		t.Fatalf("the store lists %d secrets, want %d: %v", len(listed), 2*n, listed)
	}
	for i := range n {
		if got := b.cli(t, nil, "get", fmt.Sprintf("app/mount-%02d", i)); got != fmt.Sprintf("mount %d\n", i) {
			t.Errorf("app/mount-%02d is %q", i, got)
		}
		if got := m.mustSh(fmt.Sprintf("cat app/cli-%02d", i)); got != fmt.Sprintf("cli %d", i) {
			t.Errorf("app/cli-%02d is %q", i, got)
		}
	}
}

// A program that extends a secret, or truncates it, and then writes at
// its end (lseek(SEEK_END), as an editor or a log appender does) writes
// where it means to: its descriptor describes what it has written, while
// every other process reads the value committed before, whole.
func TestAWriterThatResizesThenWritesAtTheEndWritesWhereItMeans(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && printf 0123456789 > app/s")
		f, err := os.OpenFile(m.path("app/s"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		end := func() int64 {
			t.Helper()
			n, err := f.Seek(0, io.SeekEnd)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if _, err := f.WriteAt([]byte("abcdefghijklmnopqrst"), 0); err != nil {
			t.Fatal(err)
		}
		if n := end(); n != 20 {
			t.Errorf("lseek(SEEK_END) after extending to 20 bytes: %d", n)
		}
		if got := m.mustSh("cat app/s; echo; stat -c %s app/s"); got != "0123456789\n10\n" {
			t.Errorf("another process meanwhile: %q, want the committed value and its size", got)
		}
		if err := f.Truncate(4); err != nil {
			t.Fatal(err)
		}
		if n := end(); n != 4 {
			t.Errorf("lseek(SEEK_END) after ftruncate(4): %d", n)
		}
		if _, err := f.Write([]byte("W")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := m.mustSh("cat app/s"); got != "abcdW" {
			t.Errorf("after the close: %q, want abcdW (no NULs, no byte overwritten)", got)
		}
	})
}
