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
	dataDir := storeWithAMalformedItem(t, "--format", "v1")
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

// ls -l shows a malformed item as such, and nothing it claims.
func TestLsLongShowsAMalformedItemAsSuch(t *testing.T) {
	lsLongShowsMalformed(t, storeWithAMalformedItem(t))
}

// ls -l shows an item whose Size is over the store's limit as malformed,
// as the mount refuses it (EIO at its lookup): no valid item records such
// a size, and a column of 1125899906842624 bytes would be a lie.
func TestLsLongShowsASizeOverTheStoresLimitAsMalformed(t *testing.T) {
	stderr := lsLongShowsMalformed(t, storeWithABadItem(t, `UPDATE secrets SET Size = 1125899906842624 WHERE SecretName = 'bad'`))
	if !strings.Contains(stderr, "over the store's limit") {
		t.Errorf("ls -l says nothing of the item over the limit on standard error:\n%s", stderr)
	}
}

// lsLongShowsMalformed checks ls -l app of a store holding app/good and
// a malformed app/bad, and returns its standard error.
func lsLongShowsMalformed(t *testing.T, dataDir []string) (stderr string) {
	t.Helper()
	out, stderr, err := run(t, nil, append([]string{"ls", "-l", "app"}, dataDir...)...)
	if err != nil {
		t.Fatalf("ls -l app: %v\n%s", err, stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		switch f[len(f)-1] {
		case "bad":
			if strings.Join(f, " ") != "- - - malformed bad" {
				t.Errorf("ls -l shows the malformed item as %q", line)
			}
		case "good":
			if f[len(f)-2] != "v3" {
				t.Errorf("ls -l shows the good item as %q", line)
			}
		}
	}
	return stderr
}

// storeWithAMalformedItem is a local store holding app/good and app/bad,
// put with putFlags, app/bad's Size then made one no item records.
func storeWithAMalformedItem(t *testing.T, putFlags ...string) []string {
	t.Helper()
	return storeWithABadItem(t, `UPDATE secrets SET Size = -7 WHERE SecretName = 'bad'`, putFlags...)
}

// storeWithABadItem is a local store holding app/good and app/bad, put
// with putFlags, then altered by the SQL statement update.
func storeWithABadItem(t *testing.T, update string, putFlags ...string) []string {
	t.Helper()
	dataDir := newStore(t)
	for _, name := range []string{"app/good", "app/bad"} {
		args := append(append([]string{"put", name}, putFlags...), dataDir...)
		if _, stderr, err := run(t, strings.NewReader("v"), args...); err != nil {
			t.Fatalf("put %s: %v\n%s", name, err, stderr)
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir[1], storeFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(update); err != nil {
		t.Fatal(err)
	}
	return dataDir
}
