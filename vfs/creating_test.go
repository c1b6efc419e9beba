package vfs

import (
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/fault"
)

// A secret being created here, nothing committed yet: a lookup by anyone
// finds it, empty (the kernel shows the name to every process once the
// creation made it); a listing does not list it and a reader's open is
// "not found", so that nobody reads the nothing committed yet as the
// secret. Once its writer commits, all three agree.
func TestANameBeingCreatedIsLookedUpButNotListedOrReadUntilItsCommit(t *testing.T) {
	f := newFixture(t, Options{})
	h, e := f.create(db, shell, trunc)
	got, err := f.fs.Lookup(ctx, db)
	if err != nil || got.Created != e.Created || got.Meta.Size != 0 {
		t.Fatalf("lookup by another process while being created: %+v, %v", got, err)
	}
	got.Created.Unhold()
	if meta, ok, err := f.fs.List("app").Next(ctx); ok || err != nil {
		t.Errorf("the listing while being created gave %v, %v, %v", meta.Key, ok, err)
	}
	_, err = e.Created.Open(ctx, command, syscall.O_RDONLY)
	wantKind(t, "a reader's open while being created", err, fault.NotFound)
	f.mustNot("close", h.Flush(ctx, shell))
	f.mustNot("release", h.Release(ctx))
	if meta, ok, err := f.fs.List("app").Next(ctx); !ok || err != nil || meta.Key != db || meta.Size != 0 {
		t.Errorf("the listing after the commit gave %+v, %v, %v", meta, ok, err)
	}
	if _, err := f.revision(db).Open(ctx, command, syscall.O_RDONLY); err != nil {
		t.Errorf("a reader's open after the commit: %v", err)
	}
}
