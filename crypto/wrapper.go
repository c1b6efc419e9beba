package crypto

import "context"

// EncryptionContext binds a wrapped document key to the item it protects.
// For v2 it is {"ApplicationName": app, "SecretName": name}, sent to KMS
// as the encryption context (so CloudTrail shows what was decrypted and IAM
// can match kms:EncryptionContext:ApplicationName) and used by the RSA
// wrapper as the OAEP label. v1 items, like the original, use none (nil).
type EncryptionContext map[string]string

// KeyWrapper protects document keys under a master key.
//
// Implementations: crypto/rsakey (RSA-OAEP-SHA256) and crypto/kms (AWS KMS).
// Both honour ctx's deadline and return *fault.Error values.
type KeyWrapper interface {
	// NewDocumentKey returns a fresh random document key of size bytes,
	// the same key wrapped under the master key for ec, and the
	// MasterKeyID to record in the item. The caller must Zero key.
	NewDocumentKey(ctx context.Context, size int, ec EncryptionContext) (key, wrapped []byte, masterKeyID string, err error)

	// Unwrap returns the document key inside wrapped, which must have been
	// wrapped for ec under masterKeyID. A key this wrapper cannot hold is
	// fault.Permission (e.g. a public key only) when it can never succeed
	// here, fault.Integrity when the item is not what it claims (wrong
	// master key, tampered or moved wrapped key). The caller must Zero key.
	Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec EncryptionContext) (key []byte, err error)
}
