package vfs

import (
	"sync"
	"testing"

	"github.com/secretfs/secretfs/store"
)

// waiting reports whether a request waits, or waited, for s's closing
// writers: it made the channel that wake closes (and drops).
func waiting(s *Secret) bool { return s.changed.Load() != nil }

// noneWaiting fails t if a request waits, or waited since the last wake,
// for s's closing writers: before the request under test, so that
// untilWaiting and waiting tell of that one.
func noneWaiting(t testing.TB, s *Secret) {
	t.Helper()
	if waiting(s) {
		t.Fatalf("a request waits for the closing writer of %v before the one under test", s.Key())
	}
}

// lookupWithin looks k up, failing t if the lookup did not return
// within hangBound: what says what was awaited.
func (f *fixture) lookupWithin(t testing.TB, what string, k store.Key) (Entry, error) {
	t.Helper()
	type answer struct {
		e   Entry
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		e, err := f.fs.Lookup(ctx, k)
		answered <- answer{e, err}
	}()
	a := await(t, what, answered)
	return a.e, a.err
}

// waitClosingWritersUpToHangBound makes f's requests wait for a closing
// writer up to hangBound instead of the real second
// (FS.closingWriterWait), for a test whose writer's release ends the
// wait: a test goroutine descheduled for a second between untilWaiting
// and the release must not see the request give up first.
func (f *fixture) waitClosingWritersUpToHangBound() { f.fs.closingWriterWait = hangBound }

// untilWaiting yields until a request waits for s's closing writers,
// failing t if none did within hangBound: the request under test did not
// wait.
func untilWaiting(t testing.TB, s *Secret) {
	t.Helper()
	until(t, "a request to wait for the closing writer of "+s.Key().String(), func() bool { return waiting(s) })
}

// `: > f && cat f`: the opener's close of a creation commits nothing; its
// release, which follows, does. A lookup meanwhile waits for it and finds
// the committed value, not a name with nothing behind it.
func TestALookupWaitsForTheReleaseOfAWriterThatClosedWithoutWriting(t *testing.T) {
	f := newFixture(t, Options{})
	f.waitClosingWritersUpToHangBound()
	h, e := f.create(db, shell, trunc)
	f.mustNot("the opener's close", h.Flush(ctx, shell))
	noneWaiting(t, e.Created)
	found := make(chan Entry, 1)
	go func() {
		got, err := f.fs.Lookup(ctx, db)
		if err != nil {
			t.Errorf("lookup: %v", err)
		}
		found <- got
	}()
	untilWaiting(t, e.Created)
	select {
	case got := <-found:
		t.Fatalf("the lookup answered %+v before the release", got)
	default:
	}
	f.mustNot("release", h.Release(ctx))
	got := await(t, "the lookup to return after the release", found)
	if got.Created != nil || got.Meta.Version != 1 || got.Meta.Size != 0 {
		t.Errorf("the lookup found %+v; want the empty value the release committed", got)
	}
}

// Unlink, rename, opens and listings wait for a closing writer too: vim
// creates its swap file, closes it and removes it at once.
func TestUnlinkRenameOpenAndListWaitForAClosingWriter(t *testing.T) {
	for _, c := range []struct {
		name string
		do   func(f *fixture) error
		want string // the value at db afterwards
	}{
		{"unlink", func(f *fixture) error { return f.fs.Unlink(ctx, other, db) }, "<none>"},
		{"rename", func(f *fixture) error { return f.fs.Rename(ctx, other, db, db2, 0) }, "<none>"},
		{"open", func(f *fixture) error {
			h, err := f.fs.NewRevision(db, store.Meta{Key: db, Version: 1}, func() {}, func() {}).Open(ctx, other, trunc)
			if err == nil {
				h.Discard()
			}
			return err
		}, ""},
		{"list", func(f *fixture) error { f.fs.List("app"); return nil }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.waitClosingWritersUpToHangBound()
			h, e := f.create(db, shell, trunc)
			f.mustNot("the opener's close", h.Flush(ctx, shell))
			noneWaiting(t, e.Created)
			done := make(chan error, 1)
			go func() { done <- c.do(f) }()
			untilWaiting(t, e.Created)
			select {
			case err := <-done:
				t.Fatalf("%s returned (%v) before the release", c.name, err)
			default:
			}
			f.mustNot("release", h.Release(ctx))
			f.mustNot(c.name, await(t, c.name+" to return after the release", done))
			if got := f.value(db); got != c.want {
				t.Errorf("afterwards the store holds %q at %v, want %q", got, db, c.want)
			}
		})
	}
}

// A commit made by a close or an fsync still in progress is not waited
// for: nothing can depend on it yet, and a stat or lookup answers at once.
func TestACommitOnCloseIsNotWaitedFor(t *testing.T) {
	f := newFixture(t, Options{})
	old := f.cat.Store(db, "old")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "new", 0)
	entered, hold := make(chan struct{}), make(chan struct{})
	thaw := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(thaw) // a failure below must not leave the commit held
	f.cat.BeforePut(func(store.Key) { close(entered); <-hold })
	closed := make(chan error, 1)
	go func() { closed <- h.Flush(ctx, shell) }()
	await(t, "the close's commit to reach the store", entered)
	// A lookup that waited for the commit would wait until the commit's
	// deadline, which the held Put never meets.
	if got, err := f.lookupWithin(t, "the lookup during the commit to return", db); err != nil || !got.Meta.Revision().Equal(old.Revision()) {
		t.Errorf("lookup during the commit: %+v, %v; want the old revision", got, err)
	}
	if m := h.Meta(); m.Size != 3 {
		t.Errorf("fstat of the writer during its commit: %+v", m)
	}
	thaw()
	f.mustNot("close", await(t, "the close to return", closed))
}

// A writer that closed without writing and never releases (it holds
// another descriptor) is not waited for until it does: the request waits
// (FS.closingWriterWait bounds it: here the product's, the constant New
// sets, which no test shortens), then gives up and goes on, the writer
// still closing, and says so in the log. The log line is the wait's bound
// at work: it is written only where the wait runs out, never where a
// writer's release ends it.
func TestAWaitForAClosingWriterThatNeverReleasesIsGivenUpAndLogged(t *testing.T) {
	f := newFixture(t, Options{})
	if f.fs.closingWriterWait != closingWriterWait {
		t.Fatalf("New bounds the wait for a closing writer by %v, want the constant, %v", f.fs.closingWriterWait, closingWriterWait)
	}
	h, e := f.create(db, shell, trunc)
	f.mustNot("the opener's close", h.Flush(ctx, shell))
	noneWaiting(t, e.Created)
	got, err := f.lookupWithin(t, "the lookup to return, the writer still closing", db)
	if err != nil || got.Created != e.Created {
		t.Fatalf("lookup: %+v, %v; want the secret still being created", got, err)
	}
	got.Created.Unhold()
	if !waiting(e.Created) {
		t.Error("the lookup did not wait for the closing writer")
	}
	if !h.Closing() {
		t.Fatal("the writer is no longer closing: its wait did not end without its release")
	}
	said := 0
	for _, e := range f.log.AllEntries() {
		if e.Message == "stopped waiting for a writer that closed a descriptor without writing" {
			said++
		}
	}
	if said != 1 {
		t.Errorf("the log says %d times that the wait was given up, want once", said)
	}
}
