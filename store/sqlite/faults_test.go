package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/storetest"
)

// wantRefusedWrite checks that err is the refusal of a write to a store
// file that is no longer at its path: fault.StoreGone (EIO), an answer
// (no confirming look, no outage), saying why.
func wantRefusedWrite(t *testing.T, err error, why string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the write was acknowledged; want it refused because the store file %s", why)
	}
	if k := fault.KindOf(err); k != fault.StoreGone || k.Errno() != syscall.EIO || !fault.Answered(err) {
		t.Errorf("kind %q, want StoreGone (EIO), an answer: %v", k, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "store file") || !strings.Contains(msg, why) {
		t.Errorf("error %q does not say the store file %s", msg, why)
	}
}

// As `rm -rf` of the data directory does: the file and its -wal and -shm
// go while the store has them open.
func TestWriteToARemovedFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 1)
	before, err := s.Get(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}

	wantRefusedWrite(t, storetest.Increment(t.Context(), s, counter, 0), "was removed")
	wantRefusedWrite(t, s.Put(t.Context(), storetest.NewCounter(store.Key{App: "app", Name: "new"}, 1), store.NoItem), "was removed")
	wantRefusedWrite(t, s.Delete(t.Context(), counter, before.Revision()), "was removed")
}

// A file renamed over the store's (a restore, an editor's save) is a
// different file: writes must not go on into the one it replaced.
func TestWriteToAReplacedFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 1)
	before, err := s.Get(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}

	other := filepath.Join(dir, "restored.db")
	closeT(t, openT(t, other))
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}

	// (A read of it is refused too: TestReadsOfAReplacedFileAreRefusedAndOfARemovedOneGoOn.)
	next := *before
	next.Version = before.Version.Next()
	next.InitialisationVector = []byte("a fresh IV")
	wantRefusedWrite(t, s.Put(t.Context(), &next, before.Revision()), "was replaced")
	wantRefusedWrite(t, s.Put(t.Context(), storetest.NewCounter(store.Key{App: "app", Name: "new"}, 1), store.NoItem), "was replaced")
}

// Reads of a file the path no longer names: a removed one is read whole,
// from what is open; a replaced one is refused (its -wal and -shm, which
// SQLite opens by name, may be the new file's: a read could mix the two),
// as an outage, so that the catalog serves what it read before, and
// logged once.
func TestReadsOfAReplacedFileAreRefusedAndOfARemovedOneGoOn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.db")
	log, hook := logtest.NewNullLogger()
	s, err := OpenWith(t.Context(), path, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	newCounter(t, s, 1)

	other := filepath.Join(dir, "restored.db")
	closeT(t, openT(t, other))
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := s.Get(t.Context(), counter)
		if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "was replaced by another file while open: reads are refused") {
			t.Errorf("Get of a replaced file: %v, want it refused as an outage", err)
		}
		if _, _, err := s.List(t.Context(), counter.App, "", 10); !fault.Is(fault.Unavailable, err) {
			t.Errorf("List of a replaced file: %v", err)
		}
		if _, _, err := s.Apps(t.Context(), "", 10); !fault.Is(fault.Unavailable, err) {
			t.Errorf("Apps of a replaced file: %v", err)
		}
	}
	told := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "was replaced") {
			told++
		}
	}
	if told != 1 {
		t.Errorf("the replaced file was logged %d times at error level, want once", told)
	}

	removed := filepath.Join(t.TempDir(), "secrets.db")
	r := openT(t, removed)
	defer closeT(t, r)
	newCounter(t, r, 1)
	if err := os.Remove(removed); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(t.Context(), counter); err != nil {
		t.Errorf("Get of a removed file, read from what is open: %v", err)
	}
}

// A file moved away is refused while it is away, and written again once
// it is back: the check is of the path, each time.
func TestWriteToAMovedFileIsRefusedUntilItIsBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 1)

	away := filepath.Join(dir, "away.db")
	if err := os.Rename(path, away); err != nil {
		t.Fatal(err)
	}
	wantRefusedWrite(t, storetest.Increment(t.Context(), s, counter, 0), "moved away")
	if err := os.Rename(away, path); err != nil {
		t.Fatal(err)
	}
	if err := storetest.Increment(t.Context(), s, counter, 0); err != nil {
		t.Fatalf("a write once the file is back: %v", err)
	}
	// The refused write did not land in the moved file either.
	wantCounts(t, s, 1, 1)
}

// SQLite's page limit gives the same SQLITE_FULL as a full disk.
func TestFullDatabaseIsNoSpaceAndKeepsTheOldValue(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "secrets.db"))
	defer closeT(t, s)
	ctx := t.Context()
	newCounter(t, s, 1)
	old, err := s.Get(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	// max_page_count is a connection's setting: set it on the writer's.
	onWriter(t, s, func(c *sql.Conn) {
		var pages int
		if err := c.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
			t.Fatal(err)
		}
	})

	bigger := *old
	bigger.Version = old.Version.Next()
	bigger.InitialisationVector = []byte("a fresh IV for the write that does not fit")
	bigger.ProtectedSecretValue = bytes.Repeat([]byte{0x5a}, 256<<10) // overflow pages the file has no room for
	err = s.Put(ctx, &bigger, old.Revision())
	if !fault.Is(fault.NoSpace, err) {
		t.Fatalf("Put over the page limit: %v (kind %q), want NoSpace", err, fault.KindOf(err))
	}
	got, err := s.Get(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != old.Version || !bytes.Equal(got.InitialisationVector, old.InitialisationVector) ||
		!bytes.Equal(got.ProtectedSecretValue, old.ProtectedSecretValue) {
		t.Fatalf("after the failed write the store holds version %v (%d bytes), want the old version %v intact",
			got.Version, len(got.ProtectedSecretValue), old.Version)
	}

	fresh := storetest.NewCounter(store.Key{App: "app", Name: "new"}, 1)
	fresh.ProtectedSecretValue = bytes.Repeat([]byte{0xa5}, 256<<10)
	if err := s.Put(ctx, fresh, store.NoItem); !fault.Is(fault.NoSpace, err) {
		t.Fatalf("a new item over the page limit: %v (kind %q), want NoSpace", err, fault.KindOf(err))
	}
	if _, err := s.Get(ctx, fresh.Key); !fault.Is(fault.NotFound, err) {
		t.Fatalf("the item that did not fit: Get = %v, want NotFound", err)
	}

	// With room again, the same write lands.
	onWriter(t, s, func(c *sql.Conn) {
		if _, err := c.ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.Put(ctx, &bigger, old.Revision()); err != nil {
		t.Fatalf("the same Put with room: %v", err)
	}
}

func TestENOSPCIsNoSpace(t *testing.T) {
	s := &Store{}
	err := s.wrap(context.Background(), "sqlite.Put", "app/db", &os.PathError{Op: "write", Path: "secrets.db-wal", Err: syscall.ENOSPC})
	if !fault.Is(fault.NoSpace, err) {
		t.Fatalf("wrap(ENOSPC) = %v (kind %q), want NoSpace", err, fault.KindOf(err))
	}
}

func TestOpenTightensExistingFilesTo0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	first := openT(t, path)
	defer closeT(t, first)
	newCounter(t, first, 1) // the -wal and -shm stay while first is open
	files := []string{path, path + "-wal", path + "-shm"}
	for _, p := range files {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	log, hook := logtest.NewNullLogger()
	s, err := OpenWith(t.Context(), path, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %04o after Open, want 0600", filepath.Base(p), mode)
		}
	}
	var said []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "tightened") {
			said, _ = e.Data["files"].([]string)
		}
	}
	if len(said) != len(files) {
		t.Fatalf("the log line names %q; want each of %q, as was 0644", said, files)
	}
	for _, p := range files {
		if !slices.Contains(said, p+" (was 0644)") {
			t.Errorf("the log line names %q; want %q among them", said, p+" (was 0644)")
		}
	}
	wantCounts(t, s, 1, 0) // and the store is the same store
}

func TestOpenOfPrivateFilesLogsNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	first := openT(t, path)
	defer closeT(t, first)
	newCounter(t, first, 1)

	log, hook := logtest.NewNullLogger()
	s, err := OpenWith(t.Context(), path, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	if entries := hook.AllEntries(); len(entries) != 0 {
		t.Fatalf("Open of 0600 files logged %q", entries[0].Message)
	}
}

// A connection the pool opens after the file was removed must not create
// a new, empty database in its place.
func TestRemovedFileIsNotCreatedAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	defer closeT(t, s)
	newCounter(t, s, 1)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// Close every connection: the next statement opens a new one, as
	// after one broke.
	dropConnections(s)
	s.db.SetMaxIdleConns(0)
	s.db.SetMaxIdleConns(2)
	_, err := s.Get(t.Context(), counter)
	if err == nil {
		t.Errorf("Get through a new connection succeeded with the file removed")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("after a new connection, %s: %v; want it still absent", path, err)
	}
}

// onWriter runs f with the connection of s's writer, opened first if
// need be.
func onWriter(t *testing.T, s *Store, f func(*sql.Conn)) {
	t.Helper()
	r := <-s.writer
	defer func() { s.writer <- r }()
	if r.conn == nil {
		c, err := s.db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		*r = searcher{db: s.db, conn: c, stmts: map[string]*sql.Stmt{}}
	}
	f(r.conn)
}

// dropConnections closes the connections of s's reader and writer: the
// next call opens another.
func dropConnections(s *Store) {
	for _, c := range []chan *searcher{s.reader, s.writer} {
		r := <-c
		r.drop()
		c <- r
	}
}

// A call whose context ends at any moment, in its BEGIN included (the
// driver then reports a BEGIN that ran as failed), leaves its
// connection usable: the next call succeeds.
func TestACallCancelledAtAnyMomentLeavesItsConnectionUsable(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "secrets.db"))
	defer closeT(t, s)
	newCounter(t, s, 1)
	// Cancel within twice the time a Get takes, so that many land inside
	// one, its BEGIN included.
	start := time.Now()
	for range 100 {
		if _, err := s.Get(t.Context(), counter); err != nil {
			t.Fatal(err)
		}
	}
	window := int64(2 * time.Since(start) / 100)
	for i := range 3000 {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(time.Duration(rand.Int64N(window)))
			cancel()
		}()
		s.Get(ctx, counter)
		cancel()
		if _, err := s.Get(t.Context(), counter); err != nil {
			t.Fatalf("Get after cancelled Get %d: %v", i, err)
		}
	}
}

// A Put whose context ends while it runs is either acknowledged or not
// stored: a write reported failed never landed (the driver reports a
// COMMIT that ran as failed when its context ended meanwhile, so the
// Store runs COMMIT without the context's end).
func TestAPutReportedFailedNeverLanded(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "secrets.db"))
	defer closeT(t, s)
	newCounter(t, s, 1)
	failed := 0
	for i := range 300 {
		cur, err := s.Get(t.Context(), counter)
		if err != nil {
			t.Fatal(err)
		}
		next := *cur
		next.Version, next.InitialisationVector = cur.Version.Next(), []byte(fmt.Sprintf("iv-%d", i))
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
			cancel()
		}()
		err = s.Put(ctx, &next, cur.Revision())
		cancel()
		if err == nil {
			continue
		}
		failed++
		got, gerr := s.Get(t.Context(), counter)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if got.Version == next.Version && bytes.Equal(got.InitialisationVector, next.InitialisationVector) {
			t.Fatalf("Put %d was reported failed (%v) but is stored", i, err)
		}
	}
	t.Logf("%d of 300 Puts were cut short by their context", failed)
}
