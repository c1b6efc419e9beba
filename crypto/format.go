package crypto

import (
	"crypto/aes"
	"fmt"

	"github.com/secretfs/secretfs/fault"
)

// Format names the encryption format of a stored item. It is stored in
// the item's Format attribute; the original Secret Store wrote no such
// attribute, so a stored Format of "" is a legacy item and reads as v1.
type Format string

const (
	// FormatV1 is the original Secret Store's format: AES-CBC with PKCS#7
	// padding under a 128-bit document key. No integrity protection.
	FormatV1 Format = "v1"
	// FormatV2 is AES-256-GCM under a 256-bit document key, with
	// associated data binding the value to its application and name.
	FormatV2 Format = "v2"
	// DefaultFormat is the format of new writes unless asked otherwise.
	DefaultFormat = FormatV2
)

// Parameters of v2. The sizes are the standard ones of AES-256-GCM; they
// are named so that docs/FORMAT.md and the code can be checked against
// each other.
const (
	// DocumentKeySizeV2 is the v2 document key size: AES-256.
	DocumentKeySizeV2 = 32
	// NonceSizeV2 is the size of the random GCM nonce stored in
	// InitialisationVector. 96 bits is GCM's native nonce size; a random
	// nonce is safe here because every nonce is used with a fresh key.
	NonceSizeV2 = 12
	// TagSizeV2 is the GCM authentication tag appended to the ciphertext.
	TagSizeV2 = 16
	// AADPrefixV2 starts the v2 associated data; it names the format, so a
	// v2 ciphertext cannot be reinterpreted under a future format.
	AADPrefixV2 = "secretfs/v2"
)

// Parameters of v1, as the original Secret Store wrote them (.NET
// AesManaged, CBC, PKCS7, KMS GenerateDataKey AES_128).
const (
	// DocumentKeySizeV1 is the document key size v1 writes: AES-128.
	DocumentKeySizeV1 = 16
	// BlockSizeV1 is the AES block size, the unit of CBC and of PKCS#7
	// padding.
	BlockSizeV1 = aes.BlockSize
	// IVSizeV1 is the size of the random CBC IV: one block.
	IVSizeV1 = BlockSizeV1
)

// Keys of the EncryptionContext of a v2 item. They are part of the public
// format: IAM policies match kms:EncryptionContext:ApplicationName.
const (
	ContextApplicationName = "ApplicationName"
	ContextSecretName      = "SecretName"
)

// ParseFormat parses the format of new writes, as given to --format:
// "v1" or "v2". Anything else is fault.Invalid.
func ParseFormat(s string) (Format, error) {
	const op fault.Op = "crypto.ParseFormat"
	switch f := Format(s); f {
	case FormatV1, FormatV2:
		return f, nil
	}
	return "", fault.E(op, fault.Invalid, fmt.Sprintf("unknown format %s: want %s or %s", quoteCapped(s), FormatV1, FormatV2))
}

// readFormat is the format an item stored with format f is read as: a
// legacy item ("") is v1. ok is false for a format this version does not
// know.
func readFormat(f Format) (_ Format, ok bool) {
	switch f {
	case "", FormatV1:
		return FormatV1, true
	case FormatV2:
		return FormatV2, true
	}
	return "", false
}

// quoteCapped quotes s for an error message, cut to a few bytes: stored
// fields may be arbitrary and large, and a message must stay readable.
func quoteCapped(s string) string {
	const max = 32
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
