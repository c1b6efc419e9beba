package crypto_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
)

// keyRecorder is a KeyWrapper that keeps every document key it hands to
// the Envelope, the very slices, so that a test can look at them after
// the Envelope is done: the KeyWrapper contract says the caller zeroes
// them. With extra > 0 each key comes extra bytes too long, which the
// Envelope must refuse, and zero all the same.
type keyRecorder struct {
	inner crypto.KeyWrapper
	extra int

	mu   sync.Mutex
	keys [][]byte
}

func (r *keyRecorder) keep(key []byte) []byte {
	if r.extra > 0 {
		long := append(bytes.Clone(key), bytes.Repeat([]byte{0x5a}, r.extra)...)
		crypto.Zero(key)
		key = long
	}
	if bytes.Equal(key, make([]byte, len(key))) {
		panic("keyRecorder: the wrapper handed out a key of zeros; zeroing could not be seen")
	}
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	return key
}

func (r *keyRecorder) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) ([]byte, []byte, string, error) {
	key, wrapped, id, err := r.inner.NewDocumentKey(ctx, size, ec)
	if err != nil {
		return nil, nil, "", err
	}
	return r.keep(key), wrapped, id, nil
}

func (r *keyRecorder) Unwrap(ctx context.Context, id string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	key, err := r.inner.Unwrap(ctx, id, wrapped, ec)
	if err != nil {
		return nil, err
	}
	return r.keep(key), nil
}

// take returns the keys handed out since the last take, and forgets them.
func (r *keyRecorder) take() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.keys
	r.keys = nil
	return k
}

// wantZeroed fails unless exactly n keys were handed out since the last
// take and every byte of each is zero now.
func wantZeroed(t *testing.T, r *keyRecorder, what string, n int) {
	t.Helper()
	keys := r.take()
	if len(keys) != n {
		t.Fatalf("%s: %d document keys handed out, want %d", what, len(keys), n)
	}
	for i, k := range keys {
		if len(k) == 0 {
			t.Fatalf("%s: key %d is empty: the test tested nothing", what, i)
		}
		if !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("%s: document key %d (%d bytes) is not zeroed after the call returned", what, i, len(k))
		}
	}
}

// Seal and Open zero every document key the KeyWrapper gave them once
// they return, in both formats, when they succeed and when they fail
// after the key was made or unwrapped.
func TestDocumentKeysAreZeroed(t *testing.T) {
	for name, w := range wrappers(t) {
		for _, f := range []crypto.Format{crypto.FormatV2, crypto.FormatV1} {
			t.Run(name+"/"+string(f), func(t *testing.T) {
				testKeysZeroed(t, &keyRecorder{inner: w}, f)
			})
		}
	}
}

func testKeysZeroed(t *testing.T, r *keyRecorder, f crypto.Format) {
	ctx := context.Background()
	value := []byte("hunter2")
	e := envelope(t, r, f)

	s, err := e.Seal(ctx, "app", "db", 1, value)
	if err != nil {
		t.Fatal(err)
	}
	wantZeroed(t, r, "Seal", 1)

	p, err := e.Open(ctx, "app", "db", s)
	if err != nil || !bytes.Equal(p, value) {
		t.Fatalf("Open = %q, %v", p, err)
	}
	p.Wipe()
	wantZeroed(t, r, "Open", 1)

	if f == crypto.FormatV2 {
		// Authentication fails after the key is unwrapped.
		bad := clone(s)
		bad.Ciphertext[0] ^= 1
		_, err := e.Open(ctx, "app", "db", bad)
		if !fault.Is(fault.Integrity, err) {
			t.Fatalf("Open of a tampered item: %v, want Integrity", err)
		}
		wantZeroed(t, r, "Open of a tampered item", 1)
	}

	// A key of the wrong size is refused, and zeroed.
	r.extra = 1
	if _, err := e.Seal(ctx, "app", "db", 1, value); err == nil {
		t.Fatal("Seal with a document key one byte too long succeeded")
	}
	wantZeroed(t, r, "Seal refusing a key of the wrong size", 1)
	if _, err := e.Open(ctx, "app", "db", s); !fault.Is(fault.Integrity, err) {
		t.Fatalf("Open with an unwrapped key one byte too long: %v, want Integrity", err)
	}
	wantZeroed(t, r, "Open refusing a key of the wrong size", 1)
}
