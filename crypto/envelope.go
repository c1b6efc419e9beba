package crypto

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/secretfs/secretfs/fault"
)

// Sealed is the protected form of one secret value. Its fields map one to
// one onto the store item's attributes (docs/FORMAT.md):
//
//	Format      -> Format               ("" on legacy items: read as v1)
//	Version     -> Version              (bound by v3; 0 on legacy items)
//	MasterKeyID -> MasterKeyId
//	WrappedKey  -> ProtectedDocumentKey
//	IV          -> InitialisationVector (the CBC IV for v1, the GCM nonce for v2 and v3)
//	Ciphertext  -> ProtectedSecretValue (for v2 and v3, ciphertext || 16-byte tag)
//
// A Sealed holds nothing secret; it may be stored, logged by size and
// copied freely.
type Sealed struct {
	Format Format
	// Version is the item's Version: Seal records the one it was given,
	// and Open checks it against the value for formats that bind it (v3).
	// v1 and v2 ignore it.
	Version     int64
	MasterKeyID string
	WrappedKey  []byte
	IV          []byte
	Ciphertext  []byte
}

// Envelope seals and opens secret values: a fresh document key per value,
// wrapped under a master key by a KeyWrapper. It holds no secret state of
// its own and is safe for concurrent use if its KeyWrapper is.
type Envelope struct {
	wrapper KeyWrapper
	write   Format
}

// NewEnvelope returns an Envelope that wraps document keys with w and
// writes new values in writeFormat (one of WriteFormats). Every format
// can be read whatever writeFormat is.
func NewEnvelope(w KeyWrapper, writeFormat Format) (*Envelope, error) {
	const op fault.Op = "crypto.NewEnvelope"
	if w == nil {
		return nil, fault.E(op, fault.Invalid, "no key wrapper")
	}
	if !writable(writeFormat) {
		return nil, fault.E(op, fault.Invalid, fmt.Sprintf("cannot write format %s: want %s", quoteCapped(string(writeFormat)), formatList()))
	}
	return &Envelope{wrapper: w, write: writeFormat}, nil
}

// WriteFormat is the format Seal writes.
func (e *Envelope) WriteFormat() Format { return e.write }

// Seal encrypts value for the secret app/name in the Envelope's write
// format, under a fresh document key and a fresh IV or nonce. version is
// the Version the item will be stored with (at least MinVersionV3 for
// v3, which binds it; v1 and v2 only record it in the result). It neither
// modifies nor keeps value: the caller still owns it and wipes it.
//
// Errors from the KeyWrapper keep their Kind (fault.Permission,
// fault.Unavailable, ...).
func (e *Envelope) Seal(ctx context.Context, app, name string, version int64, value []byte) (Sealed, error) {
	const op fault.Op = "crypto.Seal"
	path := itemPath(app, name)
	var (
		s   Sealed
		err error
	)
	switch e.write {
	case FormatV3:
		if version < MinVersionV3 {
			return Sealed{}, fault.E(op, path, fault.Invalid, fmt.Sprintf("v3 binds the item's version, which is at least %d, not %d", MinVersionV3, version))
		}
		s, err = e.sealGCM(ctx, FormatV3, associatedDataV3(app, name, version), app, name, value)
	case FormatV2:
		s, err = e.sealGCM(ctx, FormatV2, associatedDataV2(app, name), app, name, value)
	case FormatV1:
		s, err = e.sealV1(ctx, value)
	default: // impossible after NewEnvelope; guards a zero Envelope
		err = fault.E(fault.Invalid, "envelope has no write format")
	}
	if err != nil {
		return Sealed{}, fault.E(op, path, err)
	}
	s.Version = version
	return s, nil
}

// Open decrypts s, the protected value of the secret app/name. The caller
// owns the returned Plaintext and must Wipe it.
//
// Every failure to decrypt — a malformed field, an unknown format, a
// failed authentication (for v3, of the Version too), bad padding, a
// wrapped key that does not open — is fault.Integrity; other errors from
// the KeyWrapper keep their Kind (fault.Permission for a public key only,
// fault.Unavailable for a backend that did not answer). On any error the
// Plaintext is nil: Open never returns garbage or a partial value.
func (e *Envelope) Open(ctx context.Context, app, name string, s Sealed) (Plaintext, error) {
	const op fault.Op = "crypto.Open"
	path := itemPath(app, name)
	f, ok := readFormat(s.Format)
	if !ok {
		return nil, fault.E(op, path, fault.Integrity, "unknown format "+quoteCapped(string(s.Format))+" (written by a newer secretfs?)")
	}
	var (
		p   Plaintext
		err error
	)
	switch f {
	case FormatV3:
		if s.Version < MinVersionV3 {
			// No v3 write stores such a Version: do not ask the key
			// wrapper about an item that cannot be genuine.
			err = fault.E(fault.Integrity, fmt.Sprintf("a v3 item has version %d; v3 versions start at %d", s.Version, MinVersionV3))
			break
		}
		p, err = e.openGCM(ctx, FormatV3, associatedDataV3(app, name, s.Version), app, name, s)
	case FormatV2:
		p, err = e.openGCM(ctx, FormatV2, associatedDataV2(app, name), app, name, s)
	case FormatV1:
		p, err = e.openV1(ctx, s)
	}
	if err != nil {
		p.Wipe()
		return nil, fault.E(op, path, err)
	}
	return p, nil
}

func itemPath(app, name string) fault.Path { return fault.Path(app + "/" + name) }

// associatedDataV2 is the v2 AAD of app/name: AADPrefixV2, then app and
// name each as a 4-byte big-endian length and its bytes. The lengths make
// the split unambiguous ("ab"/"c" and "a"/"bc" differ). docs/FORMAT.md
// shows a worked example; the test checks the code against it.
func associatedDataV2(app, name string) []byte {
	b := make([]byte, 0, len(AADPrefixV2)+8+len(app)+len(name))
	b = append(b, AADPrefixV2...)
	b = appendLenPrefixed(b, app)
	return appendLenPrefixed(b, name)
}

// associatedDataV3 is the v3 AAD of version version of app/name:
// AADPrefixV3, app and name as in v2, then the version as an unsigned
// 8-byte big-endian integer (VersionSizeV3). The version's fixed size
// keeps the whole unambiguous. docs/FORMAT.md shows a worked example; the
// test checks the code against it.
func associatedDataV3(app, name string, version int64) []byte {
	b := make([]byte, 0, len(AADPrefixV3)+8+len(app)+len(name)+VersionSizeV3)
	b = append(b, AADPrefixV3...)
	b = appendLenPrefixed(b, app)
	b = appendLenPrefixed(b, name)
	return binary.BigEndian.AppendUint64(b, uint64(version))
}

// newGCM returns AES-GCM with the v2 and v3 nonce and tag sizes.
// aes.NewCipher keeps its own expanded copy of key, which Go gives us no
// way to wipe.
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block) // NonceSizeV2 and TagSizeV2 are its defaults (checked by a test)
}

// sealGCM seals value in format f (v2 or v3, which differ only in their
// associated data, aad) under a fresh 256-bit document key and nonce.
func (e *Envelope) sealGCM(ctx context.Context, f Format, aad []byte, app, name string, value []byte) (Sealed, error) {
	key, wrapped, keyID, err := e.wrapper.NewDocumentKey(ctx, DocumentKeySizeV2, ItemContext(app, name))
	defer Zero(key)
	if err != nil {
		return Sealed{}, err
	}
	if err := checkNewKey(key, wrapped, keyID, DocumentKeySizeV2); err != nil {
		return Sealed{}, err
	}
	nonce := make([]byte, NonceSizeV2)
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fault.E(fault.Other, "reading random nonce: "+err.Error())
	}
	aead, err := newGCM(key)
	if err != nil {
		return Sealed{}, fault.E(fault.Other, "AES-GCM: "+err.Error())
	}
	return Sealed{
		Format:      f,
		MasterKeyID: keyID,
		WrappedKey:  wrapped,
		IV:          nonce,
		Ciphertext:  aead.Seal(nil, nonce, value, aad),
	}, nil
}

// openGCM opens s in format f (v2 or v3) with the associated data aad.
func (e *Envelope) openGCM(ctx context.Context, f Format, aad []byte, app, name string, s Sealed) (Plaintext, error) {
	// Check the shape before unwrapping: a malformed item should not cost
	// a KMS call.
	if len(s.IV) != NonceSizeV2 {
		return nil, fault.E(fault.Integrity, fmt.Sprintf("%s nonce is %d bytes, want %d", f, len(s.IV), NonceSizeV2))
	}
	if len(s.Ciphertext) < TagSizeV2 {
		return nil, fault.E(fault.Integrity, fmt.Sprintf("%s ciphertext is %d bytes, shorter than its %d-byte tag", f, len(s.Ciphertext), TagSizeV2))
	}
	if len(s.WrappedKey) == 0 {
		return nil, fault.E(fault.Integrity, "no wrapped document key")
	}
	key, err := e.wrapper.Unwrap(ctx, s.MasterKeyID, s.WrappedKey, ItemContext(app, name))
	defer Zero(key)
	if err != nil {
		return nil, err
	}
	if len(key) != DocumentKeySizeV2 {
		return nil, fault.E(fault.Integrity, fmt.Sprintf("%s document key is %d bytes, want %d", f, len(key), DocumentKeySizeV2))
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fault.E(fault.Integrity, "AES-GCM: "+err.Error())
	}
	p, err := aead.Open(nil, s.IV, s.Ciphertext, aad)
	if err != nil {
		// crypto/cipher clears its output on failure; say nothing of
		// which byte was wrong: there is no way to know.
		what := "moved from another name"
		if f == FormatV3 {
			what = "moved from another name or version"
		}
		return nil, fault.E(fault.Integrity, fmt.Sprintf("%s authentication failed: the item was modified, %s, or sealed under another key", f, what))
	}
	if p == nil {
		p = []byte{} // an empty secret is a value, not an absent one
	}
	return Plaintext(p), nil
}

func (e *Envelope) sealV1(ctx context.Context, value []byte) (Sealed, error) {
	// Like the original: no encryption context, so that the original's
	// KMS Decrypt (which passes none) can still open what we write.
	key, wrapped, keyID, err := e.wrapper.NewDocumentKey(ctx, DocumentKeySizeV1, nil)
	defer Zero(key)
	if err != nil {
		return Sealed{}, err
	}
	if err := checkNewKey(key, wrapped, keyID, DocumentKeySizeV1); err != nil {
		return Sealed{}, err
	}
	iv := make([]byte, IVSizeV1)
	if _, err := rand.Read(iv); err != nil {
		return Sealed{}, fault.E(fault.Other, "reading random IV: "+err.Error())
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return Sealed{}, fault.E(fault.Other, "AES: "+err.Error())
	}
	// PKCS#7: always 1 to BlockSizeV1 bytes of padding, each holding the
	// padding length. The padded plaintext is encrypted in place, so once
	// CryptBlocks returns no plaintext copy is left in buf.
	pad := BlockSizeV1 - len(value)%BlockSizeV1
	buf := make([]byte, len(value)+pad)
	copy(buf, value)
	for i := len(value); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	return Sealed{
		Format:      FormatV1,
		MasterKeyID: keyID,
		WrappedKey:  wrapped,
		IV:          iv,
		Ciphertext:  buf,
	}, nil
}

func (e *Envelope) openV1(ctx context.Context, s Sealed) (Plaintext, error) {
	if len(s.IV) != IVSizeV1 {
		return nil, fault.E(fault.Integrity, fmt.Sprintf("v1 IV is %d bytes, want %d", len(s.IV), IVSizeV1))
	}
	if len(s.Ciphertext) == 0 || len(s.Ciphertext)%BlockSizeV1 != 0 {
		return nil, fault.E(fault.Integrity, fmt.Sprintf("v1 ciphertext is %d bytes, not a positive multiple of %d", len(s.Ciphertext), BlockSizeV1))
	}
	if len(s.WrappedKey) == 0 {
		return nil, fault.E(fault.Integrity, "no wrapped document key")
	}
	key, err := e.wrapper.Unwrap(ctx, s.MasterKeyID, s.WrappedKey, nil)
	defer Zero(key)
	if err != nil {
		return nil, err
	}
	// v1 writes AES-128 keys, but the original's AesManaged took whatever
	// its key manager produced; accept every AES key size.
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fault.E(fault.Integrity, fmt.Sprintf("v1 document key is %d bytes, want 16, 24 or 32", len(key)))
	}
	buf := make([]byte, len(s.Ciphertext))
	cipher.NewCBCDecrypter(block, s.IV).CryptBlocks(buf, s.Ciphertext)
	n, ok := unpad(buf)
	if !ok {
		Zero(buf)
		// v1 has no integrity: bad padding is the only damage it can
		// notice, and most modifications go unnoticed.
		return nil, fault.E(fault.Integrity, "v1 padding is invalid: the item was modified or sealed under another key")
	}
	Zero(buf[n:])
	return Plaintext(buf[:n:n]), nil
}

// unpad checks the PKCS#7 padding of buf (a non-empty multiple of
// BlockSizeV1) and returns the length of the value before it. The check
// takes the same time whatever the padding holds, so as not to hand a
// padding oracle to whoever can see how long a failed read took.
func unpad(buf []byte) (n int, ok bool) {
	pad := int(buf[len(buf)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, BlockSizeV1)
	tail := buf[len(buf)-BlockSizeV1:]
	for i := range BlockSizeV1 {
		// Byte i of the last block is padding when i >= BlockSizeV1-pad
		// (written i+pad >= BlockSizeV1 to keep both operands
		// non-negative); every padding byte must equal pad.
		inPad := subtle.ConstantTimeLessOrEq(BlockSizeV1, i+pad)
		same := subtle.ConstantTimeByteEq(tail[i], byte(pad))
		good &= (inPad ^ 1) | same
	}
	if good != 1 {
		return 0, false
	}
	return len(buf) - pad, true
}

// checkNewKey refuses what a KeyWrapper must never return: a key of the
// wrong size, or nothing to store as the wrapped key or master key id.
// Sealing anyway would store an item nobody can open.
func checkNewKey(key, wrapped []byte, keyID string, size int) error {
	switch {
	case len(key) != size:
		return fault.E(fault.Other, fmt.Sprintf("key wrapper returned a %d-byte document key, want %d", len(key), size))
	case len(wrapped) == 0:
		return fault.E(fault.Other, "key wrapper returned no wrapped key")
	case keyID == "":
		return fault.E(fault.Other, "key wrapper returned no master key id")
	}
	return nil
}
