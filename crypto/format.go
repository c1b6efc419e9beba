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
	// FormatV3 is v2 with the item's Version bound in the associated data
	// too, so that an old value relabelled with another Version fails to
	// decrypt.
	FormatV3 Format = "v3"
	// DefaultFormat is the format of new writes unless asked otherwise.
	DefaultFormat = FormatV3
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

// Parameters of v3: those of v2 (the same cipher, key, nonce and tag),
// and its own associated data, which ends with the item's Version.
const (
	// DocumentKeySizeV3 is the v3 document key size: AES-256.
	DocumentKeySizeV3 = DocumentKeySizeV2
	// NonceSizeV3 is the size of the random GCM nonce stored in
	// InitialisationVector.
	NonceSizeV3 = NonceSizeV2
	// TagSizeV3 is the GCM authentication tag appended to the ciphertext.
	TagSizeV3 = TagSizeV2
	// AADPrefixV3 starts the v3 associated data: a v3 ciphertext cannot
	// be read as v2 (whose AAD lacks the Version) nor the other way round.
	AADPrefixV3 = "secretfs/v3"
	// VersionSizeV3 is the size of the Version at the end of the v3
	// associated data: an unsigned 64-bit big-endian integer.
	VersionSizeV3 = 8
	// MinVersionV3 is the lowest Version a v3 item can have: the first
	// write of an item stores Version 1; only legacy items, which are
	// v1, have none (0).
	MinVersionV3 = 1
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

// WriteFormats are the formats secretfs can write, newest first.
var WriteFormats = []Format{FormatV3, FormatV2, FormatV1}

// ParseFormat parses the format of new writes, as given to --format:
// "v3", "v2" or "v1". Anything else is fault.Invalid.
func ParseFormat(s string) (Format, error) {
	const op fault.Op = "crypto.ParseFormat"
	if f := Format(s); writable(f) {
		return f, nil
	}
	return "", fault.E(op, fault.Invalid, fmt.Sprintf("unknown format %s: want %s", quoteCapped(s), formatList()))
}

// Legacy reports whether an item stored with format f is v1 (a legacy
// item, f == "", is): unauthenticated, so `secretfs migrate` rewrites it
// and its integrity failures are rate-limited.
func (f Format) Legacy() bool { return f == "" || f == FormatV1 }

func writable(f Format) bool {
	for _, w := range WriteFormats {
		if f == w {
			return true
		}
	}
	return false
}

// formatList is "v3, v2 or v1", for messages.
func formatList() string {
	s := ""
	for i, f := range WriteFormats {
		switch {
		case i == 0:
		case i == len(WriteFormats)-1:
			s += " or "
		default:
			s += ", "
		}
		s += string(f)
	}
	return s
}

// readFormat is the format an item stored with format f is read as: a
// legacy item ("") is v1. ok is false for a format this version does not
// know.
func readFormat(f Format) (_ Format, ok bool) {
	switch f {
	case "", FormatV1:
		return FormatV1, true
	case FormatV2, FormatV3:
		return f, true
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
