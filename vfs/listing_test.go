package vfs

import (
	"fmt"
	"testing"

	"github.com/secretfs/secretfs/store"
)

// listingOf stores n secrets in app, s00 on, in pages of 7, and returns
// the fixture and their names in the order a listing gives them.
func listingOf(t *testing.T, n int) (*fixture, []string) {
	f := newFixture(t, Options{})
	f.cat.PageSize = 7
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("s%02d", i))
		f.cat.Store(store.Key{App: "app", Name: names[i]}, "v")
	}
	return f, names
}

// rest gives the names l lists from where it is.
func rest(f *fixture, l *Listing) []string {
	f.t.Helper()
	var out []string
	for {
		meta, ok, err := l.Next(ctx)
		f.mustNot("next", err)
		if !ok {
			return out
		}
		out = append(out, meta.Name)
	}
}

// A Seek to a position the listing gave goes on with the entry after it,
// wherever it lies among the pages, and one to a position it never gave
// (another descriptor's) counts from the start. The kernel's equivalent
// is fs's TestSeekdirGoesOnAfterTheEntryItWasGiven.
func TestSeekGoesOnAfterTheEntryItWasGiven(t *testing.T) {
	f, names := listingOf(t, 40)
	l := f.fs.List("app")
	if got := rest(f, l); fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("listed %v", got)
	}
	for _, pos := range []int{0, 1, 7, 10, 38, 40} {
		f.mustNot("seek", l.Seek(ctx, uint64(pos)))
		if got := rest(f, l); fmt.Sprint(got) != fmt.Sprint(names[pos:]) {
			t.Errorf("after a seek to %d the listing gives %v, want %v", pos, got, names[pos:])
		}
	}
	fresh := f.fs.List("app")
	f.mustNot("seek", fresh.Seek(ctx, 12))
	if meta, ok, err := fresh.Next(ctx); err != nil || !ok || meta.Name != names[12] {
		t.Errorf("after a seek to a position never given: %v, %v, %v; want %s", meta.Name, ok, err, names[12])
	}
	if e, listed, err := fresh.Lookup(ctx, names[12]); err != nil || !listed || e.Meta.Name != names[12] {
		t.Errorf("the name given after a seek is not answered from the listing: %+v, %v, %v", e, listed, err)
	}
}

// A Seek goes on after the name given at the position, not after as
// many entries: a name removed before it since moves nothing. The
// kernel's equivalent is fs's
// TestSeekdirAfterAnEarlierNameWasRemovedGoesOnAfterTheSameName.
func TestSeekAfterAnEarlierNameWasRemovedGoesOnAfterTheSameName(t *testing.T) {
	f, names := listingOf(t, 20)
	l := f.fs.List("app")
	rest(f, l)
	f.mustNot("unlink", f.fs.Unlink(ctx, Caller{}, store.Key{App: "app", Name: names[0]}))
	f.mustNot("seek", l.Seek(ctx, 9)) // after names[8]
	meta, ok, err := l.Next(ctx)
	if err != nil || !ok || meta.Name != names[9] {
		t.Errorf("after a seek to the position of %s the listing goes on with %v, %v, %v; want %s", names[8], meta.Name, ok, err, names[9])
	}
	if e, listed, err := l.Lookup(ctx, names[9]); err != nil || !listed || e.Meta.Name != names[9] {
		t.Errorf("the entry a seek read past is not answered from the listing: %+v, %v, %v", e, listed, err)
	}
	f.mustNot("seek", l.Seek(ctx, 9))
	if got := rest(f, l); fmt.Sprint(got) != fmt.Sprint(names[9:]) {
		t.Errorf("after a second seek: %v, want %v", got, names[9:])
	}
}
