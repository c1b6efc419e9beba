package secrets

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

func newKeeper(t *testing.T, s store.Store, opts Options) (*Keeper, *cryptotest.Wrapper) {
	t.Helper()
	w := cryptotest.New()
	e, err := crypto.NewEnvelope(w, crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	return NewKeeper(s, e, opts), w
}

func TestPutThenGetRoundTripsAndRecordsMetadata(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	k, _ := newKeeper(t, memory.New(), Options{Now: func() time.Time { return now }})
	key := store.Key{App: "app", Name: "db"}
	meta, err := k.Put(context.Background(), key, []byte("hunter2"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Meta{Key: key, Format: "v2", Version: 1, InitialisationVector: meta.InitialisationVector, Size: 7, Modified: now.Truncate(time.Millisecond)}
	if !sameMeta(meta, want) || len(meta.InitialisationVector) != crypto.NonceSizeV2 {
		t.Fatalf("Put returned %+v, want %+v with a %d-byte nonce", meta, want, crypto.NonceSizeV2)
	}
	s, err := k.Get(context.Background(), key, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Value) != "hunter2" || !sameMeta(s.Meta, want) {
		t.Fatalf("Get returned %q %+v", s.Value, s.Meta)
	}
}

func sameMeta(a, b store.Meta) bool {
	return a.Key == b.Key && a.Format == b.Format && a.Revision().Equal(b.Revision()) && a.Size == b.Size && a.Modified.Equal(b.Modified)
}

func TestStoredItemHoldsNoPlaintext(t *testing.T) {
	st := memory.New()
	k, _ := newKeeper(t, st, Options{})
	key := store.Key{App: "app", Name: "db"}
	value := []byte("a-distinctive-secret-value")
	item, err := k.Write(context.Background(), key, value, store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range [][]byte{item.ProtectedSecretValue, item.ProtectedDocumentKey, item.InitialisationVector, []byte(item.MasterKeyID)} {
		if bytes.Contains(field, value) {
			t.Fatal("a protected field holds the plaintext")
		}
	}
}

func TestOversizedValueIsRefusedBeforeAnyKeyIsMade(t *testing.T) {
	k, w := newKeeper(t, memory.NewWithLimit(10), Options{})
	_, err := k.Put(context.Background(), store.Key{App: "app", Name: "big"}, make([]byte, 11), store.NoItem)
	if !fault.Is(fault.TooLarge, err) {
		t.Fatalf("Put of 11 bytes over a 10-byte limit: %v, want TooLarge", err)
	}
	if n := w.NewDocumentKeyCalls(); n != 0 {
		t.Errorf("%d document keys made for a value that could not be stored", n)
	}
}

func TestInvalidNamesAreRefusedWithoutBackendCalls(t *testing.T) {
	k, w := newKeeper(t, memory.New(), Options{})
	ctx := context.Background()
	for _, key := range []store.Key{{App: "app", Name: "a/b"}, {App: "..", Name: "x"}, {App: "app", Name: strings.Repeat("n", 256)}} {
		if _, err := k.Put(ctx, key, []byte("v"), store.NoItem); err == nil {
			t.Errorf("Put(%q) succeeded", key)
		}
		if _, err := k.Get(ctx, key, true); err == nil {
			t.Errorf("Get(%q) succeeded", key)
		}
	}
	if n := w.NewDocumentKeyCalls() + w.UnwrapCalls(); n != 0 {
		t.Errorf("%d key operations for invalid names", n)
	}
}

// hangingStore never answers: a dead backend.
type hangingStore struct{ store.Store }

func (hangingStore) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDeadBackendGivesUnavailableWithinTheTimeout(t *testing.T) {
	k, _ := newKeeper(t, hangingStore{memory.New()}, Options{Timeout: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := k.Get(context.Background(), store.Key{App: "app", Name: "db"}, true)
		done <- err
	}()
	select {
	case err := <-done:
		if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "no answer within 50ms") {
			t.Fatalf("Get against a dead store: %v, want Unavailable naming the timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Get against a dead store did not return: the deadline is not applied")
	}
}

func TestTamperedItemIsIntegrityErrorWithoutValue(t *testing.T) {
	st := memory.New()
	k, _ := newKeeper(t, st, Options{})
	ctx := context.Background()
	key := store.Key{App: "app", Name: "db"}
	item, err := k.Write(ctx, key, []byte("hunter2"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	item.ProtectedSecretValue[0] ^= 1
	s, err := k.Open(ctx, item)
	if !fault.Is(fault.Integrity, err) || s.Value != nil {
		t.Fatalf("Open of a tampered item: %q, %v; want no value and Integrity", s.Value, err)
	}
}

func TestOpenReportsTheTrueSizeOfALegacyItem(t *testing.T) {
	k, _ := newKeeper(t, memory.New(), Options{})
	item, err := k.Write(context.Background(), store.Key{App: "app", Name: "old"}, []byte("12345"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	item.Size = -1 // as a legacy item, which records no size
	s, err := k.Open(context.Background(), item)
	if err != nil || s.Size != 5 {
		t.Fatalf("Open: size %d, %v; want 5", s.Size, err)
	}
}
