package main

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	logtest "github.com/sirupsen/logrus/hooks/test"
	_ "modernc.org/sqlite" // the "sqlite" driver, to edit the store as the original Secret Store would

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

// makeLegacy turns the item at app/name into one the original Secret
// Store could have written: no Format, Version, Size or Modified.
func makeLegacy(t *testing.T, dataDir, app, name string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, storeFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(`UPDATE secrets SET Format = NULL, Version = NULL, Size = NULL, Modified = NULL
		WHERE ApplicationName = ? AND SecretName = ?`, app, name)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("made %d items legacy, want 1", n)
	}
}

// formats returns the format and version columns of `ls -l APP`
// ("v3 2"), by name.
func formats(t *testing.T, dataDir []string, app string) map[string]string {
	t.Helper()
	out, stderr, err := run(t, nil, append([]string{"ls", "-l", app}, dataDir...)...)
	if err != nil {
		t.Fatalf("ls -l %s: %v\n%s", app, err, stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		got[f[len(f)-1]] = f[len(f)-2] + " " + f[len(f)-3]
	}
	return got
}

func TestMigrateRewritesV1SecretsAndDryRunChangesNothing(t *testing.T) {
	dataDir := newStore(t)
	verb := verbs(t, dataDir)
	values := map[string]string{"app/a": "value a", "app/b": "value b", "app/legacy": "from the original", "other/c": "value c", "app/new": "value new"}
	for k, v := range values {
		if k == "app/new" {
			verb(v, "put", k)
		} else {
			verb(v, "put", k, "--format", "v1")
		}
	}
	makeLegacy(t, dataDir[1], "app", "legacy")
	before := map[string]string{"a": "v1 1", "b": "v1 1", "legacy": "v1-legacy -", "new": "v3 1"}
	if got := formats(t, dataDir, "app"); !equalMaps(got, before) {
		t.Fatalf("before: ls -l app shows %v, want %v", got, before)
	}

	out := verb("", "migrate", "--dry-run")
	for _, line := range []string{"would migrate app/a (v1 -> v3)", "would migrate app/b (v1 -> v3)",
		"would migrate app/legacy (legacy v1 -> v3)", "would migrate other/c (v1 -> v3)", "4 v1 secrets would be migrated to v3"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("migrate --dry-run does not say %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "app/new") {
		t.Errorf("migrate --dry-run lists a v3 secret:\n%s", out)
	}
	if got := formats(t, dataDir, "app"); !equalMaps(got, before) {
		t.Fatalf("after --dry-run: ls -l app shows %v, want %v unchanged", got, before)
	}

	out = verb("", "migrate", "app")
	if !strings.Contains(out, "migrated 3 of 3 v1 secrets to v3; 0 changed meanwhile") || strings.Contains(out, "other/c") {
		t.Errorf("migrate app:\n%s", out)
	}
	after := map[string]string{"a": "v3 2", "b": "v3 2", "legacy": "v3 1", "new": "v3 1"}
	if got := formats(t, dataDir, "app"); !equalMaps(got, after) {
		t.Fatalf("after migrate app: ls -l app shows %v, want %v", got, after)
	}
	if got := formats(t, dataDir, "other"); got["c"] != "v1 1" {
		t.Fatalf("migrate app changed other/c: %v", got)
	}

	out = verb("", "migrate")
	if !strings.Contains(out, "migrated other/c (v1 -> v3)\n") || !strings.Contains(out, "migrated 1 of 1 v1 secret to v3") {
		t.Errorf("migrate of every application:\n%s", out)
	}
	for k, v := range values {
		if got := verb("", "get", k); got != v {
			t.Errorf("get %s after migrate: %q, want %q", k, got, v)
		}
	}
	if out := verb("", "migrate"); !strings.Contains(out, "migrated 0 of 0 v1 secrets") {
		t.Errorf("a second migrate:\n%s", out)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestMigrateRefusesToWriteV1(t *testing.T) {
	dataDir := newStore(t)
	_, _, err := run(t, nil, append([]string{"migrate", "--format", "v1"}, dataDir...)...)
	if err == nil || !strings.Contains(err.Error(), "--format v1: migrate rewrites v1 secrets") {
		t.Fatalf("migrate --format v1: %v", err)
	}
}

// racingMigrator is a Keeper whose Fetch of one secret lets another
// writer change it right after the read, as a concurrent `secretfs put`
// or a write through a mount would.
type racingMigrator struct {
	*secrets.Keeper
	victim store.Key
	writer *secrets.Keeper
	t      *testing.T
}

func (m *racingMigrator) Fetch(ctx context.Context, k store.Key) (*store.Item, error) {
	item, err := m.Keeper.Fetch(ctx, k)
	if err == nil && k == m.victim {
		if _, err := m.writer.Write(ctx, k, []byte("written meanwhile"), item.Revision()); err != nil {
			m.t.Fatal(err)
		}
	}
	return item, err
}

// A secret changed between migrate's read and its write is left alone and
// reported: the other writer's value stays. A secret that cannot be read
// fails, and is reported; the others are migrated all the same.
func TestMigrateLeavesASecretChangedMeanwhileAlone(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	w := cryptotest.New()
	keeper := func(f crypto.Format) *secrets.Keeper {
		e, err := crypto.NewEnvelope(w, f)
		if err != nil {
			t.Fatal(err)
		}
		log, _ := logtest.NewNullLogger()
		return secrets.NewKeeper(st, e, secrets.Options{Log: log})
	}
	v1, v3 := keeper(crypto.FormatV1), keeper(crypto.FormatV3)
	for _, name := range []string{"a", "b", "c", "d"} {
		if _, err := v1.Write(ctx, store.Key{App: "app", Name: name}, []byte("value "+name), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	// app/d is damaged: its padding no longer checks (a v1 integrity failure).
	d, err := st.Get(ctx, store.Key{App: "app", Name: "d"})
	if err != nil {
		t.Fatal(err)
	}
	damaged := *d
	damaged.Version = d.Version.Next()
	damaged.InitialisationVector = append([]byte(nil), d.InitialisationVector...)
	damaged.InitialisationVector[crypto.BlockSizeV1-1] ^= 0x80
	if err := st.Put(ctx, &damaged, d.Revision()); err != nil {
		t.Fatal(err)
	}

	m := &racingMigrator{Keeper: v3, victim: store.Key{App: "app", Name: "b"}, writer: v1, t: t}
	var out bytes.Buffer
	err = migrate(ctx, m, nil, migration{to: crypto.FormatV3}, &out)
	if err == nil || !strings.Contains(err.Error(), "1 secret could not be migrated") {
		t.Errorf("migrate with one damaged secret: %v, want it to fail saying so", err)
	}
	for _, line := range []string{
		"migrated app/a (v1 -> v3)",
		"left alone app/b: it changed since it was read (at version 1)",
		"migrated app/c (v1 -> v3)",
		"failed: crypto.Open: app/d: integrity check failed: v1 padding is invalid",
		"migrated 2 of 4 v1 secrets to v3; 1 changed meanwhile and was left alone",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("migrate does not say %q:\n%s", line, out.String())
		}
	}
	if strings.Count(out.String(), "app/d") != 1 {
		t.Errorf("the failure names app/d more than once:\n%s", out.String())
	}
	for name, want := range map[string]string{"a": "v3 value a", "b": "v1 written meanwhile", "c": "v3 value c"} {
		s, err := v3.Get(ctx, store.Key{App: "app", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Format + " " + string(s.Value); got != want {
			t.Errorf("app/%s after migrate: %q, want %q", name, got, want)
		}
	}
	if item, _ := st.Get(ctx, store.Key{App: "app", Name: "d"}); item.Format != "v1" || !item.Revision().Equal(damaged.Revision()) {
		t.Errorf("the damaged secret was changed: %s version %v", item.Format, item.Version)
	}
}

// A named application that holds no secret is refused, as ls, env and
// exec refuse it, before anything is migrated, also with --dry-run.
func TestMigrateOfAnApplicationWithNoSecretsFails(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	e, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV1)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := logtest.NewNullLogger()
	k := secrets.NewKeeper(st, e, secrets.Options{Log: log})
	if _, err := k.Write(ctx, store.Key{App: "app", Name: "a"}, []byte("value"), store.NoItem); err != nil {
		t.Fatal(err)
	}
	for _, dryRun := range []bool{false, true} {
		var out bytes.Buffer
		err := migrate(ctx, k, []string{"app", "nope"}, migration{to: crypto.FormatV3, dryRun: dryRun}, &out)
		if err == nil || err.Error() != "nope: the application holds no secrets (or does not exist)" || out.Len() != 0 {
			t.Fatalf("--dry-run %v: migrate app nope: %v, printed %q; want it refused naming nope, nothing done", dryRun, err, out.String())
		}
	}
	if it, err := st.Get(ctx, store.Key{App: "app", Name: "a"}); err != nil || it.Format != string(crypto.FormatV1) {
		t.Fatalf("app/a after the refused migrate: %v, %v; want it still v1", it, err)
	}
}
