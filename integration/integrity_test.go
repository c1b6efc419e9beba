package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dto "github.com/prometheus/client_model/go"
	_ "modernc.org/sqlite" // the "sqlite" driver: the tests edit secrets.db as a store writer would
)

// These tests play someone who can write the store but holds no key: they
// edit the local backend's secrets.db with SQL, or the DynamoDB table
// with the SDK, while the mount runs, and check that the mount serves
// only what the key authenticates.

// storeDB opens the local backend b's secrets.db for the test to edit,
// beside the mount and the admin verbs (WAL, with a busy timeout).
func storeDB(t *testing.T, b *backend) *sql.DB {
	t.Helper()
	q := url.Values{"_pragma": {"busy_timeout(10000)", "journal_mode(WAL)"}}
	dsn := (&url.URL{Scheme: "file", Path: filepath.Join(b.dataDir(), "secrets.db"), RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// execOne runs a statement that must change exactly one row.
func execOne(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	res, err := db.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("%s changed %d rows (%v), want 1", query, n, err)
	}
}

// protected is what a store writer can copy of an item without any key.
type protected struct {
	masterKeyID   string
	key, iv, data []byte
	format        string
	size          int64
}

func readProtected(t *testing.T, db *sql.DB, app, name string) protected {
	t.Helper()
	var p protected
	err := db.QueryRow(`SELECT MasterKeyId, ProtectedDocumentKey, InitialisationVector, ProtectedSecretValue, Format, Size
		FROM secrets WHERE ApplicationName = ? AND SecretName = ?`, app, name).Scan(&p.masterKeyID, &p.key, &p.iv, &p.data, &p.format, &p.size)
	if err != nil {
		t.Fatalf("reading %s/%s: %v", app, name, err)
	}
	return p
}

// An old protected value put back under a Version higher than the current
// one — a store writer's rollback by relabelling — gives EIO through the
// mount and a log line, for v3; v2, which binds no Version, serves the old
// value, which shows the test can tell.
func TestIntegrityOldCiphertextRelabelledWithAHigherVersionGivesEIO(t *testing.T) {
	for _, format := range []string{"v3", "v2"} {
		t.Run(format, func(t *testing.T) {
			b := localBackend(t)
			b.cli(t, nil, "init")
			oldValue, newValue := unique("old-"+format), unique("new-"+format)
			b.cli(t, []byte(oldValue), "put", "app/s", "--format", format)
			db := storeDB(t, b)
			old := readProtected(t, db, "app", "s")
			if old.format != format {
				t.Fatalf("put --format %s stored %s", format, old.format)
			}
			b.cli(t, []byte(newValue), "put", "app/s", "--format", format)

			m := mount(t, b, "--ttl", "1s", "--read-only")
			m.secret(oldValue)
			m.secret(newValue)
			if got := m.mustSh("cat app/s"); got != newValue {
				t.Fatalf("cat app/s = %q before the relabelling", got)
			}
			execOne(t, db, `UPDATE secrets SET MasterKeyId = ?, ProtectedDocumentKey = ?, InitialisationVector = ?,
				ProtectedSecretValue = ?, Size = ?, Version = 3 WHERE ApplicationName = 'app' AND SecretName = 's'`,
				old.masterKeyID, old.key, old.iv, old.data, old.size)

			var last string
			eventually(t, 10*time.Second, "the mount sees the relabelled item", func() bool {
				out, errOut, err := m.sh("cat app/s")
				last = out + errOut
				return err != nil || out != newValue
			})
			switch format {
			case "v3":
				if strings.Contains(last, oldValue) || !strings.Contains(last, "Input/output error") {
					t.Fatalf("cat of the relabelled v3 item: %q; want EIO", last)
				}
				m.failSh("cat app/s", "Input/output error") // and it stays so
				if log := m.log(); !strings.Contains(log, "app/s") || !strings.Contains(log, "v3 authentication failed") {
					t.Errorf("no log line names app/s and the failed authentication:\n%s", log)
				}
			case "v2":
				if last != oldValue {
					t.Fatalf("cat of the relabelled v2 item: %q; want the old value (v2 binds no Version)", last)
				}
			}
		})
	}
}

// v1 items through the mount: 200 reads of 20 genuine ones never trip the
// limit; 10 forged items with bad padding give EIO and trip it, with one
// error line and the metrics saying so; after that a forged item of VALID
// padding, which v1 alone would serve modified, and a genuine item not yet
// read are both refused with EIO.
func TestIntegrityV1LimitRefusesAForgedItemOfValidPaddingAfterTenFailures(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	valid := map[string]string{}
	put := func(name, value string) {
		b.cli(t, []byte(value), "put", "app/"+name, "--format", "v1")
	}
	for i := range 20 {
		name := fmt.Sprintf("s%02d", i)
		valid[name] = unique("v1-" + name)[:12] // one CBC block with its padding
		put(name, valid[name])
	}
	for i := range 10 {
		put(fmt.Sprintf("bad%02d", i), "x")
	}
	forgedValue := "pay alice"
	put("forged", forgedValue)
	put("cold", "never read before")
	// The forgeries, made through the IV as a store writer can: the
	// padding byte of the one block flipped (invalid), or the first byte
	// of the value flipped (the padding stays valid).
	db := storeDB(t, b)
	for i := range 10 {
		flipIV(t, db, "app", fmt.Sprintf("bad%02d", i), 15, 0x80)
	}
	flipIV(t, db, "app", "forged", 0, 0x01)

	addr := metricsAddr(t)
	m := mount(t, b, "--read-only", "--metrics-addr", addr)
	for _, v := range valid {
		m.secret(v)
	}
	m.secret(forgedValue)
	m.secret("never read before")
	for round := range 10 {
		for name, want := range valid {
			if got := m.mustSh("cat app/" + name); got != want {
				t.Fatalf("round %d: cat app/%s = %q, want %q", round, name, got, want)
			}
		}
	}
	tripLine := `"msg":"v1 items failed their integrity check too often`
	if strings.Contains(m.log(), tripLine) {
		t.Fatal("200 reads of 20 genuine v1 items tripped the limit")
	}
	if _, fams := scrapeMetrics(t, addr); metricValue(fams, "secretfs_v1_limit_tripped") != 0 {
		t.Fatal("secretfs_v1_limit_tripped is not 0 after genuine reads")
	}
	for i := range 10 {
		m.failSh(fmt.Sprintf("cat app/bad%02d", i), "Input/output error")
	}
	if n := strings.Count(m.log(), tripLine); n != 1 {
		t.Fatalf("%d error lines about the v1 limit after 10 forged items, want 1:\n%s", n, m.log())
	}
	for _, name := range []string{"forged", "cold"} {
		out, errOut, err := m.sh("cat app/" + name)
		if err == nil || !strings.Contains(errOut, "Input/output error") {
			t.Fatalf("cat app/%s after the limit: %q, %q, %v; want EIO", name, out, errOut, err)
		}
	}
	if log := m.log(); !strings.Contains(log, "v1 decryption refused until") {
		t.Errorf("the log does not say why the reads were refused:\n%s", log)
	}
	_, fams := scrapeMetrics(t, addr)
	if v := metricValue(fams, "secretfs_v1_limit_tripped"); v != 1 {
		t.Errorf("secretfs_v1_limit_tripped = %v, want 1", v)
	}
	if v := metricValue(fams, "secretfs_v1_decryptions_refused_total"); v < 2 {
		t.Errorf("secretfs_v1_decryptions_refused_total = %v, want at least the 2 refused reads", v)
	}
	if n := strings.Count(m.log(), tripLine); n != 1 {
		t.Errorf("%d error lines about the v1 limit, want 1", n)
	}
}

// flipIV flips the bits mask of byte i of the stored IV of app/name.
func flipIV(t *testing.T, db *sql.DB, app, name string, i int, mask byte) {
	t.Helper()
	iv := readProtected(t, db, app, name).iv
	iv[i] ^= mask
	execOne(t, db, `UPDATE secrets SET InitialisationVector = ? WHERE ApplicationName = ? AND SecretName = ?`, iv, app, name)
}

// metricValue is the value of the unlabelled metric name, or -1.
func metricValue(fams map[string]*dto.MetricFamily, name string) float64 {
	sum, n := sampleSum(fams, name, nil)
	if n != 1 {
		return -1
	}
	return sum
}

// Names in the store that no file can have — a secret `x/../../y`, an
// application `evil/app` — are skipped from listings and logged once
// each; the rest lists and reads as ever, through the mount and the CLI.
func TestIntegrityInvalidStoredNamesAreSkippedAndLogged(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	valueA, valueB := unique("a"), unique("b")
	b.cli(t, []byte(valueA), "put", "app/a")
	b.cli(t, []byte(valueB), "put", "app/b")
	db := storeDB(t, b)
	copyAs := func(app, name string) {
		execOne(t, db, `INSERT INTO secrets SELECT ?, ?, MasterKeyId, ProtectedDocumentKey, InitialisationVector,
			ProtectedSecretValue, Format, Version, Size, Modified FROM secrets WHERE ApplicationName = 'app' AND SecretName = 'a'`, app, name)
	}
	copyAs("app", "x/../../y")
	copyAs("evil/app", "z")

	m := mount(t, b, "--ttl", "1s", "--read-only")
	m.secret(valueA)
	m.secret(valueB)
	for round := range 3 {
		if got := m.mustSh("ls app"); got != "a\nb\n" {
			t.Fatalf("round %d: ls app = %q, want a and b", round, got)
		}
		if got := m.mustSh("ls"); got != "app\n" {
			t.Fatalf("round %d: ls = %q, want app", round, got)
		}
		if got := m.mustSh("cat app/b"); got != valueB {
			t.Fatalf("round %d: cat app/b = %q", round, got)
		}
		time.Sleep(1100 * time.Millisecond) // past the TTL: the next round lists again
	}
	log := m.log()
	for what, want := range map[string]string{
		"secret":      `"msg":"skipped a secret from the store's listing: its name cannot be a file name","name":"\"x/../../y\""`,
		"application": `"msg":"skipped an application from the store's listing: its name cannot be a directory name","name":"\"evil/app\""`,
	} {
		if n := strings.Count(log, strings.TrimPrefix(want, `"msg":`)); n != 1 {
			t.Errorf("the invalid %s is logged %d times, want once:\n%s", what, n, log)
		}
	}
	if got := b.cli(t, nil, "ls", "app"); got != "a\nb\n" {
		t.Errorf("secretfs ls app = %q, want a and b", got)
	}
	if got := b.cli(t, nil, "ls"); got != "app\n" {
		t.Errorf("secretfs ls = %q, want app", got)
	}
}

// migrateBackend is what the migrate test needs of a backend besides the
// CLI: make a stored item legacy, as the original Secret Store wrote it,
// and read an item's Format and Version as stored.
type migrateBackend struct {
	*backend
	makeLegacy func(t *testing.T, app, name string)
	stored     func(t *testing.T, app, name string) (format, version string)
}

func TestIntegrityMigrateLocal(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	db := storeDB(t, b)
	testMigrate(t, migrateBackend{
		backend: b,
		makeLegacy: func(t *testing.T, app, name string) {
			execOne(t, db, `UPDATE secrets SET Format = NULL, Version = NULL, Size = NULL, Modified = NULL
				WHERE ApplicationName = ? AND SecretName = ?`, app, name)
		},
		stored: func(t *testing.T, app, name string) (string, string) {
			var format, version sql.NullString
			if err := db.QueryRow(`SELECT Format, Version FROM secrets WHERE ApplicationName = ? AND SecretName = ?`,
				app, name).Scan(&format, &version); err != nil {
				t.Fatal(err)
			}
			return format.String, version.String
		},
	})
}

func TestIntegrityMigrateDynamo(t *testing.T) {
	b := dynamoBackend(t)
	testMigrate(t, migrateBackend{
		backend: b,
		makeLegacy: func(t *testing.T, app, name string) {
			_, err := rawDynamo(t).UpdateItem(context.Background(), &awsdynamodb.UpdateItemInput{
				TableName:                aws.String(b.table),
				Key:                      itemKey(app, name),
				UpdateExpression:         aws.String("REMOVE #f, #v, #s, #m"),
				ExpressionAttributeNames: map[string]string{"#f": "Format", "#v": "Version", "#s": "Size", "#m": "Modified"},
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		stored: func(t *testing.T, app, name string) (string, string) {
			item := rawItem(t, b, app, name)
			return str(item, "Format"), str(item, "Version")
		},
	})
}

// testMigrate writes v1 secrets (one of them made legacy) and a v3 one,
// checks that `migrate --dry-run` lists the v1 ones and changes nothing,
// that `migrate APP` and `migrate` rewrite them as v3 with their values
// and a Version one up, and that a second migrate finds nothing to do.
func testMigrate(t *testing.T, b migrateBackend) {
	values := map[string]string{"app/a": unique("a"), "app/legacy": unique("legacy"), "other/c": unique("c"), "app/n": unique("n")}
	for k, v := range values {
		if k == "app/n" {
			b.cli(t, []byte(v), "put", k)
		} else {
			b.cli(t, []byte(v), "put", k, "--format", "v1")
		}
	}
	b.makeLegacy(t, "app", "legacy")
	want := func(when string, stored map[string]string) {
		t.Helper()
		for k, w := range stored {
			app, name, _ := strings.Cut(k, "/")
			if f, v := b.stored(t, app, name); f+" "+v != w {
				t.Errorf("%s: %s is stored as %q, want %q", when, k, f+" "+v, w)
			}
		}
	}
	before := map[string]string{"app/a": "v1 1", "app/legacy": " ", "other/c": "v1 1", "app/n": "v3 1"}
	want("before", before)

	out := b.cli(t, nil, "migrate", "--dry-run")
	for _, line := range []string{"would migrate app/a (v1 -> v3)", "would migrate app/legacy (legacy v1 -> v3)",
		"would migrate other/c (v1 -> v3)", "3 v1 secrets would be migrated to v3"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("migrate --dry-run does not say %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "app/n") {
		t.Errorf("migrate --dry-run lists the v3 secret:\n%s", out)
	}
	want("after migrate --dry-run", before)

	out = b.cli(t, nil, "migrate", "app")
	if !strings.Contains(out, "migrated app/a (v1 -> v3)\n") || !strings.Contains(out, "migrated app/legacy (legacy v1 -> v3)\n") ||
		!strings.Contains(out, "migrated 2 of 2 v1 secrets to v3") || strings.Contains(out, "other/c") {
		t.Errorf("migrate app:\n%s", out)
	}
	want("after migrate app", map[string]string{"app/a": "v3 2", "app/legacy": "v3 1", "other/c": "v1 1", "app/n": "v3 1"})

	out = b.cli(t, nil, "migrate")
	if !strings.Contains(out, "migrated other/c (v1 -> v3)\n") || !strings.Contains(out, "migrated 1 of 1 v1 secret to v3") {
		t.Errorf("migrate:\n%s", out)
	}
	want("after migrate", map[string]string{"app/a": "v3 2", "app/legacy": "v3 1", "other/c": "v3 2", "app/n": "v3 1"})
	for k, v := range values {
		if got := b.cli(t, nil, "get", k); got != v {
			t.Errorf("get %s after migrate = %q, want %q", k, got, v)
		}
	}
	if out := b.cli(t, nil, "migrate"); !strings.Contains(out, "migrated 0 of 0 v1 secrets") {
		t.Errorf("a second migrate:\n%s", out)
	}
}
