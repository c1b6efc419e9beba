package main

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// A malformed item (here a Size no item records) is no v1 item to
// migrate: migrate leaves it alone and says why, and migrates the rest.
func TestMigrateLeavesAMalformedItemAlone(t *testing.T) {
	dataDir := newStore(t)
	for _, name := range []string{"app/good", "app/bad"} {
		if _, stderr, err := run(t, strings.NewReader("v"), append([]string{"put", name, "--format", "v1"}, dataDir...)...); err != nil {
			t.Fatalf("put %s: %v\n%s", name, err, stderr)
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir[1], storeFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE secrets SET Size = -7 WHERE SecretName = 'bad'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, args := range [][]string{{"migrate", "--dry-run"}, {"migrate"}} {
		out, stderr, err := run(t, nil, append(args, dataDir...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr)
		}
		if !strings.Contains(out, "left alone app/bad: ") || !strings.Contains(out, "malformed item") || strings.Contains(out, "migrate app/bad") || strings.Contains(out, "migrated app/bad") {
			t.Errorf("%v does not leave the malformed item alone:\n%s", args, out)
		}
		if !strings.Contains(out, "app/good (v1 -> v3)") {
			t.Errorf("%v does not migrate the good one:\n%s", args, out)
		}
	}
}
