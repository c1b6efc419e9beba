// Package storetest is the conformance suite of store.Store: every
// implementation runs Run against fresh instances of itself, so that the
// memory, sqlite and dynamodb stores cannot drift apart in the behaviour the
// rest of secretfs relies on (conditional writes, legacy items, byte-order
// listings, error kinds, ownership of returned data).
//
// The suite talks to a store only through the store.Store interface (and
// the optional store.Sizer); it must never reach into an implementation or
// assume what another test left behind.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// Run runs every conformance test as a subtest of t. Each subtest gets a
// fresh, empty store from open and closes it when done; open must not close
// it itself. Run the suite with -race: some tests are concurrent.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutGetRoundTrip", testPutGetRoundTrip},
		{"CallerOwnsData", testCallerOwnsData},
		{"PutNoItemOnExisting", testPutNoItemOnExisting},
		{"PutStaleVersion", testPutStaleVersion},
		{"PutStaleIV", testPutStaleIV},
		{"RecreatedItem", testRecreatedItem},
		{"ExpectedWithoutIV", testExpectedWithoutIV},
		{"PutVersionChain", testPutVersionChain},
		{"PutVersionMustFollowExpected", testPutVersionMustFollowExpected},
		{"PutMissingProtectedFields", testPutMissingProtectedFields},
		{"InvalidKeys", testInvalidKeys},
		{"LongestName", testLongestName},
		{"LegacyItem", testLegacyItem},
		{"Delete", testDelete},
		{"DeleteLegacy", testDeleteLegacy},
		{"ListPagination", testListPagination},
		{"ListEmptyApp", testListEmptyApp},
		{"ListRevisions", testListRevisions},
		{"Apps", testApps},
		{"AppsPages", testAppsPages},
		{"TooLarge", testTooLarge},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"ConcurrentCreate", testConcurrentCreate},
		{"CancelledContext", testCancelledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// NewCounter returns a version-1 item whose value holds slots counters,
// all zero, for Increment. Tests of a single store, of two handles on one
// database and of two processes share this workload.
func NewCounter(k store.Key, slots int) *store.Item {
	it := sample(k.App, k.Name)
	it.ProtectedSecretValue = make([]byte, 4*slots)
	return it
}

// Increment adds one to counter slot of the item at k with a
// read-modify-write: Get, then Put conditional on the Revision read, with
// a fresh IV as every real write has, retrying when another writer got
// there first. If the store loses an update, the counters end up short.
func Increment(ctx context.Context, s store.Store, k store.Key, slot int) error {
	for {
		it, err := s.Get(ctx, k)
		if err != nil {
			return err
		}
		// Let other writers run between the read and the write, as they
		// would between processes: a store that loses updates shows it.
		runtime.Gosched()
		c := it.ProtectedSecretValue[4*slot:]
		binary.BigEndian.PutUint32(c, binary.BigEndian.Uint32(c)+1)
		read := it.Revision()
		it.Version = read.Version.Next()
		it.InitialisationVector = freshIV(k)
		it.Modified = time.Now()
		err = s.Put(ctx, it, read)
		if !fault.Is(fault.Conflict, err) {
			return err
		}
	}
}

// Counts decodes the counters of an item made by NewCounter.
func Counts(it *store.Item) []int {
	n := make([]int, len(it.ProtectedSecretValue)/4)
	for i := range n {
		n[i] = int(binary.BigEndian.Uint32(it.ProtectedSecretValue[4*i:]))
	}
	return n
}

// sample returns a version-1 item whose fields are derived from its key,
// so that a store mixing up two items is caught. The binary fields hold 0x00
// and 0xff, and Modified has a sub-millisecond part the store must drop.
// Its IV is fresh (freshIV): two samples of one key are two writes.
func sample(app, name string) *store.Item {
	tag := []byte(app + "/" + name)
	bin := func(prefix byte) []byte {
		return append([]byte{prefix, 0x00, 0xff, 0x80, 0x00}, tag...)
	}
	return &store.Item{
		Meta: store.Meta{
			Key:                  store.Key{App: app, Name: name},
			Format:               "v2",
			Version:              1,
			InitialisationVector: freshIV(store.Key{App: app, Name: name}),
			Size:                 int64(len(tag)),
			Modified:             time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC),
		},
		MasterKeyID:          "rsa:sha256:" + string(tag),
		ProtectedDocumentKey: bin(0x01),
		ProtectedSecretValue: bin(0x03),
	}
}

// freshIV returns the IV of a new write of the item at k: derived from k,
// so that a store mixing up two items is caught, and ending in random
// bytes, so that it is unique to the write, as the IVs of real writes are.
// A Revision names one write by its IV; stores may rely on that.
func freshIV(k store.Key) []byte {
	iv := append([]byte{0x02, 0x00, 0xff, 0x80, 0x00}, k.App+"/"+k.Name...)
	return append(iv, rand.Text()...)
}

// next returns a copy of it prepared as the write that follows it: the
// next Version, a fresh IV, and a changed value so that the write is
// visible.
func next(it *store.Item) *store.Item {
	n := clone(it)
	n.Version = it.Version.Next()
	n.InitialisationVector = freshIV(it.Key)
	n.ProtectedSecretValue = append(n.ProtectedSecretValue, byte(n.Version))
	n.Size++
	n.Modified = n.Modified.Add(time.Second)
	if it.Modified.IsZero() { // a legacy item: a write gives it a time
		n.Modified = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	}
	return n
}

func clone(it *store.Item) *store.Item {
	c := *it
	c.ProtectedDocumentKey = append([]byte(nil), it.ProtectedDocumentKey...)
	c.InitialisationVector = append([]byte(nil), it.InitialisationVector...)
	c.ProtectedSecretValue = append([]byte(nil), it.ProtectedSecretValue...)
	return &c
}

// diffMeta describes how got differs from want, or returns "". Modified is
// compared at the millisecond precision stores promise.
func diffMeta(got, want store.Meta) string {
	switch {
	case got.Key != want.Key:
		return fmt.Sprintf("key %q, want %q", got.Key, want.Key)
	case got.Format != want.Format:
		return fmt.Sprintf("%s: format %q, want %q", want.Key, got.Format, want.Format)
	case got.Version != want.Version:
		return fmt.Sprintf("%s: version %v, want %v", want.Key, got.Version, want.Version)
	case !bytes.Equal(got.InitialisationVector, want.InitialisationVector):
		return fmt.Sprintf("%s: InitialisationVector %x, want %x", want.Key, got.InitialisationVector, want.InitialisationVector)
	case got.Size != want.Size:
		return fmt.Sprintf("%s: size %d, want %d", want.Key, got.Size, want.Size)
	case !got.Modified.Equal(want.Modified.Truncate(time.Millisecond)):
		return fmt.Sprintf("%s: modified %v, want %v", want.Key, got.Modified, want.Modified.Truncate(time.Millisecond))
	}
	return ""
}

func diffItem(got, want *store.Item) string {
	if d := diffMeta(got.Meta, want.Meta); d != "" {
		return d
	}
	switch {
	case got.MasterKeyID != want.MasterKeyID:
		return fmt.Sprintf("%s: MasterKeyID %q, want %q", want.Key, got.MasterKeyID, want.MasterKeyID)
	case string(got.ProtectedDocumentKey) != string(want.ProtectedDocumentKey):
		return fmt.Sprintf("%s: ProtectedDocumentKey %x, want %x", want.Key, got.ProtectedDocumentKey, want.ProtectedDocumentKey)
	case string(got.ProtectedSecretValue) != string(want.ProtectedSecretValue):
		return fmt.Sprintf("%s: ProtectedSecretValue differs (%d bytes, want %d)", want.Key, len(got.ProtectedSecretValue), len(want.ProtectedSecretValue))
	}
	return ""
}

func mustPut(t *testing.T, s store.Store, it *store.Item, expected store.Revision) {
	t.Helper()
	if err := s.Put(t.Context(), it, expected); err != nil {
		t.Fatalf("Put %s (version %v, expected %v): %v", it.Key, it.Version, expected, err)
	}
}

// wantStored fails t unless the item at want.Key is exactly want.
func wantStored(t *testing.T, s store.Store, want *store.Item) {
	t.Helper()
	got, err := s.Get(t.Context(), want.Key)
	if err != nil {
		t.Fatalf("Get %s: %v", want.Key, err)
	}
	if d := diffItem(got, want); d != "" {
		t.Fatalf("Get: %s", d)
	}
}

// wantKind fails t unless err is of the given kind.
func wantKind(t *testing.T, err error, kind fault.Kind, what string) {
	t.Helper()
	if !fault.Is(kind, err) {
		t.Fatalf("%s: error %v (kind %q), want kind %q", what, err, fault.KindOf(err), kind)
	}
}
