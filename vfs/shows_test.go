package vfs

import (
	"testing"

	"github.com/secretfs/secretfs/store"
)

// A revision is the file the kernel was told of: the same secret, Version
// and IV, and the same size where both are known (a legacy item lists
// none). A revision relisted with another size, its Size forged before
// its first read and repaired since, is another file.
func TestARevisionShowsOnlyTheSizeItWasListedWith(t *testing.T) {
	f := newFixture(t, Options{})
	meta := store.Meta{Key: db, Version: 2, InitialisationVector: []byte("iv"), Size: 4}
	r := f.fs.NewRevision(db, meta, func() {}, func() {})
	relisted := func(change func(*store.Meta)) store.Meta {
		m := meta
		change(&m)
		return m
	}
	for _, c := range []struct {
		what  string
		meta  store.Meta
		shows bool
	}{
		{"as listed", meta, true},
		{"with its size unknown", relisted(func(m *store.Meta) { m.Size = -1 }), true},
		{"with another size", relisted(func(m *store.Meta) { m.Size = 22 }), false},
		{"with another IV", relisted(func(m *store.Meta) { m.InitialisationVector = []byte("other") }), false},
		{"as another secret's", relisted(func(m *store.Meta) { m.Key = db2 }), false},
	} {
		if got := r.Shows(c.meta.Key, c.meta); got != c.shows {
			t.Errorf("%s: Shows %v, want %v", c.what, got, c.shows)
		}
	}
}
