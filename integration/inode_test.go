package integration

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	_ "modernc.org/sqlite" // the "sqlite" driver, as the local store uses it
)

// openStoreFile opens the local backend's secrets.db as any process with
// write access to it could: the test edits items behind the mount's back.
func openStoreFile(t *testing.T, b *backend) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(b.dataDir(), "secrets.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A node is one application, name and revision. Two secrets made alike
// in everything the store shows in clear (the same Version and Size, and
// the second given the first's InitialisationVector by someone who can
// write secrets.db) are two inodes: each serves its own value, or EIO
// (the copied IV does not decrypt the second's ciphertext), never the
// other's. The pair with the same value too is told apart by its inode
// numbers.
func TestInodeTwoSecretsWithTheSameVersionSizeAndIVEachServeTheirOwnValueOrEIO(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	values := map[string]string{
		"a": unique("value-a"), "b": unique("value-b"), // the same length, other bytes
		"c": unique("same"),
	}
	values["d"] = values["c"]
	for name, v := range values {
		b.cli(t, []byte(v), "put", "app/"+name)
	}
	db := openStoreFile(t, b)
	for _, pair := range [][2]string{{"a", "b"}, {"c", "d"}} {
		res, err := db.ExecContext(context.Background(), `UPDATE secrets SET InitialisationVector =
			(SELECT InitialisationVector FROM secrets WHERE ApplicationName = 'app' AND SecretName = ?)
			WHERE ApplicationName = 'app' AND SecretName = ?`, pair[0], pair[1])
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("the IV of %s was copied onto %d items", pair[0], n)
		}
		var same int
		if err := db.QueryRow(`SELECT COUNT(DISTINCT Version || '/' || Size || '/' || hex(InitialisationVector)) FROM secrets
			WHERE ApplicationName = 'app' AND SecretName IN (?, ?)`, pair[0], pair[1]).Scan(&same); err != nil || same != 1 {
			t.Fatalf("%s and %s differ in Version, Size or IV (%d distinct, %v): the test proves nothing", pair[0], pair[1], same, err)
		}
	}

	m := mount(t, b)
	for _, v := range values {
		m.secret(v)
	}
	inodes := map[uint64]string{}
	// Each name is read twice, in an order that has the kernel hold the
	// other's inode when it looks a name up.
	for _, name := range []string{"a", "b", "a", "b", "c", "d", "c", "d"} {
		out, errOut, err := m.sh("cat app/" + name)
		switch {
		case err == nil && out == values[name]:
		case err != nil && strings.Contains(errOut, "Input/output error"):
		default:
			t.Errorf("cat app/%s: %q, %q, %v; want its own value or EIO", name, out, errOut, err)
		}
		for other, v := range values {
			if other != name && v != values[name] && strings.Contains(out, v) {
				t.Errorf("cat app/%s served app/%s's value", name, other)
			}
		}
		fi, err := os.Stat(m.path("app/" + name))
		if err != nil {
			t.Fatalf("stat app/%s: %v", name, err)
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		if holder, ok := inodes[ino]; ok && holder != name {
			t.Errorf("app/%s and app/%s share inode %d", name, holder, ino)
		}
		inodes[ino] = name
	}
	if got := m.mustSh("cat app/a app/c"); got != values["a"]+values["c"] {
		t.Errorf("the secrets whose IV was copied read %q", got)
	}
}
