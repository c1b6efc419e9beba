package fs_test

import (
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/vfs"
)

// flock(2) excludes whoever opens the secret, even after it was
// rewritten: every revision is an inode of its own, and the mount keeps
// locks by secret. (Before, the kernel kept them per inode, and a second
// flock on the new revision was granted while the first was held.)
func TestAFlockExcludesOpenersOfTheSecretAfterItIsRewritten(t *testing.T) {
	p := mountWithSecret(t, "1")
	holder, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := unix.Flock(int(holder.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("2"), 0o600); err != nil {
		t.Fatal(err)
	}
	later, err := os.Open(p) // the new revision
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	if err := unix.Flock(int(later.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("a second flock while the first is held: %v, want EWOULDBLOCK", err)
	}
	for range 3 { // other readers come and go: their releases are theirs
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Flock(int(later.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("a second flock after other readers closed: %v, want EWOULDBLOCK", err)
	}
	holder.Close() // its release lets go, once the kernel sends it
	untilNoError(t, "a flock once the holder closed", func() error {
		return unix.Flock(int(later.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	})
}

// A record lock taken through a writer's descriptor (a writer has an
// inode of its own) excludes a reader's of the revision, F_GETLK names it,
// and the writer's close releases it.
func TestARecordLockOfAWriterExcludesReadersUntilItCloses(t *testing.T) {
	p := mountWithSecret(t, "1")
	writer, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	whole := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(writer.Fd(), unix.F_OFD_SETLK, &whole); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	read := unix.Flock_t{Type: unix.F_RDLCK}
	if err := unix.FcntlFlock(reader.Fd(), unix.F_OFD_SETLK, &read); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("a read lock while a writer holds a write lock: %v, want EAGAIN", err)
	}
	probe := unix.Flock_t{Type: unix.F_RDLCK}
	if err := unix.FcntlFlock(reader.Fd(), unix.F_OFD_GETLK, &probe); err != nil || probe.Type != unix.F_WRLCK {
		t.Errorf("F_GETLK: %+v, %v; want the writer's write lock", probe, err)
	}
	if _, err := writer.Write([]byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := writer.Close(); err != nil {
		t.Fatal(err)
	}
	untilNoError(t, "a read lock once the writer closed", func() error {
		read := unix.Flock_t{Type: unix.F_RDLCK}
		return unix.FcntlFlock(reader.Fd(), unix.F_OFD_SETLK, &read)
	})
}

// untilNoError calls try until it succeeds, for up to 10 s: a lock
// released by a last close is free once the kernel's RELEASE, which it
// sends after close(2) returned, has come.
func untilNoError(t *testing.T, what string, try func() error) {
	t.Helper()
	var err error
	for range 500 { // a bound on waiting, not a measure
		if err = try(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%s: %v", what, err)
}

// Read-modify-writes through descriptors opened before their lock lose no
// update: four writers each add 1 to a counter ten times, each opening
// it read-write, then locking it (F_OFD_SETLKW), reading, writing and
// closing; the counter ends at 40. (A writer edited what was stored at
// its open, so its read was stale and its commit a conflict: ESTALE.)
func TestReadModifyWritesThroughDescriptorsOpenedBeforeTheLockLoseNoUpdate(t *testing.T) {
	p := mountWithSecret(t, "0")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if err := incrementUnderLock(p); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got, err := os.ReadFile(p); err != nil || string(got) != "40" {
		t.Errorf("the counter is %q, %v after 40 updates, want 40", got, err)
	}
}

// incrementUnderLock opens p read-write, locks it, adds 1 to the number
// it holds and closes it.
func incrementUnderLock(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLKW, &lk); err != nil {
		return err
	}
	b := make([]byte, 16)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	v, err := strconv.Atoi(string(b[:n]))
	if err != nil {
		return err
	}
	next := strconv.Itoa(v + 1)
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(next), 0); err != nil {
		return err
	}
	return f.Close()
}

// A process that takes a record lock of every other byte of a secret
// (F_SETLK) is refused the one past vfs.MaxLocks with ENOLCK, at once and
// waiting alike (not EIO, not a hang), and the mount answers on: F_GETLK
// names the holder, the secret reads, and once the process unlocks it
// takes a lock again.
func TestRecordLocksBeyondTheBoundAreENOLCKThroughTheKernel(t *testing.T) {
	p := mountWithSecret(t, "1")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lockByte := func(cmd int, at int64) error {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Start: at, Len: 1}
		return unix.FcntlFlock(f.Fd(), cmd, &lk)
	}
	taken := 0
	for ; taken <= 2*vfs.MaxLocks; taken++ { // a bound on trying, past the table's
		if err = lockByte(unix.F_SETLK, int64(2*taken)); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.ENOLCK) || taken != vfs.MaxLocks {
		t.Fatalf("after %d record locks: %v, want ENOLCK after %d", taken, err, vfs.MaxLocks)
	}
	waited := make(chan error, 1)
	go func() { waited <- lockByte(unix.F_SETLKW, int64(2*taken)) }()
	select {
	case err := <-waited:
		if !errors.Is(err, unix.ENOLCK) {
			t.Errorf("F_SETLKW past the bound: %v, want ENOLCK", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("F_SETLKW past the bound waits")
	}

	other, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	probe := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 1}
	if err := unix.FcntlFlock(other.Fd(), unix.F_OFD_GETLK, &probe); err != nil || probe.Type != unix.F_RDLCK {
		t.Errorf("F_GETLK of byte 0: %+v, %v; want the read lock held", probe, err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "1" {
		t.Errorf("the secret reads %q, %v", got, err)
	}
	all := unix.Flock_t{Type: unix.F_UNLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &all); err != nil {
		t.Fatalf("the unlock of every lock: %v", err)
	}
	whole := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(other.Fd(), unix.F_OFD_SETLK, &whole); err != nil {
		t.Errorf("a lock of the whole secret once they were released: %v", err)
	}
}
