package vfstest_test

import (
	"testing"

	"github.com/secretfs/secretfs/secrets/catalogtest"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs/vfstest"
)

// The fake passes the contract suite of secrets.Catalog that the real
// catalog passes, so that vfs's tests run against what the mount does.
// Another host is the fake's own Store and Remove.
func TestCatalogContract(t *testing.T) {
	catalogtest.Run(t, func(*testing.T) catalogtest.Subject {
		c := vfstest.New()
		return catalogtest.Subject{
			Catalog:         c,
			WriteElsewhere:  func(k store.Key, value []byte) store.Meta { return c.Store(k, string(value)) },
			RemoveElsewhere: c.Remove,
		}
	})
}
