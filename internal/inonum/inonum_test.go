package inonum

import (
	"strconv"
	"sync"
	"testing"

	"github.com/secretfs/secretfs/store"
)

var (
	key = store.Key{App: "app", Name: "s"}
	rev = store.Revision{Version: 3, IV: []byte("0123456789ab")}
)

// The numbers come from a keyed hash: the same within one Numbers,
// different under another key, and different for another attempt or
// another revision.
func TestInodeNumbersAreKeyedPerMount(t *testing.T) {
	a, b := New(), New()
	if a.Version(key, rev, 0) != a.Version(key, rev, 0) {
		t.Error("one revision has two numbers in one mount")
	}
	if a.Version(key, rev, 0) == b.Version(key, rev, 0) {
		t.Error("two mounts with their own keys give a revision the same number")
	}
	if a.Version(key, rev, 0) == a.Version(key, rev, 1) {
		t.Error("the next attempt gives the same number")
	}
	other := store.Revision{Version: 3, IV: []byte("0123456789ac")}
	if a.Version(key, rev, 0) == a.Version(key, other, 0) {
		t.Error("two revisions share a number")
	}
	if a.Version(key, rev, 0) == a.Version(key, store.Revision{Version: 4, IV: rev.IV}, 0) {
		t.Error("two versions with one IV share a number")
	}
}

// A view's rendering keeps its number within one Numbers; another key,
// another attempt or another digest gives another.
func TestViewNumbersAreKeyedPerMount(t *testing.T) {
	a, b := New(), New()
	if a.View(key, "d1", 0) != a.View(key, "d1", 0) {
		t.Error("one rendering has two numbers in one mount")
	}
	if a.View(key, "d1", 0) == b.View(key, "d1", 0) {
		t.Error("two mounts with their own keys give a rendering the same number")
	}
	if a.View(key, "d1", 0) == a.View(key, "d1", 1) {
		t.Error("the next attempt gives the same number")
	}
	if a.View(key, "d1", 0) == a.View(key, "d2", 0) {
		t.Error("two renderings share a number")
	}
}

// The length prefixes keep the parts apart: moving a byte from the
// application to the name gives another number.
func TestPartsAreLengthPrefixed(t *testing.T) {
	n := New()
	if n.Version(store.Key{App: "ap", Name: "ps"}, rev, 0) == n.Version(store.Key{App: "app", Name: "s"}, rev, 0) {
		t.Error("app/s and ap/ps share a number")
	}
	if n.View(store.Key{App: "ap", Name: "ps"}, "d", 0) == n.View(store.Key{App: "app", Name: "s"}, "d", 0) {
		t.Error("the views app/s and ap/ps share a number")
	}
}

// rangeOf names the range of a number by its top two bits.
func rangeOf(ino uint64) string {
	switch ino >> 62 {
	case 0:
		return "revision"
	case 1:
		return "view"
	case 2:
		return "go-fuse's automatic"
	default:
		return "created"
	}
}

// Revisions, views and created secrets each have their range, and no
// number in one is given in another; none is 0 or the root's.
func TestRangesAreDisjointAndNeverZeroOrTheRoot(t *testing.T) {
	n := New()
	given := map[uint64]string{}
	give := func(want string, ino uint64) {
		t.Helper()
		if ino <= rootID {
			t.Errorf("%s number %#x is 0 or the root's", want, ino)
		}
		if got := rangeOf(ino); got != want {
			t.Errorf("%s number %#x is in the %s range", want, ino, got)
		}
		if was, dup := given[ino]; dup {
			t.Errorf("%s number %#x was given already, as a %s number", want, ino, was)
		}
		given[ino] = want
	}
	for i := range 500 {
		k := store.Key{App: "app", Name: "s" + strconv.Itoa(i)}
		give("revision", n.Version(k, rev, i%3))
		give("view", n.View(k, "digest", i%3))
		give("created", n.Created())
	}
	if rangeOf(SignalDir) != "created" {
		t.Errorf("the signal directory's number %#x is not in the created range", uint64(SignalDir))
	}
	if _, dup := given[SignalDir]; dup {
		t.Error("the signal directory's number was given")
	}
}

// Whatever a forced hash gives, a revision's number lands in its range,
// never on 0 or the root's; the hook replaces only revisions' numbers.
func TestAForcedHashStaysInTheRevisionsRange(t *testing.T) {
	for _, sum := range []uint64{0, 1, 2, 1 << 62, 1<<62 | 1, 1 << 63, 1<<63 | 1, ^uint64(0), 4242} {
		n := WithVersionHash(func(store.Key, store.Revision, int) uint64 { return sum })
		ino := n.Version(key, rev, 0)
		if ino <= rootID || rangeOf(ino) != "revision" {
			t.Errorf("forced %#x: number %#x, in the %s range, 0 or the root's", sum, ino, rangeOf(ino))
		}
		if ino != sum&^rangeBits && sum&^rangeBits > rootID {
			t.Errorf("forced %#x: number %#x, want the hash's own bits %#x", sum, ino, sum&^rangeBits)
		}
	}
	var asked []int
	n := WithVersionHash(func(_ store.Key, _ store.Revision, attempt int) uint64 {
		asked = append(asked, attempt)
		return 4242
	})
	if n.Version(key, rev, 0) != 4242 || n.Version(key, rev, 7) != 4242 {
		t.Error("a forced hash's number in range is not given as it is")
	}
	if len(asked) != 2 || asked[0] != 0 || asked[1] != 7 {
		t.Errorf("the forced hash was asked for attempts %v, want [0 7]", asked)
	}
	if v := n.View(key, "d", 0); rangeOf(v) != "view" {
		t.Errorf("a view's number %#x under a forced hash is in the %s range", v, rangeOf(v))
	}
}

// Created counts up from the start of its range (above go-fuse's automatic numbers), one at a call,
// from many goroutines at once; each Numbers counts on its own.
func TestCreatedCountsUpInItsRange(t *testing.T) {
	n := New()
	if got := n.Created(); got != 3<<62|1 {
		t.Errorf("the first created number is %#x, want %#x", got, uint64(3<<62|1))
	}
	if got := n.Created(); got != 3<<62|2 {
		t.Errorf("the second created number is %#x, want %#x", got, uint64(3<<62|2))
	}
	var (
		mu   sync.Mutex
		seen = map[uint64]bool{}
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				ino := n.Created()
				mu.Lock()
				if seen[ino] {
					t.Errorf("created number %#x given twice", ino)
				}
				seen[ino] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got := n.Created(); got != 3<<62|403 {
		t.Errorf("after 402 numbers the next is %#x, want %#x", got, uint64(3<<62|403))
	}
	if got := New().Created(); got != 3<<62|1 {
		t.Errorf("another Numbers' first created number is %#x, want %#x", got, uint64(3<<62|1))
	}
}
