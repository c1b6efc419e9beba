package sqlite

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openT(t, filepath.Join(t.TempDir(), "secrets.db"))
	})
}

// openT opens the store at path; the caller closes it.
func openT(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func closeT(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

var counter = store.Key{App: "app", Name: "counter"}

func newCounter(t *testing.T, s *Store, slots int) {
	t.Helper()
	if err := s.Put(t.Context(), storetest.NewCounter(counter, slots), store.NoItem); err != nil {
		t.Fatal(err)
	}
}

// wantCounts checks the counter after every slot was incremented n times.
func wantCounts(t *testing.T, s *Store, slots, n int) {
	t.Helper()
	it, err := s.Get(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}
	if want := store.Version(1 + slots*n); it.Version != want {
		t.Errorf("final version %v, want %v", it.Version, want)
	}
	for slot, got := range storetest.Counts(it) {
		if got != n {
			t.Errorf("slot %d counted %d increments, want %d (lost updates)", slot, got, n)
		}
	}
}

func TestFilesAreOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 1) // a write creates the -wal and -shm files
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), mode)
		}
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	newCounter(t, s, 1)
	if err := storetest.Increment(t.Context(), s, counter, 0); err != nil {
		t.Fatal(err)
	}
	want, err := s.Get(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}
	closeT(t, s)

	s = openT(t, path)
	defer closeT(t, s)
	got, err := s.Get(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || string(got.ProtectedSecretValue) != string(want.ProtectedSecretValue) ||
		!got.Modified.Equal(want.Modified) {
		t.Fatalf("after reopen: %+v, want %+v", got.Meta, want.Meta)
	}
	var v int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version = %d, %v; want %d", v, err, schemaVersion)
	}
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	newer := filepath.Join(dir, "newer.db")
	s := openT(t, newer)
	if _, err := s.db.ExecContext(t.Context(), "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	if s, err := Open(t.Context(), newer); err == nil {
		s.Close()
		t.Fatal("Open of a file with a newer schema succeeded")
	}

	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), junk); err == nil {
		s.Close()
		t.Fatal("Open of a file that is not a database succeeded")
	}
}

// A path is a file name, not a URI: characters that mean something in a
// URI must not change which file is opened.
func TestOddPath(t *testing.T) {
	dir := t.TempDir()
	name := "a b?c=d#e%20f&é.db"
	s := openT(t, filepath.Join(dir, name))
	newCounter(t, s, 1)
	closeT(t, s)

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), name) {
			t.Errorf("Open created %q, want only %q and its -wal, -shm", e.Name(), name)
		}
	}
	s = openT(t, filepath.Join(dir, name))
	defer closeT(t, s)
	wantCounts(t, s, 1, 0)
}

// Two handles on one file are two connection pools, as a mount and an
// admin verb are.
func TestTwoHandlesLoseNoUpdate(t *testing.T) {
	const workers, increments = 8, 10
	path := filepath.Join(t.TempDir(), "secrets.db")
	a, b := openT(t, path), openT(t, path)
	defer closeT(t, a)
	defer closeT(t, b)
	newCounter(t, a, workers)

	var wg sync.WaitGroup
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range increments {
				if err := storetest.Increment(t.Context(), s, counter, w); err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantCounts(t, a, workers, increments)
}

// helperEnv, when set, makes TestHelperProcess the child of
// TestTwoProcessesLoseNoUpdate: it names the store file to increment.
const helperEnv = "SECRETFS_SQLITE_TEST_HELPER"

const processIncrements = 40

func TestTwoProcessesLoseNoUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 2)

	child := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), helperEnv+"="+path)
	var stderr strings.Builder
	child.Stderr = &stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("child said %q, %v; stderr:\n%s", line, err, stderr.String())
	}

	// Start together, so that the two processes' writes interleave.
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	for range processIncrements {
		if err := storetest.Increment(t.Context(), s, counter, 0); err != nil {
			t.Error(err)
			break
		}
	}
	rest, _ := io.ReadAll(out)
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, rest, stderr.String())
	}
	wantCounts(t, s, 2, processIncrements)
}

// TestHelperProcess is the child of TestTwoProcessesLoseNoUpdate; run on
// its own, it does nothing.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	s := openT(t, path)
	defer closeT(t, s)
	os.Stdout.WriteString("ready\n")
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); line != "go\n" {
		t.Fatalf("parent said %q, %v", line, err)
	}
	for range processIncrements {
		if err := storetest.Increment(t.Context(), s, counter, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// holdWriteLock takes the database's write lock from another handle, as a
// slow writer in another process would, until the test ends.
func holdWriteLock(t *testing.T, path string) {
	t.Helper()
	holder := openT(t, path)
	conn, err := holder.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		closeT(t, holder)
	})
}

func TestLockWaitEndsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 1)
	holdWriteLock(t, path)

	// Readers are not blocked by a writer (WAL): a mount keeps serving
	// while an admin verb writes.
	if _, err := s.Get(t.Context(), counter); err != nil {
		t.Fatalf("Get while another handle writes: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := storetest.Increment(ctx, s, counter, 0)
	if !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Put while locked: %v (kind %q), want Unavailable", err, fault.KindOf(err))
	}
	// The wait ended with the deadline, not with the 5 s busy timeout.
	if strings.Contains(err.Error(), "busy timeout") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put while locked: %v; want the context's deadline to have ended the wait", err)
	}
	wantCounts(t, s, 1, 0)
}

// A write of the Store that waits for another process's lock does not
// hold up the Store's reads; a call whose context has ended, before or
// while it waits for its connection, fails with Unavailable and leaves
// the connection usable.
func TestAWaitingWriteHoldsUpNoRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 1)
	holdWriteLock(t, path)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	writing := make(chan error, 1)
	go func() { writing <- storetest.Increment(ctx, s, counter, 0) }()
	// The write holds the writer's connection until its deadline; reads
	// go on meanwhile.
	for len(s.writer) > 0 {
		select {
		case err := <-writing:
			t.Fatalf("the write ended (%v) before it took the writer's connection", err)
		case <-time.After(time.Millisecond):
		}
	}
	for range 10 {
		if _, err := s.Get(t.Context(), counter); err != nil {
			t.Fatalf("Get while the Store's own write waits for a lock: %v", err)
		}
	}
	select {
	case err := <-writing:
		t.Fatalf("the write ended (%v) before the reads did: they did not overlap", err)
	default:
	}
	if err := <-writing; !fault.Is(fault.Unavailable, err) {
		t.Fatalf("the write: %v; want Unavailable", err)
	}

	done, cancelDone := context.WithCancel(t.Context())
	cancelDone()
	if _, err := s.Get(done, counter); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Get with an ended context: %v; want Unavailable", err)
	}
	held := <-s.reader
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	_, err := s.Get(short, counter)
	s.reader <- held
	if !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Get while its connection is held: %v; want Unavailable at the deadline", err)
	}
	wantCounts(t, s, 1, 0)
}

func TestBusyTimeoutIsUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s, err := open(t.Context(), path, 50*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	newCounter(t, s, 1)
	holdWriteLock(t, path)

	err = storetest.Increment(t.Context(), s, counter, 0)
	if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "busy timeout") {
		t.Fatalf("Put while locked: %v (kind %q), want Unavailable naming the busy timeout", err, fault.KindOf(err))
	}
	it, err := s.Get(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Delete(t.Context(), counter, it.Revision())
	if !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Delete while locked: %v (kind %q), want Unavailable", err, fault.KindOf(err))
	}
	wantCounts(t, s, 1, 0)
}
