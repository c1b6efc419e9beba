package integration

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// These tests play a store writer who holds no key and edits the clear
// metadata beside a value (its Size), or puts a whole older item back,
// through both backends: SQL on secrets.db, the SDK on the table.

// storeWriter edits one backend's stored items as someone with write
// access to the store, but no key, can.
type storeWriter struct {
	// setNumbers sets the numeric attributes of app/name (Size, Version).
	setNumbers func(t *testing.T, app, name string, values map[string]int64)
	// save copies app/name as stored now; the restore it returns puts
	// that whole item back, as a restore from a backup would.
	save func(t *testing.T, app, name string) (restore func())
}

// tamperBackends is each backend with its store writer.
func tamperBackends() map[string]func(t *testing.T) (*backend, storeWriter) {
	return map[string]func(t *testing.T) (*backend, storeWriter){
		"local": func(t *testing.T) (*backend, storeWriter) {
			b := localBackend(t)
			b.cli(t, nil, "init")
			return b, sqlStoreWriter(storeDB(t, b))
		},
		"dynamodb": func(t *testing.T) (*backend, storeWriter) {
			b := dynamoBackend(t)
			return b, dynamoStoreWriter(b)
		},
	}
}

func sqlStoreWriter(db *sql.DB) storeWriter {
	return storeWriter{
		setNumbers: func(t *testing.T, app, name string, values map[string]int64) {
			t.Helper()
			var set []string
			var args []any
			for attr, v := range values {
				set = append(set, attr+" = ?")
				args = append(args, v)
			}
			execOne(t, db, "UPDATE secrets SET "+strings.Join(set, ", ")+" WHERE ApplicationName = ? AND SecretName = ?",
				append(args, app, name)...)
		},
		save: func(t *testing.T, app, name string) func() {
			t.Helper()
			saved := "saved_" + strconv.FormatInt(time.Now().UnixNano(), 10)
			if _, err := db.Exec("CREATE TABLE "+saved+" AS SELECT * FROM secrets WHERE ApplicationName = ? AND SecretName = ?", app, name); err != nil {
				t.Fatal(err)
			}
			return func() {
				execOne(t, db, "INSERT OR REPLACE INTO secrets SELECT * FROM "+saved)
			}
		},
	}
}

func dynamoStoreWriter(b *backend) storeWriter {
	return storeWriter{
		setNumbers: func(t *testing.T, app, name string, values map[string]int64) {
			t.Helper()
			names, vals := map[string]string{}, map[string]types.AttributeValue{}
			var set []string
			for attr, v := range values {
				names["#"+attr] = attr
				vals[":"+attr] = &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
				set = append(set, "#"+attr+" = :"+attr)
			}
			_, err := rawDynamo(t).UpdateItem(context.Background(), &awsdynamodb.UpdateItemInput{
				TableName:                 aws.String(b.table),
				Key:                       itemKey(app, name),
				UpdateExpression:          aws.String("SET " + strings.Join(set, ", ")),
				ExpressionAttributeNames:  names,
				ExpressionAttributeValues: vals,
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		save: func(t *testing.T, app, name string) func() {
			t.Helper()
			item := rawItem(t, b, app, name)
			return func() {
				if _, err := rawDynamo(t).PutItem(context.Background(), &awsdynamodb.PutItemInput{TableName: aws.String(b.table), Item: item}); err != nil {
					t.Fatal(err)
				}
			}
		},
	}
}

// firstVersion is the Version of a secret's first put: the tests set one
// above it so that the mount sees a new revision.
const firstVersion = 1

// A Size the store writer made short (3 bytes, Version bumped, on a v2
// item, which binds no Version) is an integrity failure once the value is
// decrypted: EIO and a log line naming the secret, never the first 3
// bytes. A Size beyond the store's
// largest value (2^50) is refused when listed: EIO for that secret, no
// file claims that many bytes (os.ReadFile would panic, Python raise
// MemoryError), and the application's other secrets list and read.
func TestSizeTamperingShortAndHugeGivesEIOForThatSecretOnly(t *testing.T) {
	for name, newBackend := range tamperBackends() {
		t.Run(name, func(t *testing.T) {
			b, w := newBackend(t)
			short, huge, good := unique("short"), unique("huge"), unique("good")
			// v2, which binds no Version: with v3 the bumped Version
			// alone fails authentication, and the Size checks would go
			// untested.
			b.cli(t, []byte(short), "put", "app/short", "--format", "v2")
			b.cli(t, []byte(huge), "put", "app/huge", "--format", "v2")
			b.cli(t, []byte(good), "put", "app/good", "--format", "v2")

			m := mount(t, b, "--ttl", "1s", "--read-only")
			for _, v := range []string{short, huge, good} {
				m.secret(v)
			}
			if got := m.mustSh("cat app/short app/huge app/good"); got != short+huge+good {
				t.Fatalf("cat before the tampering = %q", got)
			}
			w.setNumbers(t, "app", "short", map[string]int64{"Size": 3, "Version": firstVersion + 1})
			w.setNumbers(t, "app", "huge", map[string]int64{"Size": 1 << 50, "Version": firstVersion + 1})

			for _, s := range []string{"short", "huge"} {
				var out, errOut string
				eventually(t, 10*time.Second, "the mount sees app/"+s+"'s new Size", func() bool {
					var err error
					out, errOut, err = m.sh("cat app/" + s)
					return err != nil || out != map[string]string{"short": short, "huge": huge}[s]
				})
				if out != "" || !strings.Contains(errOut, "Input/output error") {
					t.Fatalf("cat app/%s after its Size was forged: %q, %q; want EIO and no bytes", s, out, errOut)
				}
			}
			// Stays so, and no file claims the forged size: a program
			// that sizes its buffer from stat gets an error, not a panic.
			m.failSh("cat app/short", "Input/output error")
			m.failSh("wc -c < app/huge", "Input/output error")
			if out, _, _ := m.sh("stat -c %s app/huge"); strings.TrimSpace(out) == strconv.FormatInt(1<<50, 10) {
				t.Fatalf("stat app/huge claims the forged size %s", out)
			}
			if got := m.mustSh("cat app/good"); got != good {
				t.Fatalf("cat app/good = %q beside the forged items", got)
			}
			if got := m.mustSh("ls app"); !strings.Contains(got, "good\n") {
				t.Fatalf("ls app = %q: the untouched secret must still list", got)
			}
			logNamesAndHoldsNoValue(t, m.log(), []string{
				`app/short: integrity check failed: the decrypted value does not have the 3 bytes the item's Size records`,
				`app/huge: integrity check failed: the store says the value is 1125899906842624 bytes, over the store's limit`,
			}, short, huge, good)
		})
	}
}

// logNamesAndHoldsNoValue fails t unless log holds every line of names,
// and none of values.
func logNamesAndHoldsNoValue(t *testing.T, log string, names []string, values ...string) {
	t.Helper()
	for _, want := range names {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not name %q:\n%s", want, log)
		}
	}
	for _, v := range values {
		if strings.Contains(log, v) {
			t.Fatalf("the log holds a value")
		}
	}
}

// A whole older item put back (rollback; the format cannot tell it from a
// restore) is served, as docs/SECURITY.md says, and the mount logs at warn
// level that the secret's Version went down, with both versions.
func TestAVersionThatGoesDownIsServedAndLoggedAsAWarning(t *testing.T) {
	for name, newBackend := range tamperBackends() {
		t.Run(name, func(t *testing.T) {
			b, w := newBackend(t)
			oldValue, newValue := unique("old"), unique("new")
			b.cli(t, []byte(oldValue), "put", "app/s")
			restore := w.save(t, "app", "s")
			b.cli(t, []byte(newValue), "put", "app/s")

			m := mount(t, b, "--ttl", "1s", "--read-only")
			m.secret(oldValue)
			m.secret(newValue)
			if got := m.mustSh("cat app/s"); got != newValue {
				t.Fatalf("cat app/s = %q before the rollback", got)
			}
			restore()
			eventually(t, 10*time.Second, "the mount serves the item put back", func() bool {
				out, _, err := m.sh("cat app/s")
				return err == nil && out == oldValue
			})
			var line string
			eventually(t, 5*time.Second, "the warning", func() bool {
				for _, l := range strings.Split(m.log(), "\n") {
					if strings.Contains(l, "the secret's version went down") {
						line = l
						return true
					}
				}
				return false
			})
			for _, want := range []string{`"level":"warning"`, `"secret":"app/s"`, `"from_version":2`, `"to_version":1`} {
				if !strings.Contains(line, want) {
					t.Errorf("the warning %s lacks %s", line, want)
				}
			}
			if strings.Contains(m.log(), oldValue) || strings.Contains(m.log(), newValue) {
				t.Fatal("the log holds a value")
			}
		})
	}
}
