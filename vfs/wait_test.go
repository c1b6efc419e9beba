package vfs

import (
	"runtime"
	"testing"

	"github.com/secretfs/secretfs/store"
)

// waiting reports whether a request waits for s's closing writers: it
// made the channel that wake closes.
func waiting(s *Secret) bool { return s.changed.Load() != nil }

// untilWaiting yields until a request waits for s's closing writers.
func untilWaiting(s *Secret) {
	for !waiting(s) {
		runtime.Gosched()
	}
}

// `: > f && cat f`: the opener's close of a creation commits nothing; its
// release, which follows, does. A lookup meanwhile waits for it and finds
// the committed value, not a name with nothing behind it.
func TestALookupWaitsForTheReleaseOfAWriterThatClosedWithoutWriting(t *testing.T) {
	f := newFixture(t, Options{})
	h, e := f.create(db, shell, trunc)
	f.mustNot("the opener's close", h.Flush(ctx, shell))
	found := make(chan Entry, 1)
	go func() {
		got, err := f.fs.Lookup(ctx, db)
		if err != nil {
			t.Errorf("lookup: %v", err)
		}
		found <- got
	}()
	untilWaiting(e.Created)
	select {
	case got := <-found:
		t.Fatalf("the lookup answered %+v before the release", got)
	default:
	}
	f.mustNot("release", h.Release(ctx))
	got := <-found
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
			h, e := f.create(db, shell, trunc)
			f.mustNot("the opener's close", h.Flush(ctx, shell))
			done := make(chan error, 1)
			go func() { done <- c.do(f) }()
			untilWaiting(e.Created)
			select {
			case err := <-done:
				t.Fatalf("%s returned (%v) before the release", c.name, err)
			default:
			}
			f.mustNot("release", h.Release(ctx))
			f.mustNot(c.name, <-done)
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
	f.cat.BeforePut(func(store.Key) { close(entered); <-hold })
	closed := make(chan error, 1)
	go func() { closed <- h.Flush(ctx, shell) }()
	<-entered
	got, err := f.fs.Lookup(ctx, db) // would never return if it waited
	if err != nil || !got.Meta.Revision().Equal(old.Revision()) {
		t.Errorf("lookup during the commit: %+v, %v; want the old revision at once", got, err)
	}
	if m := h.Meta(); m.Size != 3 {
		t.Errorf("fstat of the writer during its commit: %+v", m)
	}
	close(hold)
	f.mustNot("close", <-closed)
}

// A writer that closed without writing and never releases (it holds
// another descriptor) is waited for a second at most; then the request
// goes on, and says so in the log.
func TestTheWaitForAClosingWriterEndsAfterASecond(t *testing.T) {
	f := newFixture(t, Options{})
	h, _ := f.create(db, shell, trunc)
	f.mustNot("the opener's close", h.Flush(ctx, shell))
	got, err := f.fs.Lookup(ctx, db)
	if err != nil || got.Created == nil {
		t.Fatalf("lookup: %+v, %v; want the secret still being created", got, err)
	}
	got.Created.Unhold()
	said := false
	for _, e := range f.log.AllEntries() {
		said = said || e.Message == "stopped waiting for a writer that closed a descriptor without writing"
	}
	if !said {
		t.Error("the log does not say the wait was given up")
	}
}
