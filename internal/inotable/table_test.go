package inotable

import (
	"slices"
	"testing"

	"github.com/secretfs/secretfs/store"
)

type node struct {
	Entry
	name string // for messages
}

var (
	k  = store.Key{App: "app", Name: "db"}
	to = store.Key{App: "app", Name: "moved"}
)

func id(k store.Key, v store.Version, iv string) ID {
	return Of(k, store.Revision{Version: v, IV: []byte(iv)})
}

func made(name string, ino uint64) *node { return &node{Entry: Entry{Ino: ino}, name: name} }

func wantFind(t *testing.T, tab *Table[*node], what string, of ID, want *node) {
	t.Helper()
	if got := tab.Find(of); got != want {
		t.Errorf("%s: Find gives %v, want %v", what, got, want)
	}
}

// The table finds the node of a revision by what it is, among the
// revisions of its name it holds: an older revision a reader holds, the
// newer one, none once forgotten, and a renamed node only under its new
// name.
func TestTheTableFindsEachRevisionByWhatItIs(t *testing.T) {
	tab := New[*node]()
	one, two, three, renamed := id(k, 1, "iv-one"), id(k, 2, "iv-two"), id(k, 3, "iv-three"), id(to, 1, "iv-new")
	enter := func(name string, of ID, ino uint64) *node {
		n := made(name, ino)
		if held, mine := tab.Add(n, of); !mine || held != n {
			t.Fatalf("%s: Add(%d) gave %v, %v on a free number", name, ino, held, mine)
		}
		return n
	}
	n1 := enter("n1", one, 10)
	wantFind(t, tab, "revision 1", one, n1)
	enter("n1 again", one, 11)
	wantFind(t, tab, "revision 1, once a second node of it was entered", one, n1)
	wantFind(t, tab, "revision 2, before it is entered", two, nil)
	n2 := enter("n2", two, 20)
	wantFind(t, tab, "revision 1, once revision 2 is entered", one, n1)
	wantFind(t, tab, "revision 2", two, n2)
	wantFind(t, tab, "revision 1's version with revision 2's IV", id(k, 1, "iv-two"), nil)

	n4 := enter("n4", three, 40)
	tab.Forgot(n2)
	wantFind(t, tab, "revision 2, forgotten", two, nil)
	wantFind(t, tab, "revision 1, once revision 2 is forgotten", one, n1)
	wantFind(t, tab, "revision 3, once revision 2 is forgotten", three, n4)
	tab.Forgot(n4)
	wantFind(t, tab, "revision 3, forgotten", three, nil)
	wantFind(t, tab, "revision 1, once revision 3 is forgotten", one, n1)

	if !tab.Rename(n1, renamed) {
		t.Fatal("Rename of the node of revision 1 to a free ID was refused")
	}
	wantFind(t, tab, "revision 1, renamed", one, nil)
	wantFind(t, tab, "the renamed revision", renamed, n1)
	wantFind(t, tab, "the renamed revision under its old name", id(k, 1, "iv-new"), nil)

	n3 := enter("n3", two, 30)
	tab.Forgot(n1)
	wantFind(t, tab, "the renamed revision, forgotten", renamed, nil)
	wantFind(t, tab, "revision 2, entered again", two, n3)
}

// A number is one node's: a second node of that number is not entered,
// and the one the table holds is returned, whatever it is.
func TestAddOfANumberHeldGivesTheNodeThatHoldsIt(t *testing.T) {
	tab := New[*node]()
	first := made("first", 7)
	tab.Add(first, id(k, 1, "a"))
	second := made("second", 7)
	held, mine := tab.Add(second, id(k, 2, "b"))
	if held != first || mine {
		t.Errorf("Add of a held number gave %v, %v; want first, false", held, mine)
	}
	if got := tab.Get(7); got != first {
		t.Errorf("Get(7) = %v, want first", got)
	}
	wantFind(t, tab, "the second node's revision", id(k, 2, "b"), nil)
}

// The revival guard: a node the kernel forgot while a lookup handed it
// back is entered again at its next use, unless another node took its
// number meanwhile; a node still entered is left as it is.
func TestReviveEntersAForgottenNodeAgainUnlessItsNumberWasTaken(t *testing.T) {
	tab := New[*node]()
	of := id(k, 1, "a")
	n := made("n", 5)
	tab.Add(n, of)
	tab.Revive(n, of)
	if got := tab.Held(k, ID{}); len(got) != 1 {
		t.Errorf("Revive of an entered node: the table holds %v, want one number", got)
	}
	tab.Forgot(n)
	if tab.Get(5) != nil || tab.Find(of) != nil {
		t.Fatal("a forgotten node is still in the table")
	}
	tab.Revive(n, of)
	if tab.Get(5) != n {
		t.Error("Revive did not enter the forgotten node under its number")
	}
	wantFind(t, tab, "the revived node's revision", of, n)

	tab.Forgot(n)
	other := made("other", 5)
	tab.Add(other, id(to, 1, "b"))
	tab.Revive(n, of)
	if tab.Get(5) != other {
		t.Error("Revive took a number another node holds")
	}
	wantFind(t, tab, "the revision of a node whose number was taken", of, nil)
}

// Rename is refused when another node is the new ID already, and for a
// node the table no longer has; the refused node stays what it was.
func TestRenameIsRefusedForATakenIDOrAForgottenNode(t *testing.T) {
	tab := New[*node]()
	a, b := made("a", 1), made("b", 2)
	tab.Add(a, id(k, 1, "a"))
	tab.Add(b, id(to, 1, "b"))
	if tab.Rename(a, id(to, 1, "b")) {
		t.Error("Rename to the ID another node is was allowed")
	}
	wantFind(t, tab, "the refused node's own revision", id(k, 1, "a"), a)
	tab.Forgot(a)
	if tab.Rename(a, id(to, 2, "c")) {
		t.Error("Rename of a forgotten node was allowed")
	}
	wantFind(t, tab, "the forgotten node's new ID", id(to, 2, "c"), nil)
}

// Held gives the numbers of a name's nodes other than its current
// revision's, including the node of that very revision taken out of what
// a lookup finds (Unregister: relisted with another size than the kernel
// keeps for it) that the kernel still holds, and not one the kernel
// forgot.
func TestHeldGivesANamesOtherNodesTheKernelHolds(t *testing.T) {
	tab := New[*node]()
	current := id(k, 3, "c")
	old, relisted, now, elsewhere := made("old", 1), made("relisted", 2), made("now", 3), made("elsewhere", 4)
	tab.Add(old, id(k, 1, "a"))
	tab.Add(relisted, current)
	tab.Unregister(relisted)
	tab.Add(now, current)
	tab.Add(elsewhere, id(to, 1, "d"))
	wantFind(t, tab, "the current revision, relisted", current, now)
	got := tab.Held(k, current)
	slices.Sort(got)
	if !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("Held = %v, want [1 2]: the old revision's and the relisted one's", got)
	}
	tab.Forgot(old)
	if got := tab.Held(k, current); !slices.Equal(got, []uint64{2}) {
		t.Errorf("Held after the kernel forgot the old node = %v, want [2]", got)
	}
}
