package crypto_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/crypto/rsakey"
)

// fixedWrapper hands out and unwraps to one known key, ignoring the
// context: with it, only the data cipher (IV, padding, tag, AAD) stands
// between a tampered item and its plaintext.
type fixedWrapper struct {
	key []byte

	mu      sync.Mutex
	lastKey []byte // the key of the last NewDocumentKey, for independent checks
}

func (w *fixedWrapper) NewDocumentKey(_ context.Context, size int, _ crypto.EncryptionContext) ([]byte, []byte, string, error) {
	key := make([]byte, size)
	copy(key, w.key)
	w.mu.Lock()
	w.lastKey = append([]byte(nil), key...)
	w.mu.Unlock()
	return key, []byte("not-really-wrapped"), "fixed", nil
}

func (w *fixedWrapper) Unwrap(context.Context, string, []byte, crypto.EncryptionContext) ([]byte, error) {
	return append([]byte(nil), w.key...), nil // a copy: Open zeroes the key it is given
}

var rsaKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return a, b
})

func rsaWrapper(t testing.TB) *rsakey.Wrapper {
	t.Helper()
	k, _ := rsaKeys()
	w, err := rsakey.NewPrivate(k)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// wrappers are the KeyWrappers every round trip runs against.
func wrappers(t testing.TB) map[string]crypto.KeyWrapper {
	return map[string]crypto.KeyWrapper{
		"cryptotest": cryptotest.New(),
		"rsakey":     rsaWrapper(t),
	}
}

func envelope(t testing.TB, w crypto.KeyWrapper, f crypto.Format) *crypto.Envelope {
	t.Helper()
	e, err := crypto.NewEnvelope(w, f)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func clone(s crypto.Sealed) crypto.Sealed {
	s.WrappedKey = append([]byte(nil), s.WrappedKey...)
	s.IV = append([]byte(nil), s.IV...)
	s.Ciphertext = append([]byte(nil), s.Ciphertext...)
	return s
}

func contextCancelled(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx, cancel
}
