package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// eachBackend runs test once per backend, each on a fresh one.
func eachBackend(t *testing.T, test func(t *testing.T, b *backend)) {
	for _, nb := range backends {
		t.Run(nb.name, func(t *testing.T) { test(t, nb.new(t)) })
	}
}

// backends lists every backend the shell-level suite runs against.
var backends = []struct {
	name string
	new  func(t *testing.T) *backend
}{
	{"local", localBackend},
	{"dynamodb", dynamoBackend},
}

// unique returns a value that appears nowhere else: a secret to look for.
func unique(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + "-" + base64.RawURLEncoding.EncodeToString(b)
}

// writeTemp writes data to a file outside the mount, for cp and cmp.
func writeTemp(t *testing.T, data []byte) string {
	p := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEchoThenCatReturnsTheSameBytes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app")

		text := m.secret(unique("text"))
		m.mustSh("echo '" + text + "' > app/text")
		if got := m.mustSh("cat app/text"); got != text+"\n" {
			t.Errorf("text: cat returned %q, want %q", got, text+"\n")
		}

		binary := make([]byte, 4096)
		rand.Read(binary)
		binary = append(binary, 0, 0xff, 0, '\n') // NULs and a trailing newline survive
		m.mustSh("cp " + writeTemp(t, binary) + " app/binary")
		if got := m.mustSh("cat app/binary"); got != string(binary) {
			t.Errorf("binary: cat returned %d bytes that differ from the %d written", len(got), len(binary))
		}

		m.mustSh(": > app/empty")
		if got := m.mustSh("test -f app/empty && cat app/empty | wc -c"); strings.TrimSpace(got) != "0" {
			t.Errorf("empty: cat returned %s bytes, want 0", got)
		}

		large := []byte(strings.Repeat(m.secret(unique("large")), 300*1024/20))[:300*1024]
		m.mustSh("cat " + writeTemp(t, large) + " > app/large")
		if got := m.mustSh("cat app/large"); got != string(large) {
			t.Errorf("300 KiB: cat returned %d bytes that differ from the %d written", len(got), len(large))
		}
	})
}

func TestLsShowsNamesAndTrueSizes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		want := map[string]int{"a": 1, "bb": 22, "ccc": 4000, "empty": 0}
		m.mustSh("mkdir app")
		for name, size := range want {
			m.mustSh(fmt.Sprintf("head -c %d /dev/urandom > app/%s", size, name))
		}
		got := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(m.mustSh("ls -l app")), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || f[0] == "total" {
				continue
			}
			size, err := strconv.Atoi(f[4])
			if err != nil {
				t.Fatalf("ls -l line %q: %v", line, err)
			}
			got[f[8]] = size
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ls -l shows %v, want %v", got, want)
		}
		if out := m.mustSh("ls"); out != "app\n" {
			t.Errorf("ls of the root shows %q, want the application", out)
		}
	})
}

func TestCpMvRmMkdirRmdir(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		value := m.secret(unique("cp"))
		in := writeTemp(t, []byte(value))
		out := filepath.Join(t.TempDir(), "out")

		m.mustSh("mkdir app && cp " + in + " app/one")
		m.mustSh("cp app/one " + out + " && cmp " + in + " " + out)
		m.failSh("mkdir app", "File exists")

		m.mustSh("mv app/one app/two")
		m.failSh("cat app/one", "No such file")
		if got := m.mustSh("cat app/two"); got != value {
			t.Errorf("after mv, cat returned %q, want %q", got, value)
		}

		m.mustSh("mkdir other && mv app/two other/three")
		if got := m.mustSh("cat other/three"); got != value {
			t.Errorf("after mv to another application, cat returned %q, want %q", got, value)
		}
		if got := m.mustSh("ls app"); got != "" {
			t.Errorf("app still lists %q after its only secret moved out", got)
		}

		m.failSh("rmdir other", "Directory not empty")
		if got := m.mustSh("cat other/three"); got != value {
			t.Errorf("a failed rmdir changed the secret: %q", got)
		}
		m.mustSh("rm other/three && rmdir other")
		m.failSh("ls other", "No such file")

		m.mustSh("mkdir empty && rmdir empty")
		m.failSh("ls empty", "No such file")
	})
}

func TestAppendAddsToTheValue(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo one > app/log && echo two >> app/log")
		if got := m.mustSh("cat app/log"); got != "one\ntwo\n" {
			t.Errorf("cat after >> returned %q", got)
		}
	})
}

func TestRemountKeepsSecretsAndStoreHoldsNoPlaintext(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		values := map[string]string{}
		m.mustSh("mkdir app")
		for _, name := range []string{"db", "api", "cert"} {
			values[name] = m.secret(unique(name))
			m.mustSh("printf %s '" + values[name] + "' > app/" + name)
		}
		if err := m.stop(); err != nil {
			t.Fatalf("stopping the first mount: %v", err)
		}
		stored := b.stored(t)
		for name, v := range values {
			found := false
			for _, data := range stored {
				found = found || bytes.Contains(data, []byte(v))
			}
			if found {
				t.Errorf("the store holds the plaintext of %s", name)
			}
		}
		m2 := mountAt(t, b, m.dir)
		for name, v := range values {
			if got := m2.mustSh("cat app/" + name); got != v {
				t.Errorf("after remount, %s is %q, want %q", name, got, v)
			}
		}
	})
}

func TestReadOnlyMountRefusesWrites(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		value := unique("ro")
		b.cli(t, nil, "init")
		b.cli(t, []byte(value), "put", "app/s")
		m := mount(t, b, "--read-only")
		m.secret(value)
		m.failSh("echo new > app/s", "Read-only file system")
		m.failSh("echo new > app/t", "Read-only file system")
		m.failSh("rm app/s", "Read-only file system")
		m.failSh("mkdir other", "Read-only file system")
		m.failSh("mv app/s app/u", "Read-only file system")
		if got := m.mustSh("cat app/s"); got != value {
			t.Errorf("cat on the read-only mount returned %q, want %q", got, value)
		}
	})
}

// Two handles open the same secret; the first to close commits, the
// second finds the Version it expected gone and gets ESTALE at close.
func TestStaleWriterGetsErrorAtCloseAndFirstValueSurvives(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo original > app/s")
		first, second := m.secret(unique("first")), m.secret(unique("second"))
		f1, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f2, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f1.WriteString(first); err != nil {
			t.Fatal(err)
		}
		if _, err := f2.WriteString(second); err != nil {
			t.Fatal(err)
		}
		if err := f1.Close(); err != nil {
			t.Fatalf("first close: %v", err)
		}
		err = f2.Close()
		if !errors.Is(err, syscall.ESTALE) {
			t.Fatalf("second close returned %v, want ESTALE", err)
		}
		if got := m.mustSh("cat app/s"); got != first {
			t.Errorf("after the conflict the secret is %q, want the first value %q", got, first)
		}
		if !strings.Contains(m.log(), "changed concurrently") {
			t.Error("the conflict was not logged")
		}
	})
}

// A writer fills a large value in many writes; readers running cat all
// the while see the old value or the new one, never a mix, never empty.
func TestReaderDuringMultiWriteSeesOldOrNew(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		const size = 200 * 1024
		old := strings.Repeat("o", size)
		fresh := strings.Repeat("n", size)
		m.mustSh("mkdir app")
		m.mustSh("cat " + writeTemp(t, []byte(old)) + " > app/s")

		var reads atomic.Int64
		var wrong atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					got, _, err := m.sh("cat app/s")
					if err != nil || (got != old && got != fresh) {
						wrong.Store(fmt.Sprintf("a reader got %d bytes (err %v), neither the old nor the new value", len(got), err))
					}
					reads.Add(1)
				}
			}()
		}

		f, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		const chunk = 4096
		for off := 0; off < size; off += chunk {
			if _, err := f.WriteString(fresh[off : off+chunk]); err != nil {
				t.Fatal(err)
			}
			if off == size/2 {
				// Let readers run against the half-written handle.
				before := reads.Load()
				eventually(t, 30*time.Second, "readers make progress mid-write", func() bool { return reads.Load() >= before+3 })
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		after := reads.Load()
		eventually(t, 30*time.Second, "readers make progress after the commit", func() bool { return reads.Load() >= after+3 })
		close(stop)
		wg.Wait()
		if w := wrong.Load(); w != nil {
			t.Fatal(w)
		}
		if got := m.mustSh("cat app/s"); got != fresh {
			t.Errorf("after the commit cat returned %d bytes, not the new value", len(got))
		}
	})
}

// Permissions come from the mount options and the kernel enforces them.
func TestFileModeAndOwnerAreEnforcedForOtherUsers(t *testing.T) {
	requireRoot(t)
	eachBackend(t, func(t *testing.T, b *backend) {
		value := unique("mode")
		b.cli(t, nil, "init")
		b.cli(t, []byte(value), "put", "app/s")
		dir := traversableDir(t)
		m := mountAt(t, b, dir, "--file-mode", "0400", "--dir-mode", "0755", "--uid", "0", "--gid", "0", "--allow-other")
		m.secret(value)
		const asNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups "
		// The other user can reach and list the directory...
		if got := m.mustSh(asNobody + "ls app"); got != "s\n" {
			t.Fatalf("nobody lists %q, want the secret's name", got)
		}
		// ...but the file's mode keeps it out.
		m.failSh(asNobody+"cat app/s", "Permission denied")
		if got := m.mustSh("cat app/s"); got != value {
			t.Errorf("root reads %q, want %q", got, value)
		}
		if got := m.mustSh("stat -c '%a %u %g' app/s"); got != "400 0 0\n" {
			t.Errorf("stat shows %q, want mode 400 owned by 0:0", got)
		}
	})
}

// A host given only the public key can write secrets but not read them,
// not even what it just wrote.
func TestPublicKeyOnlyMountWritesButCannotRead(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		keys := localBackend(t) // a key pair of its own
		keys.cli(t, nil, "init")
		private, public := filepath.Join(keys.dataDir(), "key.pem"), filepath.Join(keys.dataDir(), "key.pub.pem")
		b.cli(t, nil, "init")
		value := unique("wo")
		// --kms-key "": on DynamoDB the RSA key is the only key to write with.
		m := mount(t, b, "--rsa-key", public, "--kms-key", "")
		m.secret(value)
		m.mustSh("mkdir app && printf %s '" + value + "' > app/s")
		m.failSh("cat app/s", "Permission denied")
		m.failSh("echo more >> app/s", "Permission denied")
		if err := m.stop(); err != nil {
			t.Fatal(err)
		}
		if got := b.cli(t, nil, "get", "app/s", "--rsa-key", private); got != value {
			t.Errorf("the private key reads %q, want %q", got, value)
		}
	})
}

func TestNameOf300BytesIsTooLongAndChangesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		long := strings.Repeat("n", 300)
		m.mustSh("mkdir app && echo keep > app/s")
		longest := strings.Repeat("é", 127) + "n" // 255 bytes: the longest name there is
		m.mustSh("echo fits > app/" + longest + " && cat app/" + longest + " && rm app/" + longest)
		m.failSh("echo x > app/"+long, "File name too long")
		m.failSh("mkdir "+long, "File name too long")
		m.failSh("mv app/s app/"+long, "File name too long")
		if got := m.mustSh("ls app"); got != "s\n" {
			t.Errorf("after the refused names, app lists %q", got)
		}
		if got := m.mustSh("cat app/s"); got != "keep\n" {
			t.Errorf("after the refused names, app/s is %q", got)
		}
	})
}

// The log at debug level, after writes, reads, a conflict and refused
// requests, holds no plaintext. (Every test checks its log at cleanup;
// this one provokes as many log lines as it can.)
func TestLogNeverHoldsPlaintext(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		v1, v2 := m.secret(unique("log1")), m.secret(unique("log2"))
		m.mustSh("mkdir app && printf %s '" + v1 + "' > app/s && cat app/s && printf %s '" + v2 + "' >> app/s && cat app/s")
		m.failSh("printf %s '"+v1+"' > app/"+strings.Repeat("x", 300), "File name too long")
		m.mustSh("mv app/s app/t && cp app/t app/u && rm app/t")
		if !strings.Contains(m.log(), "secret written") {
			t.Fatal("the log holds no write records at all; the check below would prove nothing")
		}
		for _, v := range []string{v1, v2} {
			if strings.Contains(m.log(), v) {
				t.Errorf("the log holds a plaintext value")
			}
		}
	})
}

// A mount whose process was killed leaves "transport endpoint is not
// connected" behind, which `secretfs status` says in words; the next
// mount on that path recovers it.
func TestStaleMountIsRecovered(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo kept > app/s")
		m.kill()
		if _, _, err := m.sh("ls"); err == nil {
			t.Fatal("after SIGKILL, ls of the mountpoint still works; the mount is not stale")
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(m.dir, &st); !errors.Is(err, syscall.ENOTCONN) {
			t.Fatalf("after SIGKILL, statfs of the mountpoint gave %v, want ENOTCONN", err)
		}
		if _, stderr, err := b.run(nil, "status", m.dir); err == nil || !strings.Contains(stderr, "the secretfs that served it is gone, and its mount is dead") {
			t.Errorf("secretfs status of the dead mount: %v, %q; want it to say the mount is dead", err, stderr)
		}
		m2 := mountAt(t, b, m.dir)
		if got := m2.mustSh("cat app/s"); got != "kept\n" {
			t.Errorf("after recovery cat returned %q", got)
		}
	})
}

// The admin verbs work on the store while it is mounted.
func TestCLIAndMountShareTheStore(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b, "--ttl", "0")
		value := m.secret(unique("cli"))
		b.cli(t, []byte(value), "put", "app/from-cli")
		if got := m.mustSh("cat app/from-cli"); got != value {
			t.Errorf("the mount reads %q, want what the CLI put", got)
		}
		m.mustSh("echo from-mount > app/from-mount")
		if got := b.cli(t, nil, "get", "app/from-mount"); got != "from-mount\n" {
			t.Errorf("the CLI reads %q, want what the mount wrote", got)
		}
		if got := b.cli(t, nil, "ls", "app"); got != "from-cli\nfrom-mount\n" {
			t.Errorf("secretfs ls app = %q", got)
		}
		b.cli(t, nil, "rm", "app/from-cli")
		m.failSh("cat app/from-cli", "No such file")
	})
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test switches users and needs root; run the tests as root (scripts/test)")
	}
}

// traversableDir returns a fresh mountpoint that other users can reach:
// t.TempDir's directories are 0700.
func traversableDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir() // $TMPDIR/TestName<random>/<n>, both 0700
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Children of a writer inherit its descriptor and close it when they
// exec or exit, which the kernel reports as a close (FLUSH) of the open
// file. Only the writer's own close commits, so nobody sees a part.
func TestChildrenClosingAWritersDescriptorCommitNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo original > app/s")
		// The test process is the writer: it holds one descriptor and
		// never closes a copy of it until it is done.
		f, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("part1\n"); err != nil {
			t.Fatal(err)
		}
		m.mustSh("sh -c 'exit 0'") // children of the writer come and go
		if got := m.mustSh("cat app/s"); got != "original\n" {
			t.Errorf("mid-write, cat returned %q, want the committed value", got)
		}
		if _, err := f.WriteString("part2\n"); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := m.mustSh("cat app/s"); got != "part1\npart2\n" {
			t.Errorf("after the writer's close, cat returned %q", got)
		}
	})
}

// `echo new > file` is one commit, whatever the shell does with its
// descriptors in between: the version goes up by exactly one.
func TestRedirectionCommitsOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo one > app/s && echo two > app/s && /bin/echo three > app/s")
		if got := versionOf(t, b, "app", "s"); got != 3 {
			t.Errorf("after three redirections: version %d, want 3", got)
		}
	})
}

// What a command committed is what the next command reads, even for an
// open that only creates or truncates and commits at its last close.
func TestTouchAndTruncateAreSeenByTheNextCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo old > app/s")
		if got := m.mustSh("touch app/new && cat app/new && ls app"); got != "new\ns\n" {
			t.Errorf("touch then cat and ls: %q", got)
		}
		if got := m.mustSh(": > app/s && wc -c < app/s"); strings.TrimSpace(got) != "0" {
			t.Errorf("after : > app/s, it holds %s bytes", got)
		}
	})
}

// A shell that creates a file empty and then writes it at once (`: > f;
// echo v > f`, or `>>`, or through exec'd descriptors) stores what it
// wrote: the second write is not the first one's conflict.
func TestAFileCreatedEmptyThenWrittenAtOnceHoldsWhatWasWritten(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app")
		script := `set -e; for i in 1 2 3 4 5; do
			: > app/a$i; echo v$i > app/a$i
			> app/b$i; echo v$i >> app/b$i
			exec 5> app/c$i; exec 5>&-; printf 'v%s\n' $i > app/c$i
		done`
		m.mustSh(script)
		for i := 1; i <= 5; i++ { // and as a program does it, with nothing between the calls
			p := m.path(fmt.Sprintf("app/d%d", i))
			for _, value := range []string{"", fmt.Sprintf("v%d\n", i)} {
				fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := syscall.Write(fd, []byte(value)); err != nil {
					t.Errorf("%s: write: %v", p, err)
				}
				if err := syscall.Close(fd); err != nil {
					t.Errorf("%s: close: %v", p, err)
				}
			}
		}
		want := ""
		for i := 1; i <= 5; i++ {
			want += strings.Repeat(fmt.Sprintf("v%d\n", i), 4)
		}
		got := m.mustSh("for i in 1 2 3 4 5; do cat app/a$i app/b$i app/c$i app/d$i; done")
		if got != want {
			t.Errorf("the files hold %q, want %q", got, want)
		}
		if log := m.log(); strings.Contains(log, "not committed") {
			t.Errorf("a write was refused:\n%s", log)
		}
	})
}

// A creation refused at its close (a value over the limit: EFBIG) leaves
// nothing; opening the name with O_CREAT again at once, as the program
// that was refused retries, creates it, never ENOENT. The calls are made
// directly, one after another, as a program makes them: the kernel sends
// the RELEASE of the refused file only after its close returned.
func TestARetryAfterARefusedCreationCreatesTheFile(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app")
		const flags = syscall.O_WRONLY | syscall.O_CREAT | syscall.O_TRUNC
		for i := range 10 {
			p := m.path(fmt.Sprintf("app/big%d", i))
			fd, err := syscall.Open(p, flags, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := syscall.Pwrite(fd, []byte("x"), 1<<20); err != syscall.EFBIG {
				t.Errorf("a write past the limit: %v, want EFBIG", err)
			}
			syscall.Close(fd) // EFBIG again, reported by the close
			fd, err = syscall.Open(p, flags, 0o600)
			if err != nil {
				t.Errorf("%s: the open that retries the creation: %v", p, err)
				continue
			}
			if _, err := syscall.Write(fd, []byte("fits")); err != nil {
				t.Errorf("%s: write: %v", p, err)
			}
			if err := syscall.Close(fd); err != nil {
				t.Errorf("%s: close: %v", p, err)
			}
		}
		if got := m.mustSh("cat app/big*"); got != strings.Repeat("fits", 10) {
			t.Errorf("the retried files hold %q", got)
		}
	})
}

// mknod(2) of a regular file makes an empty secret, as creat(2) would;
// special files and links, which no application holds, are refused with
// "Operation not supported", and nothing is stored.
func TestMknodMakesAnEmptyFileAndSpecialFilesAndLinksAreRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo v > app/s")
		if err := syscall.Mknod(m.path("app/reg"), syscall.S_IFREG|0o600, 0); err != nil {
			t.Fatalf("mknod of a regular file: %v", err)
		}
		if err := syscall.Mknod(m.path("app/reg"), syscall.S_IFREG|0o600, 0); err != syscall.EEXIST {
			t.Errorf("mknod of an existing name: %v, want EEXIST", err)
		}
		if got := m.mustSh("wc -c < app/reg && ls app"); got != "0\nreg\ns\n" {
			t.Errorf("after mknod: %q", got)
		}
		for _, cmd := range []string{"mkfifo app/fifo", "ln -s s app/sym", "ln app/s app/hard"} {
			m.failSh(cmd, "Operation not supported")
		}
		if got := m.mustSh("ls app"); got != "reg\ns\n" {
			t.Errorf("after the refusals, app lists %q", got)
		}
	})
}

// flock(1) makes a read-modify-write safe, as on a local file system:
// four processes each add 1 to a counter ten times under `flock`, and
// the counter ends at 40, every update kept. (The kernel kept locks per
// inode, and each revision is one: a lock on the revision a process had
// opened excluded nobody who opened the next, so updates were lost, 15 of
// 40 in the trial, 7 of them with no error.)
func TestReadModifyWritesUnderFlockLoseNoUpdate(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		m := mount(t, b)
		m.mustSh("mkdir app && echo 0 > app/counter")
		failed := m.mustSh(`for w in 1 2 3 4; do
			(for i in 1 2 3 4 5 6 7 8 9 10; do
				flock app/counter -c 'v=$(cat app/counter); echo $((v+1)) > app/counter' || echo "worker $w: update $i failed"
			done) &
		done; wait`)
		if failed != "" {
			t.Errorf("updates failed:\n%s", failed)
		}
		if got := strings.TrimSpace(m.mustSh("cat app/counter")); got != "40" {
			t.Errorf("the counter is %s after 40 updates under flock, want 40", got)
		}
	})
}

// A process that takes a record lock of every other byte of a secret is
// refused the 1025th (vfs.MaxLocks) with ENOLCK, not EIO and not a hang,
// and the mount answers on: the files read, and once the process lets go
// of its locks, another open file takes the whole secret, and the log
// tells of the refusal. (Nothing bounded the
// locks: they grew the mount's memory for as long as the process asked.)
func TestRecordLocksPastTheBoundAreENOLCKAndTheMountAnswersOn(t *testing.T) {
	m := mount(t, localBackend(t))
	m.mustSh("mkdir app && echo v > app/s && echo w > app/t")
	f, err := os.Open(m.path("app/s"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	taken := 0
	for ; taken < 4096; taken++ { // a bound on trying, past the mount's
		lk := unix.Flock_t{Type: unix.F_RDLCK, Start: int64(2 * taken), Len: 1}
		if err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.ENOLCK) || taken != 1024 {
		t.Fatalf("after %d record locks: %v, want ENOLCK after 1024", taken, err)
	}
	if got := m.mustSh("cat app/s app/t"); got != "v\nw\n" {
		t.Errorf("the files read %q", got)
	}
	all := unix.Flock_t{Type: unix.F_UNLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &all); err != nil {
		t.Fatalf("the unlock of every lock: %v", err)
	}
	other, err := os.OpenFile(m.path("app/s"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	whole := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(other.Fd(), unix.F_OFD_SETLK, &whole); err != nil {
		t.Errorf("a write lock of the whole secret once the locks were let go: %v", err)
	}
	if !strings.Contains(m.log(), "no locks available") {
		t.Errorf("the log does not tell of the refusal:\n%s", m.log())
	}
}

// touch, or an open for reading and writing, of a secret another process
// is still creating changes nothing: the creator's value is stored. (The
// second open committed an empty value at its release, and the
// creator's commit was discarded as a conflict, with exit status 0.)
func TestTouchOfASecretBeingCreatedLeavesTheCreatorsValue(t *testing.T) {
	b := localBackend(t)
	m := mount(t, b)
	m.mu.Lock()
	m.holdsCreations = true // the creator holds app/c 4 s: touch waits for it, then goes on
	m.mu.Unlock()
	m.mustSh("mkdir app")
	got := m.mustSh(`( sleep 4; echo real-value ) > app/c & sleep 0.3; touch app/c; exec 9<>app/c; exec 9>&-; wait; cat app/c`)
	if got != "real-value\n" {
		t.Errorf("app/c holds %q, want the creator's real-value", got)
	}
}
