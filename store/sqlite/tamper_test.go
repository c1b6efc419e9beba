package sqlite

import (
	"database/sql"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// These tests play someone who can write secrets.db but holds no key:
// SQL on the file, beside a Store that has it open.

// tamperedStore opens a store holding app/a, app/b and app/c, and a
// second connection to its file for the tampering.
func tamperedStore(t *testing.T) (*Store, *sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets.db")
	s := openT(t, path)
	t.Cleanup(func() { closeT(t, s) })
	for _, name := range []string{"a", "b", "c"} {
		it := &store.Item{
			Meta: store.Meta{Key: store.Key{App: "app", Name: name}, Format: "v3", Version: 1,
				InitialisationVector: []byte("iv-" + name), Size: 1, Modified: time.Now()},
			MasterKeyID: "rsa:sha256:x", ProtectedDocumentKey: []byte{1}, ProtectedSecretValue: []byte{2},
		}
		if err := s.Put(t.Context(), it, store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return s, db, path
}

func execSQL(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// peakRSS is the process's peak resident memory since resetPeak, in MiB.
func peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal("no /proc/self/status: the peak RSS cannot be measured")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(rest, &kb)
			return kb >> 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status: the peak RSS cannot be measured")
	return 0
}

func resetPeak(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("cannot reset the peak RSS (/proc/self/clear_refs): %v", err)
	}
}

// A ProtectedSecretValue of 300 MiB is refused as an integrity failure
// naming the secret, and never loaded: not by its Get, not by a listing,
// not by MasterKeyIDs, not by a Get or a write of a neighbour (SQLite's
// search of a WITHOUT ROWID table loads every overflowing row it passes).
func TestAnOversizedFieldIsRefusedWithoutBeingLoaded(t *testing.T) {
	s, _, path := tamperedStore(t)
	// A read first, so that the Store has learnt the table held no such
	// row: it must notice that this changed.
	if _, err := s.Get(t.Context(), store.Key{App: "app", Name: "c"}); err != nil {
		t.Fatal(err)
	}
	// In another process: SQLite's allocator keeps what making the blob
	// took, which would hide what the Store loads.
	inChild(t, path, "UPDATE secrets SET ProtectedSecretValue = zeroblob(300*1024*1024) WHERE SecretName = 'c'",
		"UPDATE secrets SET MasterKeyId = CAST(zeroblob(10*1024*1024) AS TEXT) WHERE SecretName = 'b'")

	resetPeak(t)
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "c"})
	if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "app/c") ||
		!strings.Contains(err.Error(), "ProtectedSecretValue is 314572800 bytes") {
		t.Fatalf("Get of the oversized app/c: %v; want an integrity failure naming it and the attribute", err)
	}
	_, err = s.Get(t.Context(), store.Key{App: "app", Name: "b"})
	if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "MasterKeyId") {
		t.Fatalf("Get of app/b, whose MasterKeyId is 10 MiB: %v; want an integrity failure", err)
	}
	a, err := s.Get(t.Context(), store.Key{App: "app", Name: "a"})
	if err != nil {
		t.Fatalf("Get of app/a beside them: %v", err)
	}
	page, _, err := s.List(t.Context(), "app", "", 0)
	if err != nil || len(page) != 3 {
		t.Fatalf("List = %v, %v; want 3 entries", page, err)
	}
	if ids, err := s.MasterKeyIDs(t.Context()); err != nil || len(ids) != 1 {
		t.Fatalf("MasterKeyIDs = %q, %v; want the one valid id", ids, err)
	}
	if apps, err := store.AppsAll(t.Context(), s); err != nil || len(apps) != 1 {
		t.Fatalf("Apps = %q, %v", apps, err)
	}
	n := *a
	n.Version, n.InitialisationVector = 2, []byte("iv-a2")
	err = s.Put(t.Context(), &n, a.Revision())
	if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "writes are refused until it is removed") {
		t.Fatalf("Put beside the oversized rows: %v; want it refused, naming one", err)
	}
	if peak := peakRSS(t); peak > 150 {
		t.Fatalf("peak RSS %d MiB: a 300 MiB field was loaded", peak)
	}
}

// alterTable makes the table what a store writer may make it: not
// STRICT (so a Version can hold text) and, with noKey, a rowid table
// without the primary key (so one name can have two rows).
func alterTable(t *testing.T, db *sql.DB, noKey bool) {
	t.Helper()
	cols := strings.Join(tableColumns, ", ")
	key := ", PRIMARY KEY (ApplicationName, SecretName)"
	without := " WITHOUT ROWID"
	if noKey {
		key, without = "", ""
	}
	replaceTable(t, db, "CREATE TABLE secrets ("+cols+key+")"+without)
}

// replaceTable makes the table secrets anew with create, holding the
// rows it held.
func replaceTable(t *testing.T, db *sql.DB, create string) {
	t.Helper()
	execSQL(t, db, "ALTER TABLE secrets RENAME TO old")
	execSQL(t, db, create)
	execSQL(t, db, "INSERT INTO secrets SELECT * FROM old")
	execSQL(t, db, "DROP TABLE old")
}

// An attribute of the wrong type or out of range (in a table that is no
// longer STRICT) makes its item invalid: listed as such, without failing
// the page, and an integrity failure (not "unavailable") to Get.
func TestAMalformedAttributeIsThatItemsIntegrityFailureOnly(t *testing.T) {
	for name, tc := range map[string]struct {
		set  string
		want string
	}{
		"Version text":   {"Version = 'abc'", "attribute Version is of type text"},
		"Size real":      {"Size = 1.5", "attribute Size is of type real"},
		"Format blob":    {"Format = x'7633'", "attribute Format is of type blob"},
		"Modified max":   {"Modified = 9223372036854775807", "attribute Modified (9223372036854775807 ms) is not a time"},
		"Modified min":   {"Modified = -9223372036854775808", "is not a time between 1970 and 9999"},
		"Version zero":   {"Version = 0", "stored versions start at 1"},
		"Size negative":  {"Size = -5", "attribute Size is negative"},
		"IV too long":    {"InitialisationVector = zeroblob(2000)", "attribute InitialisationVector is 2000 bytes"},
		"Version 1E+125": {"Version = '1E+125'", "attribute Version is of type text"},
	} {
		t.Run(name, func(t *testing.T) {
			s, db, _ := tamperedStore(t)
			alterTable(t, db, false)
			execSQL(t, db, "UPDATE secrets SET "+tc.set+" WHERE SecretName = 'b'")
			page, next, err := s.List(t.Context(), "app", "", 0)
			if err != nil || next != "" || len(page) != 3 {
				t.Fatalf("List = %v, %q, %v; want 3 entries", page, next, err)
			}
			if page[0].Invalid != nil || page[2].Invalid != nil || page[1].Name != "b" {
				t.Fatalf("List = %v; want only app/b invalid", page)
			}
			if !fault.Is(fault.Integrity, page[1].Invalid) || !strings.Contains(page[1].Invalid.Error(), tc.want) {
				t.Fatalf("app/b listed with Invalid %v; want an integrity failure saying %q", page[1].Invalid, tc.want)
			}
			_, err = s.Get(t.Context(), store.Key{App: "app", Name: "b"})
			if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Get app/b: %v; want an integrity failure saying %q", err, tc.want)
			}
			if _, err := s.Get(t.Context(), store.Key{App: "app", Name: "c"}); err != nil {
				t.Fatalf("Get app/c beside it: %v", err)
			}
		})
	}
}

// Two rows for one name (a rowid table without the primary key): the
// listing gives the name once, as invalid, on every page size; Get is an
// integrity failure for that secret; and Open refuses the altered table.
func TestANameHeldByTwoRowsIsListedOnceAndFailsIntegrity(t *testing.T) {
	s, db, path := tamperedStore(t)
	alterTable(t, db, true)
	execSQL(t, db, "INSERT INTO secrets SELECT * FROM secrets WHERE SecretName = 'b'")
	for _, limit := range []int{0, 1, 2, 3} {
		var names []string
		for _, m := range listPages(t, s, "app", limit) {
			names = append(names, m.Name)
			if (m.Name == "b") != (m.Invalid != nil) {
				t.Fatalf("limit %d: listed %s with Invalid %v; want only app/b invalid", limit, m.Name, m.Invalid)
			}
		}
		if strings.Join(names, ",") != "a,b,c" {
			t.Fatalf("limit %d: listed %q, want a, b, c once each", limit, names)
		}
	}
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "b"})
	if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "two rows") {
		t.Fatalf("Get of app/b: %v; want an integrity failure saying two rows hold it", err)
	}
	if _, err := Open(t.Context(), path); err == nil || !strings.Contains(err.Error(), "primary key") {
		t.Fatalf("Open of the altered table: %v; want it refused, naming the primary key", err)
	}
}

// listPages follows the pages of app's listing, of limit entries, from
// the first to the last (at most 10), and returns their entries.
func listPages(t *testing.T, s *Store, app string, limit int) []store.Meta {
	t.Helper()
	var all []store.Meta
	after := ""
	for range 10 {
		page, next, err := s.List(t.Context(), app, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if after = next; next == "" {
			break
		}
	}
	return all
}

// An item with an empty name, or of an empty application, which no
// valid item has but SQL on the file can make, is listed like any other
// name no file can have, so that the reader skips it with a log line
// (secrets.Keeper): on every page size, not passed over in silence by a
// cursor that starts after "".
func TestAnEmptyNameAndAnEmptyApplicationAreListed(t *testing.T) {
	s, db, _ := tamperedStore(t)
	const copyOfA = `INSERT INTO secrets SELECT %s, %s, MasterKeyId, ProtectedDocumentKey, InitialisationVector,
		ProtectedSecretValue, Format, Version, Size, Modified FROM secrets WHERE ApplicationName = 'app' AND SecretName = 'a'`
	execSQL(t, db, fmt.Sprintf(copyOfA, "ApplicationName", "''"))
	execSQL(t, db, fmt.Sprintf(copyOfA, "''", "SecretName"))
	for _, limit := range []int{0, 1, 2, 3, 4} {
		var names, apps []string
		for _, m := range listPages(t, s, "app", limit) {
			names = append(names, m.Name)
		}
		if got := strings.Join(names, ","); got != ",a,b,c" {
			t.Errorf("limit %d: listed %q, want the empty name, a, b and c once each", limit, names)
		}
		cursor := ""
		for range 10 {
			page, next, err := s.Apps(t.Context(), cursor, limit)
			if err != nil {
				t.Fatal(err)
			}
			apps = append(apps, page...)
			if cursor = next; next == "" {
				break
			}
		}
		if got := strings.Join(store.SortApps(apps), ","); got != ",app" {
			t.Errorf("limit %d: applications %q, want the empty one and app", limit, apps)
		}
	}
	if page, _, err := s.List(t.Context(), "", "", 0); err != nil || len(page) != 1 || page[0].Name != "a" {
		t.Errorf("the empty application lists %v, %v; want a", page, err)
	}
}

const tamperEnv = "SECRETFS_TEST_TAMPER_DB"

// inChild runs the statements on the file at path in a child process
// (TestTamperHelperProcess).
func inChild(t *testing.T, path string, statements ...string) {
	t.Helper()
	child := osexec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestTamperHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), tamperEnv+"="+path, tamperEnv+"_SQL="+strings.Join(statements, ";\n"))
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestTamperHelperProcess is the child of inChild; run on its own, it
// does nothing.
func TestTamperHelperProcess(t *testing.T) {
	path := os.Getenv(tamperEnv)
	if path == "" {
		return
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range strings.Split(os.Getenv(tamperEnv+"_SQL"), ";\n") {
		execSQL(t, db, q)
	}
}

// A Store scans its table for oversized rows only when another
// connection has changed it: its reads search by key between, and so do
// its writes; its reader scans once after a write by its writer.
func TestTheTableIsScannedOnlyAfterAnotherConnectionChangesIt(t *testing.T) {
	s, db, _ := tamperedStore(t)
	k := store.Key{App: "app", Name: "a"}
	// The writer scanned once, at the first of tamperedStore's writes.
	wantScans := func(want int64, after string) {
		t.Helper()
		if n := s.scans.Load(); n != want {
			t.Fatalf("%d scans (the writer's at the store's making included) after %s; want %d", n, after, want)
		}
	}
	wantScans(1, "the store's first writes")
	read := func() *store.Item {
		t.Helper()
		it, err := s.Get(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.List(t.Context(), "app", "", 0); err != nil {
			t.Fatal(err)
		}
		return it
	}
	it := read()
	wantScans(2, "the first read")
	for range 5 {
		read()
	}
	wantScans(2, "more reads")

	next := *it
	next.Version, next.InitialisationVector = 2, []byte("iv-a2")
	if err := s.Put(t.Context(), &next, it.Revision()); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), store.Key{App: "app", Name: "b"}, store.Revision{Version: 1, IV: []byte("iv-b")}); err != nil {
		t.Fatal(err)
	}
	wantScans(2, "more writes")
	if got := read(); got.Version != 2 {
		t.Fatalf("Get after the Store's own write = version %v; want 2", got.Version)
	}
	read()
	wantScans(3, "reads after the writer's commits")

	execSQL(t, db, "UPDATE secrets SET Modified = Modified + 1 WHERE SecretName = 'c'")
	read()
	read()
	wantScans(4, "reads after another connection changed the table")
	last := next
	last.Version, last.InitialisationVector = 3, []byte("iv-a3")
	if err := s.Put(t.Context(), &last, next.Revision()); err != nil {
		t.Fatal(err)
	}
	wantScans(5, "a write after another connection changed the table")
}

// A table altered after the Store opened it, so that a row can hold a
// long value the scan for oversized rows does not measure (a table no
// longer STRICT, a column added) or so that the Store's own write can
// make one (a trigger), is noticed at the next call: reads scan and load
// nothing long, and writes are refused, naming the alteration.
func TestATableAlteredAfterOpenIsScannedAndRefusesWrites(t *testing.T) {
	for name, alter := range map[string]func(t *testing.T, db *sql.DB, path string){
		"no longer STRICT, a 300 MiB Version": func(t *testing.T, db *sql.DB, path string) {
			alterTable(t, db, false)
			inChild(t, path, "UPDATE secrets SET Version = zeroblob(300*1024*1024) WHERE SecretName = 'c'")
		},
		"a column added, holding 300 MiB": func(t *testing.T, db *sql.DB, path string) {
			inChild(t, path, "ALTER TABLE secrets ADD COLUMN Junk BLOB",
				"UPDATE secrets SET Junk = zeroblob(300*1024*1024) WHERE SecretName = 'c'")
		},
		"a trigger that writes 300 MiB on an update": func(t *testing.T, db *sql.DB, path string) {
			execSQL(t, db, `CREATE TRIGGER t AFTER UPDATE ON secrets WHEN new.SecretName = 'a' BEGIN
				UPDATE secrets SET ProtectedSecretValue = zeroblob(300*1024*1024) WHERE SecretName = 'c'; END`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, db, path := tamperedStore(t)
			k := store.Key{App: "app", Name: "a"}
			a, err := s.Get(t.Context(), k)
			if err != nil {
				t.Fatal(err)
			}
			alter(t, db, path)

			resetPeak(t)
			if _, err := s.Get(t.Context(), k); err != nil {
				t.Fatalf("Get of app/a after the table was altered: %v", err)
			}
			s.Get(t.Context(), store.Key{App: "app", Name: "c"})
			if _, _, err := s.List(t.Context(), "app", "", 0); err != nil {
				t.Fatalf("List: %v", err)
			}
			n := *a
			n.Version, n.InitialisationVector = 2, []byte("iv-a2")
			err = s.Put(t.Context(), &n, a.Revision())
			if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "writes are refused") {
				t.Fatalf("Put after the table was altered: %v; want it refused as an integrity failure", err)
			}
			if peak := peakRSS(t); peak > 150 {
				t.Fatalf("peak RSS %d MiB: a 300 MiB field was loaded or made", peak)
			}
		})
	}
}

// Open refuses a table that is not the one it creates in ways that let
// a row hold, or the Store's own writes make, a long value: columns
// declared ANY, a trigger, an index, a generated column.
func TestOpenRefusesATableWithUntypedColumnsATriggerAnIndexOrAGeneratedColumn(t *testing.T) {
	var untyped []string
	for _, c := range tableColumns {
		untyped = append(untyped, c+" ANY")
	}
	for name, statements := range map[string][]string{
		"columns declared ANY": {
			"ALTER TABLE secrets RENAME TO old",
			"CREATE TABLE secrets (" + strings.Join(untyped, ", ") + ", PRIMARY KEY (ApplicationName, SecretName)) STRICT, WITHOUT ROWID",
			"INSERT INTO secrets SELECT * FROM old",
			"DROP TABLE old",
		},
		"a trigger":          {"CREATE TRIGGER t AFTER UPDATE ON secrets BEGIN SELECT 1; END"},
		"an index":           {"CREATE INDEX i ON secrets(ApplicationName, SecretName, zeroblob(10))"},
		"a generated column": {"ALTER TABLE secrets ADD COLUMN g BLOB AS (zeroblob(10)) VIRTUAL"},
	} {
		t.Run(name, func(t *testing.T) {
			s, db, path := tamperedStore(t)
			closeT(t, s)
			for _, q := range statements {
				execSQL(t, db, q)
			}
			s2, err := Open(t.Context(), path)
			if err == nil {
				s2.Close()
				t.Fatalf("Open accepted a table with %s", name)
			}
			if !strings.Contains(err.Error(), "is not the one secretfs creates") {
				t.Fatalf("Open: %v; want it to say the table is not the one secretfs creates", err)
			}
		})
	}
}

// A table that compares a column with NOCASE or RTRIM, so that "App/DB"
// and "app/db", or "db" and "db ", are one row, one search, one listed
// name, is refused: by Open, and by a Store that had the file open, whose
// writes are refused. The collation may be the column's own or the
// primary key's; a column's own is refused even behind a primary key
// that names BINARY, since a search, DISTINCT and ORDER BY use it.
func TestATableWhoseColumnsIgnoreCaseOrTrailingSpacesIsRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		collate map[string]string // a column's COLLATE clause
		key     string
		want    string
	}{
		"ApplicationName NOCASE":             {map[string]string{"ApplicationName": "COLLATE NOCASE"}, "ApplicationName, SecretName", "NOCASE"},
		"SecretName rtrim":                   {map[string]string{"SecretName": "collate rtrim"}, "ApplicationName, SecretName", "RTRIM"},
		"MasterKeyId NOCASE":                 {map[string]string{"MasterKeyId": "COLLATE NOCASE"}, "ApplicationName, SecretName", "NOCASE"},
		"a primary key on SecretName NOCASE": {nil, "ApplicationName, SecretName COLLATE NOCASE", "NOCASE"},
		"ApplicationName NOCASE behind a primary key that names BINARY": {
			map[string]string{"ApplicationName": "COLLATE NOCASE"}, "ApplicationName COLLATE BINARY, SecretName", "NOCASE"},
		"ApplicationName NOCASE, quoted after a comment, behind a primary key that names BINARY": {
			map[string]string{"ApplicationName": `COLLATE /* BINARY */ "nocase"`}, "ApplicationName COLLATE BINARY, SecretName", "compare with /*,"},
	} {
		t.Run(name, func(t *testing.T) {
			s, db, path := tamperedStore(t)
			a, err := s.Get(t.Context(), store.Key{App: "app", Name: "a"})
			if err != nil {
				t.Fatal(err)
			}
			var cols []string
			for i, c := range tableColumns {
				cols = append(cols, c+" "+tableTypes[i]+" "+tc.collate[c])
			}
			replaceTable(t, db, "CREATE TABLE secrets ("+strings.Join(cols, ", ")+", PRIMARY KEY ("+tc.key+")) STRICT, WITHOUT ROWID")

			n := *a
			n.Version, n.InitialisationVector = 2, []byte("iv-a2")
			err = s.Put(t.Context(), &n, a.Revision())
			if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "writes are refused") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Put after the table was altered: %v; want it refused as an integrity failure naming %s", err, tc.want)
			}
			closeT(t, s)
			s2, err := Open(t.Context(), path)
			if err == nil {
				s2.Close()
				t.Fatalf("Open accepted a table with %s", name)
			}
			if !strings.Contains(err.Error(), "is not the one secretfs creates") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want it to say the table is not the one secretfs creates, naming %s", err, tc.want)
			}
		})
	}
}
