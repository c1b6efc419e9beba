package sqlite

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/storetest"
)

func TestMasterKeyIDsAreTheDistinctKeysOfTheStoredItemsInOrder(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "secrets.db"))
	defer closeT(t, s)
	ids, err := s.MasterKeyIDs(t.Context())
	if err != nil || len(ids) != 0 {
		t.Fatalf("an empty store: MasterKeyIDs = %q, %v; want none", ids, err)
	}
	for i, keyID := range []string{"rsa:sha256:bb", "rsa:sha256:aa", "rsa:sha256:bb", "arn:aws:kms:eu-west-1:1:key/k"} {
		it := storetest.NewCounter(store.Key{App: "app", Name: string(rune('a' + i))}, 1)
		it.MasterKeyID = keyID
		if err := s.Put(t.Context(), it, store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	ids, err = s.MasterKeyIDs(t.Context())
	if want := []string{"arn:aws:kms:eu-west-1:1:key/k", "rsa:sha256:aa", "rsa:sha256:bb"}; err != nil || !slices.Equal(ids, want) {
		t.Errorf("MasterKeyIDs = %q, %v; want %q", ids, err, want)
	}
}
