package vfs

import (
	"context"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs/vfstest"
)

// afterDelete is the fake catalog, with a hook run once a Delete has
// landed and before it returns: what another process does meanwhile.
type afterDelete struct {
	*vfstest.Catalog
	hook func()
}

func (c *afterDelete) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	err := c.Catalog.Delete(ctx, k, expected)
	if h := c.hook; err == nil && h != nil {
		c.hook = nil
		h()
	}
	return err
}

// A creation that begins after an unlink's Delete landed, and before the
// unlink orphans the secret's sessions, is not one of them: the unlink
// orphans only the sessions open when it began, and the creation's close
// stores its value. (Before, it was orphaned too: its close succeeded,
// and nothing was stored.)
func TestACreationAfterAnUnlinksDeleteIsNotOrphanedByIt(t *testing.T) {
	f := newFixture(t, Options{})
	cat := &afterDelete{Catalog: f.cat}
	f.fs = New(cat, f.fs.opts)
	f.cat.Store(db, "old")

	// An old writer keeps the secret open: the unlink will orphan it.
	old := f.open(db, other, wronly)
	defer old.Release(ctx)

	var created *Handle
	cat.hook = func() {
		// Another process creates the name anew, once the store holds
		// nothing: `echo new > db`.
		h, e, err := f.fs.Create(ctx, command, db, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC)
		if err != nil {
			t.Errorf("create: %v", err)
			return
		}
		if e.Created != nil {
			t.Cleanup(e.Created.Unhold)
		}
		if _, err := h.Write(command, []byte("new"), 0); err != nil {
			t.Errorf("write: %v", err)
		}
		created = h
	}
	f.mustNot("unlink", f.fs.Unlink(ctx, shell, db))
	if created == nil {
		t.Fatal("the creation did not happen")
	}
	f.mustNot("the creator's close", created.Flush(ctx, command))
	created.Release(ctx)
	if got := f.value(db); got != "new" {
		t.Errorf("the creator's close succeeded, but the store holds %s", got)
	}
	if _, err := old.Write(other, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := old.Flush(ctx, other); err != nil || f.value(db) != "new" {
		t.Errorf("the writer open before the unlink: close %v, the store holds %s; want it orphaned", err, f.value(db))
	}
}
