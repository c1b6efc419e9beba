package vfs

import (
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// unlink deletes on the condition that the store still holds the
// revision just read. Open writers are orphaned: their writes succeed and
// vanish, as those to any unlinked file.
func TestUnlinkOrphansOpenWritersWhoseWritesVanish(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "old")
	h := f.open(db, shell, trunc)
	f.mustNot("unlink", f.fs.Unlink(ctx, other, db))
	f.write(h, shell, "gone", 0)
	f.mustNot("the orphan's close", h.Flush(ctx, shell))
	f.mustNot("the orphan's release", h.Release(ctx))
	if got := f.value(db); got != "<none>" || f.puts() != 0 {
		t.Errorf("the store holds %q after %d puts", got, f.puts())
	}
	if told := f.told(Removed); len(told) != 1 || told[0] != db {
		t.Errorf("removed events %v", told)
	}
	wantKind(t, "unlink of nothing", f.fs.Unlink(ctx, other, db), fault.NotFound)
}

// A secret created here and not committed yet is unlinked without asking
// the store to delete anything, and its writer commits nothing.
func TestUnlinkOfASecretBeingCreatedStoresNothing(t *testing.T) {
	f := newFixture(t, Options{})
	h, _ := f.create(db, shell, trunc)
	f.write(h, shell, "draft", 0)
	f.mustNot("unlink", f.fs.Unlink(ctx, other, db))
	f.mustNot("close", h.Flush(ctx, shell))
	if got := f.value(db); got != "<none>" || f.puts()+f.cat.Calls("Delete") != 0 {
		t.Errorf("the store holds %q after %d puts and %d deletes", got, f.puts(), f.cat.Calls("Delete"))
	}
}

// rename re-encrypts: the value is written under the new name first,
// then the old item deleted, each conditional; the kernel is told to look
// the new name up again; an open writer follows the file and commits
// under its new name.
func TestRenameWritesTheNewNameThenDeletesTheOldAndMovesOpenWriters(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "value")
	h := f.open(db, shell, wronly)
	f.write(h, shell, "V", 0)
	f.mustNot("rename", f.fs.Rename(ctx, other, db, db2, 0))
	if got, old := f.value(db2), f.value(db); got != "value" || old != "<none>" {
		t.Fatalf("after the rename: %q at the new name, %q at the old", got, old)
	}
	if told := f.told(Renamed); len(told) != 1 || told[0] != db2 {
		t.Errorf("renamed events %v", told)
	}
	f.mustNot("the writer's close", h.Flush(ctx, shell))
	if got := f.value(db2); got != "Value" || h.Meta().Key != db2 {
		t.Errorf("the writer committed %q, and writes %v; want Value at %v", got, h.Meta().Key, db2)
	}
}

// A rename over an existing secret replaces it, orphaning its writers;
// with RENAME_NOREPLACE it is refused instead.
func TestRenameReplacesTheTargetUnlessNoReplace(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "from")
	f.cat.Store(db2, "to")
	wantKind(t, "RENAME_NOREPLACE over a secret", f.fs.Rename(ctx, other, db, db2, unix.RENAME_NOREPLACE), fault.Exist)
	target := f.open(db2, shell, trunc)
	f.mustNot("rename", f.fs.Rename(ctx, other, db, db2, 0))
	f.write(target, shell, "lost", 0)
	f.mustNot("the replaced writer's close", target.Flush(ctx, shell))
	if got := f.value(db2); got != "from" {
		t.Errorf("the new name holds %q, want the renamed value", got)
	}
}

// A writer that had read a revision older than the one renamed fails, as
// it would have in place.
func TestAStaleWriterFollowingARenameFailsWithAConflict(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "1")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "mine", 0)
	f.cat.Store(db, "2") // another host
	f.mustNot("rename", f.fs.Rename(ctx, other, db, db2, 0))
	wantKind(t, "the stale writer's close", h.Flush(ctx, shell), fault.Conflict)
	if got := f.value(db2); got != "2" {
		t.Errorf("the new name holds %q", got)
	}
}

// A secret being created and not committed is renamed without a store
// call: its writer commits it at the new name.
func TestRenameOfASecretBeingCreatedMovesItsWriter(t *testing.T) {
	f := newFixture(t, Options{})
	h, _ := f.create(db, shell, trunc)
	f.mustNot("rename", f.fs.Rename(ctx, other, db, db2, 0))
	if f.puts()+f.cat.Calls("Delete") != 0 {
		t.Fatal("the rename of nothing stored asked the store to write")
	}
	f.write(h, shell, "new", 0)
	f.mustNot("close", h.Flush(ctx, shell))
	if got, old := f.value(db2), f.value(db); got != "new" || old != "<none>" {
		t.Errorf("%q at the new name, %q at the old", got, old)
	}
}

// The renames secretfs refuses, each with the kind a shell user expects:
// out of the applications, RENAME_EXCHANGE, a bad new name, an
// application.
func TestTheRenamesThatAreRefused(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "v")
	wantKind(t, "to the root", f.fs.Rename(ctx, other, db, store.Key{Name: "db"}, 0), fault.NotPermitted)
	wantKind(t, "RENAME_EXCHANGE", f.fs.Rename(ctx, other, db, db2, unix.RENAME_EXCHANGE), fault.NotSupported)
	wantKind(t, "to a bad name", f.fs.Rename(ctx, other, db, store.Key{App: "app", Name: ".."}, 0), fault.Invalid)
	wantKind(t, "an application", f.fs.RenameApp("app", "other", 0), fault.CrossDevice)
	f.mustNot("to itself", f.fs.Rename(ctx, other, db, db, 0))
	if got := f.value(db); got != "v" || f.puts() != 0 {
		t.Errorf("the store holds %q after %d puts", got, f.puts())
	}
}

// Of renameat2's flags only RENAME_NOREPLACE is honoured: RENAME_EXCHANGE
// and RENAME_WHITEOUT (a whiteout is a special file, which secretfs does
// not make) are "not supported", of a secret or an application, and a bit
// renameat2 does not define is invalid; none changes anything.
func TestRenameRefusesWhiteoutExchangeAndUnknownFlags(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "from")
	f.cat.Store(db2, "to")
	for _, c := range []struct {
		name  string
		flags uint32
		want  fault.Kind
	}{
		{"RENAME_EXCHANGE", unix.RENAME_EXCHANGE, fault.NotSupported},
		{"RENAME_WHITEOUT", unix.RENAME_WHITEOUT, fault.NotSupported},
		{"RENAME_WHITEOUT|RENAME_NOREPLACE", unix.RENAME_WHITEOUT | unix.RENAME_NOREPLACE, fault.NotSupported},
		{"an undefined bit", 1 << 3, fault.Invalid},
		{"an undefined bit with RENAME_NOREPLACE", 1<<31 | unix.RENAME_NOREPLACE, fault.Invalid},
	} {
		wantKind(t, c.name, f.fs.Rename(ctx, other, db, db2, c.flags), c.want)
		wantKind(t, c.name+" onto a new name", f.fs.Rename(ctx, other, db, store.Key{App: "app", Name: "new"}, c.flags), c.want)
		wantKind(t, c.name+" of an application", f.fs.RenameApp("app", "other", c.flags), c.want)
	}
	if f.value(db) != "from" || f.value(db2) != "to" || f.puts() != 0 || f.cat.Calls("Delete") != 0 {
		t.Errorf("the store holds %q and %q after %d puts", f.value(db), f.value(db2), f.puts())
	}
	f.mustNot("RENAME_NOREPLACE onto a new name", f.fs.Rename(ctx, other, db, store.Key{App: "app", Name: "new"}, unix.RENAME_NOREPLACE))
}

// mkdir at the root makes an application, which exists in this mount
// until its first secret (the store has no empty ones); rmdir removes an
// empty one, refuses one with secrets.
func TestMkdirMakesAnApplicationAndRmdirRemovesAnEmptyOne(t *testing.T) {
	f := newFixture(t, Options{})
	wantKind(t, "lookup before mkdir", f.fs.LookupApp(ctx, "new"), fault.NotFound)
	f.mustNot("mkdir", f.fs.Mkdir(ctx, "new"))
	f.mustNot("lookup after mkdir", f.fs.LookupApp(ctx, "new"))
	wantKind(t, "mkdir again", f.fs.Mkdir(ctx, "new"), fault.Exist)
	if apps, err := f.fs.Apps(ctx); err != nil || !slices.Equal(apps, []string{"new"}) {
		t.Errorf("apps: %v, %v", apps, err)
	}
	f.cat.Store(store.Key{App: "full", Name: "s"}, "v")
	wantKind(t, "rmdir of an application with secrets", f.fs.Rmdir(ctx, "full"), fault.NotEmpty)
	f.mustNot("rmdir", f.fs.Rmdir(ctx, "new"))
	wantKind(t, "lookup after rmdir", f.fs.LookupApp(ctx, "new"), fault.NotFound)
	wantKind(t, "mkdir of a bad name", f.fs.Mkdir(ctx, ".."), fault.Invalid)
}

// Inside an application there are secrets only, and at the root
// applications only; an application of --apps stays.
func TestTheLayoutRefusesDirectoriesInApplicationsAndFilesAtTheRoot(t *testing.T) {
	f := newFixture(t, Options{Apps: []string{"fixed"}})
	wantKind(t, "mkdir in an application", f.fs.MkdirInApp("fixed", "sub"), fault.NotPermitted)
	wantKind(t, "a file at the root", f.fs.CreateInRoot("loose"), fault.NotPermitted)
	wantKind(t, "rmdir of an --apps application", f.fs.Rmdir(ctx, "fixed"), fault.NotPermitted)
	f.mustNot("lookup of an --apps application", f.fs.LookupApp(ctx, "fixed"))
	wantKind(t, "lookup of another", f.fs.LookupApp(ctx, "other"), fault.NotFound)
}

// A listing pages the application as the catalog does, and READDIRPLUS's
// lookups are answered from it: no lookup, no item read per secret.
func TestAListingPagesTheApplicationAndAnswersItsLookups(t *testing.T) {
	f := newFixture(t, Options{TTL: time.Minute})
	f.cat.PageSize = 2
	for i := range 5 {
		f.cat.Store(store.Key{App: "app", Name: "s" + strconv.Itoa(i)}, "v")
	}
	l := f.fs.List("app")
	var names []string
	for {
		meta, ok, err := l.Next(ctx)
		f.mustNot("next", err)
		if !ok {
			break
		}
		names = append(names, meta.Name)
		e, listed, err := l.Lookup(ctx, meta.Name)
		if err != nil || !listed || e.Meta.Name != meta.Name || e.Fresh != time.Minute {
			t.Errorf("lookup of %s from the listing: %+v, %v, %v", meta.Name, e, listed, err)
		}
		if _, listed, _ := l.Lookup(ctx, "s9"); listed {
			t.Errorf("a name the listing did not just give was answered from it")
		}
	}
	if !slices.Equal(names, []string{"s0", "s1", "s2", "s3", "s4"}) || f.cat.Calls("List") != 3 {
		t.Errorf("listed %v in %d pages", names, f.cat.Calls("List"))
	}
	if n := f.cat.Calls("Lookup"); n != 0 {
		t.Errorf("%d lookups of the store for a listing", n)
	}
	if _, listed, _ := l.Lookup(ctx, "s4"); listed {
		t.Errorf("the last name was answered from a listing that has ended")
	}
	f.mustNot("seek", l.Seek(ctx, 0))
	if _, listed, _ := l.Lookup(ctx, "s4"); listed {
		t.Errorf("a name was answered from a rewound listing")
	}
	if meta, ok, _ := l.Next(ctx); !ok || meta.Name != "s0" {
		t.Errorf("after rewinding: %v, %v", meta.Name, ok)
	}
	_, err := f.fs.LookupListed(ctx, store.Meta{Key: db, Size: -1})
	wantKind(t, "a legacy item listed without its size", err, fault.NotFound)
}

// A malformed item (store.Meta.Invalid) is never answered from the
// listing, whatever Size it carries (DynamoDB's lists it with none, 0),
// and the reason does not call it a legacy item.
func TestAMalformedListedItemIsLeftToALookup(t *testing.T) {
	f := newFixture(t, Options{})
	for _, size := range []int64{-1, 0, 3} {
		meta := store.Meta{Key: db, Size: size, Invalid: fault.E(fault.Integrity, "malformed item")}
		_, err := f.fs.LookupListed(ctx, meta)
		wantKind(t, "a malformed item listed", err, fault.NotFound)
		if err != nil && strings.Contains(err.Error(), "legacy") {
			t.Errorf("size %d: the reason calls a malformed item legacy: %v", size, err)
		}
	}
}

// A secret with writers here is looked up, not answered from the
// listing: its writers decide what the name points at.
func TestAListedSecretWithWritersHereIsLookedUp(t *testing.T) {
	f := newFixture(t, Options{})
	h, _ := f.create(db, shell, trunc)
	defer h.Discard()
	e, err := f.fs.LookupListed(ctx, store.Meta{Key: db, Version: 7})
	if err != nil || e.Created == nil {
		t.Fatalf("lookup of a listed secret being created here: %+v, %v", e, err)
	}
	e.Created.Unhold()
}

// Names are checked before anything is asked: a name over 255 bytes is
// too long, a '/' invalid.
func TestBadNamesAreRefusedBeforeTheStoreIsAsked(t *testing.T) {
	f := newFixture(t, Options{})
	_, err := f.fs.Lookup(ctx, store.Key{App: "app", Name: string(slices.Repeat([]byte("x"), 300))})
	wantKind(t, "lookup of 300 bytes", err, fault.NameTooLong)
	_, _, err = f.fs.Create(ctx, shell, store.Key{App: "app", Name: "a\x00b"}, syscall.O_CREAT|syscall.O_WRONLY)
	wantKind(t, "create with a NUL", err, fault.Invalid)
	if n := f.cat.Calls("Lookup") + f.cat.Calls("Verify"); n != 0 {
		t.Errorf("the store was asked %d times", n)
	}
}
