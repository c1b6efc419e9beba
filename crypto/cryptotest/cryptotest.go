// Package cryptotest provides a fake crypto.KeyWrapper for the unit tests
// of other packages: fast, in memory, with call counters and injectable
// failures. It must never be used outside tests: its master key lives in
// process memory and is lost when the process ends.
package cryptotest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
)

// Wrapper wraps document keys with AES-256-GCM under a random master key,
// using ec.Canonical() as associated data, so that, like the real
// wrappers, a wrapped key moved to another item fails with
// fault.Integrity. A wrapped key is nonce || ciphertext || tag. Safe for
// concurrent use.
type Wrapper struct {
	aead cipher.AEAD
	id   string

	newKeys atomic.Int64
	unwraps atomic.Int64

	mu   sync.Mutex
	fail error
}

var _ crypto.KeyWrapper = (*Wrapper)(nil)

// New returns a Wrapper with a fresh random master key and MasterKeyID
// "test:<8 hex chars>".
func New() *Wrapper {
	master := make([]byte, 32)
	_, _ = rand.Read(master) // crypto/rand.Read never fails (it crashes the program instead)
	block, err := aes.NewCipher(master)
	if err != nil {
		panic(err) // impossible: 32 bytes is a valid AES key
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	return &Wrapper{aead: aead, id: "test:" + hex.EncodeToString(id)}
}

// MasterKeyID is the id this Wrapper records and expects.
func (w *Wrapper) MasterKeyID() string { return w.id }

// NewDocumentKeyCalls counts the calls of NewDocumentKey, failed ones included.
func (w *Wrapper) NewDocumentKeyCalls() int64 { return w.newKeys.Load() }

// UnwrapCalls counts the calls of Unwrap, failed ones included.
func (w *Wrapper) UnwrapCalls() int64 { return w.unwraps.Load() }

// FailWith makes every following call of NewDocumentKey and Unwrap
// return err unchanged, until FailWith(nil). Use a *fault.Error to test
// how a Kind travels (fault.E(fault.Unavailable, "kms timeout")).
func (w *Wrapper) FailWith(err error) {
	w.mu.Lock()
	w.fail = err
	w.mu.Unlock()
}

func (w *Wrapper) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fail
}

// NewDocumentKey returns size random bytes and their wrapping for ec.
func (w *Wrapper) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) (key, wrapped []byte, masterKeyID string, err error) {
	const op fault.Op = "cryptotest.NewDocumentKey"
	w.newKeys.Add(1)
	if err := w.failure(); err != nil {
		return nil, nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, "", fault.E(op, err)
	}
	if size <= 0 {
		return nil, nil, "", fault.E(op, fault.Invalid, "document key size must be positive")
	}
	key = make([]byte, size)
	_, _ = rand.Read(key)
	nonce := make([]byte, w.aead.NonceSize())
	_, _ = rand.Read(nonce)
	wrapped = w.aead.Seal(nonce, nonce, key, ec.Canonical())
	return key, wrapped, w.id, nil
}

// Unwrap returns the key inside wrapped if it was wrapped by w for ec;
// anything else is fault.Integrity.
func (w *Wrapper) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	const op fault.Op = "cryptotest.Unwrap"
	w.unwraps.Add(1)
	if err := w.failure(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fault.E(op, err)
	}
	if masterKeyID != w.id {
		return nil, fault.E(op, fault.Integrity, "document key was wrapped by another master key, not "+w.id)
	}
	n := w.aead.NonceSize()
	if len(wrapped) < n {
		return nil, fault.E(op, fault.Integrity, "wrapped key too short")
	}
	key, err := w.aead.Open(nil, wrapped[:n], wrapped[n:], ec.Canonical())
	if err != nil {
		return nil, fault.E(op, fault.Integrity, "wrapped key does not open for this context")
	}
	return key, nil
}
