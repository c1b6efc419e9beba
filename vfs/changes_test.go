package vfs

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// A stop refuses every change from then on, before it reaches the store,
// and tells when the changes in flight have ended: a commit the store is
// still answering is let finish, and is audited, before that.
func TestAStopRefusesNewChangesAndWaitsForThoseInFlight(t *testing.T) {
	f := newFixture(t, Options{Changes: &Changes{}})
	f.cat.Store(db, "old")
	f.cat.Store(db2, "other")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "new", 0)
	inPut, release := make(chan struct{}), make(chan struct{})
	f.cat.BeforePut(func(store.Key) {
		close(inPut)
		<-release
	})
	closed := make(chan error)
	go func() { closed <- h.Flush(ctx, shell) }()
	<-inPut

	idle := f.fs.opts.Changes.Stop()
	select {
	case <-idle:
		t.Fatal("the stop says nothing is in flight while a commit is")
	default:
	}
	err := f.fs.Unlink(ctx, other, db2)
	wantKind(t, "an unlink after the stop", err, fault.Unavailable)
	if got := f.value(db2); got != "other" {
		t.Errorf("the refused unlink changed db2: %q", got)
	}
	wantKind(t, "a truncation by path after the stop", f.fs.Setattr(ctx, other, db2, nil, sizeTo(1)), fault.Unavailable)
	wantKind(t, "a rename after the stop", f.fs.Rename(ctx, other, db2, store.Key{App: "app", Name: "db3"}, 0), fault.Unavailable)

	f.cat.BeforePut(nil)
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("the commit in flight at the stop: %v", err)
	}
	<-idle
	if got := f.value(db); got != "new" {
		t.Errorf("the commit in flight landed %q, want new", got)
	}
	if got := commitsBy(f.recorded()); len(got) != 2 || got[0] != other.Thread || got[1] != shell.Thread {
		t.Errorf("commits audited by threads %v, want the refused truncation's (%d), then the one in flight (%d)", got, other.Thread, shell.Thread)
	}
	h.Release(ctx)
}

// A nil *Changes (a file system without Options.Changes) refuses nothing.
func TestWithoutChangesNothingIsRefused(t *testing.T) {
	var c *Changes
	end, err := c.begin("app/db")
	if err != nil {
		t.Fatal(err)
	}
	end()
}

// A commit refused by a stop fails its file as any failed commit does:
// recorded once (the audit log, Options.Committed), reported by every
// later fsync and close, and never tried at the release.
func TestACommitRefusedByAStopIsRecordedOnce(t *testing.T) {
	f := newFixture(t, Options{Changes: &Changes{}})
	f.cat.Store(db, "old")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "new", 0)
	f.fs.opts.Changes.Stop()
	wantKind(t, "the close after the stop", h.Flush(ctx, shell), fault.Unavailable)
	if err := h.Fsync(ctx, shell); err == nil {
		t.Error("an fsync after the refused commit succeeded")
	}
	if err := h.Release(ctx); err != nil {
		t.Errorf("the release tried the refused commit again: %v", err)
	}
	if got := commitsBy(f.recorded()); len(got) != 1 {
		t.Errorf("%d commits audited, want the one refused", len(got))
	}
	if len(f.outcomes) != 1 || f.outcomes[0] == nil {
		t.Errorf("Options.Committed heard %v, want one failure", f.outcomes)
	}
	if got := f.value(db); got != "old" || f.puts() != 0 {
		t.Errorf("after the refusal: %q after %d puts", got, f.puts())
	}
}

// A stop refuses only what would have changed the store: an unlink or a
// rename refused for another reason (a view, flags it cannot honour, a
// read-only mount) says that reason during a stop too, and is audited.
func TestAStopRefusesOnlyWhatWouldHaveChangedTheStore(t *testing.T) {
	f := viewFixture(t, Options{Changes: &Changes{}})
	<-f.fs.opts.Changes.Stop() // nothing in flight
	wantKind(t, "an unlink of a view during a stop", f.fs.Unlink(ctx, other, dbUser), fault.ReadOnly)
	wantKind(t, "a rename of a view during a stop", f.fs.Rename(ctx, other, dbUser, store.Key{App: "billing", Name: "x"}, 0), fault.ReadOnly)
	wantKind(t, "a rename onto a view during a stop", f.fs.Rename(ctx, other, token, dbUser, 0), fault.Exist)
	wantKind(t, "RENAME_EXCHANGE during a stop", f.fs.Rename(ctx, other, token, creds, unix.RENAME_EXCHANGE), fault.NotSupported)
	wantKind(t, "an unlink of a secret during a stop", f.fs.Unlink(ctx, other, token), fault.Unavailable)
	if got := f.value(token); got != "tok-123" {
		t.Errorf("the refused unlink changed %v: %q", token, got)
	}
	if got := len(f.recorded()); got != 5 {
		t.Errorf("%d audit records, want one for each of the 5 refusals", got)
	}

	ro := newFixture(t, Options{Changes: &Changes{}, ReadOnly: true})
	ro.cat.Store(db, "v")
	<-ro.fs.opts.Changes.Stop()
	wantKind(t, "an unlink on a read-only mount during a stop", ro.fs.Unlink(ctx, other, db), fault.ReadOnly)
}

// A directory's time is when a name in it last changed as far as the
// mount knows: a secret written, removed or renamed through the mount, or
// a change learnt of from the store, for its application (a rename, for
// both); an application made or removed, for the root. Before any, the
// mount's start.
func TestADirectorysTimeIsItsLastChange(t *testing.T) {
	f := newFixture(t, Options{})
	f.fs.Watch()
	f.cat.Store(db, "v1")
	started := f.fs.DirAttr("app").Modified
	if root := f.fs.DirAttr("").Modified; !root.Equal(started) {
		t.Fatalf("the root's time %v, the application's %v: want both the mount's start", root, started)
	}
	later := func(what, dir string, since time.Time) time.Time {
		t.Helper()
		got := f.fs.DirAttr(dir).Modified
		if !got.After(since) {
			t.Errorf("after %s, %q's time is %v, not after %v", what, dir, got, since)
		}
		return got
	}
	time.Sleep(2 * time.Millisecond)
	h, _ := f.create(db2, shell, unix.O_WRONLY|unix.O_TRUNC)
	f.replaceWith(h, shell, "new")
	at := later("a secret created through the mount", "app", started)
	time.Sleep(2 * time.Millisecond)
	f.mustNot("unlink", f.fs.Unlink(ctx, other, db2))
	at = later("an unlink", "app", at)
	time.Sleep(2 * time.Millisecond)
	f.cat.Store(db, "v2") // by another host
	f.cat.Change(db)      // which the catalog learns of
	at = later("a change learnt of from the store", "app", at)
	time.Sleep(2 * time.Millisecond)
	f.mustNot("mkdir", f.fs.Mkdir(ctx, "other"))
	root := later("a mkdir", "", started)
	if got := f.fs.DirAttr("app").Modified; !got.Equal(at) {
		t.Errorf("a mkdir at the root changed app's time to %v", got)
	}
	time.Sleep(2 * time.Millisecond)
	f.mustNot("rename", f.fs.Rename(ctx, shell, db, store.Key{App: "other", Name: "db"}, 0))
	later("a rename out of it", "app", at)
	later("a rename into it", "other", started)
	time.Sleep(2 * time.Millisecond)
	f.mustNot("rmdir", f.fs.Rmdir(ctx, "app"))
	later("an rmdir", "", root)
}

// Every handle open for writing holds WritersReleased open until the
// kernel releases it; one whose release owes a commit (`: > file`) lets
// go once that commit is counted in flight, so that a stop that waited
// for the writers then waits for the commit (Stop), whatever the store
// takes.
func TestWritersReleasedWaitsForEveryReleaseAndTheCommitItOwes(t *testing.T) {
	f := newFixture(t, Options{Changes: &Changes{}})
	changes := f.fs.opts.Changes
	f.cat.Store(db, "old")
	f.cat.Store(db2, "old2")
	if !isClosed(changes.WritersReleased()) {
		t.Fatal("WritersReleased is open with no file open for writing")
	}
	// Each handle, the only one open for writing, holds it: first one
	// whose commit was made at its close, owing none at its release;
	// then one that owes a commit at its release.
	written := f.open(db2, shell, trunc)
	f.write(written, shell, "new2", 0)
	f.mustNot("the writer's close", written.Flush(ctx, shell))
	if isClosed(changes.WritersReleased()) {
		t.Fatal("WritersReleased is closed while a file the kernel has not released, its commit made at its close, is open")
	}
	truncated := f.open(db, shell, trunc) // commits the empty value at its release
	f.mustNot("the writer's release", written.Release(ctx))
	if isClosed(changes.WritersReleased()) {
		t.Fatal("WritersReleased is closed while a file the kernel has not released owes a commit")
	}

	inPut, thaw := make(chan struct{}), make(chan struct{})
	f.cat.BeforePut(func(store.Key) {
		close(inPut)
		<-thaw
	})
	released := make(chan error)
	go func() { released <- truncated.Release(ctx) }()
	<-inPut
	select {
	case <-changes.WritersReleased():
	case <-time.After(10 * time.Second):
		t.Fatal("WritersReleased stays open while the only release's commit is in flight")
	}
	idle := changes.Stop()
	if isClosed(idle) {
		t.Fatal("the stop says nothing is in flight while the release's commit is")
	}
	f.cat.BeforePut(nil)
	close(thaw)
	if err := <-released; err != nil {
		t.Fatalf("the release's commit: %v", err)
	}
	<-idle
	if got := f.value(db); got != "" {
		t.Errorf("db holds %q after the truncation committed at its release", got)
	}
}

// The root's time moves when the first application appears in a store
// that held none at the root's first listing, and when the last one goes
// and another then appears (an empty root's names are none, as before
// any listing).
func TestTheRootsTimeMovesForTheFirstApplicationOfAnEmptyStore(t *testing.T) {
	f := newFixture(t, Options{})
	listed := func() time.Time {
		t.Helper()
		if _, err := f.fs.Apps(ctx); err != nil {
			t.Fatal(err)
		}
		return f.fs.DirAttr("").Modified
	}
	empty := listed()
	time.Sleep(2 * time.Millisecond)
	f.cat.Store(db, "v")
	first := listed()
	if !first.After(empty) {
		t.Errorf("the root's time %v did not move for the first application of an empty store", first)
	}
	time.Sleep(2 * time.Millisecond)
	f.cat.Remove(db)
	gone := listed()
	if !gone.After(first) {
		t.Errorf("the root's time %v did not move when the last application went", gone)
	}
	time.Sleep(2 * time.Millisecond)
	f.cat.Store(db2, "v")
	if again := listed(); !again.After(gone) {
		t.Errorf("the root's time %v did not move for an application of a store emptied before", again)
	}
}

// isClosed reports whether c is closed, without waiting.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// The root's time moves when a listing of it learns from the store of an
// application that appeared or went elsewhere, once; not when a listing
// finds what it found before, nor for an application made or removed
// here (mkdir, rmdir), whose own change moved it already.
func TestTheRootsTimeMovesForAnApplicationLearntOfFromTheStore(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "v")
	listed := func(what string) time.Time {
		t.Helper()
		if _, err := f.fs.Apps(ctx); err != nil {
			t.Fatalf("listing the root %s: %v", what, err)
		}
		return f.fs.DirAttr("").Modified
	}
	started := listed("first")
	time.Sleep(2 * time.Millisecond)
	if got := listed("again, unchanged"); !got.Equal(started) {
		t.Errorf("a listing that found the same applications moved the root's time to %v", got)
	}
	elsewhere := store.Key{App: "billing", Name: "token"}
	f.cat.Store(elsewhere, "t")
	appeared := listed("after billing appeared in the store")
	if !appeared.After(started) {
		t.Errorf("the root's time %v did not move for an application that appeared in the store", appeared)
	}
	var here time.Time
	for _, op := range []struct {
		name string
		do   func(context.Context, string) error
	}{{"mkdir", f.fs.Mkdir}, {"rmdir", f.fs.Rmdir}} {
		time.Sleep(2 * time.Millisecond)
		f.mustNot(op.name, op.do(ctx, "made"))
		here = f.fs.DirAttr("").Modified
		time.Sleep(2 * time.Millisecond)
		if got := listed("after " + op.name); !got.Equal(here) {
			t.Errorf("the listing after %s moved the root's time from its %v to %v", op.name, here, got)
		}
	}
	time.Sleep(2 * time.Millisecond)
	f.cat.Remove(elsewhere)
	if got := listed("after billing went from the store"); !got.After(here) {
		t.Errorf("the root's time %v did not move for an application that went from the store", got)
	}
}
