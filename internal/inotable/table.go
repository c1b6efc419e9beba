// Package inotable is a mount's table of the inodes the kernel may hold
// of immutable things, each one revision of a secret or one rendering of
// a view: by number, and by what each is. It knows nothing of FUSE;
// package fs keeps one per mount, makes the inodes, and numbers them with
// package inonum.
//
// A node is found by what it is (Find), never by its number alone: a
// number may come back to another node once the kernel forgot the first,
// and a renamed secret's node holds the new name's revision under the
// number of the old name's (Rename). The guards go-fuse's OnForget
// contract asks for are here as Revive: a lookup that found a node just
// before the kernel forgot it hands it back to the kernel, which then
// holds a node the table dropped.
//
// The table has one lock, a leaf: nothing else is taken while it is held.
package inotable

import (
	"slices"
	"sync"

	"github.com/secretfs/secretfs/store"
)

// ID is what an immutable inode is: one revision of one secret, or one
// rendering of a view (Version 0, IV the digest of its inputs).
type ID struct {
	Key     store.Key
	Version store.Version
	IV      string
}

// Of is the ID of revision rev of k.
func Of(k store.Key, rev store.Revision) ID {
	return ID{Key: k, Version: rev.Version, IV: string(rev.IV)}
}

// Entry is what the table keeps in each node: a node embeds one.
type Entry struct {
	// Ino is the node's inode number, set when it is made.
	Ino uint64
	// registered is what the node is entered in Table.byKey as (guarded by
	// Table.mu): what it was made for, or renamed to. It stays when the
	// node leaves byKey, so that Held still counts a node the kernel
	// holds under its number.
	registered ID
}

// TableEntry returns e: a node that embeds an Entry is a Node.
func (e *Entry) TableEntry() *Entry { return e }

// Node is a node of the table: a pointer to a struct that embeds an Entry.
type Node interface {
	comparable
	TableEntry() *Entry
}

// Table is the inode table. The zero Table is not usable: see New.
type Table[N Node] struct {
	mu    sync.Mutex
	byIno map[uint64]N // the nodes the kernel may hold, by number
	// byKey holds the same nodes (and one relisted with another size
	// until it is forgotten: see Unregister) by what they are: of each
	// name, its revisions', in a list that most often holds one. `ls -l`
	// asks for every name again, and a map keyed by the name alone, whose
	// strings are most often the very ones the listing gives, costs less
	// than one keyed by an ID, whose IV is copied, hashed and compared.
	byKey map[store.Key][]N
}

// New returns an empty table.
func New[N Node]() *Table[N] {
	return &Table[N]{byIno: map[uint64]N{}, byKey: map[store.Key][]N{}}
}

// Get returns the node numbered ino, or the zero N.
func (t *Table[N]) Get(ino uint64) N {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byIno[ino]
}

// Find returns the node entered as id, or the zero N.
func (t *Table[N]) Find(id ID) N {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.find(id)
}

// Add enters n, made for id, under its number, unless another node holds
// that number already: then that one is returned, and n is not entered
// (mine is false).
func (t *Table[N]) Add(n N, id ID) (held N, mine bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ino := n.TableEntry().Ino
	if held, ok := t.byIno[ino]; ok {
		return held, false
	}
	t.byIno[ino] = n
	t.register(n, id)
	return n, true
}

// Revive enters n, which is id, again if the kernel's forget dropped it
// (Forgot) while a request still held it. go-fuse's OnForget contract
// (fs/api.go) says the implementer must make sure "the inode cannot be
// revived concurrently by a LOOKUP": a lookup that found n in the table
// just before the kernel's FORGET returns it to the kernel, which then
// holds an inode the table no longer names. The node's next use calls
// this, so that the next lookup of that revision finds it instead of
// making a second inode of one number. A number another node took
// meanwhile stays that node's.
func (t *Table[N]) Revive(n N, id ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ino := n.TableEntry().Ino
	if _, ok := t.byIno[ino]; !ok {
		t.byIno[ino] = n
		t.register(n, id)
	}
}

// Forgot drops n: the kernel forgot it.
func (t *Table[N]) Forgot(n N) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ino := n.TableEntry().Ino; t.byIno[ino] == n {
		delete(t.byIno, ino)
	}
	t.unregister(n)
}

// Unregister takes n out of what Find finds, keeping its number: the
// kernel still holds it, but it is no longer what a lookup of its ID
// should find (a revision relisted with another size than the kernel
// keeps for it).
func (t *Table[N]) Unregister(n N) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unregister(n)
}

// Rename enters n, the node a rename moved, as id, its new name's
// revision, and reports whether it did: not when another node is id
// already, or n is no longer the table's.
func (t *Table[N]) Rename(n N, id ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	var none N
	if t.find(id) != none || t.byIno[n.TableEntry().Ino] != n {
		return false
	}
	t.register(n, id)
	return true
}

// Held returns the numbers of the nodes the table holds of k other than
// the one Find(now) gives: the revisions of a name, or the renderings of
// a view, that are not what its name points at. That includes a node
// that was now too, before it was unregistered (a revision relisted with
// another size than the kernel keeps for its node): the kernel may still
// hold it, and watch it.
func (t *Table[N]) Held(k store.Key, now ID) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	current := t.find(now)
	var out []uint64
	for ino, n := range t.byIno {
		if n != current && n.TableEntry().registered.Key == k {
			out = append(out, ino)
		}
	}
	return out
}

// register makes n the node of id, unless a node that is still id (in
// byIno) holds it. t.mu must be held.
func (t *Table[N]) register(n N, id ID) {
	var none N
	held := t.find(id)
	if held != none && held != n && t.byIno[held.TableEntry().Ino] == held {
		return
	}
	if held != none {
		t.unregister(held)
	}
	e := n.TableEntry()
	if held != n && e.registered != (ID{}) {
		t.unregister(n) // as what it was before; a new node never was
	}
	e.registered = id
	t.byKey[id.Key] = append(t.byKey[id.Key], n)
}

// find returns the node entered as id, or the zero N. t.mu must be held.
func (t *Table[N]) find(id ID) N {
	for _, n := range t.byKey[id.Key] {
		if n.TableEntry().registered == id {
			return n
		}
	}
	var none N
	return none
}

// unregister takes n out of byKey, where it is under the ID it was
// registered as. t.mu must be held.
func (t *Table[N]) unregister(n N) {
	k := n.TableEntry().registered.Key
	if rest := slices.DeleteFunc(t.byKey[k], func(p N) bool { return p == n }); len(rest) > 0 {
		t.byKey[k] = rest
	} else {
		delete(t.byKey, k)
	}
}
