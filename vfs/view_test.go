package vfs

import (
	"context"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/store"
)

// Views: read-only files rendered from secrets, each rendering from one
// set of its inputs' revisions, as immutable as a secret's revision.

var (
	creds   = store.Key{App: "billing", Name: "db-credentials"}
	token   = store.Key{App: "billing", Name: "api-token"}
	dbUser  = store.Key{App: "billing", Name: "db-user"}
	appEnv  = store.Key{App: "billing", Name: "app.env"}
	allJSON = store.Key{App: "billing", Name: "all.json"}
	onlyV   = store.Key{App: "reports", Name: "billing-user"}
)

func mustCompile(t *testing.T, spec render.Spec) *render.View {
	t.Helper()
	v, err := render.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// viewFixture is a file system with the three views, and a view
// in an application that holds nothing else.
func viewFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	opts.Views = []*render.View{
		mustCompile(t, render.Spec{Path: dbUser.String(), Secret: creds.String(), Field: "username"}),
		mustCompile(t, render.Spec{Path: appEnv.String(), Template: "DB_USER={{ field \"billing/db-credentials\" \"username\" }}\n" +
			"DB_PASSWORD={{ field \"billing/db-credentials\" \"password\" | quote }}\nAPI_TOKEN={{ secret \"billing/api-token\" | quote }}\n"}),
		mustCompile(t, render.Spec{Path: allJSON.String(), App: "billing", Format: "json"}),
		mustCompile(t, render.Spec{Path: onlyV.String(), Secret: creds.String(), Field: "username"}),
	}
	f := newFixture(t, opts)
	f.cat.Store(creds, `{"username": "billing-svc", "password": "p@ss \"w0rd\""}`)
	f.cat.Store(token, "tok-123")
	return f
}

// viewOf looks the view k up and returns its rendering, prepared.
func (f *fixture) viewOf(k store.Key) *ViewRevision {
	f.t.Helper()
	e, err := f.fs.Lookup(ctx, k)
	if err != nil || e.View == nil {
		f.t.Fatalf("lookup %v: %+v, %v; want a view", k, e, err)
	}
	r := f.fs.NewViewRevision(e.View, func() {}, func() {})
	f.t.Cleanup(r.Unpin)
	if err := r.Prepare(ctx); err != nil {
		f.t.Fatalf("render %v: %v", k, err)
	}
	return r
}

// readAll reads the whole of a revision or a rendering, failing t if it
// cannot.
func readAll(t testing.TB, r interface {
	Read(ctx context.Context, dest []byte, off int64) (int, error)
	Key() store.Key
}) string {
	t.Helper()
	buf := make([]byte, 1<<16)
	n, err := r.Read(ctx, buf, 0)
	if err != nil {
		t.Fatalf("read %v: %v", r.Key(), err)
	}
	return string(buf[:n])
}

func TestAViewReadsItsRenderingByteExact(t *testing.T) {
	f := viewFixture(t, Options{})
	for k, want := range map[store.Key]string{
		dbUser:  "billing-svc",
		appEnv:  "DB_USER=billing-svc\nDB_PASSWORD=\"p@ss \\\"w0rd\\\"\"\nAPI_TOKEN=\"tok-123\"\n",
		allJSON: "{\n  \"API_TOKEN\": \"tok-123\",\n  \"DB_CREDENTIALS\": \"{\\\"username\\\": \\\"billing-svc\\\", \\\"password\\\": \\\"p@ss \\\\\\\"w0rd\\\\\\\"\\\"}\"\n}\n",
		onlyV:   "billing-svc",
	} {
		r := f.viewOf(k)
		if got := readAll(t, r); got != want {
			t.Errorf("%v reads %q, want %q", k, got, want)
		}
		if a := r.Attr(); a.Size != int64(len(want)) || a.Nlink != 1 || a.Perm != 0o400 || a.Dir {
			t.Errorf("%v: attributes %+v, want size %d, nlink 1, mode 0400 (the mount's 0600 without write bits)", k, a, len(want))
		}
		if got := readAll(t, r); got != want {
			t.Errorf("%v read again: %q", k, got)
		}
	}
}

// A view of an application with no secrets yet dates from the mount's
// start, as the directories do, not from 1970; one with inputs dates
// from its newest.
func TestAViewOfAnEmptyApplicationDatesFromTheMountsStart(t *testing.T) {
	empty := store.Key{App: "reports", Name: "all.json"}
	f := newFixture(t, Options{Views: []*render.View{mustCompile(t, render.Spec{Path: empty.String(), App: "reports", Format: "json"})}})
	if got, want := f.viewOf(empty).Attr().Modified, f.fs.started; !got.Equal(want) {
		t.Errorf("the view of an empty application is dated %v, want the mount's start %v", got, want)
	}
	f = viewFixture(t, Options{})
	stored, _ := f.cat.Stored(creds)
	if got, want := f.viewOf(dbUser).Attr().Modified, stored.Modified; !got.Equal(want) {
		t.Errorf("a field view is dated %v, want its input's %v", got, want)
	}
}

// Unchanged inputs make the same rendering: a lookup names it by the same
// digest (which the rendering gives, for the adapter's inode table), and reading it again decrypts nothing.
func TestUnchangedInputsCostNoDecryption(t *testing.T) {
	f := viewFixture(t, Options{})
	r := f.viewOf(appEnv)
	readAll(t, r)
	values := f.cat.Calls("Value")
	e, err := f.fs.Lookup(ctx, appEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer e.View.Release()
	if !r.Is(appEnv, e.View.Digest()) || r.Digest() != e.View.Digest() {
		t.Errorf("a lookup with unchanged inputs names another rendering")
	}
	readAll(t, r)
	if n := f.cat.Calls("Value") - values; n != 0 {
		t.Errorf("a lookup and a read with unchanged inputs decrypted %d values, want none", n)
	}
}

// A changed input makes a new rendering; a reader of the old one keeps
// its bytes, and is sent to look the name up again at its next open.
func TestAChangedInputMakesANewRenderingAndTheOldOneKeepsItsBytes(t *testing.T) {
	f := viewFixture(t, Options{})
	f.fs.Watch()
	old := f.viewOf(appEnv)
	before := readAll(t, old)
	f.cat.Store(token, "tok-456")
	f.cat.Change(token)
	if a := old.Attr(); a.Nlink != 0 {
		t.Errorf("the replaced rendering shows nlink %d, want 0", a.Nlink)
	}
	if _, err := old.Open(ctx, shell, syscall.O_RDONLY); !errorsIsLookUpAgain(err) {
		t.Errorf("an open of the replaced rendering: %v, want ErrLookUpAgain", err)
	}
	fresh := f.viewOf(appEnv)
	if fresh.Is(appEnv, old.digest) {
		t.Fatal("a changed input made the same rendering")
	}
	if got := readAll(t, fresh); !strings.Contains(got, `API_TOKEN="tok-456"`) {
		t.Errorf("the new rendering reads %q", got)
	}
	if got := readAll(t, old); got != before {
		t.Errorf("the old rendering now reads %q, want %q", got, before)
	}
	if _, err := fresh.Open(ctx, shell, syscall.O_RDONLY); err != nil {
		t.Errorf("an open of the current rendering: %v", err)
	}
}

func errorsIsLookUpAgain(err error) bool {
	return err != nil && strings.Contains(err.Error(), ErrLookUpAgain.Error())
}

// Whatever makes a view unrenderable, the lookup fails with an error of
// kind Other (EIO) that names the view and the cause, never a value.
func TestAViewThatCannotBeRenderedIsEIONamingItAndTheCause(t *testing.T) {
	for _, c := range []struct {
		name, value, want string
		remove            bool
	}{
		{"input missing", "", "billing/db-credentials: the input is missing", true},
		{"not JSON", "SECRET-not-json", "not JSON", false},
		{"field absent", `{"user": "SECRET-u"}`, `the field "username" is missing`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := viewFixture(t, Options{})
			if c.remove {
				f.cat.Remove(creds)
			} else {
				f.cat.Store(creds, c.value)
			}
			_, err := f.fs.Lookup(ctx, dbUser)
			if err == nil {
				e, _ := f.fs.Lookup(ctx, dbUser)
				r := f.fs.NewViewRevision(e.View, func() {}, func() {})
				defer r.Unpin()
				err = r.Prepare(ctx)
			}
			if err == nil || fault.KindOf(err) != fault.Other || !strings.Contains(err.Error(), "billing/db-user") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v (kind %v), want EIO naming billing/db-user and %q", err, fault.KindOf(err), c.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("the error holds a value: %v", err)
			}
		})
	}
}

// A view is read-only: a write, a truncation, a removal or a move of it
// is EROFS; a secret created at its path, or moved there, is EEXIST.
func TestEveryChangeOfAViewIsRefused(t *testing.T) {
	f := viewFixture(t, Options{})
	r := f.viewOf(dbUser)
	_, err := r.Open(ctx, shell, wronly)
	wantKind(t, "open for writing", err, fault.ReadOnly)
	wantKind(t, "truncate", f.fs.Setattr(ctx, shell, dbUser, nil, sizeTo(0)), fault.ReadOnly)
	wantKind(t, "unlink", f.fs.Unlink(ctx, shell, dbUser), fault.ReadOnly)
	wantKind(t, "rename from", f.fs.Rename(ctx, shell, dbUser, db, 0), fault.ReadOnly)
	_, _, err = f.fs.Create(ctx, shell, dbUser, syscall.O_CREAT|wronly)
	wantKind(t, "create", err, fault.Exist)
	f.cat.Store(db, "v")
	wantKind(t, "rename onto", f.fs.Rename(ctx, shell, db, dbUser, 0), fault.Exist)
	mode := uint32(0o644)
	wantKind(t, "chmod", f.fs.Setattr(ctx, shell, dbUser, nil, Change{Mode: &mode}), fault.NotPermitted)
	f.mustNot("touch (times only)", f.fs.Setattr(ctx, shell, dbUser, nil, Change{}))
	if got := readAll(t, f.viewOf(dbUser)); got != "billing-svc" {
		t.Errorf("after the refusals the view reads %q", got)
	}
	if v, _ := f.cat.Stored(dbUser); v.Version != 0 || f.puts() != 0 {
		t.Errorf("something was stored at the view's path: %+v, %d puts", v, f.puts())
	}
}

// Views appear in the listing of their application, in name order among
// its secrets, hiding a secret stored at a view's path; an application
// that holds only views exists and cannot be removed.
func TestViewsAreListedAndMakeTheirApplicationExist(t *testing.T) {
	f := viewFixture(t, Options{})
	f.cat.Store(appEnv, "HIDDEN") // stored elsewhere after the mount checked
	var names []string
	l := f.fs.List("billing")
	for {
		m, ok, err := l.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		names = append(names, m.Name)
		if f.fs.IsView(m.Key) {
			if _, err := f.fs.LookupListed(ctx, m); !fault.Is(fault.NotFound, err) {
				t.Errorf("LookupListed of the view %v: %v, want it left to a lookup", m.Key, err)
			}
		}
	}
	if got := strings.Join(names, " "); got != "all.json api-token app.env db-credentials db-user" {
		t.Errorf("billing lists %q", got)
	}
	if got := readAll(t, f.viewOf(appEnv)); strings.Contains(got, "HIDDEN") || !strings.HasPrefix(got, "DB_USER=") {
		t.Errorf("the view hiding a stored secret reads %q", got)
	}
	if got := readAll(t, f.viewOf(allJSON)); strings.Contains(got, "HIDDEN") || strings.Contains(got, "APP_ENV") {
		t.Errorf("the application's view shows the secret a view hides: %q", got)
	}
	f.mustNot("lookup of an application of views alone", f.fs.LookupApp(ctx, "reports"))
	apps, err := f.fs.Apps(ctx)
	if err != nil || strings.Join(apps, " ") != "billing reports" {
		t.Errorf("the root lists %v, %v", apps, err)
	}
	wantKind(t, "rmdir of an application of views", f.fs.Rmdir(ctx, "reports"), fault.NotEmpty)
	wantKind(t, "mkdir of an application of views", f.fs.Mkdir(ctx, "reports"), fault.Exist)
}

// A secret stored at a view's path after the mount checked is logged,
// once, by the first listing that finds it hidden, naming the view and
// never the value.
func TestASecretAViewHidesIsLoggedOnceWhenListed(t *testing.T) {
	f := viewFixture(t, Options{})
	list := func() {
		for l := f.fs.List("billing"); ; {
			_, ok, err := l.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return
			}
		}
	}
	const hides = "the store holds a secret at a view's path"
	count := func() (n int) {
		for _, e := range f.log.AllEntries() {
			if strings.HasPrefix(e.Message, hides) {
				n++
				if e.Level != logrus.WarnLevel || e.Data["view"] != appEnv.String() {
					t.Errorf("the line %q at %v names %v, want a warning naming %v", e.Message, e.Level, e.Data, appEnv)
				}
			}
			if line, _ := e.String(); strings.Contains(line, "HIDDEN") {
				t.Errorf("a log line holds the hidden value: %s", line)
			}
		}
		return n
	}
	list()
	if n := count(); n != 0 {
		t.Fatalf("%d lines about a hidden secret before one was stored", n)
	}
	f.cat.Store(appEnv, "HIDDEN")
	list()
	list()
	if n := count(); n != 1 {
		t.Errorf("%d lines about the hidden secret after two listings, want 1", n)
	}
}

// A change of an input, learnt from the store or made through the mount,
// is a change of every view that reads it.
func TestAChangeOfAnInputIsAChangeOfEveryViewThatReadsIt(t *testing.T) {
	f := viewFixture(t, Options{})
	f.fs.Watch()
	f.cat.Change(token)
	if got := keys(f.told(Changed)); got != "billing/all.json billing/api-token billing/app.env" {
		t.Errorf("a change of billing/api-token told %q", got)
	}
	f.forget()
	h := f.open(creds, shell, trunc)
	f.write(h, shell, `{"username": "u2"}`, 0)
	f.mustNot("close", h.Flush(ctx, shell))
	if got := keys(f.told(Changed)); got != "billing/all.json billing/app.env billing/db-user reports/billing-user" {
		t.Errorf("a commit of billing/db-credentials told %q changed", got)
	}
	f.forget()
	f.cat.Store(store.Key{App: "billing", Name: "new"}, "n") // appeared elsewhere: only the application view reads it
	f.cat.Change(store.Key{App: "billing", Name: "new"})
	if got := keys(f.told(Changed)); got != "billing/all.json billing/new" {
		t.Errorf("a new secret told %q", got)
	}
}

// keys names ks, sorted.
func keys(ks []store.Key) string {
	var s []string
	for _, k := range ks {
		s = append(s, k.String())
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// readUntilIdle reads the rendering of appEnv in a file system whose
// idle bound is short, and waits until the adapter is told it was wiped:
// it returns the file system, the rendering and what it read.
func readUntilIdle(t *testing.T) (*fixture, *ViewRevision, string) {
	t.Helper()
	f := viewFixture(t, Options{Idle: 50 * time.Millisecond})
	e, err := f.fs.Lookup(ctx, appEnv)
	if err != nil {
		t.Fatal(err)
	}
	wiped := make(chan struct{}, 4)
	r := f.fs.NewViewRevision(e.View, func() {}, func() { wiped <- struct{}{} })
	t.Cleanup(r.Unpin)
	read := readAll(t, r)
	select {
	case <-wiped:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle rendering was not wiped")
	}
	return f, r, read
}

// A rendering nobody reads for Options.Idle is wiped, and the adapter
// told; read again, it is rendered again from the same revisions, even
// once the store holds others: the same bytes. Close wipes them all.
func TestARenderingIsWipedWhenIdleAndRenderedAgainTheSame(t *testing.T) {
	f, r, want := readUntilIdle(t)
	r.mu.Lock()
	held := r.value != nil
	r.mu.Unlock()
	if held {
		t.Fatal("told of a wipe, but the rendering is still held")
	}
	f.cat.Store(token, "tok-other")
	if got := readAll(t, r); got != want {
		t.Errorf("rendered again: %q, want %q", got, want)
	}
	f.fs.Close()
	r.mu.Lock()
	held = r.value != nil
	r.mu.Unlock()
	if held {
		t.Error("Close left a rendering held")
	}
}

// Owners and modes come from the first rule a path matches, else from
// the mount options; chmod and chown only to what they are.
func TestOwnersAndModesComeFromTheFirstMatchingRule(t *testing.T) {
	u := func(v uint32) *uint32 { return &v }
	rules := []struct {
		match string
		o     Owner
	}{
		{"billing", Owner{UID: u(1001), GID: u(1001), Mode: u(0o500)}},
		{"billing/tls.key", Owner{UID: u(0), Mode: u(0o440)}},
		{"billing/*", Owner{UID: u(1001), GID: u(1001), Mode: u(0o400)}},
	}
	f := viewFixture(t, Options{UID: 7, GID: 8, FileMode: 0o640, DirMode: 0o750, OwnerOf: func(p string) Owner {
		for _, r := range rules {
			if ok, _ := path.Match(r.match, p); ok {
				return r.o
			}
		}
		return Owner{}
	}})
	f.cat.Store(store.Key{App: "billing", Name: "tls.key"}, "k")
	f.cat.Store(store.Key{App: "auth", Name: "pw"}, "p")
	check := func(what string, a Attr, uid, gid, perm uint32) {
		t.Helper()
		if a.UID != uid || a.GID != gid || a.Perm != perm {
			t.Errorf("%s: %d:%d %#o, want %d:%d %#o", what, a.UID, a.GID, a.Perm, uid, gid, perm)
		}
	}
	check("the root", f.fs.DirAttr(""), 7, 8, 0o750)
	check("billing", f.fs.DirAttr("billing"), 1001, 1001, 0o500)
	check("auth", f.fs.DirAttr("auth"), 7, 8, 0o750)
	check("billing/api-token", f.revision(token).Attr(), 1001, 1001, 0o400)
	check("billing/tls.key", f.revision(store.Key{App: "billing", Name: "tls.key"}).Attr(), 0, 8, 0o440)
	check("auth/pw", f.revision(store.Key{App: "auth", Name: "pw"}).Attr(), 7, 8, 0o640)
	check("the view billing/db-user", f.viewOf(dbUser).Attr(), 1001, 1001, 0o400)
	check("the view billing/db-user on the mount's mode 0640", viewFixture(t, Options{UID: 7, GID: 8, FileMode: 0o640}).viewOf(dbUser).Attr(), 7, 8, 0o440)
	h, e := f.create(store.Key{App: "billing", Name: "new"}, other, wronly) // uid 1001, billing's
	check("a secret created in billing", e.Created.Attr(), 1001, 1001, 0o400)
	check("its descriptor", h.Attr(), 1001, 1001, 0o400)
	f.write(h, other, "x", 0)
	f.mustNot("close", h.Flush(ctx, other))
	check("it, committed", f.revision(store.Key{App: "billing", Name: "new"}).Attr(), 1001, 1001, 0o400)

	same, other, owner := uint32(0o400), uint32(0o600), uint32(1001)
	f.mustNot("chmod to its mode", f.fs.Setattr(ctx, shell, token, nil, Change{Mode: &same, UID: &owner}))
	wantKind(t, "chmod to another mode", f.fs.Setattr(ctx, shell, token, nil, Change{Mode: &other}), fault.NotPermitted)
	wantKind(t, "chown to the mount's owner", f.fs.Setattr(ctx, shell, token, nil, Change{UID: u(7)}), fault.NotPermitted)
	f.mustNot("chmod of billing to its mode", f.fs.SetattrDir("billing", Change{Mode: u(0o500)}))
	wantKind(t, "chmod of billing to the mount's mode", f.fs.SetattrDir("billing", Change{Mode: u(0o750)}), fault.NotPermitted)
}

// A read-only mount refuses every change itself, times too: the mount's
// own change signals reach the file system through a writable clone of
// the mount, so the kernel's refusal is not the only one.
func TestAReadOnlyMountRefusesEveryChangeItself(t *testing.T) {
	f := viewFixture(t, Options{ReadOnly: true})
	wantKind(t, "touch", f.fs.Setattr(ctx, shell, token, nil, Change{}), fault.ReadOnly)
	wantKind(t, "touch of the application", f.fs.SetattrDir("billing", Change{}), fault.ReadOnly)
	wantKind(t, "touch of the root", f.fs.SetattrDir("", Change{}), fault.ReadOnly)
	wantKind(t, "truncate", f.fs.Setattr(ctx, shell, token, nil, sizeTo(0)), fault.ReadOnly)
	wantKind(t, "a write the kernel opened for", f.fs.WriteWithoutOpen(token), fault.ReadOnly)
	wantKind(t, "ln", f.fs.NotOffered(token.Path(), "hard links"), fault.ReadOnly)
	_, err := f.revision(token).Open(ctx, shell, wronly)
	wantKind(t, "open for writing", err, fault.ReadOnly)
	wantKind(t, "ln on a read-write mount", viewFixture(t, Options{}).fs.NotOffered(token.Path(), "hard links"), fault.NotSupported)
}

// The mount's own change signal (an open for writing, a truncation to the
// same size, a close, from the mount's own thread) changes nothing,
// commits nothing, audits nothing and tells nothing, on a read-only mount
// and on a view too.
func TestTheMountsOwnChangeSignalChangesNothing(t *testing.T) {
	f := viewFixture(t, Options{ReadOnly: true})
	own := Caller{Thread: 99, Process: 99, Own: true}
	before, _ := f.cat.Stored(token)
	for _, open := range []func() (*Handle, error){
		func() (*Handle, error) { return f.revision(token).Open(ctx, own, wronly) },
		func() (*Handle, error) { return f.viewOf(appEnv).Open(ctx, own, wronly) },
	} {
		h, err := open()
		if err != nil || h == nil {
			t.Fatalf("the signal's open: %v, %v", h, err)
		}
		size := int64(7)
		f.mustNot("the signal's truncation", f.fs.Setattr(ctx, own, h.Meta().Key, h, sizeTo(size)))
		f.mustNot("the signal's truncation by path", f.fs.Setattr(ctx, own, h.Meta().Key, nil, sizeTo(size)))
		f.mustNot("the signal's close", h.Flush(ctx, own))
		f.mustNot("the signal's release", h.Release(ctx))
		if _, err := h.Write(own, []byte("x"), 0); err == nil {
			t.Error("the signal's descriptor took a write")
		}
	}
	if after, _ := f.cat.Stored(token); !after.Revision().Equal(before.Revision()) || f.puts() != 0 {
		t.Errorf("the signal changed the store: %+v, %d puts", after, f.puts())
	}
	for _, a := range f.recorded() {
		if a.UID == 0 && a.PID == 99 {
			t.Errorf("the signal was audited: %+v", a)
		}
	}
	if told := f.told(Changed); len(told) != 0 {
		t.Errorf("the signal told %v", told)
	}
	if got := f.fs.Setattr(ctx, shell, token, nil, sizeTo(7)); !fault.Is(fault.ReadOnly, got) {
		t.Errorf("the same truncation by a user: %v, want EROFS", got)
	}
}

// A revision renamed in place (the inode the kernel moved to the new
// name) reads on, the same bytes, from the new name's revision, and is
// that revision.
func TestARevisionRekeyedByARenameReadsOn(t *testing.T) {
	f := newFixture(t, Options{})
	r := f.storedAndRead(db, "the value")
	was := r.Meta().Revision()
	f.mustNot("rename", f.fs.Rename(ctx, shell, db, db2, 0))
	renamed := f.last(Renamed)
	if renamed.Key != db2 || renamed.From != db || !renamed.Was.Equal(was) || renamed.Now.Key != db2 {
		t.Fatalf("the rename told %+v", renamed)
	}
	r.Rekey(renamed.Key, renamed.Now)
	if !r.Is(db2, renamed.Now.Revision()) || r.Key() != db2 {
		t.Errorf("the re-keyed revision is %v %+v", r.Key(), r.Meta())
	}
	if got := readAll(t, r); got != "the value" {
		t.Errorf("read after the rename: %q", got)
	}
	if a := r.Attr(); a.Nlink != 1 || a.Size != 9 {
		t.Errorf("attributes after the rename: %+v", a)
	}
}

// A Read in flight when a rename re-keys its revision reads the bytes it
// began with, although the revision it began with is gone from the store
// by then: the snapshot a Read uses is released only once it ends.
func TestAReadInFlightWhenARenameRekeysItsRevisionReadsOn(t *testing.T) {
	f := newFixture(t, Options{})
	r := f.storedAndRead(db, "the value")
	binding, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.cat.BeforeBind(func(store.Key) {
		once.Do(func() {
			close(binding)
			<-proceed
		})
	})
	type result struct {
		got string
		err error
	}
	read := make(chan result, 1)
	go func() {
		b := make([]byte, 64)
		n, err := r.Read(ctx, b, 0)
		read <- result{string(b[:n]), err}
	}()
	<-binding // the Read holds its snapshot, of db's revision
	f.cat.BeforeBind(nil)
	f.mustNot("rename", f.fs.Rename(ctx, shell, db, db2, 0))
	renamed := f.last(Renamed)
	r.Rekey(renamed.Key, renamed.Now)
	close(proceed)
	if res := <-read; res.err != nil || res.got != "the value" {
		t.Errorf("the read in flight during the rename: %q, %v", res.got, res.err)
	}
	if got := readAll(t, r); got != "the value" {
		t.Errorf("a read after it: %q", got)
	}
	r.Unpin()
	if pins := f.cat.Pins(); pins != 0 {
		t.Errorf("%d pins left after the last read and the unpin", pins)
	}
}

// storedAndRead stores value at k and returns its revision, read once.
func (f *fixture) storedAndRead(k store.Key, value string) *Revision {
	f.t.Helper()
	f.cat.Store(k, value)
	r := f.revision(k)
	if got := readAll(f.t, r); got != value {
		f.t.Fatalf("%v reads %q, want %q", k, got, value)
	}
	return r
}

// forget drops the events told so far.
func (f *fixture) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = nil
}

// last returns the last event of kind told.
func (f *fixture) last(kind EventKind) Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out Event
	for _, e := range f.events {
		if e.Kind == kind {
			out = e
		}
	}
	return out
}

// A rotation of an input tells of the views whose bytes changed, and of
// no other: a view whose new rendering is byte-identical keeps its
// rendering (the same file, its bytes and the kernel's pages) and tells
// nothing, whether the change was learnt from the store or found by a
// lookup first.
func TestARotationTellsOnlyOfTheViewsWhoseBytesChanged(t *testing.T) {
	f := viewFixture(t, Options{})
	f.fs.Watch()
	user, other := f.viewOf(dbUser), f.viewOf(onlyV)
	env := f.viewOf(appEnv)
	readAll(t, user)
	readAll(t, env)
	f.forget()
	f.cat.Store(creds, `{"username": "billing-svc", "password": "rotated"}`)
	f.cat.Change(creds)
	if got := keys(f.told(Changed)); got != "billing/all.json billing/app.env billing/db-credentials" {
		t.Errorf("a rotation of the password told %q", got)
	}
	for _, r := range []*ViewRevision{user, other} {
		if a := r.Attr(); a.Nlink != 1 {
			t.Errorf("%v, unchanged, shows nlink %d, want 1", r.Key(), a.Nlink)
		}
		if _, err := r.Open(ctx, shell, syscall.O_RDONLY); err != nil {
			t.Errorf("an open of %v, unchanged: %v", r.Key(), err)
		}
		e, err := f.fs.Lookup(ctx, r.Key())
		if err != nil {
			t.Fatal(err)
		}
		if !r.Is(r.Key(), e.View.Digest()) {
			t.Errorf("a lookup of %v, unchanged, names another rendering", r.Key())
		}
		e.View.Release()
	}
	if a := env.Attr(); a.Nlink != 0 {
		t.Errorf("app.env, changed, shows nlink %d, want 0", a.Nlink)
	}

	// Found by a lookup of the view before the catalog tells of it.
	f.forget()
	f.cat.Store(creds, `{"username": "billing-svc", "password": "rotated again"}`)
	e, err := f.fs.Lookup(ctx, dbUser)
	if err != nil {
		t.Fatal(err)
	}
	if !user.Is(dbUser, e.View.Digest()) {
		t.Error("a lookup after a rotation that left the view's bytes alone names another rendering")
	}
	e.View.Release()
	f.cat.Change(creds)
	if got := keys(f.told(Changed)); got != "billing/all.json billing/app.env billing/db-credentials" {
		t.Errorf("a rotation found by a lookup first told %q", got)
	}
	if got := readAll(t, user); got != "billing-svc" {
		t.Errorf("the kept rendering reads %q", got)
	}

	// A change of the field is a change of the view, found either way.
	f.forget()
	f.cat.Store(creds, `{"username": "u2", "password": "p"}`)
	f.cat.Change(creds)
	if got := keys(f.told(Changed)); got != "billing/all.json billing/app.env billing/db-credentials billing/db-user reports/billing-user" {
		t.Errorf("a change of the username told %q", got)
	}
	if a := user.Attr(); a.Nlink != 0 {
		t.Errorf("db-user, changed, shows nlink %d, want 0", a.Nlink)
	}
	f.forget()
	f.cat.Store(creds, `{"username": "u3", "password": "p"}`)
	fresh := f.viewOf(dbUser)
	f.cat.Change(creds)
	if got := keys(f.told(Changed)); !strings.Contains(got, "billing/db-user") {
		t.Errorf("a change of the username found by a lookup first told %q", got)
	}
	if got := readAll(t, fresh); got != "u3" {
		t.Errorf("the new rendering reads %q", got)
	}
}

// A secret stored at a view's path (elsewhere, after the mount checked)
// is hidden by the view: it is no member of its application's view, and
// a change of it tells nothing, of it or of any view.
func TestASecretAViewHidesIsInNoViewAndItsChangesTellNothing(t *testing.T) {
	f := viewFixture(t, Options{})
	f.fs.Watch()
	before := readAll(t, f.viewOf(allJSON))
	readAll(t, f.viewOf(appEnv))
	f.cat.Store(appEnv, "HIDDEN")
	f.cat.Change(appEnv)
	if told := f.told(Changed); len(told) != 0 {
		t.Errorf("a change of a secret a view hides told %q", keys(told))
	}
	if got := readAll(t, f.viewOf(allJSON)); got != before {
		t.Errorf("the application's view shows the secret a view hides: %q, was %q", got, before)
	}
}

// viewMAC tells renderings apart by their bytes alone: equal bytes, equal
// hashes; zero padding, a block boundary or another mount's key, another.
func TestViewMACTellsRenderingsApartByTheirBytes(t *testing.T) {
	f, g := viewFixture(t, Options{}), viewFixture(t, Options{})
	block := strings.Repeat("x", 64)
	if !slices.Equal(f.fs.viewMAC([]byte(block+"a")), f.fs.viewMAC([]byte(block+"a"))) {
		t.Error("equal bytes, different hashes")
	}
	for _, pair := range [][2]string{{"a", "a\x00"}, {"", "\x00"}, {block, block + strings.Repeat("\x00", 64)}, {block, block[:63]}} {
		if slices.Equal(f.fs.viewMAC([]byte(pair[0])), f.fs.viewMAC([]byte(pair[1]))) {
			t.Errorf("%q and %q have one hash", pair[0], pair[1])
		}
	}
	if slices.Equal(f.fs.viewMAC([]byte("a")), g.fs.viewMAC([]byte("a"))) {
		t.Error("two file systems hash under one key")
	}
}

// A view nobody has read since the mount began has no bytes to compare a
// change with: it is told of as changed, and nothing is rendered or
// decrypted for it.
func TestAChangeOfAnInputOfAViewNeverReadDecryptsNothing(t *testing.T) {
	f := viewFixture(t, Options{})
	f.fs.Watch()
	values := f.cat.Calls("Value")
	f.cat.Store(token, "tok-456")
	f.cat.Change(token)
	if got := keys(f.told(Changed)); got != "billing/all.json billing/api-token billing/app.env" {
		t.Errorf("a change of billing/api-token told %q", got)
	}
	if n := f.cat.Calls("Value") - values; n != 0 {
		t.Errorf("a change of an input of views never read decrypted %d values, want none", n)
	}
	if got := readAll(t, f.viewOf(appEnv)); !strings.Contains(got, `API_TOKEN="tok-456"`) {
		t.Errorf("app.env reads %q", got)
	}
}

// A rendering is rendered again after an idle wipe from the same pinned
// revisions. If that gives other bytes than the reader had (an input
// that decrypts differently, a rendering that is not a function of its
// inputs), even of the same length, the read is EIO naming the view, with
// no value in the error: a reader never sees two renderings mixed.
func TestARenderingReadAgainAfterAnIdleWipeIsTheSameBytes(t *testing.T) {
	f, r, first := readUntilIdle(t)
	const tampered = "tok-999" // as long as "tok-123": only the bytes tell
	f.cat.Tamper(token, tampered)
	buf := make([]byte, 1<<16)
	n, err := r.Read(ctx, buf, 0)
	if err == nil {
		if got := string(buf[:n]); got != first {
			t.Fatalf("read again after the idle wipe: %q, first read %q", got, first)
		}
		t.Fatal("read again from an input that now gives other bytes: no error")
	}
	if testErrno(err) != syscall.EIO || !strings.Contains(err.Error(), appEnv.String()) {
		t.Fatalf("read again: %v (errno %v), want EIO naming %v", err, testErrno(err), appEnv)
	}
	for _, s := range []string{tampered, "tok-123", "billing-svc", "p@ss"} {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("the error %q holds a value, %q", err, s)
		}
	}
}

// A secret removed between the listing of an application and the lookup
// of it is not a member of the application's view: the view renders
// from what exists, as a listing made a moment later would show it.
func TestAnAppViewSkipsAMemberRemovedBetweenItsListingAndItsLookup(t *testing.T) {
	f := viewFixture(t, Options{})
	f.cat.BeforeLookup(func(k store.Key) {
		if k == token {
			f.cat.Remove(token)
		}
	})
	defer f.cat.BeforeLookup(nil)
	r := f.viewOf(allJSON)
	got := readAll(t, r)
	if strings.Contains(got, "API_TOKEN") || !strings.Contains(got, "DB_CREDENTIALS") {
		t.Fatalf("the view reads %q, want the application without the removed api-token", got)
	}
}

// chmod of a view to the mode it shows (its rule's or the mount's,
// without write bits) is accepted, as for any file, and to the mode with
// the write bits it never shows is refused: `cp -p`, `install -m` and
// chmod to what `ls -l` shows work.
func TestChmodOfAViewToTheModeItShowsIsAccepted(t *testing.T) {
	f := viewFixture(t, Options{FileMode: 0o600})
	shown := f.viewOf(dbUser).Attr().Perm
	if shown != 0o400 {
		t.Fatalf("the view shows mode %o, want 0400 (the mount's 0600 without write bits)", shown)
	}
	f.mustNot("chmod of the view to the mode it shows", f.fs.Setattr(ctx, shell, dbUser, nil, Change{Mode: &shown}))
	withWrite := uint32(0o600)
	wantKind(t, "chmod of the view to the mount's mode, which it never shows", f.fs.Setattr(ctx, shell, dbUser, nil, Change{Mode: &withWrite}), fault.NotPermitted)
}
