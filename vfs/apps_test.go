package vfs

import (
	"slices"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// With --apps, an application the list leaves out is never shown, made,
// filled, emptied or moved into or out of: its lookup is "no such
// application", every change naming it at the root is EACCES
// (fault.NotPermitted), and the store is left as it was. Without --apps,
// mkdir of an application the store holds is EEXIST.
func TestWithAppsANameOutsideTheListIsRefusedAtTheRoot(t *testing.T) {
	f := newFixture(t, Options{Apps: []string{"billing"}})
	auth := store.Key{App: "auth", Name: "secret"}
	bill := store.Key{App: "billing", Name: "secret"}
	f.cat.Store(auth, "auth's")
	f.cat.Store(bill, "billing's")

	wantKind(t, "lookup of auth", f.fs.LookupApp(ctx, "auth"), fault.NotFound)
	wantKind(t, "mkdir of auth, which the store holds", f.fs.Mkdir(ctx, "auth"), fault.NotPermitted)
	wantKind(t, "mkdir of a new application", f.fs.Mkdir(ctx, "newapp"), fault.NotPermitted)
	wantKind(t, "mkdir of billing", f.fs.Mkdir(ctx, "billing"), fault.Exist)
	wantKind(t, "lookup of auth after its mkdir", f.fs.LookupApp(ctx, "auth"), fault.NotFound)
	wantKind(t, "lookup of newapp after its mkdir", f.fs.LookupApp(ctx, "newapp"), fault.NotFound)
	wantKind(t, "rmdir of auth", f.fs.Rmdir(ctx, "auth"), fault.NotPermitted)
	wantKind(t, "a file named auth at the root", f.fs.CreateInRoot("auth"), fault.NotPermitted)
	wantKind(t, "rename of billing onto auth", f.fs.RenameApp("billing", "auth", 0), fault.NotPermitted)
	wantKind(t, "rename of auth onto billing", f.fs.RenameApp("auth", "billing", 0), fault.NotPermitted)
	wantKind(t, "rename of billing into an application", f.fs.RenameApp("billing", "", 0), fault.CrossDevice)

	_, err := f.fs.Lookup(ctx, auth)
	wantKind(t, "lookup of auth's secret", err, fault.NotFound)
	_, _, err = f.fs.Create(ctx, shell, store.Key{App: "newapp", Name: "s"}, syscall.O_CREAT|syscall.O_WRONLY)
	wantKind(t, "create in newapp", err, fault.NotPermitted)
	_, _, err = f.fs.Create(ctx, shell, auth, syscall.O_WRONLY|syscall.O_TRUNC)
	wantKind(t, "open of auth's secret for writing", err, fault.NotPermitted)
	wantKind(t, "unlink of auth's secret", f.fs.Unlink(ctx, other, auth), fault.NotPermitted)
	wantKind(t, "rename out of auth", f.fs.Rename(ctx, other, auth, store.Key{App: "billing", Name: "stolen"}, 0), fault.NotPermitted)
	wantKind(t, "rename into auth", f.fs.Rename(ctx, other, bill, store.Key{App: "auth", Name: "secret"}, 0), fault.NotPermitted)
	l := f.fs.List("auth")
	if meta, ok, err := l.Next(ctx); ok || err != nil {
		t.Errorf("a listing of auth gave %v, %v, %v", meta.Key, ok, err)
	}
	f.mustNot("seek", l.Seek(ctx, 0))
	if meta, ok, err := l.Next(ctx); ok || err != nil {
		t.Errorf("a rewound listing of auth gave %v, %v, %v", meta.Key, ok, err)
	}

	if apps, err := f.fs.Apps(ctx); err != nil || !slices.Equal(apps, []string{"billing"}) {
		t.Errorf("the root lists %v, %v; want billing alone", apps, err)
	}
	if f.value(auth) != "auth's" || f.value(bill) != "billing's" || f.puts() != 0 || f.cat.Calls("Delete") != 0 || f.cat.Calls("List") != 0 {
		t.Errorf("the store holds %q and %q after %d puts, %d deletes, %d listings", f.value(auth), f.value(bill),
			f.puts(), f.cat.Calls("Delete"), f.cat.Calls("List"))
	}

	all := newFixture(t, Options{})
	all.cat.Store(auth, "auth's")
	wantKind(t, "mkdir of auth without --apps", all.fs.Mkdir(ctx, "auth"), fault.Exist)
}
