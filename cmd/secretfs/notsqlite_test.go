package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A store file that is not SQLite (random bytes, text) is refused naming
// the file and what it is not, and is left as it was.
func TestAStoreFileThatIsNotSQLiteIsNamedAndLeftAlone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"binary", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x7f}, 2048)},
		{"text", []byte("DB_PASSWORD=hunter2\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := newStore(t)
			dbPath := filepath.Join(dataDir[1], storeFile)
			if err := os.WriteFile(dbPath, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			want := dbPath + " is not a secretfs database (not SQLite): "
			for _, verb := range [][]string{{"ls"}, {"get", "a/b"}} {
				_, _, err := run(t, nil, append(verb, dataDir...)...)
				if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "restore it from a backup") {
					t.Errorf("%s: error %v, want it to start %q and say what to do", verb[0], err, want)
				}
			}
			if got, err := os.ReadFile(dbPath); err != nil || !bytes.Equal(got, tc.content) {
				t.Errorf("the store file was changed (%v)", err)
			}
		})
	}
}
