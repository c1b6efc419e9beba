package vfs

import (
	"fmt"
	"sync"
	"testing"

	"github.com/secretfs/secretfs/store"
)

// countedRules are owner rules that count how often each path is asked:
// "billing" and what is in it belong to uid 1001, the rest is left to the
// mount options.
type countedRules struct {
	mu    sync.Mutex
	asked map[string]int
}

func (r *countedRules) of(p string) Owner {
	r.mu.Lock()
	r.asked[p]++
	r.mu.Unlock()
	uid := uint32(1001)
	if p == "billing" || len(p) > len("billing/") && p[:len("billing/")] == "billing/" {
		return Owner{UID: &uid}
	}
	return Owner{}
}

func (r *countedRules) times(p string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[p]
}

// `ls -l` asks the attributes of every name each time: the owner rules
// are asked once per path, and their answer kept, for a secret and for an
// application's directory, which are different paths.
func TestOwnerRulesAreAskedOncePerPath(t *testing.T) {
	rules := &countedRules{asked: map[string]int{}}
	f := newFixture(t, Options{UID: 7, OwnerOf: rules.of})
	billing, auth := store.Key{App: "billing", Name: "billing"}, store.Key{App: "auth", Name: "pw"}
	f.cat.Store(billing, "b")
	f.cat.Store(auth, "a")
	for range 3 {
		if a := f.revision(billing).Attr(); a.UID != 1001 {
			t.Errorf("billing/billing: uid %d, want 1001", a.UID)
		}
		if a := f.revision(auth).Attr(); a.UID != 7 {
			t.Errorf("auth/pw: uid %d, want 7", a.UID)
		}
		if a := f.fs.DirAttr("billing"); a.UID != 1001 {
			t.Errorf("billing: uid %d, want 1001", a.UID)
		}
		if a := f.fs.DirAttr("auth"); a.UID != 7 {
			t.Errorf("auth: uid %d, want 7", a.UID)
		}
	}
	for _, p := range []string{"billing/billing", "auth/pw", "billing", "auth"} {
		if n := rules.times(p); n != 1 {
			t.Errorf("the rules were asked of %s %d times, want once", p, n)
		}
	}
}

// The answers kept are bounded: past maxOwners paths the file system
// starts over, and every answer is still the rules'.
func TestOwnerRulesKeptAreBounded(t *testing.T) {
	rules := &countedRules{asked: map[string]int{}}
	f := newFixture(t, Options{UID: 7, OwnerOf: rules.of})
	first := store.Key{App: "billing", Name: "s-0"}
	if a := f.fs.fileAttr(store.Meta{Key: first}, 1); a.UID != 1001 {
		t.Fatalf("%v: uid %d, want 1001", first, a.UID)
	}
	for i := range maxOwners {
		k := store.Key{App: "auth", Name: fmt.Sprintf("s-%d", i)}
		if a := f.fs.fileAttr(store.Meta{Key: k}, 1); a.UID != 7 {
			t.Fatalf("%v: uid %d, want 7", k, a.UID)
		}
	}
	if n := f.fs.owners.n.Load(); n > maxOwners {
		t.Errorf("%d answers kept, want at most %d", n, maxOwners)
	}
	if a := f.fs.fileAttr(store.Meta{Key: first}, 1); a.UID != 1001 {
		t.Errorf("%v after the answers were dropped: uid %d, want 1001", first, a.UID)
	}
	if n := rules.times(first.String()); n != 2 {
		t.Errorf("the rules were asked of %v %d times, want twice (once more once its answer was dropped)", first, n)
	}
}
