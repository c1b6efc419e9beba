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

func wantSize(t *testing.T, what string, f *os.File, want int64) {
	t.Helper()
	fi, err := f.Stat()
	if err != nil || fi.Size() != want {
		t.Errorf("%s: fstat gives size %v, %v; want %d", what, sizeOf(fi), err, want)
	}
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != want {
		t.Errorf("%s: lseek(SEEK_END) gives %d, %v; want %d", what, end, err, want)
	}
}

func sizeOf(fi os.FileInfo) any {
	if fi == nil {
		return nil
	}
	return fi.Size()
}

// A writer's own descriptor describes what it has written, not the
// revision it opened: fstat and lseek(SEEK_END) give its buffer's size, so
// a program that extends or truncates a secret and then appends at the
// end writes where it means to (before, SEEK_END gave the revision's size
// and the append overwrote a byte, or left NULs after a truncation).
func TestAWritersDescriptorSeesItsOwnSizeAtFstatAndSeekEnd(t *testing.T) {
	p := mountWithSecret(t, "0123456789")
	rw, err := open(t, p, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
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
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "abcdW" {
		t.Errorf("after the close %q, %v; want abcdW", got, err)
	}
}

// While a writer works on its own buffer, every other process still sees
// the revision whole: a stat by path gives its size, and readers, whether
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
	wantSize(t, "the writer", rw, 20)
	round("while the writer has 20 bytes")
	wantSize(t, "the writer after the other's looks", rw, 20)
	if err := rw.Truncate(4); err != nil {
		t.Fatal(err)
	}
	round("while the writer has 4 bytes")
	wantSize(t, "the writer after the other's looks", rw, 4)
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
