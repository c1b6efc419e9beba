// Package catalogtest is the contract suite of secrets.Catalog: the real
// catalog (cache.Catalog) and the fake the file-semantics tests run
// against (vfs/vfstest) both run Run, so that the fake cannot drift from
// what the real one does in the rules vfs relies on (NotFound, conflicts,
// Verify, Known, Bind and Superseded, listings, the bytes a snapshot
// reads).
//
// Each test checks one rule written in the doc comments of
// secrets.Catalog, secrets.Snapshot and the store.Store contract they
// refer to. The suite talks to a catalog only through those interfaces,
// and to its store only through Subject's hooks; it never depends on the
// TTL passing, so it asserts nothing a catalog may answer from memory
// within it.
package catalogtest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Subject is one catalog to test, fresh and over an empty store, and how
// to change that store behind the catalog's back, as another host would.
type Subject struct {
	Catalog secrets.Catalog
	// WriteElsewhere stores value as the next revision of k (its first
	// if the store holds none), not through Catalog, and returns that
	// revision. Catalog learns of it only when it asks the store.
	WriteElsewhere func(k store.Key, value []byte) store.Meta
	// RemoveElsewhere deletes k from the store, not through Catalog.
	RemoveElsewhere func(k store.Key)
}

// Run runs every contract test as a subtest of t, each with a fresh
// Subject from open (which registers its own cleanup with t). Run it with
// -race.
func Run(t *testing.T, open func(t *testing.T) Subject) {
	tests := []struct {
		name string
		fn   func(*testing.T, Subject)
	}{
		{"LookupOfAMissingSecretIsNotFound", testLookupOfAMissingSecretIsNotFound},
		{"LookupAfterPutAnswersThePutRevision", testLookupAfterPutAnswersThePutRevision},
		{"PutVersionsFollowTheStore", testPutVersionsFollowTheStore},
		{"SnapshotReadsTheBytesPut", testSnapshotReadsTheBytesPut},
		{"SnapshotReadsAnEmptyValueAsEmpty", testSnapshotReadsAnEmptyValueAsEmpty},
		{"SnapshotReadsTheBytesWrittenElsewhere", testSnapshotReadsTheBytesWrittenElsewhere},
		{"ReadAtShortMeansTheValueEnded", testReadAtShortMeansTheValueEnded},
		{"PutDoesNotKeepTheCallersSlice", testPutDoesNotKeepTheCallersSlice},
		{"ValueIsTheCallersCopy", testValueIsTheCallersCopy},
		{"PutExpectingAReplacedRevisionIsAConflict", testPutExpectingAReplacedRevisionIsAConflict},
		{"PutExpectingARevisionReplacedElsewhereIsAConflict", testPutExpectingARevisionReplacedElsewhereIsAConflict},
		{"PutNoItemOnAStoredSecretIsExist", testPutNoItemOnAStoredSecretIsExist},
		{"PutExpectingARevisionOfAMissingSecretIsAConflict", testPutExpectingARevisionOfAMissingSecretIsAConflict},
		{"PutExpectingTheRevisionOfARecreatedSecretIsAConflict", testPutExpectingTheRevisionOfARecreatedSecretIsAConflict},
		{"AFailedPutMakesTheNextLookupAskTheStore", testAFailedPutMakesTheNextLookupAskTheStore},
		{"PutOfMaxValueSizeBytesIsAccepted", testPutOfMaxValueSizeBytesIsAccepted},
		{"PutOverMaxValueSizeIsTooLargeAndStoresNothing", testPutOverMaxValueSizeIsTooLargeAndStoresNothing},
		{"LookupAfterDeleteIsNotFound", testLookupAfterDeleteIsNotFound},
		{"DeleteOfAMissingSecretIsNotFound", testDeleteOfAMissingSecretIsNotFound},
		{"DeleteOfASecretRemovedElsewhereIsNotFound", testDeleteOfASecretRemovedElsewhereIsNotFound},
		{"DeleteExpectingAReplacedRevisionIsAConflict", testDeleteExpectingAReplacedRevisionIsAConflict},
		{"ListGivesWhatIsStoredInByteOrderByPages", testListGivesWhatIsStoredInByteOrderByPages},
		{"ListOfAnAppWithoutSecretsIsEmpty", testListOfAnAppWithoutSecretsIsEmpty},
		{"ListLearnsWhatItLists", testListLearnsWhatItLists},
		{"AppsAreSortedEachOnce", testAppsAreSortedEachOnce},
		{"AppsNameAnAppAPutCreated", testAppsNameAnAppAPutCreated},
		{"HasSecretsOfAnAppWrittenElsewhere", testHasSecretsOfAnAppWrittenElsewhere},
		{"HasSecretsOfAnAppWithNoneIsFalse", testHasSecretsOfAnAppWithNoneIsFalse},
		{"HasSecretsIsFalseOnceTheLastSecretIsDeleted", testHasSecretsIsFalseOnceTheLastSecretIsDeleted},
		{"VerifySeesAChangeMadeElsewhere", testVerifySeesAChangeMadeElsewhere},
		{"VerifySeesARemovalMadeElsewhere", testVerifySeesARemovalMadeElsewhere},
		{"VerifyOfAMissingSecretIsNotFound", testVerifyOfAMissingSecretIsNotFound},
		{"LookupLeavesTheItemInMemory", testLookupLeavesTheItemInMemory},
		{"LookupLeavesTheItemInMemoryWhenASnapshotOfItIsReleased", testLookupLeavesTheItemInMemoryWhenASnapshotOfItIsReleased},
		{"KnownIsFalseForANameNeverAskedAbout", testKnownIsFalseForANameNeverAskedAbout},
		{"KnownIsWhatLookupAnswered", testKnownIsWhatLookupAnswered},
		{"KnownIsFalseAfterALookupFoundNothing", testKnownIsFalseAfterALookupFoundNothing},
		{"KnownIsThePutRevision", testKnownIsThePutRevision},
		{"KnownDoesNotAskTheStore", testKnownDoesNotAskTheStore},
		{"KnownIsWhatVerifyLearned", testKnownIsWhatVerifyLearned},
		{"KnownIsFalseAfterDelete", testKnownIsFalseAfterDelete},
		{"BindOfARevisionReplacedElsewhereIsSuperseded", testBindOfARevisionReplacedElsewhereIsSuperseded},
		{"BindSupersededIsAConflict", testBindSupersededIsAConflict},
		{"BindOfAReplacedRevisionNeverReadIsSuperseded", testBindOfAReplacedRevisionNeverReadIsSuperseded},
		{"BindOfARevisionRemovedElsewhereIsNotFound", testBindOfARevisionRemovedElsewhereIsNotFound},
		{"APinnedSnapshotKeepsItsBytesAfterAChangeElsewhere", testAPinnedSnapshotKeepsItsBytesAfterAChangeElsewhere},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

const app = "app"

func key(name string) store.Key { return store.Key{App: app, Name: name} }

// raw is a value with the bytes a text-only copy would mangle.
var raw = []byte("pw\x00\xff\x80\n\r end")

func mustPut(t *testing.T, c secrets.Catalog, k store.Key, value []byte, expected store.Revision) store.Meta {
	t.Helper()
	meta, err := c.Put(t.Context(), k, value, expected)
	if err != nil {
		t.Fatalf("Put %s (expected %v): %v", k, expected, err)
	}
	return meta
}

func mustLookup(t *testing.T, c secrets.Catalog, k store.Key) store.Meta {
	t.Helper()
	e, err := c.Lookup(t.Context(), k)
	if err != nil {
		t.Fatalf("Lookup %s: %v", k, err)
	}
	return e.Meta
}

// read returns the whole value of revision meta of k, read through a
// snapshot released when done.
func read(t *testing.T, c secrets.Catalog, k store.Key, meta store.Meta) []byte {
	t.Helper()
	s := c.Snapshot(k, meta)
	defer s.Release()
	v, err := s.Value(t.Context())
	if err != nil {
		t.Fatalf("Value of %s version %v: %v", k, meta.Version, err)
	}
	defer v.Wipe()
	return bytes.Clone(v)
}

// wantKind fails t unless err is of the given kind.
func wantKind(t *testing.T, err error, kind fault.Kind, what string) {
	t.Helper()
	if !fault.Is(kind, err) {
		t.Fatalf("%s: error %v (kind %q), want kind %q", what, err, fault.KindOf(err), kind)
	}
}

// wantRevision fails t unless got is the revision of want.
func wantRevision(t *testing.T, got, want store.Meta, what string) {
	t.Helper()
	if got.Key != want.Key || !got.Revision().Equal(want.Revision()) {
		t.Fatalf("%s: %s version %v (IV %x), want %s version %v (IV %x)",
			what, got.Key, got.Version, got.InitialisationVector, want.Key, want.Version, want.InitialisationVector)
	}
}

// wantBytes fails t unless got is want; it never prints either (they
// stand for secrets), only where they differ.
func wantBytes(t *testing.T, got, want []byte, what string) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %s", what, differ(got, want))
	}
}

func differ(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("differs at byte %d of %d (want %d bytes)", i, len(got), len(want))
		}
	}
	return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
}

// wantFaultError fails t unless err is a *fault.Error, as every error
// of a Catalog is.
func wantFaultError(t *testing.T, err error, what string) {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("%s: error %v (%T) is not a *fault.Error", what, err, err)
	}
}
