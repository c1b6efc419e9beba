package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/secrets/catalogtest"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

// The real catalog passes the contract suite of secrets.Catalog, as the
// mount builds it: in front of a Keeper (here over an in-memory store and
// a test key). Another host is a second Keeper over the same store and key.
func TestCatalogContract(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) catalogtest.Subject {
		st := memory.New()
		t.Cleanup(func() { st.Close() })
		envelope, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
		if err != nil {
			t.Fatal(err)
		}
		c := cache.New(secrets.NewKeeper(st, envelope, secrets.Options{}), cache.Options{TTL: time.Minute})
		t.Cleanup(c.Close)
		other := secrets.NewKeeper(st, envelope, secrets.Options{})
		return catalogtest.Subject{
			Catalog: c,
			WriteElsewhere: func(k store.Key, value []byte) store.Meta {
				meta, err := other.Put(context.Background(), k, value, storedRevision(t, st, k))
				if err != nil {
					t.Fatalf("a write elsewhere: %v", err)
				}
				return meta
			},
			RemoveElsewhere: func(k store.Key) {
				if err := other.Delete(context.Background(), k, storedRevision(t, st, k)); err != nil {
					t.Fatalf("a removal elsewhere: %v", err)
				}
			},
		}
	})
}

// storedRevision returns the revision st holds of k, or store.NoItem.
func storedRevision(t *testing.T, st store.Store, k store.Key) store.Revision {
	t.Helper()
	it, err := st.Get(context.Background(), k)
	switch {
	case fault.Is(fault.NotFound, err):
		return store.NoItem
	case err != nil:
		t.Fatalf("Get %s from the store: %v", k, err)
	}
	return it.Revision()
}
