package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

func testGetMissing(t *testing.T, s store.Store) {
	mustPut(t, s, sample("app", "present"), store.NoItem)
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "missing"})
	wantKind(t, err, fault.NotFound, "Get of a missing secret")
	_, err = s.Get(t.Context(), store.Key{App: "other", Name: "present"})
	wantKind(t, err, fault.NotFound, "Get in a missing application")
}

func testPutGetRoundTrip(t *testing.T, s store.Store) {
	a, b := sample("app", "a"), sample("app", "b")
	b.Format = "v1"
	b.Modified = time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("X", 3600))
	mustPut(t, s, a, store.NoItem)
	mustPut(t, s, b, store.NoItem)
	wantStored(t, s, a)
	wantStored(t, s, b)
}

func testCallerOwnsData(t *testing.T, s store.Store) {
	put := sample("app", "owned")
	want := clone(put)
	mustPut(t, s, put, store.NoItem)

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

	// A listing's IV is the caller's too.
	page, _, err := s.List(t.Context(), want.App, "", 0)
	if err != nil || len(page) != 1 {
		t.Fatalf("List = %v, %v; want one item", page, err)
	}
	scribble(&store.Item{Meta: page[0]})
	wantStored(t, s, want)
	page, _, err = s.List(t.Context(), want.App, "", 0)
	if err != nil || len(page) != 1 {
		t.Fatalf("List = %v, %v; want one item", page, err)
	}
	if d := diffMeta(page[0], want.Meta); d != "" {
		t.Fatalf("List after the caller changed a listing: %s", d)
	}
}

func testPutNoItemOnExisting(t *testing.T, s store.Store) {
	old := sample("app", "x")
	mustPut(t, s, old, store.NoItem)
	again := sample("app", "x")
	again.ProtectedSecretValue = []byte{0xff}
	wantKind(t, s.Put(t.Context(), again, store.NoItem), fault.Exist, "Put NoItem on an existing item")
	wantStored(t, s, old)
}

func testPutStaleVersion(t *testing.T, s store.Store) {
	v1 := sample("app", "x")
	mustPut(t, s, v1, store.NoItem)
	v2 := next(v1)
	mustPut(t, s, v2, v1.Revision())

	stale := next(v1) // a writer that still believes version 1 is current
	stale.ProtectedSecretValue = []byte{0xee}
	wantKind(t, s.Put(t.Context(), stale, v1.Revision()), fault.Conflict, "Put with a stale version")
	wantStored(t, s, v2)

	ahead := next(next(v2))
	wantKind(t, s.Put(t.Context(), ahead, store.Revision{Version: 3, IV: v2.InitialisationVector}), fault.Conflict,
		"Put with a version from the future")
	wantStored(t, s, v2)

	for _, expected := range []store.Version{1, 7, store.Unversioned} {
		missing := sample("app", "missing")
		missing.Version = expected.Next()
		err := s.Put(t.Context(), missing, store.Revision{Version: expected, IV: []byte("iv of a write that never was")})
		wantKind(t, err, fault.Conflict, "Put expecting version "+expected.String()+" of a missing item")
	}
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "missing"})
	wantKind(t, err, fault.NotFound, "Get after failed Puts")
}

// testPutStaleIV: the stored Version is the expected one, but it is
// another write (another IV) than the one the writer read.
func testPutStaleIV(t *testing.T, s store.Store) {
	v1 := sample("app", "x")
	mustPut(t, s, v1, store.NoItem)
	other := next(v1)
	other.ProtectedSecretValue = []byte{0xee}
	wrongIV := store.Revision{Version: 1, IV: freshIV(v1.Key)}
	wantKind(t, s.Put(t.Context(), other, wrongIV), fault.Conflict, "Put expecting version 1 with another IV")
	wantKind(t, s.Delete(t.Context(), v1.Key, wrongIV), fault.Conflict, "Delete expecting version 1 with another IV")
	wantStored(t, s, v1)
}

// testRecreatedItem is the lost update a Version alone cannot prevent
// (ABA): a writer reads an item, which is then deleted and created again.
// The new item has the Version the writer read, but not its IV, so the
// writer's Put and Delete fail and the new item is intact.
func testRecreatedItem(t *testing.T, s store.Store) {
	mustPut(t, s, sample("app", "x"), store.NoItem)
	read, err := s.Get(t.Context(), store.Key{App: "app", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	r1 := read.Revision()
	if err := s.Delete(t.Context(), read.Key, r1); err != nil {
		t.Fatalf("Delete with the revision read: %v", err)
	}
	recreated := sample("app", "x")
	mustPut(t, s, recreated, store.NoItem)
	if recreated.Version != r1.Version || recreated.Revision().Equal(r1) {
		t.Fatalf("the recreated item has version %v and the same IV: %v; want version %v and another IV",
			recreated.Version, recreated.Revision().Equal(r1), r1.Version)
	}

	stale := next(read) // a writer that still holds what it read before the delete
	stale.ProtectedSecretValue = []byte{0xee}
	wantKind(t, s.Put(t.Context(), stale, r1), fault.Conflict, "Put expecting the revision of a deleted item")
	wantStored(t, s, recreated)
	wantKind(t, s.Delete(t.Context(), read.Key, r1), fault.Conflict, "Delete expecting the revision of a deleted item")
	wantStored(t, s, recreated)

	// The revision of the new item works.
	n := next(recreated)
	mustPut(t, s, n, recreated.Revision())
	wantStored(t, s, n)
}

// testExpectedWithoutIV: an expected Revision names one write by its IV
// (store.CheckExpected); one without is an argument error, before any
// condition is checked, and changes nothing.
func testExpectedWithoutIV(t *testing.T, s store.Store) {
	v1 := sample("app", "x")
	mustPut(t, s, v1, store.NoItem)
	old := legacy("app", "legacy")
	mustPut(t, s, old, store.NoItem)
	missing := store.Key{App: "app", Name: "missing"}

	for _, c := range []struct {
		what     string
		it       *store.Item
		expected store.Revision
	}{
		{"version 1 without IV", next(v1), store.Revision{Version: 1}},
		{"version 1 with an empty IV", next(v1), store.Revision{Version: 1, IV: []byte{}}},
		{"Unversioned without IV", next(old), store.Revision{Version: store.Unversioned}},
		{"Absent with an IV", sample("app", "new"), store.Revision{Version: store.Absent, IV: v1.InitialisationVector}},
		{"a negative version", next(v1), store.Revision{Version: -7, IV: v1.InitialisationVector}},
	} {
		wantKind(t, s.Put(t.Context(), c.it, c.expected), fault.Invalid, "Put expecting "+c.what)
		wantKind(t, s.Delete(t.Context(), c.it.Key, c.expected), fault.Invalid, "Delete expecting "+c.what)
		wantKind(t, s.Delete(t.Context(), missing, c.expected), fault.Invalid, "Delete of a missing item expecting "+c.what)
	}
	wantStored(t, s, v1)
	wantStored(t, s, old)
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "new"})
	wantKind(t, err, fault.NotFound, "Get after a rejected create")
}

func testPutVersionChain(t *testing.T, s store.Store) {
	it := sample("app", "chain")
	mustPut(t, s, it, store.NoItem)
	for range 2 {
		prev := it
		it = next(prev)
		mustPut(t, s, it, prev.Revision())
		wantStored(t, s, it)
	}
	if it.Version != 3 {
		t.Fatalf("chain ended at version %v, want 3", it.Version)
	}
}

func testPutVersionMustFollowExpected(t *testing.T, s store.Store) {
	v1 := sample("app", "x")
	mustPut(t, s, v1, store.NoItem)
	for _, c := range []struct{ version, expected store.Version }{
		{1, 1}, {3, 1}, {store.Unversioned, 1}, {2, store.Absent}, {2, store.Unversioned},
	} {
		it := next(v1)
		it.Version = c.version
		expected := store.NoItem
		if c.expected != store.Absent {
			expected = store.Revision{Version: c.expected, IV: v1.InitialisationVector}
		}
		err := s.Put(t.Context(), it, expected)
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
		wantKind(t, s.Put(t.Context(), it, store.NoItem), fault.Invalid, "Put without a protected field")
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
		err := s.Put(t.Context(), sample(c.app, c.name), store.NoItem)
		wantKind(t, err, c.kind, "Put of key "+strings.ToValidUTF8(c.app+"/"+c.name, "?"))
	}
	apps, err := store.AppsAll(t.Context(), s)
	if err != nil || len(apps) != 0 {
		t.Fatalf("after rejected Puts, Apps = %q, %v; want none", apps, err)
	}
}

func testLongestName(t *testing.T, s store.Store) {
	name := strings.Repeat("é", store.MaxNameLen/2) + "x" // 255 bytes
	it := sample(strings.Repeat("a", store.MaxNameLen), name)
	mustPut(t, s, it, store.NoItem)
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
	mustPut(t, s, old, store.NoItem)
	wantStored(t, s, old) // Version Unversioned, Format "", Size -1, zero Modified

	wantKind(t, s.Put(t.Context(), next(next(old)), store.Revision{Version: 1, IV: old.InitialisationVector}),
		fault.Conflict, "Put expecting version 1 of a legacy item")
	wantStored(t, s, old)
	wantKind(t, s.Put(t.Context(), next(old), store.Revision{Version: store.Unversioned, IV: freshIV(old.Key)}),
		fault.Conflict, "Put expecting Unversioned with another IV")
	wantStored(t, s, old)

	upgraded := next(old)
	upgraded.Format, upgraded.Size, upgraded.Modified = "v2", 7, time.Now()
	mustPut(t, s, upgraded, old.Revision())
	wantStored(t, s, upgraded)

	again := next(old)
	wantKind(t, s.Put(t.Context(), again, old.Revision()), fault.Conflict, "second Put expecting Unversioned")
	wantStored(t, s, upgraded)

	v3 := sample("app", "v3")
	mustPut(t, s, v3, store.NoItem)
	for range 2 {
		prev := v3
		v3 = next(prev)
		mustPut(t, s, v3, prev.Revision())
	}
	wantKind(t, s.Put(t.Context(), sample("app", "v3"), store.Revision{Version: store.Unversioned, IV: v3.InitialisationVector}),
		fault.Conflict, "Put expecting Unversioned of an item at version 3")
	wantStored(t, s, v3)
}

func testDelete(t *testing.T, s store.Store) {
	k := store.Key{App: "app", Name: "doomed"}
	wantKind(t, s.Delete(t.Context(), k, store.Revision{Version: 1, IV: freshIV(k)}), fault.NotFound, "Delete of a missing item")
	wantKind(t, s.Delete(t.Context(), k, store.NoItem), fault.NotFound, "Delete expecting NoItem of a missing item")

	first := sample(k.App, k.Name)
	it := next(first)
	mustPut(t, s, first, store.NoItem)
	mustPut(t, s, it, first.Revision())
	keep := sample("app", "kept")
	mustPut(t, s, keep, store.NoItem)

	for _, stale := range []store.Revision{
		first.Revision(),
		{Version: 3, IV: it.InitialisationVector},
		{Version: store.Unversioned, IV: it.InitialisationVector},
		{Version: 2, IV: first.InitialisationVector},
		store.NoItem,
	} {
		wantKind(t, s.Delete(t.Context(), k, stale), fault.Conflict, "Delete expecting version "+stale.String())
		wantStored(t, s, it)
	}
	if err := s.Delete(t.Context(), k, it.Revision()); err != nil {
		t.Fatalf("Delete with the stored revision: %v", err)
	}
	_, err := s.Get(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Get after Delete")
	all, err := store.ListAll(t.Context(), s, k.App)
	if err != nil || len(all) != 1 || all[0].Key != keep.Key {
		t.Fatalf("ListAll after Delete = %v, %v; want only %s", all, err, keep.Key)
	}
	wantStored(t, s, keep)
	wantKind(t, s.Delete(t.Context(), k, it.Revision()), fault.NotFound, "second Delete")
}

func testDeleteLegacy(t *testing.T, s store.Store) {
	old := legacy("app", "legacy")
	mustPut(t, s, old, store.NoItem)
	wantKind(t, s.Delete(t.Context(), old.Key, store.Revision{Version: 1, IV: old.InitialisationVector}),
		fault.Conflict, "Delete expecting version 1 of a legacy item")
	wantKind(t, s.Delete(t.Context(), old.Key, store.Revision{Version: store.Unversioned, IV: freshIV(old.Key)}),
		fault.Conflict, "Delete expecting Unversioned with another IV")
	wantStored(t, s, old)
	if err := s.Delete(t.Context(), old.Key, old.Revision()); err != nil {
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
	want := putPaged(t, s, app)
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
		if names := listPaged(t, s, app, limit, want); !slices.Equal(names, sorted) {
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

// putPaged stores pagedNames in app (new, legacy and rewritten items in
// turn) and neighbours whose items must not leak into its listing, and
// returns the Meta of each name.
func putPaged(t *testing.T, s store.Store, app string) map[string]store.Meta {
	want := map[string]store.Meta{}
	for i, name := range pagedNames {
		it := sample(app, name)
		it.Size = int64(i)
		it.Modified = it.Modified.Add(time.Duration(i) * time.Hour)
		expected := store.NoItem
		switch i % 3 {
		case 1:
			it = legacy(app, name)
		case 2:
			prev := it
			mustPut(t, s, prev, store.NoItem)
			it, expected = next(prev), prev.Revision()
		}
		mustPut(t, s, it, expected)
		want[name] = it.Meta
	}
	for _, other := range []string{"page", "pagedX", "Paged", "paged2"} {
		mustPut(t, s, sample(other, "alpha"), store.NoItem)
		mustPut(t, s, sample(other, "zzz"), store.NoItem)
	}
	return want
}

// listPaged lists app page by page with limit, checking every page
// against want, and returns the names in the order listed.
func listPaged(t *testing.T, s store.Store, app string, limit int, want map[string]store.Meta) []string {
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
			return names
		}
		after = next
	}
}

func testListEmptyApp(t *testing.T, s store.Store) {
	mustPut(t, s, sample("full", "x"), store.NoItem)
	for _, limit := range []int{0, 1} {
		page, next, err := s.List(t.Context(), "empty", "", limit)
		if err != nil || len(page) != 0 || next != "" {
			t.Fatalf("List of an empty application = %v, %q, %v; want nothing", page, next, err)
		}
	}
}

// testListRevisions: a listing carries the Revision of each item, the
// same as Get's, so that a caller can write or delete what it listed
// without reading it first.
func testListRevisions(t *testing.T, s store.Store) {
	const app = "app"
	v1 := sample(app, "v1")
	mustPut(t, s, v1, store.NoItem)
	first := sample(app, "v2")
	mustPut(t, s, first, store.NoItem)
	mustPut(t, s, next(first), first.Revision())
	old := legacy(app, "old")
	mustPut(t, s, old, store.NoItem)

	all, err := store.ListAll(t.Context(), s, app)
	if err != nil || len(all) != 3 {
		t.Fatalf("ListAll = %v, %v; want 3 items", all, err)
	}
	for _, m := range all {
		got, err := s.Get(t.Context(), m.Key)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.InitialisationVector) == 0 || !m.Revision().Equal(got.Revision()) {
			t.Fatalf("%s: listed revision %v (IV %x), Get's %v (IV %x)", m.Key,
				m.Version, m.InitialisationVector, got.Version, got.InitialisationVector)
		}
		n := next(got)
		mustPut(t, s, n, m.Revision())
		wantStored(t, s, n)
	}
}

func testApps(t *testing.T, s store.Store) {
	apps, next, err := s.Apps(t.Context(), "", 0)
	if err != nil || len(apps) != 0 || next != "" {
		t.Fatalf("Apps of an empty store = %q, %v", apps, err)
	}
	keys := []store.Key{
		{App: "b-app", Name: "1"}, {App: "a-app", Name: "1"}, {App: "a-app", Name: "2"},
		{App: "B-app", Name: "1"}, {App: "é-app", Name: "1"}, {App: "b-app", Name: "2"},
	}
	put := map[store.Key]*store.Item{}
	for _, k := range keys {
		put[k] = sample(k.App, k.Name)
		mustPut(t, s, put[k], store.NoItem)
	}
	wantApps := func(want ...string) {
		t.Helper()
		got, err := store.AppsAll(t.Context(), s)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Apps = %q, %v; want %q", got, err, want)
		}
	}
	wantApps("B-app", "a-app", "b-app", "é-app")

	if err := s.Delete(t.Context(), keys[0], put[keys[0]].Revision()); err != nil {
		t.Fatal(err)
	}
	wantApps("B-app", "a-app", "b-app", "é-app")
	if err := s.Delete(t.Context(), keys[5], put[keys[5]].Revision()); err != nil {
		t.Fatal(err)
	}
	wantApps("B-app", "a-app", "é-app")
}

// Apps lists in pages of at most limit names, each page sorted and
// distinct, whose cursors lead through every application; AppsAll
// collects them sorted, each once. An application with several items, in
// a store that pages by item (DynamoDB), may span pages: the collection
// still names it once.
func testAppsPages(t *testing.T, s store.Store) {
	var want []string
	for i := range 7 {
		app := fmt.Sprintf("app-%d", 6-i)
		want = append(want, app)
		for _, name := range []string{"a", "b"} {
			mustPut(t, s, sample(app, name), store.NoItem)
		}
	}
	slices.Sort(want)

	const limit = 2
	var collected []string
	pages := 0
	for cursor := ""; ; {
		if pages++; pages > 100 {
			t.Fatalf("Apps gave more than 100 pages of %d for %d applications: its cursors go round", limit, len(want))
		}
		page, next, err := s.Apps(t.Context(), cursor, limit)
		if err != nil {
			t.Fatalf("Apps page %d (cursor %q): %v", pages, cursor, err)
		}
		if len(page) > limit || !slices.IsSorted(page) || len(slices.Compact(slices.Clone(page))) != len(page) {
			t.Fatalf("Apps page %d = %q; want at most %d names, sorted and distinct", pages, page, limit)
		}
		collected = append(collected, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	// Pages of at most limit names that together name every application
	// are several pages.
	if got := store.SortApps(collected); !slices.Equal(got, want) {
		t.Fatalf("the pages of Apps name %q; want %q", got, want)
	}
	if got, err := store.AppsAll(t.Context(), s); err != nil || !slices.Equal(got, want) {
		t.Fatalf("AppsAll = %q, %v; want %q", got, err, want)
	}
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
	mustPut(t, s, v1, store.NoItem)

	huge := next(v1)
	huge.ProtectedSecretValue = make([]byte, limit+sizeSlack+1)
	wantKind(t, s.Put(t.Context(), huge, v1.Revision()), fault.TooLarge, "Put of an oversized value")
	wantStored(t, s, v1)

	largest := next(v1)
	largest.ProtectedSecretValue = make([]byte, limit+overhead)
	largest.ProtectedSecretValue[limit] = 0xff
	mustPut(t, s, largest, v1.Revision())
	wantStored(t, s, largest)
}

func testConcurrentIncrements(t *testing.T, s store.Store) {
	const workers, increments = 8, 10
	k := store.Key{App: "app", Name: "counter"}
	mustPut(t, s, NewCounter(k, workers), store.NoItem)

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
			errs[w] = s.Put(t.Context(), items[w], store.NoItem)
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
	mustPut(t, s, it, store.NoItem)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := s.Get(ctx, it.Key)
	wantKind(t, err, fault.Unavailable, "Get with a cancelled context")
	err = s.Put(ctx, next(it), it.Revision())
	wantKind(t, err, fault.Unavailable, "Put with a cancelled context")
	err = s.Put(ctx, sample("app", "new"), store.NoItem)
	wantKind(t, err, fault.Unavailable, "Put NoItem with a cancelled context")
	err = s.Delete(ctx, it.Key, it.Revision())
	wantKind(t, err, fault.Unavailable, "Delete with a cancelled context")
	_, _, err = s.List(ctx, "app", "", 0)
	wantKind(t, err, fault.Unavailable, "List with a cancelled context")
	_, _, err = s.Apps(ctx, "", 0)
	wantKind(t, err, fault.Unavailable, "Apps with a cancelled context")

	wantStored(t, s, it)
	_, err = s.Get(t.Context(), store.Key{App: "app", Name: "new"})
	wantKind(t, err, fault.NotFound, "Get of an item put with a cancelled context")
}
