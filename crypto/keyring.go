package crypto

import (
	"context"
	"fmt"
	"slices"

	"github.com/secretfs/secretfs/fault"
)

// Owner is an optional capability of a KeyWrapper: Owns reports whether
// masterKeyID, as stored in an item, names a key of the kind this wrapper
// handles. It answers from the id's shape alone, without any I/O, and it
// may claim ids of keys it does not hold (an RSA wrapper owns every RSA
// id), so that the wrapper itself can say what is wrong with the item.
type Owner interface {
	Owns(masterKeyID string) bool
}

// Keyring is a KeyWrapper made of several: it writes with one and unwraps
// each item with the first reader that owns the item's MasterKeyID. A
// table may hold items wrapped by KMS and by an RSA key pair; a Keyring
// reads them all, and writes with the one key the host was told to use.
type Keyring struct {
	write   KeyWrapper
	readers []KeyWrapper
}

var _ KeyWrapper = (*Keyring)(nil)

// NewKeyring returns a Keyring that generates document keys with write
// (nil: this host may not write) and unwraps with readers, asked in
// order. A reader that does not implement Owner owns every id, so it
// belongs last. write is not a reader unless it is also among readers.
// Pass untyped nil, not a nil pointer, for "no write wrapper".
func NewKeyring(write KeyWrapper, readers ...KeyWrapper) *Keyring {
	return &Keyring{write: write, readers: slices.Clone(readers)}
}

// NewDocumentKey is that of the write wrapper, whose errors it returns
// unchanged. Without one it is fault.Permission.
func (k *Keyring) NewDocumentKey(ctx context.Context, size int, ec EncryptionContext) (key, wrapped []byte, masterKeyID string, err error) {
	const op fault.Op = "crypto.Keyring.NewDocumentKey"
	if k.write == nil {
		return nil, nil, "", fault.E(op, fault.Permission, "no key to write with: give --kms-key or --rsa-key")
	}
	return k.write.NewDocumentKey(ctx, size, ec)
}

// Unwrap is that of the first reader that owns masterKeyID, whose errors
// it returns unchanged. When no reader owns it, it is fault.Permission:
// the item may be fine, but this host has no key that can open it.
func (k *Keyring) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec EncryptionContext) ([]byte, error) {
	const op fault.Op = "crypto.Keyring.Unwrap"
	for _, r := range k.readers {
		if o, ok := r.(Owner); !ok || o.Owns(masterKeyID) {
			return r.Unwrap(ctx, masterKeyID, wrapped, ec)
		}
	}
	return nil, fault.E(op, fault.Permission, fmt.Sprintf("item wrapped by %s: no configured key can open it", QuoteID(masterKeyID)))
}

// QuoteID quotes a stored master key id for a message, cut short: ids
// are public (KMS key names, RSA fingerprints), but a stored field may be
// arbitrary. The cap, 160 bytes, is above any KMS key or alias ARN in
// practice and above an RSA id (75 bytes), so real ids are shown whole.
// Every key wrapper names ids in its errors through it.
func QuoteID(id string) string {
	const max = 160
	if len(id) > max {
		return fmt.Sprintf("%q...", id[:max])
	}
	return fmt.Sprintf("%q", id)
}
