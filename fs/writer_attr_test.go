package fs_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

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

// A reader that opens while a writer has the file open is served by the
// mount, not the page cache: the kernel's size for the inode moves with
// the writer's writes, and only the mount's answers are the revision's
// bytes and no more. Each of its reads asks the mount (Go's ReadAt: the
// bytes, then the end: two READs), where with no writer the first read
// fills the page cache and the second asks nothing.
func TestAReaderThatOpensWhileAWriterHasTheFileOpenIsServedByTheMount(t *testing.T) {
	h := &heldReleases{}
	dir := mountMemory(t, fs.Options{Wrap: func(raw fuse.RawFileSystem) fuse.RawFileSystem {
		h.RawFileSystem = raw
		return h
	}})
	p := filepath.Join(dir, "app", "s")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	twice := func(when string, wantReads int32) {
		t.Helper()
		h.hold()() // count from here, holding nothing
		r, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		buf := make([]byte, 64)
		for range 2 {
			if n, err := r.ReadAt(buf, 0); string(buf[:n]) != "0123456789" || (err != nil && err != io.EOF) {
				t.Fatalf("%s: read %q, %v", when, buf[:n], err)
			}
		}
		if got := h.reads.Load(); got != wantReads {
			t.Errorf("%s: two reads made %d READ requests, want %d", when, got, wantReads)
		}
	}
	twice("with no writer", 1)
	w, err := open(t, p, os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte(strings.Repeat("x", 5000)), 0); err != nil {
		t.Fatal(err)
	}
	twice("while a writer has it open", 4)
	w.Close()
}
