package fs_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/fs"
)

// mountWithSecret mounts an empty memory store and writes value to
// app/s; it returns the secret's path.
func mountWithSecret(t *testing.T, value string) string {
	t.Helper()
	dir := mountMemory(t, fs.Options{})
	p := filepath.Join(dir, "app", "s")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// While a writer works on its own buffer, every other process sees the
// revision whole: a stat by path gives its size, and readers, whether
// they opened before the writer and read a few bytes at a time or open
// now and read it all, read its bytes and no more, neither cut short by
// the writer's truncation nor padded by its extension.
func TestOthersSeeTheRevisionWholeWhileAWriterResizesIt(t *testing.T) {
	const value = "0123456789"
	p := mountWithSecret(t, value)
	// Another process: fds 3 and 4 opened before the writer; each line
	// on its stdin runs one round of looks.
	other := exec.Command("sh", "-c", `exec 3<"$1" 4<"$1"; echo ready
		read round; stat -c %s "$1"; cat "$1"; echo; dd bs=3 <&3 2>/dev/null; echo
		read round; stat -c %s "$1"; cat "$1"; echo; dd bs=3 <&4 2>/dev/null; echo`, "sh", p)
	stdin, err := other.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := other.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	lines := bufio.NewScanner(stdout)
	line := func() string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the other process ended: %v", lines.Err())
		}
		return lines.Text()
	}
	if got := line(); got != "ready" {
		t.Fatalf("the other process says %q", got)
	}
	round := func(when string) {
		t.Helper()
		io.WriteString(stdin, "go\n")
		for _, what := range []string{"stat gives", "cat reads", "a reader reading 3 bytes at a time reads"} {
			want := value
			if what == "stat gives" {
				want = strconv.Itoa(len(value))
			}
			if got := line(); got != want {
				t.Errorf("%s: %s %q, want %q", when, what, got, want)
			}
		}
	}
	rw, err := open(t, p, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt([]byte("abcdefghijklmnopqrst"), 0); err != nil {
		t.Fatal(err)
	}
	round("while the writer has 20 bytes")
	if err := rw.Truncate(4); err != nil {
		t.Fatal(err)
	}
	round("while the writer has 4 bytes")
}

// A truncation that commits with the release after close returned (a
// shell's `: > file`, GNU truncate's open and ftruncate) is what the next
// command's stat sees, with the file's inode number.
func TestATruncationIsSeenByTheNextCommandsStat(t *testing.T) {
	for _, c := range []struct{ truncate, want string }{
		{`: > "$1"`, "0"},
		{`truncate -s 3 "$1"`, "3"},
	} {
		p := mountWithSecret(t, "0123456789")
		out, err := exec.Command("sh", "-c", c.truncate+`; stat -c '%s %i' "$1"`, "sh", p).CombinedOutput()
		size, ino, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
		if err != nil || size != c.want || ino == "0" {
			t.Errorf("%s; stat: %q, %v; want size %s and an inode number", c.truncate, out, err, c.want)
		}
	}
}

// Every reply that describes a file carries its inode number: a stat
// after touch(1) (a SETATTR, whose reply the kernel caches) shows the
// same number as before, and the root has one too.
func TestInodeNumbersSurviveTouchAndTheRootHasOne(t *testing.T) {
	p := mountWithSecret(t, "0123456789")
	ino := func(path string) uint64 {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	before := ino(p)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after := ino(p); after != before || after == 0 {
		t.Errorf("inode number %d after touch, %d before", after, before)
	}
	if root := ino(filepath.Dir(filepath.Dir(p))); root != 1 {
		t.Errorf("the root's inode number is %d, want 1 (FUSE's root)", root)
	}
}

// A writer growing a value on the same mount never shows readers of the
// revision anything but its bytes: the kernel keeps one size per inode,
// and a writer's write past the end raises it, which would let a reader
// whose pages are cached read the zeros after the revision's end.
func TestAReaderOfARevisionAWriterIsGrowingReadsItWhole(t *testing.T) {
	const value = "short"
	p := mountWithSecret(t, value)
	early, err := open(t, p, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	readAt := func(when string, f *os.File, size int) {
		t.Helper()
		buf := make([]byte, size)
		n, err := f.ReadAt(buf, 0)
		if string(buf[:n]) != value || (err != nil && err != io.EOF) {
			t.Errorf("%s: a read of %d bytes gives %q, %v; want %q", when, size, buf[:n], err, value)
		}
	}
	readAt("before the writer", early, 4096)
	w, err := open(t, p, os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte(strings.Repeat("x", 5000)), 0); err != nil {
		t.Fatal(err)
	}
	readAt("while the writer grows it", early, 100)
	readAt("while the writer grows it", early, 4096)
	if out, err := exec.Command("cat", p).Output(); string(out) != value || err != nil {
		t.Errorf("cat while the writer grows it: %q, %v", out, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	readAt("after the writer's commit, through the descriptor opened before", early, 100)
	if got, err := os.ReadFile(p); err != nil || len(got) != 5000 {
		t.Errorf("after the commit: %d bytes, %v; want the 5000 written", len(got), err)
	}
}

func inoOf(t *testing.T, stat func() (os.FileInfo, error)) uint64 {
	t.Helper()
	fi, err := stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func wantSize(t *testing.T, what string, f *os.File, want int64) {
	t.Helper()
	fi, err := f.Stat()
	if err != nil || fi.Size() != want {
		t.Errorf("%s: fstat gives %v, %v; want size %d", what, fi, err, want)
	}
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != want {
		t.Errorf("%s: lseek(SEEK_END) gives %d, %v; want %d", what, end, err, want)
	}
}

// A writer's descriptor describes what it has written, not the revision
// it opened: fstat and lseek(SEEK_END) give its buffer's size, so a
// program that extends or truncates a secret and then appends at the end
// writes where it means to (on the revision's inode, SEEK_END gave the
// revision's size and the append overwrote a byte, or left NULs after a
// truncation).
func TestAWritersDescriptorSeesItsOwnSizeAtFstatAndSeekEnd(t *testing.T) {
	p := mountWithSecret(t, "0123456789")
	rw, err := open(t, p, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	// One file to programs that compare them (vim does before it writes
	// over a file): the descriptor and the path show one inode number.
	if fd, path := inoOf(t, rw.Stat), inoOf(t, func() (os.FileInfo, error) { return os.Stat(p) }); fd != path {
		t.Errorf("the writer's descriptor shows inode %d, the path %d", fd, path)
	}
	if _, err := rw.WriteAt([]byte("abcdefghijklmnopqrst"), 0); err != nil {
		t.Fatal(err)
	}
	wantSize(t, "after extending to 20 bytes", rw, 20)
	if _, err := rw.Write([]byte("Z")); err != nil {
		t.Fatal(err)
	}
	if err := rw.Truncate(4); err != nil {
		t.Fatal(err)
	}
	wantSize(t, "after ftruncate(4)", rw, 4)
	if _, err := rw.Write([]byte("W")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "0123456789" {
		t.Errorf("a reader while the writer works reads %q, %v", got, err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "abcdW" {
		t.Errorf("after the close %q, %v; want abcdW", got, err)
	}
}

// rewriteValue is the seq'th value of the rewrite test: a head and a
// tail that name seq around size bytes of one letter.
func rewriteValue(seq, size int) []byte {
	v := []byte(fmt.Sprintf("head %d ", seq))
	v = append(v, bytes.Repeat([]byte{'a' + byte(seq%26)}, size)...)
	return append(v, fmt.Sprintf(" tail %d", seq)...)
}

var rewriteSizes = []int{100, 5000, 70000}

// rewrittenWhole reports whether b is one whole value of the rewrite
// test.
func rewrittenWhole(b []byte) bool {
	var seq int
	if _, err := fmt.Sscanf(string(b), "head %d ", &seq); err != nil {
		return false
	}
	return bytes.Equal(b, rewriteValue(seq, rewriteSizes[seq%len(rewriteSizes)]))
}

// Readers on the mount a writer rewrites a secret through, with values
// that grow and shrink, read one whole value every time: none cut short,
// padded with zeros, or mixed, and none fails (an open the kernel retried
// after the secret was replaced twice while it opened failed with "stale
// file handle", 1 to 9 times a run, before the lookup that precedes the
// retry held the value it found). (Before writers had inodes of their own, a
// writer's write past the end of the value a reader had cached made about
// one read in 5,000 the cached value followed by zeros.)
func TestReadersOfASecretRewrittenOnTheSameMountReadWholeValues(t *testing.T) {
	const rewrites = 1500
	p := mountWithSecret(t, string(rewriteValue(0, rewriteSizes[0])))
	var done atomic.Bool
	var whole, torn, failed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !done.Load() {
				b, err := os.ReadFile(p)
				switch {
				case err != nil:
					if failed.Add(1) <= 3 {
						t.Errorf("read: %v", err)
					}
				case !rewrittenWhole(b):
					if torn.Add(1) <= 3 {
						t.Errorf("a read of %d bytes is no whole value: %q...%q", len(b), b[:min(len(b), 16)], b[max(0, len(b)-16):])
					}
				default:
					whole.Add(1)
				}
			}
		})
	}
	for seq := 1; seq <= rewrites; seq++ {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(rewriteValue(seq, rewriteSizes[seq%len(rewriteSizes)])); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	t.Logf("%d rewrites: %d reads whole, %d not, %d failed", rewrites, whole.Load(), torn.Load(), failed.Load())
	if whole.Load() == 0 {
		t.Error("no read was whole: the test shows nothing")
	}
}

// A program watching a secret's file with inotify hears of a rewrite made
// through the same mount: the writer works on an inode of its own, so the
// mount touches the revision it replaced, which the watch holds. (Before,
// the watch of the file heard nothing, ever: inotifywait waited on.)
func TestAWatcherOfTheFileHearsARewriteThroughTheSameMount(t *testing.T) {
	p := mountWithSecret(t, "v1")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY|unix.IN_CLOSE_WRITE|unix.IN_ATTRIB|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 10_000) // a bound on waiting, not a measure: the signal comes in milliseconds
	if err != nil || n == 0 {
		t.Fatalf("no inotify event for the watched file within 10 s of its rewrite (poll: %d, %v)", n, err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "v2" {
		t.Errorf("after the event the file reads %q, %v; want v2", got, err)
	}
}

// A descriptor of a revision the mount replaced shows nlink 0 at its next
// fstat, not once its attributes expire (a minute here): the change
// signal's touch of the revision (signal.go) refreshes them.
func TestADescriptorOfARevisionReplacedThroughTheMountShowsNlinkZero(t *testing.T) {
	p := mountWithSecret(t, "v1")
	held, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	nlink := func() uint64 {
		var st unix.Stat_t
		if err := unix.Fstat(int(held.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return st.Nlink
	}
	if n := nlink(); n != 1 {
		t.Fatalf("nlink %d before the rewrite, want 1", n)
	}
	if err := os.WriteFile(p, []byte("v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 500 { // up to 10 s: a bound on waiting for the signal, not a measure
		if nlink() == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("nlink %d 10 s after the rewrite, want 0", nlink())
}

// fsync(2) of a directory succeeds, the root's and an application's, as
// on a local file system: atomic-write libraries fsync the directory
// after their rename, and report a failure as a failed write.
func TestFsyncOfADirectorySucceeds(t *testing.T) {
	p := mountWithSecret(t, "v1")
	for _, dir := range []string{filepath.Dir(p), filepath.Dir(filepath.Dir(p))} {
		d, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Errorf("fsync of %s: %v", dir, err)
		}
		d.Close()
	}
}

// An application's directory shows a later time once a secret in it was
// rewritten through the mount, as a local directory does when a file in
// it is replaced, rather than the mount's start for ever. (The kernel,
// which keeps a directory's attributes for the TTL, a minute here, drops
// them when the mount tells it to forget a name in it.)
func TestADirectorysTimeFollowsARewriteOfASecretInIt(t *testing.T) {
	p := mountWithSecret(t, "v1")
	dir := filepath.Dir(p)
	mtime := func() time.Time {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	before := mtime()
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, []byte("v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 500 { // up to 10 s: a bound on waiting for the notification, not a measure
		if mtime().After(before) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("the directory's time is %v after the rewrite, %v before", mtime(), before)
}

// A program watching a secret's directory hears of a rewrite through the
// mount once more after the rewrite is committed, so that one that reads
// the file at each IN_MODIFY (Go's fsnotify Write) reads the new value at
// the last: the kernel's own events come from the writer's inode, before
// its close commits. (Every IN_MODIFY came before the commit.)
func TestADirectoryWatcherHearsARewriteAfterItIsCommitted(t *testing.T) {
	p := mountWithSecret(t, "v1")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(p), unix.IN_MODIFY); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for { // the kernel's events of the write, queued before it returned
		if n, _ := unix.Read(fd, buf); n <= 0 {
			break
		}
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 10_000); err != nil || n == 0 { // a bound on waiting, not a measure
		t.Fatalf("no IN_MODIFY of the directory after the rewrite was committed (poll: %d, %v)", n, err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "v2" {
		t.Errorf("at the event the file reads %q, %v; want v2", got, err)
	}
}
