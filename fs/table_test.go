package fs

import (
	"testing"

	"github.com/secretfs/secretfs/store"
)

// The inode table finds the node of a revision by what it is, among the
// revisions of its name it holds (mount.byName): an older revision a
// reader holds, the newer one, none once forgotten, and a renamed node
// only under its new name.
func TestTheInodeTableFindsEachRevisionByWhatItIs(t *testing.T) {
	m := quietMount()
	k, to := store.Key{App: "app", Name: "db"}, store.Key{App: "app", Name: "moved"}
	rev := func(v store.Version, iv string) store.Meta {
		return store.Meta{Key: k, Version: v, InitialisationVector: []byte(iv)}
	}
	one, two, renamed := rev(1, "iv-one"), rev(2, "iv-two"), store.Meta{Key: to, Version: 1, InitialisationVector: []byte("iv-new")}
	enter := func(meta store.Meta, ino uint64) *immutableNode {
		n := &immutableNode{m: m, ino: ino}
		n.rev = m.vfs.NewRevision(meta.Key, meta, func() {}, func() {})
		n.serves = n.rev
		m.mu.Lock()
		m.files[ino] = n
		m.register(n, idOf(meta.Key, meta.Revision()))
		m.mu.Unlock()
		return n
	}
	want := func(what string, k store.Key, meta store.Meta, n *immutableNode) {
		t.Helper()
		if got := m.versionOf(k, meta.Revision()); got != n {
			t.Errorf("%s: the table gives %p, want %p", what, got, n)
		}
	}
	n1 := enter(one, 10)
	want("revision 1", k, one, n1)
	enter(one, 11)
	want("revision 1, once a second node of it was entered", k, one, n1)
	want("revision 2, before it is entered", k, two, nil)
	n2 := enter(two, 20)
	want("revision 1, once revision 2 is entered", k, one, n1)
	want("revision 2", k, two, n2)
	want("revision 1's version with revision 2's IV", k, store.Meta{Version: 1, InitialisationVector: []byte("iv-two")}, nil)

	three := rev(3, "iv-three")
	n4 := enter(three, 40)
	m.forgot(n2)
	want("revision 2, forgotten", k, two, nil)
	want("revision 1, once revision 2 is forgotten", k, one, n1)
	want("revision 3, once revision 2 is forgotten", k, three, n4)
	m.forgot(n4)
	want("revision 3, forgotten", k, three, nil)
	want("revision 1, once revision 3 is forgotten", k, one, n1)

	m.mu.Lock()
	m.register(n1, idOf(to, renamed.Revision()))
	m.mu.Unlock()
	want("revision 1, renamed", k, one, nil)
	want("the renamed revision", to, renamed, n1)
	want("the renamed revision under its old name", k, renamed, nil)

	n3 := enter(two, 30)
	m.forgot(n1)
	want("the renamed revision, forgotten", to, renamed, nil)
	want("revision 2, entered again", k, two, n3)
}
