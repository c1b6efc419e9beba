package cryptotest

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
)

func TestWrapper(t *testing.T) {
	w := New()
	if !regexp.MustCompile(`^test:[0-9a-f]{8}$`).MatchString(w.MasterKeyID()) {
		t.Fatalf("MasterKeyID %q", w.MasterKeyID())
	}
	if New().MasterKeyID() == w.MasterKeyID() {
		t.Fatal("two Wrappers share a master key id")
	}
	ctx := t.Context()
	ec := crypto.ItemContext("app", "db")
	key, wrapped, id, err := w.NewDocumentKey(ctx, 32, ec)
	if err != nil || len(key) != 32 || id != w.MasterKeyID() {
		t.Fatalf("NewDocumentKey: %d bytes, %q, %v", len(key), id, err)
	}
	got, err := w.Unwrap(ctx, id, wrapped, ec)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap: %v", err)
	}
	if _, err := w.Unwrap(ctx, id, wrapped, crypto.ItemContext("app", "other")); !fault.Is(fault.Integrity, err) {
		t.Errorf("moved key: %v", err)
	}
	if _, err := New().Unwrap(ctx, id, wrapped, ec); !fault.Is(fault.Integrity, err) {
		t.Errorf("another Wrapper's key: %v", err)
	}
	if _, err := w.Unwrap(ctx, id, wrapped[:5], ec); !fault.Is(fault.Integrity, err) {
		t.Errorf("short wrapped key: %v", err)
	}

	w.FailWith(fault.E(fault.Unavailable, "injected"))
	if _, _, _, err := w.NewDocumentKey(ctx, 32, ec); !fault.Is(fault.Unavailable, err) {
		t.Errorf("FailWith on NewDocumentKey: %v", err)
	}
	if _, err := w.Unwrap(ctx, id, wrapped, ec); !fault.Is(fault.Unavailable, err) {
		t.Errorf("FailWith on Unwrap: %v", err)
	}
	w.FailWith(nil)
	if _, err := w.Unwrap(ctx, id, wrapped, ec); err != nil {
		t.Errorf("after FailWith(nil): %v", err)
	}
	if n, u := w.NewDocumentKeyCalls(), w.UnwrapCalls(); n != 2 || u != 5 {
		t.Errorf("counters: %d NewDocumentKey, %d Unwrap; want 2 and 5", n, u)
	}
}
