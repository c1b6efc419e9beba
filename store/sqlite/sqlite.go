// Package sqlite is the embedded default store: one SQLite file holding the
// same items, under the same attribute names, as the DynamoDB table of the
// original Secret Store. A running mount and the admin verbs (separate
// processes) use the file at the same time; WAL mode, a busy timeout and
// single-statement conditional writes keep them from losing each other's
// updates.
//
// Like every store it holds only protected items: it must never see
// plaintext. The file holds key material wrapped by the master key, so it
// is created readable by its owner only, and an existing file (with its
// -wal and -shm) that others may read is tightened to 0600 when opened.
//
// A write is acknowledged only if it went to the file at the store's
// path: a file removed, moved or replaced under a running mount keeps
// answering SQLite, but nothing written to it would be found at that path
// again, so every write checks first, and again after it commits, that
// the path still names the open file. A full disk fails the write that
// did not fit as fault.NoSpace; its transaction rolls back, leaving what
// was stored intact. A write kept out by another process's write
// transaction, for the busy timeout or until its deadline, says that the
// database was locked and that it was not written (store.ErrNotWritten),
// as does any write that failed before its COMMIT.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	msqlite "modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// MaxValueSize is the largest plaintext value, in bytes.
const MaxValueSize = store.DefaultMaxValueSize

// pageSize is the default and the largest page of List and Apps.
const pageSize = 1000

// busyTimeout is how long a statement waits for a lock held by another
// connection or process before failing with fault.Unavailable (a write,
// as not written). Writes hold the lock for one statement, so a longer
// wait means something is wrong; a caller's shorter deadline ends the
// wait sooner.
const busyTimeout = 5 * time.Second

// schemaVersion is kept in PRAGMA user_version. Version 0 is a new, empty
// file.
const schemaVersion = 1

// schema is the table, in the attribute names of the original Secret
// Store (docs/FORMAT.md). NULL in Format, Version, Size and Modified marks
// what a legacy item lacks. BINARY collation orders names by their UTF-8
// bytes, as DynamoDB orders sort keys.
const schema = `
CREATE TABLE secrets (
	ApplicationName      TEXT NOT NULL COLLATE BINARY,
	SecretName           TEXT NOT NULL COLLATE BINARY,
	MasterKeyId          TEXT NOT NULL,
	ProtectedDocumentKey BLOB NOT NULL,
	InitialisationVector BLOB NOT NULL,
	ProtectedSecretValue BLOB NOT NULL,
	Format               TEXT,    -- NULL: legacy item, read as v1
	Version              INTEGER, -- NULL: legacy item (store.Unversioned)
	Size                 INTEGER, -- plaintext bytes; NULL: unknown
	Modified             INTEGER, -- unix milliseconds; NULL: unknown
	PRIMARY KEY (ApplicationName, SecretName)
) STRICT, WITHOUT ROWID`

// Store is a store.Store in a SQLite file. It is safe for concurrent use,
// also with other processes that open the same file.
type Store struct {
	db   *sql.DB
	busy time.Duration
	path string
	// file is the store's file, held open for the Store's life so that
	// checkFile can tell whether path still names it. It is closed after
	// db: closing a descriptor drops the process's POSIX locks on the
	// file, and SQLite's must not go while it holds any.
	file *os.File
	// reader holds the connection Get and List use, writer the one Put
	// and Delete use, each by one call at a time (a channel of one, so
	// that waiting for it ends with the caller's context); see inTx.
	// Reads have their own, so that a write waiting for another
	// process's lock never holds up a read.
	reader, writer chan *searcher
	// scans counts the scans inTx made to learn whether the table holds
	// an oversized row; tests read it.
	scans atomic.Int64

	log          logrus.FieldLogger
	replacedTold sync.Once // the replaced file is logged once (readable)
}

// searcher is a connection, the statements prepared on it, and what it
// last learnt of the table: whether, at the data_version it then saw, a
// row held a field longer than a valid item's (see "Reading what a store
// writer may have made").
type searcher struct {
	db      *sql.DB   // whose connection it holds
	conn    *sql.Conn // nil until first used, and after it broke
	stmts   map[string]*sql.Stmt
	known   bool  // whether version and refusal say anything
	version int64 // PRAGMA data_version on conn at the last scan
	// refusal says why the table must be neither searched by key nor
	// written (an oversized row, or a table altered after Open: see
	// unsearchable), or is "".
	refusal string
}

var (
	_ store.Store = (*Store)(nil)
	_ store.Sizer = (*Store)(nil)
)

// Options are Open's optional settings.
type Options struct {
	// Log receives what Open did to the files' modes; nil is logrus's
	// standard logger.
	Log logrus.FieldLogger
}

// Open opens the store in the file at path, creating the file (mode 0600)
// and its table if missing. The directory must exist. An existing file,
// -wal or -shm that its group or others may use is made 0600, with a log
// line on logrus's standard logger; OpenWith names the logger.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, opts Options) (*Store, error) {
	return open(ctx, path, busyTimeout, opts.Log)
}

func open(ctx context.Context, path string, busy time.Duration, log logrus.FieldLogger) (*Store, error) {
	const op fault.Op = "sqlite.Open"
	if log == nil {
		log = logrus.StandardLogger()
	}
	// SQLite would create the file with mode 0644 minus the umask; create
	// it first. Its -wal and -shm files inherit the file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, privateMode)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fault.E(op, fault.Permission, err)
		}
		return nil, fault.E(op, err)
	}
	// Tightened before SQLite opens it, so that a -wal or -shm it creates
	// gets the file's new mode.
	tightened := tighten(log, path, f.Stat, f.Chmod)
	abs, err := filepath.Abs(path)
	if err != nil {
		f.Close()
		return nil, fault.E(op, err)
	}

	// Pragmas go in the DSN so that every pooled connection gets them.
	// synchronous=FULL: a committed write survives a power cut.
	// _txlock=immediate: a write transaction takes the write lock at BEGIN,
	// where the busy timeout applies, instead of failing when it upgrades.
	// mode=rw: a connection the pool opens later never creates a new,
	// empty database where the store's file was removed.
	q := url.Values{
		"_pragma": {
			"busy_timeout(" + strconv.FormatInt(busy.Milliseconds(), 10) + ")",
			"journal_mode(WAL)",
			"synchronous(FULL)",
		},
		"_txlock": {"immediate"},
		"mode":    {"rw"},
	}
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		f.Close()
		return nil, fault.E(op, err)
	}
	s := &Store{db: db, busy: busy, path: path, file: f, log: log,
		reader: make(chan *searcher, 1), writer: make(chan *searcher, 1)}
	// Both connections are opened now, while path names the file: one
	// opened later would fail if it had moved.
	reader, writer := &searcher{db: db}, &searcher{db: db}
	s.reader <- reader
	s.writer <- writer
	for _, r := range []*searcher{reader, writer} {
		if err := r.connect(ctx); err != nil {
			s.Close()
			return nil, fault.E(op, fmt.Errorf("%s: %w", path, err))
		}
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fault.E(op, fmt.Errorf("%s: %w", path, err))
	}
	// The -wal and -shm exist now (the migration read in WAL mode); they
	// may be left from an earlier run, with an earlier mode.
	for _, p := range []string{path + "-wal", path + "-shm"} {
		tightened = append(tightened, tighten(log, p, func() (fs.FileInfo, error) { return os.Lstat(p) },
			func(mode fs.FileMode) error { return os.Chmod(p, mode) })...)
	}
	if len(tightened) > 0 {
		log.WithField("files", tightened).Warn("tightened the store's files to 0600: they held wrapped keys that other users could read or change")
	}
	// SQLite opened the file by name after f was opened: make sure they
	// are the same file.
	if err := s.checkFile(); err != nil {
		s.Close()
		return nil, fault.E(op, err)
	}
	return s, nil
}

// privateMode is the mode of the store's files: they hold key material
// wrapped by the master key, and only the owner may read or change it.
const privateMode fs.FileMode = 0o600

// tighten makes the file at path privateMode if its group or others have
// any access to it, and returns its name and former mode if it did. A
// file that is missing (a -wal or -shm SQLite has not made) or is not a
// regular file is left alone. The -wal and -shm are changed by name:
// opening them here and closing them again would drop the locks SQLite
// holds on them. A file that cannot be changed is logged, not fatal:
// what it holds is wrapped by the master key, and refusing to open would
// stop a mount over a mode.
func tighten(log logrus.FieldLogger, path string, stat func() (fs.FileInfo, error), chmod func(fs.FileMode) error) []string {
	fi, err := stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := chmod(privateMode); err != nil {
		log.WithField("file", path).Errorf("the store's file has mode %04o, which lets other users read or change it, and cannot be made %04o: %v",
			fi.Mode().Perm(), privateMode, err)
		return nil
	}
	return []string{fmt.Sprintf("%s (was %04o)", path, fi.Mode().Perm())}
}

// checkFile reports an error unless the store's path still names the file
// this Store opened, and that file is still linked: a write to a file
// removed, moved or replaced under the Store would be acknowledged but
// never found at the path again. Those three are fault.StoreGone, an
// answer (the store at the path does not hold the write, and asking
// again changes nothing), not an outage. It costs an fstat and a stat.
func (s *Store) checkFile() error {
	open, err := s.file.Stat()
	if err != nil {
		return fmt.Errorf("the store file %s cannot be checked: %w", s.path, err)
	}
	named, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if st, ok := open.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
			return fault.E(fault.StoreGone, "the store file "+s.path+" was removed while open: writes are refused, since nothing written to a removed file is kept; restore the file or restart the mount")
		}
		return fault.E(fault.StoreGone, "the store file "+s.path+" was moved away while open: writes are refused, since they would not reach the store at that path; move it back or restart the mount")
	case err != nil:
		return fmt.Errorf("the store file %s cannot be checked: %w", s.path, err)
	case !os.SameFile(open, named):
		return fault.E(fault.StoreGone, "the store file "+s.path+" was replaced by another file while open: writes are refused, since they would go to the file it replaced; restart the mount to use the new file")
	}
	return nil
}

// replaced reports whether the store's path names another file than the
// one this Store opened.
func (s *Store) replaced() bool {
	open, err := s.file.Stat()
	if err != nil {
		return false
	}
	named, err := os.Stat(s.path)
	return err == nil && !os.SameFile(open, named)
}

// readable refuses a read once the store's path names another file than
// the one this Store opened: its connections read the file they opened,
// but the -wal and -shm beside it, which SQLite opens by name, may be the
// new file's, and a read would mix the two (a file removed or moved away
// is still read whole, from what is open). The refusal is an outage
// (fault.Unavailable): the catalog serves what it read before, within
// --stale-if-error. Logged once, at error level.
func (s *Store) readable(op fault.Op, p fault.Path) error {
	if !s.replaced() {
		return nil
	}
	const why = "was replaced by another file while open: reads are refused, since they could mix the two files; restart the mount to use the new file"
	s.replacedTold.Do(func() { s.log.WithField("path", s.path).Error("the store file " + why) })
	return fault.E(op, p, fault.Unavailable, "the store file "+s.path+" "+why)
}

// migrate creates the schema in a new file, in one write transaction, so
// that two processes opening a new file at once create it once.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(ctx, "", "", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return s.wrap(ctx, "", "", err)
	}
	switch v {
	case schemaVersion:
		return checkSchema(ctx, tx)
	case 0:
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return s.wrap(ctx, "", "", err)
		}
		if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(schemaVersion)); err != nil {
			return s.wrap(ctx, "", "", err)
		}
		return s.wrap(ctx, "", "", tx.Commit())
	}
	return fmt.Errorf("schema version %d is not %d: the file was written by another version of secretfs", v, schemaVersion)
}

// tableColumns are the columns of the table, in order, and their
// declared types, as schema makes them.
var (
	tableColumns = []string{"ApplicationName", "SecretName", "MasterKeyId", "ProtectedDocumentKey",
		"InitialisationVector", "ProtectedSecretValue", "Format", "Version", "Size", "Modified"}
	tableTypes = []string{"TEXT", "TEXT", "TEXT", "BLOB", "BLOB", "BLOB", "TEXT", "INTEGER", "INTEGER", "INTEGER"}
)

// errNoTable is tableDefects' error when the file has no table secrets.
var errNoTable = errors.New("the file has no table secrets: it was altered, or is not a secretfs store; restore it from a backup")

// checkSchema refuses a table that is not the one schema made
// (tableDefects). Someone who can write the file can alter the table so
// that one name has two rows, or a Version holds text; the reads are made
// to cope with that (a name held twice, an attribute of the wrong type,
// are integrity failures of that secret), but a store that starts on such
// a table would hide the alteration.
func checkSchema(ctx context.Context, q queryer) error {
	wrong, err := tableDefects(ctx, q)
	if err != nil {
		return err
	}
	if len(wrong) > 0 {
		return fmt.Errorf("the table secrets is not the one secretfs creates (%s): the file was altered; restore it from a backup", strings.Join(wrong, "; "))
	}
	return nil
}

// tableDefects says how the table secrets differs from the one schema
// makes, or is empty: its columns (generated ones included) and their
// declared types, its primary key (ApplicationName, SecretName), STRICT
// and WITHOUT ROWID, no collation but BINARY (otherCollations), and no
// index or trigger on it. A column added,
// retyped (ANY) or generated, or a table no longer STRICT, can hold a
// long value that oversizedRow does not measure; an index's entries can
// be long whatever the row holds; a trigger runs on this Store's own
// writes, with any SQL. It reads only the schema.
func tableDefects(ctx context.Context, q queryer) ([]string, error) {
	var tables, wr, strict int
	if err := q.QueryRowContext(ctx, "SELECT count(*), ifnull(max(wr), 0), ifnull(max(strict), 0) FROM pragma_table_list WHERE schema = 'main' AND name = 'secrets' AND type = 'table'").
		Scan(&tables, &wr, &strict); err != nil {
		return nil, err
	}
	if tables == 0 {
		return nil, errNoTable
	}
	wrong, err := columnDefects(ctx, q)
	if err != nil {
		return nil, err
	}
	others, err := otherCollations(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(others) > 0 {
		wrong = append(wrong, "its columns or primary key compare with "+strings.Join(others, " and ")+", not BINARY")
	}
	if wr != 1 || strict != 1 {
		wrong = append(wrong, "it is not a STRICT, WITHOUT ROWID table")
	}
	var indexes, triggers int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM pragma_index_list('secrets') WHERE origin <> 'pk'").Scan(&indexes); err != nil {
		return nil, err
	}
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'secrets' COLLATE NOCASE").Scan(&triggers); err != nil {
		return nil, err
	}
	if indexes > 0 {
		wrong = append(wrong, "it has an index besides its primary key")
	}
	if triggers > 0 {
		wrong = append(wrong, "it has a trigger")
	}
	return wrong, nil
}

// columnDefects is tableDefects for the columns of the table secrets:
// their names (generated ones marked), declared types and primary key.
func columnDefects(ctx context.Context, q queryer) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, upper(type), pk, hidden FROM pragma_table_xinfo('secrets') ORDER BY cid")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols, types []string
	var pk [2]string
	for rows.Next() {
		var name, typ string
		var n, hidden int
		if err := rows.Scan(&name, &typ, &n, &hidden); err != nil {
			return nil, err
		}
		if hidden != 0 {
			name += " (generated)"
		}
		cols, types = append(cols, name), append(types, typ)
		if n == 1 || n == 2 {
			pk[n-1] = name
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var wrong []string
	if !slices.Equal(cols, tableColumns) {
		wrong = append(wrong, "its columns are not "+strings.Join(tableColumns, ", "))
	} else if !slices.Equal(types, tableTypes) {
		wrong = append(wrong, "its columns' types are not "+strings.Join(tableTypes, ", "))
	}
	if pk != [2]string{"ApplicationName", "SecretName"} {
		wrong = append(wrong, "its primary key is not (ApplicationName, SecretName)")
	}
	return wrong, nil
}

// otherCollations are the collations other than BINARY that the table
// secrets compares a column with, upper-cased, or none. Under NOCASE or
// RTRIM, "App" and "app", or "db" and "db ", are one name to the primary
// key, to a search, to DISTINCT and to ORDER BY: a row could be served,
// overwritten or listed for another name, or a name hidden from a
// listing; a MasterKeyId under NOCASE could hide a key still in use from
// MasterKeyIDs. The primary key's index says what it compares its
// columns with (pragma_index_xinfo: the PRIMARY KEY clause's COLLATE, or
// else the column's), but no pragma gives a column's own collation, which
// a search, DISTINCT and ORDER BY use; so every COLLATE in the table's
// CREATE statement, the text SQLite builds the table from, must name
// BINARY (statementCollations).
func otherCollations(ctx context.Context, q queryer) ([]string, error) {
	var stmt, indexed string
	if err := q.QueryRowContext(ctx, `SELECT
		ifnull((SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'secrets' COLLATE NOCASE), ''),
		ifnull((SELECT group_concat(x.coll, ' ') FROM pragma_index_list('secrets') l, pragma_index_xinfo(l.name) x
			WHERE l.origin = 'pk'), '')`).Scan(&stmt, &indexed); err != nil {
		return nil, err
	}
	var others []string
	for _, c := range append(strings.Fields(asciiUpper(indexed)), statementCollations(stmt)...) {
		if c != "BINARY" && !slices.Contains(others, c) {
			others = append(others, c)
		}
	}
	return others, nil
}

// statementCollations are the words that follow each COLLATE in a
// CREATE statement, upper-cased as SQLite compares them (ASCII only),
// each up to a space, a comma or a closing parenthesis. A name quoted, or
// written after a comment, is not BINARY here, whatever it is to SQLite;
// and a COLLATE in a comment, a string or an identifier counts as well:
// schema has neither.
func statementCollations(stmt string) []string {
	var words []string
	rest := asciiUpper(stmt)
	for {
		_, after, found := strings.Cut(rest, "COLLATE")
		if !found {
			return words
		}
		rest = strings.TrimLeft(after, " \t\n\f\r")
		end := strings.IndexAny(rest, " \t\n\f\r,)")
		if end < 0 {
			end = len(rest)
		}
		words = append(words, rest[:end])
	}
}

// asciiUpper is s with its ASCII letters upper-cased: SQLite folds the
// case of keywords and collation names in ASCII only.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// MaxValueSize implements store.Sizer.
func (s *Store) MaxValueSize() int64 { return MaxValueSize }

// Get implements store.Store. It reads the item with getItem: nothing
// longer than a valid item's field is loaded, and an item that no valid
// item can be is fault.Integrity, naming the secret.
func (s *Store) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	const op fault.Op = "sqlite.Get"
	var it *store.Item
	err := s.inTx(ctx, op, k.Path(), false, func(tx *txn, refusal string) error {
		var err error
		it, err = getItem(ctx, tx, k, itemSelection, refusal == "")
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fault.E(op, k.Path(), fault.NotFound)
		case errors.Is(err, errMalformed):
			return fault.E(op, k.Path(), fault.Integrity, err)
		}
		return s.wrap(ctx, op, k.Path(), err)
	})
	if err != nil {
		return nil, err
	}
	return it, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, item *store.Item, expected store.Revision) error {
	const op fault.Op = "sqlite.Put"
	if err := store.CheckPut(item, expected); err != nil {
		return fault.E(op, err)
	}
	if n := len(item.ProtectedSecretValue); n > MaxValueSize+store.ValueOverhead {
		return fault.E(op, item.Path(), fault.TooLarge,
			fmt.Sprintf("protected value is %d bytes; the limit is %d", n, MaxValueSize+store.ValueOverhead))
	}
	// What this Store writes is valid, so that a write leaves what inTx
	// knows of the table true.
	if err := store.CheckStored(item, MaxValueSize); err != nil {
		return fault.E(op, item.Path(), fault.Invalid, err)
	}
	args := []any{
		item.MasterKeyID, item.ProtectedDocumentKey, item.InitialisationVector, item.ProtectedSecretValue,
		nullIf(item.Format, item.Format == ""),
		nullIf(int64(item.Version), item.Version == store.Unversioned),
		nullIf(item.Size, item.Size < 0),
		nullIf(item.Modified.UnixMilli(), item.Modified.IsZero()),
		item.App, item.Name,
	}
	return s.write(ctx, op, item.Key, func(tx *txn) (sql.Result, error) {
		if expected.Version == store.Absent {
			return tx.ExecContext(ctx, `
				INSERT INTO secrets (MasterKeyId, ProtectedDocumentKey, InitialisationVector, ProtectedSecretValue,
				                     Format, Version, Size, Modified, ApplicationName, SecretName)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (ApplicationName, SecretName) DO NOTHING`, args...)
		}
		// IS compares NULL (a legacy item) like any other value.
		return tx.ExecContext(ctx, `
			UPDATE secrets SET MasterKeyId = ?, ProtectedDocumentKey = ?, InitialisationVector = ?, ProtectedSecretValue = ?,
			                   Format = ?, Version = ?, Size = ?, Modified = ?
			WHERE ApplicationName = ? AND SecretName = ? AND Version IS ? AND InitialisationVector = ?`,
			append(args, versionArg(expected.Version), expected.IV)...)
	}, func(stored store.Revision, found bool) error {
		return store.PutRefused(op, item.Key, expected, stored, found)
	})
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	const op fault.Op = "sqlite.Delete"
	if err := store.CheckExpected(expected); err != nil {
		return fault.E(op, k.Path(), err)
	}
	// Expecting NoItem matches no row (no stored Version is Absent, and
	// NULL equals nothing): the statement only takes the lock, and the
	// classification says why.
	return s.write(ctx, op, k, func(tx *txn) (sql.Result, error) {
		return tx.ExecContext(ctx, `
			DELETE FROM secrets
			WHERE ApplicationName = ? AND SecretName = ? AND Version IS ? AND InitialisationVector = ?`,
			k.App, k.Name, versionArg(expected.Version), expected.IV)
	}, func(stored store.Revision, found bool) error {
		return store.DeleteRefused(op, k, expected, stored, found)
	})
}

// write runs change, a single conditional statement, in a write
// transaction. When change matched no row, the condition failed: failed
// reports why, given the stored Revision read in the same transaction, and
// nothing is committed.
func (s *Store) write(ctx context.Context, op fault.Op, k store.Key,
	change func(*txn) (sql.Result, error),
	failed func(stored store.Revision, found bool) error) error {
	if err := s.checkFile(); err != nil {
		return fault.E(op, k.Path(), err)
	}
	err := s.inTx(ctx, op, k.Path(), true, func(tx *txn, refusal string) error {
		if refusal != "" {
			return fault.E(op, k.Path(), fault.Integrity, refusal)
		}
		res, err := change(tx)
		if err != nil {
			return s.notWritten(ctx, op, k.Path(), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return s.notWritten(ctx, op, k.Path(), err)
		}
		if n == 0 {
			stored, err := getItem(ctx, tx, k, metaSelection, true)
			switch {
			case errors.Is(err, errMalformed):
				return fault.E(op, k.Path(), fault.Integrity, err)
			case err != nil && !errors.Is(err, sql.ErrNoRows):
				return s.notWritten(ctx, op, k.Path(), err)
			case err != nil:
				return failed(store.Revision{}, false)
			}
			return failed(stored.Revision(), true)
		}
		// A COMMIT that fails as busy leaves the transaction to roll
		// back; any other failure of it may come after it wrote.
		if err := tx.commit(ctx); busy(err) {
			return s.notWritten(ctx, op, k.Path(), err)
		} else if err != nil {
			return s.wrap(ctx, op, k.Path(), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The file may have gone between the first check and the commit; then
	// the write went where nobody will find it at the path, and is not
	// acknowledged: it is in the file that went (moved back, the store
	// holds it).
	if err := s.checkFile(); err != nil {
		return fault.E(op, k.Path(), "committed to the file the path named when the write began, which it names no longer", err)
	}
	return nil
}

// List implements store.Store. An entry whose item no valid item can
// be, or whose name two rows hold (a table altered to allow that), is
// listed once with Meta.Invalid set. One row more than the page is read,
// so that a name held twice is seen as such at the end of a page too.
// The empty name leads the first page, beyond limit (see emptyName): it
// is read by a query of its own, so that the rows that end a page are
// counted as before.
func (s *Store) List(ctx context.Context, app string, after string, limit int) ([]store.Meta, string, error) {
	const op fault.Op = "sqlite.List"
	if limit <= 0 || limit > pageSize {
		limit = pageSize
	}
	var page []store.Meta
	var names []string // of each row read, but those of the empty name
	err := s.inTx(ctx, op, fault.Path(app), false, func(tx *txn, refusal string) error {
		var err error
		page, names, err = list(ctx, tx, app, "SecretName > ?", after, limit+1, refusal == "")
		if err == nil && after == "" {
			var empty []store.Meta
			// Two rows tell a name held twice.
			empty, _, err = list(ctx, tx, app, "SecretName = ?", emptyName, 2, refusal == "")
			page = append(empty, page...)
		}
		return s.wrap(ctx, op, fault.Path(app), err)
	})
	if err != nil {
		return nil, "", err
	}
	if len(names) <= limit {
		return page, "", nil
	}
	// The row past the page: if its name is new, it starts the next page.
	if names[limit] != names[limit-1] {
		page = page[:len(page)-1]
	}
	return page, page[len(page)-1].Name, nil
}

// emptyName is the name no valid item has (store.ValidName), and the one
// that SQL on the file may give a row all the same. It cannot be a
// cursor: "" asks for the first page. So the first page of List and of
// Apps lists it first, beyond the limit, rather than start after it and
// never show it: its reader skips it with a log line, as it does every
// name no file can have (secrets.Keeper).
const emptyName = ""

// list reads up to limit rows of app whose name meets cond (a condition
// on SecretName with one argument, name), in the order of their names,
// and returns their entries and the name of each row.
func list(ctx context.Context, tx queryer, app, cond, name string, limit int, search bool) (page []store.Meta, names []string, err error) {
	const op fault.Op = "sqlite.List"
	// The IV is in every Meta, for conditional writes; the protected
	// columns are never listed.
	rows, err := tx.QueryContext(ctx, `
		SELECT SecretName, `+metaSelection.sql+` FROM secrets
		WHERE `+where("ApplicationName = ? AND "+cond, search)+`
		ORDER BY SecretName LIMIT ?`, app, name, limit)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		r := metaColumns.row()
		if err := rows.Scan(append([]any{&name}, r.dest()...)...); err != nil {
			return nil, nil, err
		}
		names = append(names, name)
		k := store.Key{App: app, Name: name}
		if n := len(page); n > 0 && page[n-1].Name == name {
			page[n-1] = store.Meta{Key: k, Invalid: fault.E(op, fault.Integrity, errTwice)}
			continue
		}
		it, err := r.item(k)
		if err != nil {
			page = append(page, store.Meta{Key: k, Invalid: fault.E(op, fault.Integrity, err)})
			continue
		}
		page = append(page, it.Meta)
	}
	return page, names, rows.Err()
}

// Apps implements store.Store. Its pages are in order, so the cursor is
// the last name of the page before; pages have the size of List's. The
// empty name leads the first page, beyond limit (see emptyName): that
// page is read one name longer, and cut to limit when it has none.
func (s *Store) Apps(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	const op fault.Op = "sqlite.Apps"
	if limit <= 0 || limit > pageSize {
		limit = pageSize
	}
	if err := s.readable(op, ""); err != nil {
		return nil, "", err
	}
	cond, read := "ApplicationName > ?", limit
	if cursor == "" {
		cond, read = "ApplicationName >= ?", limit+1
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT DISTINCT ApplicationName FROM secrets
		WHERE `+keyGuard(cond)+`
		ORDER BY 1 LIMIT ?`, cursor, read)
	if err != nil {
		return nil, "", s.wrap(ctx, op, "", err)
	}
	defer rows.Close()
	var apps []string
	for rows.Next() {
		var app string
		if err := rows.Scan(&app); err != nil {
			return nil, "", s.wrap(ctx, op, "", err)
		}
		apps = append(apps, app)
	}
	if err := rows.Err(); err != nil {
		return nil, "", s.wrap(ctx, op, "", err)
	}
	named := apps
	if len(apps) > 0 && apps[0] == emptyName {
		named = apps[1:]
	} else if len(apps) > limit {
		apps, named = apps[:limit], apps[:limit]
	}
	if len(named) < limit {
		return apps, "", nil
	}
	return apps, named[len(named)-1], nil
}

// MasterKeyIDs returns the distinct MasterKeyIDs of the stored items, in
// byte order: which keys wrapped what this file holds, so that a process
// about to use it can find out at start-up whether its key can read any of
// it. An empty store gives none. It is one query, but it reads every row
// (the column has no index, and a local store is small enough that it
// needs none); it is meant for start-up, not for every request.
func (s *Store) MasterKeyIDs(ctx context.Context) ([]string, error) {
	const op fault.Op = "sqlite.MasterKeyIDs"
	// An id that no valid item can have is not loaded (nor listed): it
	// names no key this process could hold.
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT MasterKeyId FROM secrets
		WHERE CASE WHEN typeof(MasterKeyId) = 'text' AND octet_length(MasterKeyId) <= `+
		strconv.Itoa(store.MaxMasterKeyIDLen)+` THEN 1 END ORDER BY 1`)
	if err != nil {
		return nil, s.wrap(ctx, op, "", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.wrap(ctx, op, "", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(ctx, op, "", err)
	}
	return ids, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	// The connections are held until db is closed, so that no call can
	// open another in between (which db.Close would not wait for).
	r, w := <-s.reader, <-s.writer
	r.drop()
	w.drop()
	err := s.db.Close()
	s.file.Close() // after db: see Store.file
	s.reader <- r
	s.writer <- w
	if err != nil {
		return fault.E(fault.Op("sqlite.Close"), err)
	}
	return nil
}

// wrap classifies a database error (see classify).
func (s *Store) wrap(ctx context.Context, op fault.Op, path fault.Path, err error) error {
	if err == nil {
		return nil
	}
	kind, cause := s.classify(ctx, err)
	return fault.E(op, path, kind, cause)
}

// notWritten is wrap for the error of a write that changed nothing: one
// that failed before its COMMIT, whose transaction then rolls back, or
// whose COMMIT was busy (busy). Such an outage (the write lock stayed
// with another connection or process for the busy timeout, or until ctx
// ended) or unclassified error carries store.ErrNotWritten: nobody need
// ask the store whether it landed.
func (s *Store) notWritten(ctx context.Context, op fault.Op, path fault.Path, err error) error {
	if err == nil {
		return nil
	}
	kind, cause := s.classify(ctx, err)
	if kind == fault.Unavailable || kind == fault.Other {
		cause = fmt.Errorf("%w: %w", store.ErrNotWritten, cause)
	}
	return fault.E(op, path, kind, cause)
}

// classify says what kind of failure a database error is, and words its
// cause. A lock that stayed busy past the busy timeout and an expired or
// cancelled context are fault.Unavailable: the backend did not answer in
// time, and trying later may work. A full disk (SQLITE_FULL, which SQLite
// also reports for its page limit, or ENOSPC) is fault.NoSpace: the
// statement's transaction rolled back.
func (s *Store) classify(ctx context.Context, err error) (fault.Kind, error) {
	// database/sql may report a call cut short by ctx as, say, ErrTxDone.
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fault.Unavailable, fmt.Errorf("gave up waiting for the database: %w", err)
	}
	switch {
	case busy(err):
		return fault.Unavailable, fmt.Errorf("the database stayed locked by another connection or process for the busy timeout (%v): %w", s.busy, err)
	case primaryCode(err) == sqlite3.SQLITE_INTERRUPT:
		return fault.Unavailable, err
	case primaryCode(err) == sqlite3.SQLITE_FULL, errors.Is(err, syscall.ENOSPC):
		return fault.NoSpace, err
	}
	return fault.Other, err
}

// busy says whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED: a lock
// another connection or process held past the busy timeout. The
// statement failed, and changed nothing.
func busy(err error) bool {
	code := primaryCode(err)
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// primaryCode is the primary result code of SQLite's error in err's
// chain, or -1 if there is none.
func primaryCode(err error) int {
	var e *msqlite.Error
	if !errors.As(err, &e) {
		return -1
	}
	return e.Code() & 0xff
}

// Reading what a store writer may have made.
//
// No statement loads a field longer than a valid item's
// (store.CheckStored's bounds): typeof and octet_length are told by a
// row's header, without loading the value, and a value is selected only
// when they are what a valid item has. But SQLite compares the whole row
// of a WITHOUT ROWID table with the key at every step of a search by
// key, loading a row that overflows its page whole: one row of hundreds
// of megabytes would be loaded by every search that passes it, whatever
// the statement selects. So a statement searches by key only while the
// table is known to hold no such row, and scans it otherwise; a write is
// refused while there is one (inTx).

// maxStoredName bounds the names that are loaded at all. It is above
// store.MaxNameLen, so that a name over that is listed and then skipped
// with a log line (secrets.Keeper); a row with a longer name, or one
// that is not text, is left out of every statement as if it were not
// there.
const maxStoredName = 4 * store.MaxNameLen

// keyGuard is a WHERE clause that evaluates cond, about
// ApplicationName and SecretName, only on rows whose names are text of
// at most maxStoredName bytes: others are never loaded. (CASE decides
// the order; an AND may be evaluated in any.)
func keyGuard(cond string) string {
	n := strconv.Itoa(maxStoredName)
	return `CASE WHEN typeof(ApplicationName) = 'text' AND typeof(SecretName) = 'text' AND
		octet_length(ApplicationName) <= ` + n + ` AND octet_length(SecretName) <= ` + n + `
		THEN ` + cond + ` END`
}

// errMalformed is in the chain of the error of a row that no valid item
// can be; errTwice says that a name is held by two rows.
var (
	errMalformed = errors.New("malformed item")
	errTwice     = fmt.Errorf("%w: two rows hold this name (the table was altered; a valid store holds one)", errMalformed)
)

// column is one stored attribute, read only when it is what a valid item
// stores: of type typ (or NULL where that is valid) and at most max bytes.
type column struct {
	name string
	typ  string // "text", "blob" or "integer", as typeof says
	null bool   // NULL is valid: what a legacy item lacks
	max  int64  // octet_length; an integer's is its decimal digits
}

// columns are the attributes one statement reads.
type columns []column

// metaColumns are the columns of a store.Meta besides the key;
// itemColumns those of a whole store.Item.
var (
	metaColumns = columns{
		{"InitialisationVector", "blob", false, store.MaxIVLen},
		{"Format", "text", true, store.MaxFormatLen},
		{"Version", "integer", true, 20},
		{"Size", "integer", true, 20},
		{"Modified", "integer", true, 20},
	}
	itemColumns = append(columns{
		{"MasterKeyId", "text", false, store.MaxMasterKeyIDLen},
		{"ProtectedDocumentKey", "blob", false, store.MaxWrappedKeyLen},
		{"ProtectedSecretValue", "blob", false, store.MaxProtectedValueLen(MaxValueSize)},
	}, metaColumns...)
)

// selection is the columns a statement reads, and the SQL that selects
// them (cols.sql()), built once: it is long, and the searcher finds its
// prepared statements by their text.
type selection struct {
	cols columns
	sql  string
}

var (
	itemSelection = selection{itemColumns, itemColumns.sql()}
	metaSelection = selection{metaColumns, metaColumns.sql()}
)

// sql selects, for every column of an item (itemColumns), its type and
// its length, which SQLite tells from the row's header alone; and, for
// each column of cs, its value, NULL unless the whole row is what a valid
// item's is. Values are read only then: reading a column that comes after
// a long one in the row walks that one's overflow pages, one by one,
// which for the 300 MiB value a store writer can put there takes seconds
// at every read. An integer's length is not asked: it would read the
// integer, and no integer is too long.
func (cs columns) sql() string {
	var b strings.Builder
	for _, c := range itemColumns {
		length := "NULL"
		if c.typ != "integer" {
			length = "octet_length(" + c.name + ")"
		}
		fmt.Fprintf(&b, "typeof(%s), %s, ", c.name, length)
	}
	valid := itemColumns.valid()
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "CASE WHEN %s THEN %s END", valid, c.name)
	}
	return b.String()
}

// valid is an SQL condition, on the row's header alone, that every
// column of cs is of the type (or NULL where that is valid) and at most
// the length a valid item's is.
func (cs columns) valid() string {
	var conds []string
	for _, c := range cs {
		typ := fmt.Sprintf("typeof(%s) = '%s'", c.name, c.typ)
		if c.null {
			typ = fmt.Sprintf("typeof(%s) IN ('%s', 'null')", c.name, c.typ)
		}
		if c.typ != "integer" {
			typ += fmt.Sprintf(" AND ifnull(octet_length(%s), 0) <= %d", c.name, c.max)
		}
		conds = append(conds, "("+typ+")")
	}
	return strings.Join(conds, " AND ")
}

// row receives what cs.sql selects: the type and length of every column
// of an item, and the values of cs.
type row struct {
	cols columns
	typ  []string
	len  []sql.NullInt64
	val  []any
}

func (cs columns) row() *row {
	n := len(itemColumns)
	return &row{cols: cs, typ: make([]string, n), len: make([]sql.NullInt64, n), val: make([]any, len(cs))}
}

func (r *row) dest() []any {
	d := make([]any, 0, 2*len(r.typ)+len(r.val))
	for i := range r.typ {
		d = append(d, &r.typ[i], &r.len[i])
	}
	for i := range r.val {
		d = append(d, &r.val[i])
	}
	return d
}

// item checks every column read and returns the item at k, with what
// was read of it: an error (errMalformed) names the first attribute no
// valid item has, by its type or length, never its value.
func (r *row) item(k store.Key) (*store.Item, error) {
	typ := map[string]string{}
	for i, c := range itemColumns {
		typ[c.name] = r.typ[i]
		switch {
		case r.typ[i] == "null" && c.null:
		case r.typ[i] != c.typ:
			return nil, fmt.Errorf("%w: attribute %s is of type %s, want %s", errMalformed, c.name, r.typ[i], c.typ)
		case r.len[i].Int64 > c.max:
			return nil, fmt.Errorf("%w: %w", errMalformed, store.TooLong(c.name, r.len[i].Int64, c.max))
		}
	}
	it := &store.Item{Meta: store.Meta{Key: k, Version: store.Unversioned, Size: -1}}
	for i, c := range r.cols {
		if typ[c.name] == "null" {
			continue
		}
		if err := set(it, c.name, r.val[i]); err != nil {
			return nil, fmt.Errorf("%w: %w", errMalformed, err)
		}
	}
	return it, nil
}

// set stores v, a value of the column named col of the type a valid item
// has, in it. A value scanned into *any is the caller's: database/sql
// copies bytes.
func set(it *store.Item, col string, v any) error {
	var err error
	switch col {
	case "MasterKeyId":
		it.MasterKeyID = asString(v)
	case "ProtectedDocumentKey":
		it.ProtectedDocumentKey = asBytes(v)
	case "ProtectedSecretValue":
		it.ProtectedSecretValue = asBytes(v)
	case "InitialisationVector":
		it.InitialisationVector = asBytes(v)
	case "Format":
		it.Format = asString(v)
	case "Version":
		it.Version, err = store.StoredVersion(asInt(v))
	case "Size":
		it.Size, err = store.StoredSize(asInt(v))
	case "Modified":
		it.Modified, err = store.StoredModified(asInt(v))
	}
	return err
}

func asString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

func asBytes(v any) []byte {
	switch v := v.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

func asInt(v any) int64 {
	i, _ := v.(int64)
	return i
}

// queryer is a *sql.DB, a *sql.Tx or a *txn.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// getItem reads the item at k, the columns of sel, in a search by key
// if search is true, else in one scan of the table (see above):
// sql.ErrNoRows when there is none, errMalformed in the chain when its
// row is not what a valid item's is or two rows hold k. Other errors are
// the database's.
func getItem(ctx context.Context, q queryer, k store.Key, sel selection, search bool) (*store.Item, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+sel.sql+` FROM secrets
		WHERE `+where("ApplicationName = ? AND SecretName = ?", search)+` LIMIT 2`, k.App, k.Name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var it *store.Item
	for n := 0; rows.Next(); n++ {
		if n > 0 {
			return nil, errTwice
		}
		r := sel.cols.row()
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, err
		}
		if it, err = r.item(k); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if it == nil {
		return nil, sql.ErrNoRows
	}
	return it, nil
}

// oversizedRow names a row of the table with a field longer than a
// valid item's, or is "" when there is none. It costs one scan, which
// loads nothing long.
func oversizedRow(ctx context.Context, q queryer) (string, error) {
	var conds []string
	for _, c := range append(columns{{"ApplicationName", "", false, maxStoredName}, {"SecretName", "", false, maxStoredName}}, itemColumns...) {
		if c.typ != "integer" { // no integer is too long; its length would read it
			conds = append(conds, fmt.Sprintf("octet_length(%s) > %d", c.name, c.max))
		}
	}
	rows, err := q.QueryContext(ctx, `SELECT `+itemColumnsNames()+` FROM secrets WHERE `+strings.Join(conds, " OR ")+` LIMIT 1`)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		return "", rows.Err()
	}
	var app, name sql.NullString
	if err := rows.Scan(&app, &name); err != nil {
		return "", err
	}
	if app.Valid && name.Valid {
		return strconv.QuoteToASCII(app.String + "/" + name.String), nil
	}
	return "an item whose name is too long to load", nil
}

// inTx runs fn in a transaction, read-only or a write, on the reader's
// or the writer's connection, which it holds for the call: the Store's
// reads take turns, as do its writes (SQLite runs one writer at a time
// anyway, and a search by key is quick). fn is told why the table may be
// neither searched by key nor written (unsearchable), or "": then it may.
//
// Knowing that costs a scan, which inTx makes only when the table may
// have changed since the last on that connection: PRAGMA data_version,
// read as the transaction's first statement (which takes its snapshot),
// changes whenever another connection or process has committed (and
// sometimes without a commit, after another connection's RESTART or
// TRUNCATE checkpoint: a scan more). A write through the writer's
// connection leaves its data_version as it was, and what it learnt true,
// since this Store writes only valid items (Put) and the table has no
// trigger, index or column that could make anything else of the write
// (tableDefects, checked with each scan); the reader scans once after
// it. A failure of inTx's own is wrapped for op and path; fn's
// errors are returned as they are.
func (s *Store) inTx(ctx context.Context, op fault.Op, path fault.Path, write bool, fn func(tx *txn, refusal string) error) error {
	c, wrap := s.reader, s.wrap
	if write {
		// Whatever fails here fails before the write begins.
		c, wrap = s.writer, s.notWritten
	} else if err := s.readable(op, path); err != nil {
		return err
	}
	var r *searcher
	select {
	case r = <-c:
	case <-ctx.Done():
		return wrap(ctx, op, path, ctx.Err())
	}
	defer func() { c <- r }()
	tx, err := r.begin(ctx, write)
	if err != nil {
		return wrap(ctx, op, path, err)
	}
	defer tx.end(ctx)
	if err := r.learn(ctx, tx, &s.scans); err != nil {
		return wrap(ctx, op, path, err)
	}
	return fn(tx, r.refusal)
}

// txn is a transaction on a searcher's connection. It runs BEGIN, COMMIT
// and ROLLBACK itself, rather than as a database/sql Tx, which would
// prepare every statement again: SQLite parses a statement when it is
// prepared, and those that read a row's header are long enough for the
// parse to cost ten times the search.
type txn struct {
	r    *searcher
	done bool // committed, or rolled back
}

// begin opens the searcher's connection if it has none, and begins a
// transaction on it: BEGIN IMMEDIATE for a write, so that the busy
// timeout applies at its start.
func (r *searcher) begin(ctx context.Context, write bool) (*txn, error) {
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	begin := "BEGIN"
	if write {
		begin = "BEGIN IMMEDIATE"
	}
	live := ctx.Err() == nil
	if _, err := r.conn.ExecContext(ctx, begin); err != nil {
		if errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) {
			r.drop()
			return nil, err
		}
		// The driver reports a BEGIN that ran while ctx ended as ctx's
		// error: end the transaction it may have begun, or the next
		// BEGIN on this connection would fail, and every one after it.
		(&txn{r: r}).end(ctx)
		if write && live && ctx.Err() != nil {
			// ctx ended BEGIN IMMEDIATE's wait for the write lock.
			err = fmt.Errorf("%w (another connection or process held its write lock)", err)
		}
		return nil, err
	}
	return &txn{r: r}, nil
}

// connect opens the searcher's connection, if it has none.
func (r *searcher) connect(ctx context.Context) error {
	if r.conn != nil {
		return nil
	}
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return err
	}
	// A first read opens the -wal and -shm beside the file the path
	// names now.
	var v int64
	if err := conn.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v); err != nil {
		conn.Close()
		return err
	}
	*r = searcher{db: r.db, conn: conn, stmts: map[string]*sql.Stmt{}}
	return nil
}

// drop closes the searcher's connection and its statements, and forgets
// what it learnt: the next call opens another.
func (r *searcher) drop() {
	for _, st := range r.stmts {
		st.Close()
	}
	if r.conn != nil {
		r.conn.Close()
	}
	*r = searcher{db: r.db}
}

// end rolls the transaction back unless it was committed. ROLLBACK runs
// even when ctx has ended, with a deadline of its own; if it fails, the
// connection is dropped, which ends the transaction.
func (t *txn) end(ctx context.Context) {
	if t.done {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	// SQLite may have rolled back already (after an interrupted or
	// failed write): then there is nothing to do.
	if _, err := t.r.conn.ExecContext(ctx, "ROLLBACK"); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		t.r.drop()
	}
	t.done = true
}

// rollbackTimeout bounds a ROLLBACK: it writes nothing in WAL mode, so
// only a broken connection takes long.
const rollbackTimeout = time.Second

// commit commits the transaction. COMMIT runs without ctx's end: the
// driver reports a statement that ran while ctx ended as ctx's error,
// which would call a committed write failed. In WAL mode, with the write
// lock taken at BEGIN IMMEDIATE, it waits for no lock.
func (t *txn) commit(ctx context.Context) error {
	if _, err := t.r.conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		return err
	}
	t.done = true
	return nil
}

// QueryContext runs query, prepared once on the connection.
func (t *txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := t.r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs query, prepared once on the connection. A query
// that does not prepare is run on the connection as it is, whose Row
// then holds the same error (a Row cannot be made with one).
func (t *txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := t.r.stmt(ctx, query)
	if err != nil {
		return t.r.conn.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// ExecContext runs query, prepared once on the connection.
func (t *txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := t.r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// stmt is query prepared on the searcher's connection, the first time
// it is asked for. The Store's statements are a few fixed texts.
func (r *searcher) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := r.stmts[query]; ok {
		return st, nil
	}
	st, err := r.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	r.stmts[query] = st
	return st, nil
}

// learn reads data_version in tx, the transaction's first statement, and
// if it changed checks the table again (unsearchable: its definition,
// then a scan for an oversized row), counting the check in scans.
func (r *searcher) learn(ctx context.Context, tx *txn, scans *atomic.Int64) error {
	var v int64
	if err := tx.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return err
	}
	if r.known && v == r.version {
		return nil
	}
	r.known = false
	scans.Add(1)
	why, err := unsearchable(ctx, tx)
	if err != nil {
		return err
	}
	r.known, r.version, r.refusal = true, v, why
	return nil
}

// unsearchable says why the table must be neither searched by key nor
// written, as the refusal of a write, or is "": the table is not the one
// schema makes (tableDefects), or a row of it holds a field longer than a
// valid item's (oversizedRow). The schema is checked first, so that the
// scan measures every column a row has.
func unsearchable(ctx context.Context, q queryer) (string, error) {
	wrong, err := tableDefects(ctx, q)
	if errors.Is(err, errNoTable) {
		return err.Error(), nil
	}
	if err != nil {
		return "", err
	}
	if len(wrong) > 0 {
		return fmt.Sprintf("the table secrets was altered after the store was opened (%s): writes are refused, and reads scan the table, until it is restored, since SQLite could load or make a field of any size", strings.Join(wrong, "; ")), nil
	}
	row, err := oversizedRow(ctx, q)
	if err != nil || row == "" {
		return "", err
	}
	return fmt.Sprintf("the store holds an item with a field longer than any valid item's (%s): writes are refused until it is removed, since SQLite would load it whole", row), nil
}

// where is the WHERE clause of a statement about the rows whose names
// meet cond: a search by key if search is true, else a scan that
// evaluates cond only where keyGuard lets it.
func where(cond string, search bool) string {
	if search {
		return cond + " AND " + keyGuard("1")
	}
	return keyGuard(cond)
}

// itemColumnsNames selects a row's names, each only if short enough to
// load.
func itemColumnsNames() string {
	n := strconv.Itoa(maxStoredName)
	return `CASE WHEN octet_length(ApplicationName) <= ` + n + ` THEN CAST(ApplicationName AS TEXT) END,
		CASE WHEN octet_length(SecretName) <= ` + n + ` THEN CAST(SecretName AS TEXT) END`
}

// nullIf is v, or NULL when null is true.
func nullIf(v any, null bool) any {
	if null {
		return nil
	}
	return v
}

// versionArg is the stored value that stands for v: NULL for a legacy item.
func versionArg(v store.Version) any {
	return nullIf(int64(v), v == store.Unversioned)
}
