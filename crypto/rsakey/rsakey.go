// Package rsakey is a crypto.KeyWrapper that wraps document keys with an
// RSA key pair (RSA-OAEP with SHA-256), for the embedded backend and for
// anyone who does not use AWS KMS.
//
// A private key can wrap and unwrap; a public key alone can only wrap, so
// a host given just the public key can write secrets but never read them.
// The OAEP label is the item's canonical EncryptionContext, so a wrapped
// key moved onto another item does not unwrap.
//
// This package never logs, and never places key material in an error: a
// message names the key file or the key's fingerprint, nothing more.
package rsakey

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/owned"
)

const (
	// DefaultBits is the size of the keys Generate makes: 128-bit
	// security (NIST SP 800-57), and still quick to generate.
	DefaultBits = 3072
	// MinBits is the smallest key Load accepts.
	MinBits = 2048
	// KeyIDPrefix starts every MasterKeyID of this wrapper; the rest is
	// the lowercase hex SHA-256 of the public key's PKIX DER encoding.
	KeyIDPrefix = "rsa:sha256:"
)

// PEM block types this package reads and writes.
const (
	pemPKCS8Private = "PRIVATE KEY"
	pemPKCS1Private = "RSA PRIVATE KEY"
	pemPKIXPublic   = "PUBLIC KEY"
	pemPKCS1Public  = "RSA PUBLIC KEY"
)

// Wrapper wraps document keys with an RSA public key and, when it holds
// the private key, unwraps them. It is immutable and safe for concurrent
// use.
type Wrapper struct {
	pub  *rsa.PublicKey
	priv *rsa.PrivateKey // nil on a write-only host
	id   string
}

var (
	_ crypto.KeyWrapper = (*Wrapper)(nil)
	_ crypto.Owner      = (*Wrapper)(nil)
)

// Load reads an RSA key from a PEM file: a private key (PKCS#8 "PRIVATE
// KEY" or PKCS#1 "RSA PRIVATE KEY") gives a Wrapper that can wrap and
// unwrap; a public key (PKIX "PUBLIC KEY" or PKCS#1 "RSA PUBLIC KEY") one
// that can only wrap. The first PEM block of one of these types is used.
// Keys that are not RSA, encrypted, or under MinBits are fault.Invalid; a
// missing file is fault.NotFound and an unreadable one fault.Permission.
//
// Whoever could replace the key could have every secret written later
// encrypted to a key of theirs, and whoever may read a private key reads
// every secret: so a key file that someone other than root or this
// process's user could have written or put in its place (owned.Check),
// or, if it holds a private key (any block of a "PRIVATE KEY" type), may
// read (owned.CheckPrivate), is fault.Invalid, saying who and how to fix
// it. A public key every user may read (0644, as Generate makes it) is
// as it should be.
func Load(path string) (*Wrapper, error) {
	const op fault.Op = "rsakey.Load"
	f, err := os.Open(path)
	if err != nil {
		return nil, fault.E(op, fileKind(err), "cannot read the key file", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	defer crypto.Zero(data)
	if err != nil {
		return nil, fault.E(op, fileKind(err), "cannot read the key file", err)
	}
	if err := checkOwned(f, path, data); err != nil {
		return nil, fault.E(op, fault.Invalid, "key file "+path+": "+err.Error())
	}
	w, err := parsePEM(data)
	if err != nil {
		return nil, fault.E(op, fault.Invalid, "key file "+path+": "+err.Error())
	}
	return w, nil
}

// checkOwned refuses the key file f, opened from path, which holds data,
// if someone other than root or this process's user could have written
// it or put another in its place, or, if it holds a private key, may read
// it (see Load).
func checkOwned(f *os.File, path string, data []byte) error {
	if holdsPrivateKey(data) {
		return owned.CheckPrivate(f, path, "it decrypts every secret")
	}
	return owned.Check(f, path, "every secret written is encrypted to it")
}

// holdsPrivateKey reports whether any PEM block in data is a private key,
// of whatever algorithm and encrypted or not: a file that holds one is a
// private key file, whichever block Load uses.
func holdsPrivateKey(data []byte) bool {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		private := strings.HasSuffix(block.Type, "PRIVATE KEY") || block.Headers["Proc-Type"] != ""
		crypto.Zero(block.Bytes)
		if private {
			return true
		}
	}
}

// parsePEM finds the first key block in data. Its errors say what is
// wrong with the key, never what the key holds.
func parsePEM(data []byte) (*Wrapper, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM block of type " + pemPKCS8Private + ", " + pemPKCS1Private + ", " + pemPKIXPublic + " or " + pemPKCS1Public)
		}
		w, known, err := parseBlock(block)
		crypto.Zero(block.Bytes)
		if known {
			return w, err
		}
	}
}

func parseBlock(block *pem.Block) (w *Wrapper, known bool, err error) {
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return nil, true, errors.New("encrypted keys are not supported: store the key unencrypted with mode 0600")
	}
	var key any
	switch block.Type {
	case pemPKCS8Private:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case pemPKCS1Private:
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case pemPKIXPublic:
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case pemPKCS1Public:
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, false, nil
	}
	if err != nil {
		// x509's messages describe Go's ASN.1 structures, which say
		// nothing to a person: name the block and what it should be.
		return nil, true, fmt.Errorf("the %s block is not a valid %s key", block.Type, pemEncoding[block.Type])
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		w, err = NewPrivate(k)
	case *rsa.PublicKey:
		w, err = NewPublic(k)
	default:
		err = fmt.Errorf("the %s block holds %s key, not an RSA key", block.Type, keyKind(key))
	}
	return w, true, err
}

// pemEncoding names the encoding of each PEM block type Load reads.
var pemEncoding = map[string]string{
	pemPKCS8Private: "PKCS#8", pemPKCS1Private: "PKCS#1", pemPKIXPublic: "PKIX", pemPKCS1Public: "PKCS#1",
}

// keyKind names the algorithm of a key x509 parsed, with its article.
func keyKind(key any) string {
	switch key.(type) {
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "an ECDSA"
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "an Ed25519"
	case *ecdh.PrivateKey, *ecdh.PublicKey:
		return "an ECDH"
	}
	return "a non-RSA"
}

// NewPrivate returns a Wrapper that wraps and unwraps with k.
func NewPrivate(k *rsa.PrivateKey) (*Wrapper, error) {
	const op fault.Op = "rsakey.NewPrivate"
	if k == nil {
		return nil, fault.E(op, fault.Invalid, "nil RSA private key")
	}
	if err := k.Validate(); err != nil {
		return nil, fault.E(op, fault.Invalid, "invalid RSA private key: "+err.Error())
	}
	w, err := NewPublic(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	// Precompute now, before the key is shared: later private-key
	// operations then only read it, from any number of goroutines.
	k.Precompute()
	w.priv = k
	return w, nil
}

// NewPublic returns a Wrapper that can only wrap, with k.
func NewPublic(k *rsa.PublicKey) (*Wrapper, error) {
	const op fault.Op = "rsakey.NewPublic"
	if k == nil || k.N == nil {
		return nil, fault.E(op, fault.Invalid, "nil RSA public key")
	}
	if bits := k.N.BitLen(); bits < MinBits {
		return nil, fault.E(op, fault.Invalid, fmt.Sprintf("RSA key is %d bits; at least %d are required", bits, MinBits))
	}
	id, err := KeyID(k)
	if err != nil {
		return nil, err
	}
	return &Wrapper{pub: k, id: id}, nil
}

// KeyID returns the MasterKeyID of k: KeyIDPrefix followed by the
// lowercase hex SHA-256 of k's PKIX DER encoding (the same bytes as the
// public key PEM file, so `openssl pkey -pubin -outform DER | sha256sum`
// computes it too).
func KeyID(k *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", fault.E(fault.Invalid, "encoding RSA public key: "+err.Error())
	}
	sum := sha256.Sum256(der)
	return KeyIDPrefix + hex.EncodeToString(sum[:]), nil
}

// MasterKeyID is the id this Wrapper records in the items it writes.
func (w *Wrapper) MasterKeyID() string { return w.id }

// Owns reports whether masterKeyID is an RSA key id: any, not only w's,
// so that an item of another RSA key reaches Unwrap and gets its clear
// "wrapped by X, this key is Y" error rather than being passed on to a
// wrapper that knows nothing of RSA.
func (w *Wrapper) Owns(masterKeyID string) bool {
	return strings.HasPrefix(masterKeyID, KeyIDPrefix)
}

// CanUnwrap reports whether w holds the private key, i.e. can read.
func (w *Wrapper) CanUnwrap() bool { return w.priv != nil }

// NewDocumentKey returns size random bytes and the same bytes encrypted
// with RSA-OAEP-SHA256 under w's public key, with ec.Canonical() as the
// label. It honours ctx only by refusing to start after it is done: the
// work is local and short.
func (w *Wrapper) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) (key, wrapped []byte, masterKeyID string, err error) {
	const op fault.Op = "rsakey.NewDocumentKey"
	if err := ctx.Err(); err != nil {
		return nil, nil, "", fault.E(op, err)
	}
	if size <= 0 {
		return nil, nil, "", fault.E(op, fault.Invalid, fmt.Sprintf("document key size %d", size))
	}
	key = make([]byte, size)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, "", fault.E(op, "reading random key: "+err.Error())
	}
	wrapped, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, w.pub, key, ec.Canonical())
	if err != nil {
		crypto.Zero(key)
		return nil, nil, "", fault.E(op, "RSA-OAEP: "+err.Error())
	}
	return key, wrapped, w.id, nil
}

// Unwrap decrypts wrapped with w's private key, the label being
// ec.Canonical(). Without the private key it is fault.Permission: this
// host may write but never read. A masterKeyID other than w's, or a
// wrapped key that does not decrypt (tampered, or moved from another
// item so that the label differs), is fault.Integrity.
func (w *Wrapper) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	const op fault.Op = "rsakey.Unwrap"
	if err := ctx.Err(); err != nil {
		return nil, fault.E(op, err)
	}
	if w.priv == nil {
		return nil, fault.E(op, fault.Permission, "this host holds only the public key: it can write secrets but not read them")
	}
	if masterKeyID != w.id {
		return nil, fault.E(op, fault.Integrity, fmt.Sprintf("document key was wrapped by %s, this key is %s", crypto.QuoteID(masterKeyID), w.id))
	}
	// The random source of DecryptOAEP is unused (blinding uses its own).
	key, err := rsa.DecryptOAEP(sha256.New(), nil, w.priv, wrapped, ec.Canonical())
	if err != nil {
		return nil, fault.E(op, fault.Integrity, "wrapped document key does not decrypt: it was modified or moved from another item")
	}
	return key, nil
}

// Generate makes a new DefaultBits RSA key and writes it to privatePath
// (PKCS#8 PEM, mode 0600) and its public key to publicPath (PKIX PEM, mode
// 0644), so that a write-only host can be given just the public file.
// Neither file may exist already: Generate never overwrites a key (that
// would make every secret written under it unreadable) and fails with
// fault.Exist instead. On failure it leaves no file behind.
func Generate(privatePath, publicPath string) error {
	return generate(privatePath, publicPath, DefaultBits)
}

func generate(privatePath, publicPath string, bits int) error {
	const op fault.Op = "rsakey.Generate"
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return fault.E(op, "generating RSA key: "+err.Error())
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k)
	defer crypto.Zero(privDER)
	if err != nil {
		return fault.E(op, "encoding private key: "+err.Error())
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return fault.E(op, "encoding public key: "+err.Error())
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: pemPKCS8Private, Bytes: privDER})
	defer crypto.Zero(privPEM)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: pemPKIXPublic, Bytes: pubDER})

	if err := writeNew(privatePath, privPEM, 0o600); err != nil {
		return fault.E(op, err)
	}
	if err := writeNew(publicPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(privatePath) // we created it just now; a lone private key would only confuse
		return fault.E(op, err)
	}
	return nil
}

// fileKind classifies an error of the file system holding a key.
func fileKind(err error) fault.Kind {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fault.NotFound
	case errors.Is(err, fs.ErrExist):
		return fault.Exist
	case errors.Is(err, fs.ErrPermission):
		return fault.Permission
	}
	return fault.Other
}

// writeNew creates path, which must not exist, with exactly mode (whatever
// the umask), and writes data durably. On failure it removes what it
// created.
func writeNew(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fault.E(fileKind(err), err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fault.E(cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	// The umask may have removed bits from a public key meant to be
	// readable; it can only remove, so Chmod never widens a private key.
	if err := f.Chmod(mode); err != nil {
		return fault.E(err)
	}
	if _, err := f.Write(data); err != nil {
		return fault.E(err)
	}
	if err := f.Sync(); err != nil {
		return fault.E(err)
	}
	return nil
}
