package catalogtest

import (
	"bytes"
	"slices"
	"testing"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// neverWritten is the revision of a write no store ever made.
var neverWritten = store.Revision{Version: 1, IV: []byte("the IV of a write that never was")}

// Lookup: "A secret with no item is fault.NotFound."
func testLookupOfAMissingSecretIsNotFound(t *testing.T, s Subject) {
	c := s.Catalog
	mustPut(t, c, key("present"), raw, store.NoItem)
	_, err := c.Lookup(t.Context(), key("missing"))
	wantKind(t, err, fault.NotFound, "Lookup of a missing secret")
	_, err = c.Lookup(t.Context(), store.Key{App: "other", Name: "present"})
	wantKind(t, err, fault.NotFound, "Lookup in an application without secrets")
}

// Put: "A successful Put makes the new revision current at once."
func testLookupAfterPutAnswersThePutRevision(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, raw, store.NoItem)
	wantRevision(t, mustLookup(t, c, k), v1, "Lookup after the first Put")
	v2 := mustPut(t, c, k, []byte("two"), v1.Revision())
	wantRevision(t, mustLookup(t, c, k), v2, "Lookup after the second Put")
}

// store.Version: 1 on the first write, +1 on every write; store.Revision:
// the IV is fresh on every write; Meta.Size is the plaintext length.
func testPutVersionsFollowTheStore(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, raw, store.NoItem)
	if v1.Key != k || v1.Version != 1 || v1.Size != int64(len(raw)) {
		t.Fatalf("first Put: %s version %v size %d; want %s version 1 size %d", v1.Key, v1.Version, v1.Size, k, len(raw))
	}
	v2 := mustPut(t, c, k, []byte("longer value"), v1.Revision())
	if v2.Version != 2 || v2.Size != int64(len("longer value")) || bytes.Equal(v2.InitialisationVector, v1.InitialisationVector) {
		t.Fatalf("second Put: version %v size %d, same IV %v; want version 2 size %d and a fresh IV",
			v2.Version, v2.Size, bytes.Equal(v2.InitialisationVector, v1.InitialisationVector), len("longer value"))
	}
}

// Snapshot: the content of the revision meta describes; Size is the
// plaintext length.
func testSnapshotReadsTheBytesPut(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	meta := mustPut(t, c, k, raw, store.NoItem)
	snap := c.Snapshot(k, meta)
	defer snap.Release()
	wantRevision(t, snap.Meta(), meta, "Snapshot's Meta")
	if n, err := snap.Size(t.Context()); err != nil || n != int64(len(raw)) {
		t.Fatalf("Size = %d, %v; want %d", n, err, len(raw))
	}
	v, err := snap.Value(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Wipe()
	wantBytes(t, v, raw, "Value of the revision put")
	wantBytes(t, read(t, c, k, mustLookup(t, c, k)), raw, "Value of the revision looked up")
}

func testSnapshotReadsAnEmptyValueAsEmpty(t *testing.T, s Subject) {
	c, k := s.Catalog, key("empty")
	meta := mustPut(t, c, k, []byte{}, store.NoItem)
	if meta.Size != 0 {
		t.Fatalf("Put of an empty value: size %d", meta.Size)
	}
	snap := c.Snapshot(k, meta)
	defer snap.Release()
	if n, err := snap.Size(t.Context()); err != nil || n != 0 {
		t.Fatalf("Size = %d, %v; want 0", n, err)
	}
	if n, err := snap.ReadAt(t.Context(), make([]byte, 4), 0); err != nil || n != 0 {
		t.Fatalf("ReadAt = %d, %v; want 0, nil", n, err)
	}
	wantBytes(t, read(t, c, k, meta), nil, "Value of an empty secret")
}

// A revision another writer made reads as the bytes it wrote.
func testSnapshotReadsTheBytesWrittenElsewhere(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	written := s.WriteElsewhere(k, raw)
	meta := mustLookup(t, c, k)
	wantRevision(t, meta, written, "Lookup of a secret written elsewhere")
	wantBytes(t, read(t, c, k, meta), raw, "Value of a secret written elsewhere")
}

// ReadAt: "as io.ReaderAt without io.EOF: n < len(p) means the value
// ended".
func testReadAtShortMeansTheValueEnded(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	snap := c.Snapshot(k, mustPut(t, c, k, raw, store.NoItem))
	defer snap.Release()
	p := make([]byte, 4)
	if n, err := snap.ReadAt(t.Context(), p, 2); err != nil || n != 4 {
		t.Fatalf("ReadAt of 4 bytes at 2 = %d, %v; want 4, nil", n, err)
	}
	wantBytes(t, p, raw[2:6], "ReadAt of 4 bytes at 2")
	p = make([]byte, 100)
	n, err := snap.ReadAt(t.Context(), p, 3)
	if err != nil || n != len(raw)-3 {
		t.Fatalf("ReadAt past the end = %d, %v; want %d, nil", n, err, len(raw)-3)
	}
	wantBytes(t, p[:n], raw[3:], "ReadAt past the end")
	if n, err := snap.ReadAt(t.Context(), p, int64(len(raw))); err != nil || n != 0 {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, nil", n, err)
	}
}

// Source.Put: "Put does not keep or modify value; the caller still owns
// it."
func testPutDoesNotKeepTheCallersSlice(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	value := bytes.Clone(raw)
	meta := mustPut(t, c, k, value, store.NoItem)
	wantBytes(t, value, raw, "the caller's slice after Put")
	for i := range value {
		value[i] = 'x'
	}
	wantBytes(t, read(t, c, k, meta), raw, "Value after the caller reused its slice")
}

// Snapshot.Value: "a copy of the whole plaintext, which the caller owns".
func testValueIsTheCallersCopy(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	snap := c.Snapshot(k, mustPut(t, c, k, raw, store.NoItem))
	defer snap.Release()
	v, err := snap.Value(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range v {
		v[i] = 'x'
	}
	again, err := snap.Value(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Wipe()
	wantBytes(t, again, raw, "Value after the caller changed the last copy")
}

// Put is conditional on the expected Revision; another one stored is
// fault.Conflict, and changes nothing.
func testPutExpectingAReplacedRevisionIsAConflict(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	v2 := mustPut(t, c, k, []byte("two"), v1.Revision())
	_, err := c.Put(t.Context(), k, []byte("stale"), v1.Revision())
	wantKind(t, err, fault.Conflict, "Put expecting the revision replaced")
	wantStored(t, c, k, v2, []byte("two"))
}

func testPutExpectingARevisionReplacedElsewhereIsAConflict(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	v2 := s.WriteElsewhere(k, []byte("two"))
	_, err := c.Put(t.Context(), k, []byte("mine"), v1.Revision())
	wantKind(t, err, fault.Conflict, "Put expecting a revision replaced elsewhere")
	wantStored(t, c, k, v2, []byte("two"))
}

// store.Store.Put: "A failed condition is fault.Exist when NoItem was
// expected".
func testPutNoItemOnAStoredSecretIsExist(t *testing.T, s Subject) {
	c, k, other := s.Catalog, key("a"), key("b")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	_, err := c.Put(t.Context(), k, []byte("again"), store.NoItem)
	wantKind(t, err, fault.Exist, "Put of a new secret over one put")
	wantStored(t, c, k, v1, []byte("one"))

	elsewhere := s.WriteElsewhere(other, []byte("theirs"))
	_, err = c.Put(t.Context(), other, []byte("mine"), store.NoItem)
	wantKind(t, err, fault.Exist, "Put of a new secret over one written elsewhere")
	wantStored(t, c, other, elsewhere, []byte("theirs"))
}

// store.PutRefused: a revision expected of a missing item is
// fault.Conflict.
func testPutExpectingARevisionOfAMissingSecretIsAConflict(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	_, err := c.Put(t.Context(), k, raw, neverWritten)
	wantKind(t, err, fault.Conflict, "Put expecting a revision of a missing secret")
	_, err = c.Verify(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Verify after the refused Put")
}

// store.Revision: a secret deleted and created again starts over at
// Version 1, with another IV, so that a writer who read the first cannot
// overwrite the second.
func testPutExpectingTheRevisionOfARecreatedSecretIsAConflict(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	if err := c.Delete(t.Context(), k, v1.Revision()); err != nil {
		t.Fatal(err)
	}
	again := mustPut(t, c, k, []byte("again"), store.NoItem)
	if again.Version != 1 || again.Revision().Equal(v1.Revision()) {
		t.Fatalf("the secret created again has version %v, the same IV: %v; want version 1 and another IV",
			again.Version, again.Revision().Equal(v1.Revision()))
	}
	_, err := c.Put(t.Context(), k, []byte("stale"), v1.Revision())
	wantKind(t, err, fault.Conflict, "Put expecting the revision deleted")
	wantStored(t, c, k, again, []byte("again"))
}

// Put: "a failed one makes the catalog ask the store about k next time".
func testAFailedPutMakesTheNextLookupAskTheStore(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	wantRevision(t, mustLookup(t, c, k), v1, "Lookup after Put")
	v2 := s.WriteElsewhere(k, []byte("two"))
	_, err := c.Put(t.Context(), k, []byte("mine"), v1.Revision())
	wantKind(t, err, fault.Conflict, "Put expecting a revision replaced elsewhere")
	wantRevision(t, mustLookup(t, c, k), v2, "Lookup after the failed Put")
}

// MaxValueSize: the largest value Put accepts.
func testPutOfMaxValueSizeBytesIsAccepted(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	value := bytes.Repeat([]byte{0xa5}, int(c.MaxValueSize()))
	meta := mustPut(t, c, k, value, store.NoItem)
	wantBytes(t, read(t, c, k, meta), value, "Value of the largest value")
}

// store.Store.Put: an item over the size limit is fault.TooLarge, and
// "A failed Put changes nothing".
func testPutOverMaxValueSizeIsTooLargeAndStoresNothing(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	_, err := c.Put(t.Context(), k, make([]byte, c.MaxValueSize()+1), store.NoItem)
	wantKind(t, err, fault.TooLarge, "Put of one byte more than MaxValueSize")
	_, err = c.Verify(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Verify after the refused Put")
}

// Lookup returns what k is now: nothing, once deleted through the
// catalog.
func testLookupAfterDeleteIsNotFound(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, raw, store.NoItem)
	wantRevision(t, mustLookup(t, c, k), v1, "Lookup after Put")
	if err := c.Delete(t.Context(), k, v1.Revision()); err != nil {
		t.Fatal(err)
	}
	_, err := c.Lookup(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Lookup after Delete")
}

// store.Store.Delete: "A missing item is fault.NotFound".
func testDeleteOfAMissingSecretIsNotFound(t *testing.T, s Subject) {
	c := s.Catalog
	mustPut(t, c, key("present"), raw, store.NoItem)
	wantKind(t, c.Delete(t.Context(), key("missing"), neverWritten), fault.NotFound, "Delete of a missing secret")
}

func testDeleteOfASecretRemovedElsewhereIsNotFound(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, raw, store.NoItem)
	s.RemoveElsewhere(k)
	wantKind(t, c.Delete(t.Context(), k, v1.Revision()), fault.NotFound, "Delete of a secret removed elsewhere")
}

// store.Store.Delete: "another Revision fault.Conflict", and nothing is
// removed.
func testDeleteExpectingAReplacedRevisionIsAConflict(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	v2 := s.WriteElsewhere(k, []byte("two"))
	wantKind(t, c.Delete(t.Context(), k, v1.Revision()), fault.Conflict, "Delete expecting a revision replaced elsewhere")
	wantStored(t, c, k, v2, []byte("two"))
}

// List: one page of app's metadata "as store.Store.List": ascending byte
// order of Name, from after `after`, at most limit entries, next "" at
// the end; with what Put and Delete made.
func testListGivesWhatIsStoredInByteOrderByPages(t *testing.T, s Subject) {
	c := s.Catalog
	put := map[string]store.Meta{}
	for _, name := range []string{"b", "gone", "a", "é", "B", "a-b"} {
		put[name] = mustPut(t, c, key(name), []byte(name), store.NoItem)
	}
	if err := c.Delete(t.Context(), key("gone"), put["gone"].Revision()); err != nil {
		t.Fatal(err)
	}
	got := listAll(t, c, app, 2)
	want := []string{"B", "a", "a-b", "b", "é"}
	if names := namesOf(got); !slices.Equal(names, want) {
		t.Fatalf("List gave %q, want %q", names, want)
	}
	for _, m := range got {
		wantRevision(t, m, put[m.Name], "listed "+m.Name)
	}
}

// store.Store.List: "An application without items lists empty, without
// error."
func testListOfAnAppWithoutSecretsIsEmpty(t *testing.T, s Subject) {
	page, next, err := s.Catalog.List(t.Context(), "none", "", 0)
	if err != nil || len(page) != 0 || next != "" {
		t.Fatalf("List of an application without secrets = %v, %q, %v; want nothing", namesOf(page), next, err)
	}
}

// List "learns from it": Known then holds what it listed.
func testListLearnsWhatItLists(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	written := s.WriteElsewhere(k, raw)
	page, _, err := c.List(t.Context(), app, "", 0)
	if err != nil || len(page) != 1 {
		t.Fatalf("List = %q, %v; want one secret", namesOf(page), err)
	}
	wantRevision(t, page[0], written, "listed")
	known, ok := c.Known(k)
	if !ok {
		t.Fatal("Known after a listing named the secret: false")
	}
	wantRevision(t, known, written, "Known after List")
}

// Apps: "as Source.Apps": sorted, each name once.
func testAppsAreSortedEachOnce(t *testing.T, s Subject) {
	want := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"}
	for _, a := range []string{"delta", "alpha", "foxtrot", "echo", "charlie", "bravo"} {
		s.WriteElsewhere(store.Key{App: a, Name: "x"}, raw)
		s.WriteElsewhere(store.Key{App: a, Name: "y"}, raw)
	}
	got, err := s.Catalog.Apps(t.Context())
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Apps = %q, %v; want %q", got, err, want)
	}
}

// Apps lists the applications that hold secrets, and a Put makes its
// revision current at once.
func testAppsNameAnAppAPutCreated(t *testing.T, s Subject) {
	c := s.Catalog
	s.WriteElsewhere(store.Key{App: "first", Name: "x"}, raw)
	if got, err := c.Apps(t.Context()); err != nil || !slices.Equal(got, []string{"first"}) {
		t.Fatalf("Apps = %q, %v; want [first]", got, err)
	}
	mustPut(t, c, store.Key{App: "second", Name: "x"}, raw, store.NoItem)
	if got, err := c.Apps(t.Context()); err != nil || !slices.Equal(got, []string{"first", "second"}) {
		t.Fatalf("Apps after a Put in a new application = %q, %v; want [first second]", got, err)
	}
}

// HasSecrets: "whether app holds at least one secret".
func testHasSecretsOfAnAppWrittenElsewhere(t *testing.T, s Subject) {
	s.WriteElsewhere(key("a"), raw)
	if has, err := s.Catalog.HasSecrets(t.Context(), app); err != nil || !has {
		t.Fatalf("HasSecrets of an application holding a secret = %v, %v; want true", has, err)
	}
}

func testHasSecretsOfAnAppWithNoneIsFalse(t *testing.T, s Subject) {
	s.WriteElsewhere(key("a"), raw)
	if has, err := s.Catalog.HasSecrets(t.Context(), "none"); err != nil || has {
		t.Fatalf("HasSecrets of an application without secrets = %v, %v; want false", has, err)
	}
}

// HasSecrets is "fresh within the TTL, as Lookup", which answers
// NotFound once the secret is deleted through the catalog.
func testHasSecretsIsFalseOnceTheLastSecretIsDeleted(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	meta := mustPut(t, c, k, raw, store.NoItem)
	if has, err := c.HasSecrets(t.Context(), app); err != nil || !has {
		t.Fatalf("HasSecrets after Put = %v, %v; want true", has, err)
	}
	if err := c.Delete(t.Context(), k, meta.Revision()); err != nil {
		t.Fatal(err)
	}
	if has, err := c.HasSecrets(t.Context(), app); err != nil || has {
		t.Fatalf("HasSecrets after its last secret was deleted = %v, %v; want false", has, err)
	}
}

// Verify: "asks the store what k is now, ignoring the TTL".
func testVerifySeesAChangeMadeElsewhere(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	wantRevision(t, mustLookup(t, c, k), v1, "Lookup after Put")
	v2 := s.WriteElsewhere(k, []byte("two"))
	got, err := c.Verify(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	wantRevision(t, got, v2, "Verify after a change made elsewhere")
}

func testVerifySeesARemovalMadeElsewhere(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, raw, store.NoItem)
	wantRevision(t, mustLookup(t, c, k), v1, "Lookup after Put")
	s.RemoveElsewhere(k)
	_, err := c.Verify(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Verify after a removal made elsewhere")
}

func testVerifyOfAMissingSecretIsNotFound(t *testing.T, s Subject) {
	mustPut(t, s.Catalog, key("present"), raw, store.NoItem)
	_, err := s.Catalog.Verify(t.Context(), key("missing"))
	wantKind(t, err, fault.NotFound, "Verify of a missing secret")
}

// Lookup: "The returned revision's protected item is in memory when
// Lookup returns (a Snapshot of it needs no store read)". The store holds
// another revision by the Bind, written elsewhere, which the catalog has
// not learned of: a Bind that read the store would be Superseded.
func testLookupLeavesTheItemInMemory(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	s.WriteElsewhere(k, []byte("one"))
	v1 := mustLookup(t, c, k)
	s.WriteElsewhere(k, []byte("two"))
	wantBinds(t, c, k, v1, "Bind of the revision Lookup answered, after a write elsewhere")
}

// The same once a snapshot of the revision looked up was taken and
// released: "it stays there while the catalog holds that revision for
// current", so the last Release of a snapshot lets go of the snapshot's
// pin, not of the item (a file opened, read and closed, then opened again
// within the TTL).
func testLookupLeavesTheItemInMemoryWhenASnapshotOfItIsReleased(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	s.WriteElsewhere(k, []byte("one"))
	v1 := mustLookup(t, c, k)
	snap := c.Snapshot(k, v1)
	if err := snap.Bind(t.Context()); err != nil {
		t.Fatalf("Bind of the revision Lookup answered: %v", err)
	}
	snap.Release()
	s.WriteElsewhere(k, []byte("two"))
	wantKnown(t, c, k, v1, "Known after the write elsewhere")
	wantBinds(t, c, k, v1, "Bind of the revision Lookup answered, after a snapshot of it was released and a write elsewhere")
}

// Known: "false if it holds none (never looked up, or absent)", and it
// asks no one: a secret only the store holds is unknown.
func testKnownIsFalseForANameNeverAskedAbout(t *testing.T, s Subject) {
	s.WriteElsewhere(key("a"), raw)
	wantUnknown(t, s.Catalog, key("a"), "Known of a secret never asked about")
}

func testKnownIsWhatLookupAnswered(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	s.WriteElsewhere(k, raw)
	wantKnown(t, c, k, mustLookup(t, c, k), "Known after Lookup")
}

func testKnownIsFalseAfterALookupFoundNothing(t *testing.T, s Subject) {
	c, k := s.Catalog, key("missing")
	mustPut(t, c, key("present"), raw, store.NoItem)
	_, err := c.Lookup(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Lookup of a missing secret")
	wantUnknown(t, c, k, "Known after a Lookup found nothing")
}

func testKnownIsThePutRevision(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	wantKnown(t, c, k, mustPut(t, c, k, raw, store.NoItem), "Known after Put")
}

// Known answers "without asking anyone": a change made elsewhere since
// is not known.
func testKnownDoesNotAskTheStore(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := mustPut(t, c, k, []byte("one"), store.NoItem)
	s.WriteElsewhere(k, []byte("two"))
	wantKnown(t, c, k, v1, "Known after a change made elsewhere")
}

// Known is "what the catalog last learned of k": Verify's answer.
func testKnownIsWhatVerifyLearned(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	mustPut(t, c, k, []byte("one"), store.NoItem)
	v2 := s.WriteElsewhere(k, []byte("two"))
	if _, err := c.Verify(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	wantKnown(t, c, k, v2, "Known after Verify found a change")
	s.RemoveElsewhere(k)
	_, err := c.Verify(t.Context(), k)
	wantKind(t, err, fault.NotFound, "Verify after a removal made elsewhere")
	wantUnknown(t, c, k, "Known after Verify found the secret gone")
}

func testKnownIsFalseAfterDelete(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	meta := mustPut(t, c, k, raw, store.NoItem)
	if err := c.Delete(t.Context(), k, meta.Revision()); err != nil {
		t.Fatal(err)
	}
	wantUnknown(t, c, k, "Known after Delete")
}

// Bind: "If the store holds another revision now, the one asked for can
// no longer be read: the error is a *Superseded naming what is stored
// instead". The catalog never held the revision asked for, so Bind must
// read the store.
func testBindOfARevisionReplacedElsewhereIsSuperseded(t *testing.T, s Subject) {
	k := key("a")
	v1 := s.WriteElsewhere(k, []byte("one"))
	v2 := s.WriteElsewhere(k, []byte("two"))
	wantSupersededBy(t, s.Catalog, k, v1, v2)
}

// Every error of a Catalog is a *fault.Error "with the Kinds of the
// store.Store contract", where another revision than the one expected is
// fault.Conflict: an answer of the store (fault.Answered), not silence.
func testBindSupersededIsAConflict(t *testing.T, s Subject) {
	err := bindReplaced(t, s, key("a"))
	wantFaultError(t, err, "Bind of a replaced revision")
	wantKind(t, err, fault.Conflict, "Bind of a replaced revision")
}

// Bind of a revision the catalog looked up, and held for current until
// Verify learned that another replaced it, with no snapshot pinned on it
// meanwhile: the catalog keeps only what is pinned of a replaced
// revision ("kept while it is read"), so Bind must read the store, which
// holds another revision now.
func testBindOfAReplacedRevisionNeverReadIsSuperseded(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	s.WriteElsewhere(k, []byte("one"))
	v1 := mustLookup(t, c, k)
	v2 := s.WriteElsewhere(k, []byte("two"))
	if _, err := c.Verify(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	wantSupersededBy(t, c, k, v1, v2)
}

// Bind: "or fault.NotFound if nothing is [stored]".
func testBindOfARevisionRemovedElsewhereIsNotFound(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	v1 := s.WriteElsewhere(k, raw)
	s.RemoveElsewhere(k)
	snap := c.Snapshot(k, v1)
	defer snap.Release()
	err := snap.Bind(t.Context())
	wantKind(t, err, fault.NotFound, "Bind of a revision removed elsewhere")
	if sup := secrets.AsSuperseded(err); sup != nil {
		t.Fatalf("Bind of a revision removed elsewhere: Superseded by version %v", sup.Now.Version)
	}
}

// Snapshot: "A Snapshot never changes: it is one revision", and "it
// always gives the same bytes for as long as it is pinned".
func testAPinnedSnapshotKeepsItsBytesAfterAChangeElsewhere(t *testing.T, s Subject) {
	c, k := s.Catalog, key("a")
	snap := c.Snapshot(k, mustPut(t, c, k, []byte("one"), store.NoItem))
	defer snap.Release()
	if err := snap.Bind(t.Context()); err != nil {
		t.Fatal(err)
	}
	v2 := s.WriteElsewhere(k, []byte("two"))
	got, err := c.Verify(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	wantRevision(t, got, v2, "Verify after a change made elsewhere")
	v, err := snap.Value(t.Context())
	if err != nil {
		t.Fatalf("Value of the pinned revision after the change: %v", err)
	}
	defer v.Wipe()
	wantBytes(t, v, []byte("one"), "Value of the pinned revision after the change")
}

// wantSupersededBy fails t unless a fresh snapshot of revision was of k
// fails to bind with a *secrets.Superseded naming revision now.
func wantSupersededBy(t *testing.T, c secrets.Catalog, k store.Key, was, now store.Meta) {
	t.Helper()
	snap := c.Snapshot(k, was)
	defer snap.Release()
	err := snap.Bind(t.Context())
	sup := secrets.AsSuperseded(err)
	if sup == nil {
		t.Fatalf("Bind of version %v, replaced by version %v: %v, want a *secrets.Superseded", was.Version, now.Version, err)
	}
	if sup.Key != k {
		t.Fatalf("Superseded names %s, want %s", sup.Key, k)
	}
	wantRevision(t, sup.Now, now, "Superseded.Now")
}

// wantBinds fails t unless a fresh snapshot of revision meta of k binds.
func wantBinds(t *testing.T, c secrets.Catalog, k store.Key, meta store.Meta, what string) {
	t.Helper()
	snap := c.Snapshot(k, meta)
	defer snap.Release()
	if err := snap.Bind(t.Context()); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// bindReplaced binds, through a fresh snapshot, the first of two
// revisions of k written elsewhere, and returns Bind's error.
func bindReplaced(t *testing.T, s Subject, k store.Key) error {
	t.Helper()
	v1 := s.WriteElsewhere(k, []byte("one"))
	s.WriteElsewhere(k, []byte("two"))
	snap := s.Catalog.Snapshot(k, v1)
	defer snap.Release()
	return snap.Bind(t.Context())
}

// wantStored fails t unless the store holds revision want of k, which
// reads as value.
func wantStored(t *testing.T, c secrets.Catalog, k store.Key, want store.Meta, value []byte) {
	t.Helper()
	got, err := c.Verify(t.Context(), k)
	if err != nil {
		t.Fatalf("Verify %s: %v", k, err)
	}
	wantRevision(t, got, want, "the stored revision")
	wantBytes(t, read(t, c, k, got), value, "the stored value")
}

func wantKnown(t *testing.T, c secrets.Catalog, k store.Key, want store.Meta, what string) {
	t.Helper()
	got, ok := c.Known(k)
	if !ok {
		t.Fatalf("%s: false, want version %v", what, want.Version)
	}
	wantRevision(t, got, want, what)
}

func wantUnknown(t *testing.T, c secrets.Catalog, k store.Key, what string) {
	t.Helper()
	if got, ok := c.Known(k); ok {
		t.Fatalf("%s: version %v, want false", what, got.Version)
	}
}

// listAll collects every page of app's listing, limit entries a page at
// most.
func listAll(t *testing.T, c secrets.Catalog, app string, limit int) []store.Meta {
	t.Helper()
	var all []store.Meta
	after := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("the listing does not end")
		}
		page, next, err := c.List(t.Context(), app, after, limit)
		if err != nil {
			t.Fatalf("List after %q: %v", after, err)
		}
		if len(page) > limit {
			t.Fatalf("List after %q gave %d entries, over the limit of %d", after, len(page), limit)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		after = next
	}
}

func namesOf(metas []store.Meta) []string {
	names := make([]string, len(metas))
	for i, m := range metas {
		names[i] = m.Name
	}
	return names
}
