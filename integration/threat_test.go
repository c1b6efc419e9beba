package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docs/SECURITY.md says what someone who can write the store can still do
// to what the mount serves. These tests show that each of those
// exposures is real, as the page says, so the threat model stays true: a
// mount that came to refuse one would fail its test, and the page would
// have to change with it.

// wantSecurityDocSays checks that docs/SECURITY.md says phrase (with its
// line breaks taken as spaces).
func wantSecurityDocSays(t *testing.T, phrase string) {
	t.Helper()
	_, doc := repoFile(t, "docs", "SECURITY.md")
	if !strings.Contains(strings.Join(strings.Fields(string(doc)), " "), phrase) {
		t.Errorf("docs/SECURITY.md no longer says %q", phrase)
	}
}

// waitForRead waits until the mount m serves want at name (the store
// was changed behind it: it learns so within its TTL).
func waitForRead(t *testing.T, m *mounted, name, want, what string) {
	t.Helper()
	eventually(t, 10*time.Second, what+": the expected value at "+name, func() bool {
		out, _, err := m.sh("cat " + name)
		return err == nil && out == want
	})
}

// With RSA, the public key (what a write-only host is given) and write
// access to the store are enough to make the mount serve a value of
// one's choosing: the forged item is a genuine write.
func TestThreatModelThePublicKeyAndStoreAccessForgeAValue(t *testing.T) {
	wantSecurityDocSays(t, "Someone who holds the RSA public key and can write the store **can make the mount serve a value of their choosing**")
	b := localBackend(t)
	b.cli(t, nil, "init")
	genuine, forged := unique("genuine"), unique("forged")
	b.cli(t, []byte(genuine), "put", "app/s")
	m := mount(t, b, "--ttl", "1s", "--read-only")
	m.secret(genuine)
	m.secret(forged)
	waitForRead(t, m, "app/s", genuine, "before the forgery")
	b.cli(t, []byte(forged), "put", "app/s", "--rsa-key", filepath.Join(b.dataDir(), "key.pub.pem"))
	waitForRead(t, m, "app/s", forged, "an item written with the public key alone")
}

// A whole item put back as it was at an earlier write (Version, IV and
// all) authenticates, and the mount serves the old value: integrity is
// per value, not of the store.
func TestThreatModelAWholeItemRolledBackIsServed(t *testing.T) {
	wantSecurityDocSays(t, "**roll back a whole item**: put back an old copy of an item as it was at an earlier write")
	b := localBackend(t)
	b.cli(t, nil, "init")
	older, newer := unique("older"), unique("newer")
	b.cli(t, []byte(older), "put", "app/s")
	db := storeDB(t, b)
	const columns = `MasterKeyId, ProtectedDocumentKey, InitialisationVector, ProtectedSecretValue, Format, Version, Size, Modified`
	var row [8]any
	dest := make([]any, len(row))
	for i := range row {
		dest[i] = &row[i]
	}
	if err := db.QueryRow(`SELECT ` + columns + ` FROM secrets WHERE ApplicationName = 'app' AND SecretName = 's'`).Scan(dest...); err != nil {
		t.Fatal(err)
	}
	b.cli(t, []byte(newer), "put", "app/s")
	m := mount(t, b, "--ttl", "1s", "--read-only")
	m.secret(older)
	m.secret(newer)
	waitForRead(t, m, "app/s", newer, "before the rollback")
	execOne(t, db, `UPDATE secrets SET (`+columns+`) = (?, ?, ?, ?, ?, ?, ?, ?)
		WHERE ApplicationName = 'app' AND SecretName = 's'`, row[:]...)
	waitForRead(t, m, "app/s", older, "the item as it was at the first write")
}

// A v1 item has no MAC: a bit flipped in its IV flips the same bit of the
// value, which the mount serves without an error. Once `secretfs migrate`
// has rewritten it as v3, the same flip is EIO.
func TestThreatModelAV1ItemIsModifiedSilentlyUntilMigrated(t *testing.T) {
	wantSecurityDocSays(t, "**silent modification**: flipping a bit of the IV flips the same bit of the first 16 bytes of the value")
	wantSecurityDocSays(t, "**Migrating ends it.**")
	b := localBackend(t)
	b.cli(t, nil, "init")
	value := unique("v1-value")
	b.cli(t, []byte(value), "put", "app/s", "--format", "v1")
	db := storeDB(t, b)
	flip := func() {
		t.Helper()
		p := readProtected(t, db, "app", "s")
		p.iv[0] ^= 0x20
		execOne(t, db, `UPDATE secrets SET InitialisationVector = ? WHERE ApplicationName = 'app' AND SecretName = 's'`, p.iv)
	}
	modified := string(value[0]^0x20) + value[1:]
	m := mount(t, b, "--ttl", "1s", "--read-only")
	m.secret(value)
	m.secret(modified)
	waitForRead(t, m, "app/s", value, "the genuine v1 item")
	flip()
	waitForRead(t, m, "app/s", modified, "the v1 item with a bit of its IV flipped")

	b.cli(t, nil, "migrate", "app")
	if f := readProtected(t, db, "app", "s").format; f != "v3" {
		t.Fatalf("migrate stored format %q, want v3", f)
	}
	waitForRead(t, m, "app/s", modified, "the migrated item") // migrate rewrote what it read
	flip()
	eventually(t, 10*time.Second, "the migrated item with a bit of its IV flipped is EIO", func() bool {
		_, errOut, err := m.sh("cat app/s")
		return err != nil && strings.Contains(errOut, "Input/output error")
	})
}
