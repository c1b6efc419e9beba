package rsakey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
)

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkNoKeyMaterial fails if msg contains any base64 line of the PEM file
// at path, or any 16 hex digits of the key's modulus.
func checkNoKeyMaterial(t *testing.T, path, msg string) {
	t.Helper()
	data, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(data), "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line[:16]) {
			t.Fatalf("error contains key material: %s", msg)
		}
	}
}

func wantID(k *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(k)
	sum := sha256.Sum256(der)
	return "rsa:sha256:" + hex.EncodeToString(sum[:])
}

// testKeyDER is testKey's private key in PKCS#8 and its public key in
// PKIX, as DER.
func testKeyDER(t *testing.T) (pkcs8, pkix []byte) {
	t.Helper()
	k := testKey()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pkcs8, pkix
}

func TestLoadFormats(t *testing.T) {
	k := testKey()
	pkcs8, pkix := testKeyDER(t)
	cases := []struct {
		typ       string
		der       []byte
		canUnwrap bool
	}{
		{"PRIVATE KEY", pkcs8, true},
		{"RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k), true},
		{"PUBLIC KEY", pkix, false},
		{"RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey), false},
	}
	id := wantID(&k.PublicKey)
	if len(id) != len("rsa:sha256:")+64 {
		t.Fatalf("id %q", id)
	}
	for _, c := range cases {
		w, err := Load(writePEM(t, c.typ, c.der))
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		if w.CanUnwrap() != c.canUnwrap {
			t.Errorf("%s: CanUnwrap = %v", c.typ, w.CanUnwrap())
		}
		if w.MasterKeyID() != id {
			t.Errorf("%s: MasterKeyID = %s, want %s", c.typ, w.MasterKeyID(), id)
		}
	}
}

func TestLoadSkipsOtherBlocks(t *testing.T) {
	k := testKey()
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
	data := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{1, 2, 3}}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)
	path := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Load(path)
	if err != nil || !w.CanUnwrap() {
		t.Fatalf("Load after a foreign block: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	small8, _ := x509.MarshalPKCS8PrivateKey(small)
	smallPub, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ed8, _ := x509.MarshalPKCS8PrivateKey(edKey)
	cases := []struct {
		name, typ string
		der       []byte
		want      string
	}{
		{"1024-bit private", "PRIVATE KEY", small8, "1024 bits"},
		{"1024-bit PKCS#1", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small), "1024 bits"},
		{"1024-bit public", "PUBLIC KEY", smallPub, "1024 bits"},
		{"ECDSA private", "PRIVATE KEY", ec8, "holds an ECDSA key, not an RSA key"},
		{"ECDSA public", "PUBLIC KEY", ecPub, "holds an ECDSA key, not an RSA key"},
		{"Ed25519 private", "PRIVATE KEY", ed8, "holds an Ed25519 key, not an RSA key"},
		{"encrypted", "ENCRYPTED PRIVATE KEY", []byte{0x30, 0}, "encrypted"},
		{"garbage DER", "PRIVATE KEY", []byte("not DER at all"), "the PRIVATE KEY block is not a valid PKCS#8 key"},
		{"no key block", "CERTIFICATE REQUEST", []byte{1}, "no PEM block"},
	}
	for _, c := range cases {
		path := writePEM(t, c.typ, c.der)
		_, err := Load(path)
		if !fault.Is(fault.Invalid, err) {
			t.Errorf("%s: Load error = %v, want fault.Invalid", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q should name the file and say %q", c.name, err, c.want)
		}
		checkNoKeyMaterial(t, path, err.Error())
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	if _, err := Load(missing); !fault.Is(fault.NotFound, err) ||
		!strings.Contains(fault.Message(err), "cannot read the key file: open "+missing) {
		t.Errorf("missing file: %v; want NotFound saying the key file could not be read, naming it", err)
	}
}

func TestMasterKeyIDMatchesPublicKeyFile(t *testing.T) {
	// The id is the SHA-256 of the DER inside the public key PEM file, so
	// an operator can compute it from that file alone.
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	if err := generate(priv, pub, 2048); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(pub)
	block, _ := pem.Decode(data)
	sum := sha256.Sum256(block.Bytes)
	w, err := Load(priv)
	if err != nil {
		t.Fatal(err)
	}
	if w.MasterKeyID() != "rsa:sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("MasterKeyID %s is not the hash of the public key file's DER", w.MasterKeyID())
	}
}

func TestGenerate(t *testing.T) {
	old := syscall.Umask(0o077) // Generate must set the public file's mode whatever the umask
	defer syscall.Umask(old)
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "secretfs.key"), filepath.Join(dir, "secretfs.pub")
	if err := Generate(priv, pub); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{priv: 0o600, pub: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	privData, _ := os.ReadFile(priv)
	if b, _ := pem.Decode(privData); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatal("private key is not PKCS#8 PEM")
	}
	pubData, _ := os.ReadFile(pub)
	if b, _ := pem.Decode(pubData); b == nil || b.Type != "PUBLIC KEY" {
		t.Fatal("public key is not PKIX PEM")
	}
	rw, err := Load(priv)
	if err != nil {
		t.Fatal(err)
	}
	if rw.pub.N.BitLen() != DefaultBits || !rw.CanUnwrap() {
		t.Fatalf("generated %d bits, CanUnwrap %v", rw.pub.N.BitLen(), rw.CanUnwrap())
	}
	wo, err := Load(pub)
	if err != nil {
		t.Fatal(err)
	}
	if wo.CanUnwrap() || wo.MasterKeyID() != rw.MasterKeyID() {
		t.Fatal("public key file does not match the private key")
	}

	// Never overwrite: both files stay as they were.
	if err := Generate(priv, pub); !fault.Is(fault.Exist, err) {
		t.Fatalf("second Generate: %v, want fault.Exist", err)
	}
	if now, _ := os.ReadFile(priv); !bytes.Equal(now, privData) {
		t.Fatal("Generate overwrote the private key")
	}
	// A public file in the way: fail, and leave no lone private key.
	lone := filepath.Join(dir, "new.key")
	if err := Generate(lone, pub); !fault.Is(fault.Exist, err) {
		t.Fatalf("Generate onto an existing public key: %v", err)
	}
	if _, err := os.Stat(lone); !os.IsNotExist(err) {
		t.Fatal("a failed Generate left a private key behind")
	}
	if now, _ := os.ReadFile(pub); !bytes.Equal(now, pubData) {
		t.Fatal("Generate overwrote the public key")
	}
}

func TestWrapUnwrap(t *testing.T) {
	w, err := NewPrivate(testKey())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ec := crypto.ItemContext("app", "db")
	for _, size := range []int{16, 32} {
		key, wrapped, id, err := w.NewDocumentKey(ctx, size, ec)
		if err != nil {
			t.Fatal(err)
		}
		if len(key) != size || id != w.MasterKeyID() || len(wrapped) != 256 {
			t.Fatalf("key %d bytes, id %s, wrapped %d bytes", len(key), id, len(wrapped))
		}
		got, err := w.Unwrap(ctx, id, wrapped, ec)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("Unwrap: %v", err)
		}
		// The label binds the context: another item, or none, fails.
		for _, other := range []crypto.EncryptionContext{crypto.ItemContext("app", "db2"), crypto.ItemContext("app2", "db"), nil} {
			if got, err := w.Unwrap(ctx, id, wrapped, other); !fault.Is(fault.Integrity, err) || got != nil {
				t.Errorf("Unwrap with context %v: %v", other, err)
			}
		}
	}
	// v1 style: no context at all.
	key, wrapped, id, err := w.NewDocumentKey(ctx, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Unwrap(ctx, id, wrapped, nil); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap without context: %v", err)
	}
	if _, err := w.Unwrap(ctx, id, wrapped, crypto.ItemContext("a", "b")); !fault.Is(fault.Integrity, err) {
		t.Fatalf("a context-free key unwrapped with a context: %v", err)
	}
	if _, _, _, err := w.NewDocumentKey(ctx, 0, nil); !fault.Is(fault.Invalid, err) {
		t.Errorf("size 0: %v", err)
	}
}

func TestUnwrapErrors(t *testing.T) {
	k := testKey()
	w, _ := NewPrivate(k)
	pub, err := NewPublic(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, wrapped, id, err := pub.NewDocumentKey(ctx, 32, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pub.Unwrap(ctx, id, wrapped, nil)
	if !fault.Is(fault.Permission, err) || !strings.Contains(err.Error(), "only the public key") {
		t.Errorf("public-only Unwrap: %v", err)
	}
	_, err = w.Unwrap(ctx, "alias/some-kms-key", wrapped, nil)
	if !fault.Is(fault.Integrity, err) || !strings.Contains(err.Error(), "alias/some-kms-key") || !strings.Contains(err.Error(), id) {
		t.Errorf("foreign key id: %v", err)
	}
	bad := bytes.Clone(wrapped)
	bad[100] ^= 1
	if _, err := w.Unwrap(ctx, id, bad, nil); !fault.Is(fault.Integrity, err) {
		t.Errorf("tampered wrapped key: %v", err)
	}
	if _, err := w.Unwrap(ctx, id, wrapped[:10], nil); !fault.Is(fault.Integrity, err) {
		t.Errorf("short wrapped key: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := w.Unwrap(cctx, id, wrapped, nil); !fault.Is(fault.Unavailable, err) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, _, _, err := w.NewDocumentKey(cctx, 32, nil); !fault.Is(fault.Unavailable, err) {
		t.Errorf("cancelled context: %v", err)
	}
}
