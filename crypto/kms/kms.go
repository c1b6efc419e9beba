// Package kms is a crypto.KeyWrapper on AWS KMS: the master key lives in
// KMS, which generates every document key (GenerateDataKey) and unwraps it
// again (Decrypt). It is the key wrapper of the DynamoDB backend, and the
// one the original Secret Store used, so items of existing Secret Store
// tables open with it.
//
// Encryption context. v2 and v3 items send {"ApplicationName": app,
// "SecretName": name} with both calls: KMS binds the wrapped key to it, so
// a wrapped key moved onto another item does not decrypt; CloudTrail
// records which secret each Decrypt was for; and key or IAM policies can
// confine a principal to some applications with the condition key
// kms:EncryptionContext:ApplicationName. v1 items, like the original's,
// carry no context, so that the original library can read what secretfs
// writes with --format v1.
//
// Which key decrypts. The item's MasterKeyId is written by whoever can
// write the table, and a symmetric KMS ciphertext blob names the key that
// made it: a Decrypt that names no key uses any key the blob names, in any
// account whose key policy lets this host decrypt. So Decrypt names a
// key (KeyId), and KMS uses that one or refuses:
//
//   - A pinned Wrapper (NewPinned: --kms-key and --kms-read-keys) trusts a
//     set of keys resolved once, at start, with DescribeKey. An item's
//     MasterKeyId must name one of them (as given, or by its key ARN, key
//     id, alias name or alias ARN); Decrypt then names that key's ARN, and
//     the key KMS answers it decrypted with must be in the set too. Any
//     other item is fault.Permission, and KMS is not asked.
//   - An unpinned Wrapper (New) trusts any key KMS will decrypt with, as
//     the original did, and names the item's MasterKeyId as KeyId (none
//     when it is empty). Warning says so, for the caller to log once.
//
// Aliases. An item's MasterKeyId is often an alias (the original stored
// the name it was given), and an alias may have been re-pointed at
// another key since the item was written. KMS refuses a Decrypt naming a
// key that did not wrap the blob, so when a Decrypt under an alias fails
// as an integrity error, the Wrapper asks once more: a pinned one under
// each other trusted key in turn, an unpinned one naming no key (the
// original's way). Re-pointing costs the items written before it these
// extra requests, nothing else.
//
// The stored MasterKeyId also routes items between key wrappers
// (crypto.Keyring) and names the key in errors.
//
// This package must never log, never put a plaintext document key into an
// error, and never keep a document key: the plaintext key of a failed
// call is zeroed here, that of a successful one belongs to the caller,
// who zeroes it. It makes one KMS request per call (plus the retries of
// the SDK client it is given, and the alias retries above) and honours
// the caller's context; it sets no deadline of its own except for the
// DescribeKey calls of NewPinned, which it is told.
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

// Client is the part of the KMS API a Wrapper uses. *awskms.Client
// implements it; tests give fakes.
type Client interface {
	GenerateDataKey(ctx context.Context, in *awskms.GenerateDataKeyInput, opts ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error)
	DescribeKey(ctx context.Context, in *awskms.DescribeKeyInput, opts ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error)
}

// Wrapper wraps document keys with AWS KMS. It is immutable and safe for
// concurrent use, as is the SDK client it holds.
type Wrapper struct {
	client Client
	keyID  string // for new writes; "" when this host may not write
	// trusted are the keys reads may use; nil: any key KMS decrypts with.
	trusted *trustSet
}

var (
	_ crypto.KeyWrapper = (*Wrapper)(nil)
	_ crypto.Owner      = (*Wrapper)(nil)
)

// New returns an unpinned Wrapper, which trusts any key KMS will decrypt
// with (see Warning), talking to KMS through client, which must not be
// nil. keyID is the key for new writes, as given to --kms-key: a key id,
// key ARN, alias name ("alias/...") or alias ARN. It is recorded in
// MasterKeyId exactly as given. With keyID "" the Wrapper can read every
// item KMS lets it decrypt but refuses to write.
func New(client Client, keyID string) *Wrapper {
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
// (none when ec is empty), with one Decrypt call that names the key
// (package comment: a pinned Wrapper names the trusted key masterKeyID
// names, an unpinned one masterKeyID itself), and a few more only for an
// alias that may have been re-pointed. An item a pinned Wrapper does not
// trust, by its masterKeyID or by the key KMS answers with, is
// fault.Permission, with a message naming the key. A wrapped key that KMS
// cannot decrypt (tampered, moved to another item, wrong context, wrapped
// under another key than masterKeyID names) is fault.Integrity; a key
// this host may not use, or that is disabled or gone, is fault.Permission.
func (w *Wrapper) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	const op fault.Op = "kms.Unwrap"
	if w.trusted == nil {
		key, err := w.decrypt(ctx, op, masterKeyID, masterKeyID, wrapped, ec)
		if err != nil && isAlias(masterKeyID) && fault.KindOf(err) == fault.Integrity {
			// Perhaps written before the alias was re-pointed: the blob
			// names its key, and an unpinned Wrapper trusts any.
			key, retryErr := w.decrypt(ctx, op, masterKeyID, "", wrapped, ec)
			if retryErr == nil || fault.KindOf(retryErr) != fault.Integrity {
				return key, retryErr
			}
		}
		return key, err
	}
	named, ok := w.trusted.named(masterKeyID)
	if !ok {
		return nil, fault.E(op, fault.Permission, fmt.Sprintf("an item wrapped under the KMS key %s, which is not trusted here (trusted: %s): refused; if that key is yours, add it to --kms-read-keys",
			crypto.QuoteID(masterKeyID), w.trusted))
	}
	candidates := []trustedKey{named}
	if isAlias(masterKeyID) {
		candidates = append(candidates, w.trusted.except(named)...)
	}
	var first error
	for _, k := range candidates {
		key, err := w.decrypt(ctx, op, masterKeyID, k.arn, wrapped, ec)
		if err == nil {
			return key, nil
		}
		if fault.KindOf(err) != fault.Integrity {
			return nil, err // refused, or no answer: another key would fare no better
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// decrypt makes one Decrypt call naming keyID ("": none), and checks that
// a pinned Wrapper trusts the key KMS answers it used. masterKeyID names
// the item's key in errors.
func (w *Wrapper) decrypt(ctx context.Context, op fault.Op, masterKeyID, keyID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	in := &awskms.DecryptInput{CiphertextBlob: wrapped}
	what := "KMS Decrypt of a document key wrapped by " + crypto.QuoteID(masterKeyID)
	if keyID != "" {
		in.KeyId = aws.String(keyID)
		if keyID != masterKeyID {
			what += " (asking for the key " + crypto.QuoteID(keyID) + ")"
		}
	}
	if len(ec) > 0 {
		in.EncryptionContext = ec
	}
	out, err := w.client.Decrypt(ctx, in)
	if err != nil {
		return nil, callError(op, what, "Decrypt", err)
	}
	if w.trusted != nil && !w.trusted.has(aws.ToString(out.KeyId)) {
		crypto.Zero(out.Plaintext)
		return nil, fault.E(op, fault.Permission, fmt.Sprintf("%s: KMS answered that the key %s decrypted it, which is not trusted here (trusted: %s): refused",
			what, crypto.QuoteID(aws.ToString(out.KeyId)), w.trusted))
	}
	return out.Plaintext, nil
}

// Warning is what the caller logs once at start about an unpinned
// Wrapper: it trusts any key KMS will decrypt with. It is "" for a
// pinned one.
func (w *Wrapper) Warning() string {
	if w.trusted != nil {
		return ""
	}
	return "KMS: any key KMS will decrypt with is trusted, so an item wrapped under a key you never chose (in any account whose key policy lets this host decrypt) is served: name the keys to trust with --kms-read-keys (and --kms-key)"
}

// Trusted lists the ARNs of the keys a pinned Wrapper trusts, in the
// order given; nil for an unpinned one.
func (w *Wrapper) Trusted() []string {
	if w.trusted == nil {
		return nil
	}
	return w.trusted.arns()
}
