package storetest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

func testGetMissing(t *testing.T, s store.Store) {
	mustPut(t, s, sample("app", "present"), store.Absent)
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "missing"})
	wantKind(t, err, fault.NotFound, "Get of a missing secret")
	_, err = s.Get(t.Context(), store.Key{App: "other", Name: "present"})
	wantKind(t, err, fault.NotFound, "Get in a missing application")
}

func testPutGetRoundTrip(t *testing.T, s store.Store) {
	a, b := sample("app", "a"), sample("app", "b")
	b.Format = "v1"
	b.Modified = time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("X", 3600))
	mustPut(t, s, a, store.Absent)
	mustPut(t, s, b, store.Absent)
	wantStored(t, s, a)
	wantStored(t, s, b)
}

func testCallerOwnsData(t *testing.T, s store.Store) {
	put := sample("app", "owned")
	want := clone(put)
	mustPut(t, s, put, store.Absent)

	scribble := func(it *store.Item) {
		for _, b := range [][]byte{it.ProtectedDocumentKey, it.InitialisationVector, it.ProtectedSecretValue} {
			for i := range b {
				b[i] ^= 0x5a
			}
		}
		it.Version = 42
		it.Size = 42
	}
	scribble(put)
	wantStored(t, s, want)

	got, err := s.Get(t.Context(), want.Key)
	if err != nil {
		t.Fatal(err)
	}
	scribble(got)
	wantStored(t, s, want)
}

func testPutAbsentOnExisting(t *testing.T, s store.Store) {
	old := sample("app", "x")
	mustPut(t, s, old, store.Absent)
	again := sample("app", "x")
	again.ProtectedSecretValue = []byte{0xff}
	wantKind(t, s.Put(t.Context(), again, store.Absent), fault.Exist, "Put Absent on an existing item")
	wantStored(t, s, old)
}

func testPutStaleVersion(t *testing.T, s store.Store) {
	v1 := sample("app", "x")
	mustPut(t, s, v1, store.Absent)
	v2 := next(v1)
	mustPut(t, s, v2, 1)

	stale := next(v1) // a writer that still believes version 1 is current
	stale.ProtectedSecretValue = []byte{0xee}
	wantKind(t, s.Put(t.Context(), stale, 1), fault.Conflict, "Put with a stale version")
	wantStored(t, s, v2)

	ahead := next(next(v2))
	wantKind(t, s.Put(t.Context(), ahead, 3), fault.Conflict, "Put with a version from the future")
	wantStored(t, s, v2)

	for _, expected := range []store.Version{1, 7, store.Unversioned} {
		missing := sample("app", "missing")
		missing.Version = expected.Next()
		err := s.Put(t.Context(), missing, expected)
		wantKind(t, err, fault.Conflict, "Put expecting version "+expected.String()+" of a missing item")
	}
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "missing"})
	wantKind(t, err, fault.NotFound, "Get after failed Puts")
}

func testPutVersionChain(t *testing.T, s store.Store) {
	it := sample("app", "chain")
	mustPut(t, s, it, store.Absent)
	for v := store.Version(1); v < 3; v++ {
		it = next(it)
		mustPut(t, s, it, v)
		wantStored(t, s, it)
	}
	if it.Version != 3 {
		t.Fatalf("chain ended at version %v, want 3", it.Version)
	}
}

func testPutVersionMustFollowExpected(t *testing.T, s store.Store) {
	v1 := sample("app", "x")
	mustPut(t, s, v1, store.Absent)
	for _, c := range []struct{ version, expected store.Version }{
		{1, 1}, {3, 1}, {store.Unversioned, 1}, {2, store.Absent}, {2, store.Unversioned},
	} {
		it := next(v1)
		it.Version = c.version
		err := s.Put(t.Context(), it, c.expected)
		wantKind(t, err, fault.Invalid, "Put of version "+c.version.String()+" expecting "+c.expected.String())
	}
	wantStored(t, s, v1)
}

func testPutMissingProtectedFields(t *testing.T, s store.Store) {
	for _, blank := range []func(*store.Item){
		func(it *store.Item) { it.MasterKeyID = "" },
		func(it *store.Item) { it.ProtectedDocumentKey = nil },
		func(it *store.Item) { it.InitialisationVector = []byte{} },
		func(it *store.Item) { it.ProtectedSecretValue = nil },
	} {
		it := sample("app", "x")
		blank(it)
		wantKind(t, s.Put(t.Context(), it, store.Absent), fault.Invalid, "Put without a protected field")
	}
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "x"})
	wantKind(t, err, fault.NotFound, "Get after rejected Puts")
}

func testInvalidKeys(t *testing.T, s store.Store) {
	for _, c := range []struct {
		app, name string
		kind      fault.Kind
	}{
		{"app", ".", fault.Invalid},
		{"app", "..", fault.Invalid},
		{"app", "a/b", fault.Invalid},
		{"app", "a\x00b", fault.Invalid},
		{"app", "\xff\xfe", fault.Invalid},
		{"app", "", fault.Invalid},
		{"app", strings.Repeat("n", store.MaxNameLen+1), fault.NameTooLong},
		{"", "name", fault.Invalid},
		{".", "name", fault.Invalid},
		{"a/b", "name", fault.Invalid},
		{strings.Repeat("a", store.MaxNameLen+1), "name", fault.NameTooLong},
	} {
		err := s.Put(t.Context(), sample(c.app, c.name), store.Absent)
		wantKind(t, err, c.kind, "Put of key "+strings.ToValidUTF8(c.app+"/"+c.name, "?"))
	}
	apps, err := s.Apps(t.Context())
	if err != nil || len(apps) != 0 {
		t.Fatalf("after rejected Puts, Apps = %q, %v; want none", apps, err)
	}
}

func testLongestName(t *testing.T, s store.Store) {
	name := strings.Repeat("é", store.MaxNameLen/2) + "x" // 255 bytes
	it := sample(strings.Repeat("a", store.MaxNameLen), name)
	mustPut(t, s, it, store.Absent)
	wantStored(t, s, it)
	all, err := store.ListAll(t.Context(), s, it.App)
	if err != nil || len(all) != 1 || all[0].Name != name {
		t.Fatalf("ListAll = %v, %v; want the one %d-byte name", all, err, len(name))
	}
}

// legacy returns an item as the original Secret Store wrote it: no Format,
// Version, Size or Modified.
func legacy(app, name string) *store.Item {
	it := sample(app, name)
	it.Format = ""
	it.Version = store.Unversioned
	it.Size = -1
	it.Modified = time.Time{}
	return it
}

func testLegacyItem(t *testing.T, s store.Store) {
	old := legacy("app", "legacy")
	mustPut(t, s, old, store.Absent)
	wantStored(t, s, old) // Version Unversioned, Format "", Size -1, zero Modified

	wantKind(t, s.Put(t.Context(), next(next(old)), 1), fault.Conflict, "Put expecting version 1 of a legacy item")
	wantStored(t, s, old)

	upgraded := next(old)
	upgraded.Format, upgraded.Size, upgraded.Modified = "v2", 7, time.Now()
	mustPut(t, s, upgraded, store.Unversioned)
	wantStored(t, s, upgraded)

	again := next(old)
	wantKind(t, s.Put(t.Context(), again, store.Unversioned), fault.Conflict, "second Put expecting Unversioned")
	wantStored(t, s, upgraded)

	v3 := sample("app", "v3")
	mustPut(t, s, v3, store.Absent)
	for v := store.Version(1); v < 3; v++ {
		v3 = next(v3)
		mustPut(t, s, v3, v)
	}
	wantKind(t, s.Put(t.Context(), sample("app", "v3"), store.Unversioned), fault.Conflict,
		"Put expecting Unversioned of an item at version 3")
	wantStored(t, s, v3)
}

func testDelete(t *testing.T, s store.Store) {
	k := store.Key{App: "app", Name: "doomed"}
	wantKind(t, s.Delete(t.Context(), k, 1), fault.NotFound, "Delete of a missing item")

	it := next(sample(k.App, k.Name))
	mustPut(t, s, sample(k.App, k.Name), store.Absent)
	mustPut(t, s, it, 1)
	keep := sample("app", "kept")
	mustPut(t, s, keep, store.Absent)

	for _, stale := range []store.Version{1, 3, store.Unversioned} {
		wantKind(t, s.Delete(t.Context(), k, stale), fault.Conflict, "Delete expecting version "+stale.String())
		wantStored(t, s, it)
	}
	if err := s.Delete(t.Context(), k, 2); err != nil {
		t.Fatalf("Delete with the stored version: %v", err)
	}
	_, err := s.Get(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Get after Delete")
	all, err := store.ListAll(t.Context(), s, k.App)
	if err != nil || len(all) != 1 || all[0].Key != keep.Key {
		t.Fatalf("ListAll after Delete = %v, %v; want only %s", all, err, keep.Key)
	}
	wantStored(t, s, keep)
	wantKind(t, s.Delete(t.Context(), k, 2), fault.NotFound, "second Delete")
}

func testDeleteLegacy(t *testing.T, s store.Store) {
	old := legacy("app", "legacy")
	mustPut(t, s, old, store.Absent)
	wantKind(t, s.Delete(t.Context(), old.Key, 1), fault.Conflict, "Delete expecting version 1 of a legacy item")
	wantStored(t, s, old)
	if err := s.Delete(t.Context(), old.Key, store.Unversioned); err != nil {
		t.Fatalf("Delete of a legacy item: %v", err)
	}
	_, err := s.Get(t.Context(), old.Key)
	wantKind(t, err, fault.NotFound, "Get after Delete")
}

// pagedNames are 23 names whose order is that of their UTF-8 bytes, which is
// neither alphabetical, nor case-insensitive, nor UTF-16 order: "Z" before
// "a", "é" after "z", and U+1F600 (4 bytes) after U+FF21, where UTF-16 puts
// it before.
var pagedNames = []string{
	"alpha", "Alpha", "beta", "Zulu", "zulu", "z", "zz", "a", "A",
	"0", "10", "9", "-dash", "_under", "a.b", "a b", "a~",
	"é", "日本", "日本語", "Ω", "\uff21", "\U0001F600",
}

func testListPagination(t *testing.T, s store.Store) {
	const app = "paged"
	want := map[string]store.Meta{}
	for i, name := range pagedNames {
		it := sample(app, name)
		it.Size = int64(i)
		it.Modified = it.Modified.Add(time.Duration(i) * time.Hour)
		expected := store.Absent
		switch i % 3 {
		case 1:
			it = legacy(app, name)
		case 2:
			mustPut(t, s, it, store.Absent)
			it, expected = next(it), 1
		}
		mustPut(t, s, it, expected)
		want[name] = it.Meta
	}
	// Neighbours whose items must not leak into the listing.
	for _, other := range []string{"page", "pagedX", "Paged", "paged2"} {
		mustPut(t, s, sample(other, "alpha"), store.Absent)
		mustPut(t, s, sample(other, "zzz"), store.Absent)
	}
	sorted := slices.Clone(pagedNames)
	slices.Sort(sorted) // Go compares strings byte by byte

	// Each Meta of the listing must be what Get says.
	for name, m := range want {
		got, err := s.Get(t.Context(), m.Key)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffMeta(got.Meta, m); d != "" {
			t.Fatalf("Get %s: %s", name, d)
		}
	}

	for _, limit := range []int{1, 5, 7, 0, 100} {
		var names []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(pagedNames)+1 {
				t.Fatalf("limit %d: more pages than names; next does not advance", limit)
			}
			page, next, err := s.List(t.Context(), app, after, limit)
			if err != nil {
				t.Fatalf("limit %d: List after %q: %v", limit, after, err)
			}
			if limit > 0 && len(page) > limit {
				t.Fatalf("limit %d: page of %d entries", limit, len(page))
			}
			for _, m := range page {
				names = append(names, m.Name)
				w, ok := want[m.Name]
				if !ok || m.App != app {
					t.Fatalf("limit %d: listed %s, which is not in %s", limit, m.Key, app)
				}
				if d := diffMeta(m, w); d != "" {
					t.Fatalf("limit %d: listed %s", limit, d)
				}
			}
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(names, sorted) {
			t.Fatalf("limit %d: listed\n%q\nwant\n%q", limit, names, sorted)
		}
	}

	page, _, err := s.List(t.Context(), app, "b", 0)
	if err != nil || len(page) == 0 || page[0].Name != "beta" {
		t.Fatalf("List after \"b\" starts with %v, %v; want beta first", page, err)
	}

	all, err := store.ListAll(t.Context(), s, app)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range all {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, sorted) {
		t.Fatalf("ListAll = %q, want %q", names, sorted)
	}
}

func testListEmptyApp(t *testing.T, s store.Store) {
	mustPut(t, s, sample("full", "x"), store.Absent)
	for _, limit := range []int{0, 1} {
		page, next, err := s.List(t.Context(), "empty", "", limit)
		if err != nil || len(page) != 0 || next != "" {
			t.Fatalf("List of an empty application = %v, %q, %v; want nothing", page, next, err)
		}
	}
}

func testApps(t *testing.T, s store.Store) {
	apps, err := s.Apps(t.Context())
	if err != nil || len(apps) != 0 {
		t.Fatalf("Apps of an empty store = %q, %v", apps, err)
	}
	keys := []store.Key{
		{App: "b-app", Name: "1"}, {App: "a-app", Name: "1"}, {App: "a-app", Name: "2"},
		{App: "B-app", Name: "1"}, {App: "é-app", Name: "1"}, {App: "b-app", Name: "2"},
	}
	for _, k := range keys {
		mustPut(t, s, sample(k.App, k.Name), store.Absent)
	}
	wantApps := func(want ...string) {
		t.Helper()
		got, err := s.Apps(t.Context())
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Apps = %q, %v; want %q", got, err, want)
		}
	}
	wantApps("B-app", "a-app", "b-app", "é-app")

	if err := s.Delete(t.Context(), store.Key{App: "b-app", Name: "1"}, 1); err != nil {
		t.Fatal(err)
	}
	wantApps("B-app", "a-app", "b-app", "é-app")
	if err := s.Delete(t.Context(), store.Key{App: "b-app", Name: "2"}, 1); err != nil {
		t.Fatal(err)
	}
	wantApps("B-app", "a-app", "é-app")
}

// overhead is what a stored value may add to the plaintext of MaxValueSize
// bytes without being refused: any cipher's tag or padding fits. Stores
// refuse values more than sizeSlack bytes over MaxValueSize.
const (
	overhead  = 64
	sizeSlack = store.ValueOverhead
)

func testTooLarge(t *testing.T, s store.Store) {
	sizer, ok := s.(store.Sizer)
	if !ok {
		t.Log("store has no size limit (not a store.Sizer); nothing to check")
		return
	}
	limit := sizer.MaxValueSize()
	if limit <= 0 {
		t.Fatalf("MaxValueSize() = %d", limit)
	}
	v1 := sample("app", "big")
	mustPut(t, s, v1, store.Absent)

	huge := next(v1)
	huge.ProtectedSecretValue = make([]byte, limit+sizeSlack+1)
	wantKind(t, s.Put(t.Context(), huge, 1), fault.TooLarge, "Put of an oversized value")
	wantStored(t, s, v1)

	largest := next(v1)
	largest.ProtectedSecretValue = make([]byte, limit+overhead)
	largest.ProtectedSecretValue[limit] = 0xff
	mustPut(t, s, largest, 1)
	wantStored(t, s, largest)
}

func testConcurrentIncrements(t *testing.T, s store.Store) {
	const workers, increments = 8, 10
	k := store.Key{App: "app", Name: "counter"}
	mustPut(t, s, NewCounter(k, workers), store.Absent)

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for range increments {
				if err := Increment(t.Context(), s, k, w); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Increment: %v", err)
	}

	it, err := s.Get(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if want := store.Version(1 + workers*increments); it.Version != want {
		t.Errorf("final version %v, want %v", it.Version, want)
	}
	for w, n := range Counts(it) {
		if n != increments {
			t.Errorf("worker %d: counted %d increments, want %d (lost updates)", w, n, increments)
		}
	}
}

func testConcurrentCreate(t *testing.T, s store.Store) {
	const writers = 16
	start := make(chan struct{})
	errs := make([]error, writers)
	items := make([]*store.Item, writers)
	var wg sync.WaitGroup
	for w := range writers {
		items[w] = sample("app", "race")
		items[w].ProtectedSecretValue = []byte{byte(w), 0x00, 0xff}
		wg.Go(func() {
			<-start
			errs[w] = s.Put(t.Context(), items[w], store.Absent)
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for w, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both created the item", winner, w)
		case err == nil:
			winner = w
		default:
			wantKind(t, err, fault.Exist, "losing creator")
		}
	}
	if winner < 0 {
		t.Fatal("no writer created the item")
	}
	wantStored(t, s, items[winner])
}

func testCancelledContext(t *testing.T, s store.Store) {
	it := sample("app", "x")
	mustPut(t, s, it, store.Absent)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := s.Get(ctx, it.Key)
	wantKind(t, err, fault.Unavailable, "Get with a cancelled context")
	err = s.Put(ctx, next(it), 1)
	wantKind(t, err, fault.Unavailable, "Put with a cancelled context")
	err = s.Put(ctx, sample("app", "new"), store.Absent)
	wantKind(t, err, fault.Unavailable, "Put Absent with a cancelled context")
	err = s.Delete(ctx, it.Key, 1)
	wantKind(t, err, fault.Unavailable, "Delete with a cancelled context")
	_, _, err = s.List(ctx, "app", "", 0)
	wantKind(t, err, fault.Unavailable, "List with a cancelled context")
	_, err = s.Apps(ctx)
	wantKind(t, err, fault.Unavailable, "Apps with a cancelled context")

	wantStored(t, s, it)
	_, err = s.Get(t.Context(), store.Key{App: "app", Name: "new"})
	wantKind(t, err, fault.NotFound, "Get of an item put with a cancelled context")
}
