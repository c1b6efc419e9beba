package crypto

import "context"

// fixedKey is a KeyWrapper that "wraps" by returning a constant tag and
// always unwraps to key, whatever the context: it isolates the data
// cipher from the key wrapping in tests.
type fixedKey struct{ key []byte }

func (w *fixedKey) NewDocumentKey(_ context.Context, size int, _ EncryptionContext) ([]byte, []byte, string, error) {
	return append([]byte(nil), w.key[:size]...), []byte("wrapped"), "fixed", nil
}

func (w *fixedKey) Unwrap(context.Context, string, []byte, EncryptionContext) ([]byte, error) {
	return append([]byte(nil), w.key...), nil // a copy: Open zeroes what it is given
}
