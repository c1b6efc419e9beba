// Package kms is a crypto.KeyWrapper on AWS KMS: the master key lives in
// KMS, which generates every document key (GenerateDataKey) and unwraps it
// again (Decrypt). It is the key wrapper of the DynamoDB backend, and the
// one the original Secret Store used, so items of existing Secret Store
// tables open with it.
//
// Encryption context. v2 items send {"ApplicationName": app,
// "SecretName": name} with both calls: KMS binds the wrapped key to it, so
// a wrapped key moved onto another item does not decrypt; CloudTrail
// records which secret each Decrypt was for; and key or IAM policies can
// confine a principal to some applications with the condition key
// kms:EncryptionContext:ApplicationName. v1 items, like the original's,
// carry no context, so that the original library can read what secretfs
// writes with --format v1.
//
// Decrypt is called without a KeyId, as the original did: a symmetric KMS
// ciphertext blob names the key that made it, and KMS uses that one. So
// an item is read with whichever key wrapped it, whatever --kms-key says
// now, and an item whose MasterKeyId is an alias still opens after the
// alias has been pointed at another key. (Passing the stored alias as
// KeyId would make KMS refuse every item written before the re-pointing.)
// The stored MasterKeyId is used only to route items between key wrappers
// (crypto.Keyring) and to name the key in errors.
//
// This package must never log, never put a plaintext document key into an
// error, and never keep a document key: the plaintext key of a failed
// call is zeroed here, that of a successful one belongs to the caller,
// who zeroes it. It makes at most one KMS request per call (plus the
// retries of the SDK client it is given) and honours the caller's
// context; it sets no deadline of its own.
package kms

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
)

// rsaIDPrefix starts the MasterKeyId of every RSA-wrapped item
// (rsakey.KeyIDPrefix is "rsa:sha256:"). KMS key ids, ARNs and aliases
// never start with it, so every other id is taken to be a KMS key.
const rsaIDPrefix = "rsa:"

// Sizes of the data keys GenerateDataKey makes: the two KeySpecs, and
// the largest NumberOfBytes it accepts.
const (
	aes256Bytes     = 32 // KeySpec AES_256: v2 document keys
	aes128Bytes     = 16 // KeySpec AES_128: v1 document keys
	maxDataKeyBytes = 1024
)

// Wrapper wraps document keys with AWS KMS. It is immutable and safe for
// concurrent use, as is the SDK client it holds.
type Wrapper struct {
	client *awskms.Client
	keyID  string // for new writes; "" when this host may not write
}

var (
	_ crypto.KeyWrapper = (*Wrapper)(nil)
	_ crypto.Owner      = (*Wrapper)(nil)
)

// New returns a Wrapper that talks to KMS through client, which must not
// be nil. keyID is the key for new writes, as given to --kms-key: a key
// id, key ARN, alias name ("alias/...") or alias ARN. It is recorded in
// MasterKeyId exactly as given. With keyID "" the Wrapper can read every
// item KMS lets it decrypt but refuses to write.
func New(client *awskms.Client, keyID string) *Wrapper {
	return &Wrapper{client: client, keyID: keyID}
}

// KeyID is the key new writes use, as given to New ("" when none).
func (w *Wrapper) KeyID() string { return w.keyID }

// Owns reports whether masterKeyID can be a KMS key: any id but those of
// RSA key pairs.
func (w *Wrapper) Owns(masterKeyID string) bool {
	return !strings.HasPrefix(masterKeyID, rsaIDPrefix)
}

// NewDocumentKey asks KMS for a fresh document key of size bytes under
// the Wrapper's key, with one GenerateDataKey call: KeySpec AES_256 for
// 32 bytes, AES_128 for 16, NumberOfBytes otherwise, and ec as the
// encryption context (none when ec is empty). masterKeyID is the key as
// given to New. Without a key it is fault.Permission and calls nothing.
func (w *Wrapper) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) (key, wrapped []byte, masterKeyID string, err error) {
	const op fault.Op = "kms.NewDocumentKey"
	if w.keyID == "" {
		return nil, nil, "", fault.E(op, fault.Permission, "no KMS key to write with: pass --kms-key")
	}
	in := &awskms.GenerateDataKeyInput{KeyId: aws.String(w.keyID)}
	switch size {
	case aes256Bytes:
		in.KeySpec = types.DataKeySpecAes256
	case aes128Bytes:
		in.KeySpec = types.DataKeySpecAes128
	default:
		if size <= 0 || size > maxDataKeyBytes {
			return nil, nil, "", fault.E(op, fault.Invalid, fmt.Sprintf("document key size %d: KMS generates 1 to %d bytes", size, maxDataKeyBytes))
		}
		in.NumberOfBytes = aws.Int32(int32(size))
	}
	if len(ec) > 0 {
		in.EncryptionContext = ec
	}
	out, err := w.client.GenerateDataKey(ctx, in)
	if err != nil {
		return nil, nil, "", callError(op, "KMS GenerateDataKey with key "+crypto.QuoteID(w.keyID), "GenerateDataKey", err)
	}
	if len(out.Plaintext) != size || len(out.CiphertextBlob) == 0 {
		crypto.Zero(out.Plaintext)
		return nil, nil, "", fault.E(op, fmt.Sprintf("KMS GenerateDataKey with key %s returned a %d-byte key (want %d) and a %d-byte wrapped key",
			crypto.QuoteID(w.keyID), len(out.Plaintext), size, len(out.CiphertextBlob)))
	}
	return out.Plaintext, out.CiphertextBlob, w.keyID, nil
}

// Unwrap asks KMS to decrypt wrapped with ec as the encryption context
// (none when ec is empty), with one Decrypt call that names no key: the
// ciphertext blob names its own. masterKeyID only names the key in
// errors. A wrapped key that KMS cannot decrypt (tampered, moved to
// another item, wrong context) is fault.Integrity; a key this host may
// not use, or that is disabled or gone, is fault.Permission.
func (w *Wrapper) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	const op fault.Op = "kms.Unwrap"
	in := &awskms.DecryptInput{CiphertextBlob: wrapped}
	if len(ec) > 0 {
		in.EncryptionContext = ec
	}
	out, err := w.client.Decrypt(ctx, in)
	if err != nil {
		return nil, callError(op, "KMS Decrypt of a document key wrapped by "+crypto.QuoteID(masterKeyID), "Decrypt", err)
	}
	return out.Plaintext, nil
}
