package crypto_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/crypto/rsakey"
	"github.com/secretfs/secretfs/fault"
)

// A v1 item made independently of this package, with OpenSSL 3.0:
//
//	printf 'correct horse battery staple' | openssl enc -aes-128-cbc \
//	    -K 000102030405060708090a0b0c0d0e0f -iv f0e1d2c3b4a5968778695a4b3c2d1e0f | xxd -p
const (
	v1VectorKey        = "000102030405060708090a0b0c0d0e0f"
	v1VectorIV         = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
	v1VectorPlaintext  = "correct horse battery staple"
	v1VectorCiphertext = "b3e3532051b77b3e9ed3a78bdf82039408cfac20b36f436da6e5fe68ee5ea747"
	// Same key and IV: printf '' | openssl enc ... (one block of padding)
	v1VectorEmptyCiphertext = "35760540f6143d6d133c1b9e3ae7cce4"
	// Same key and IV: printf '0123456789abcdef' | openssl enc ... (a
	// full block of value, then a full block of padding)
	v1VectorBlockPlaintext  = "0123456789abcdef"
	v1VectorBlockCiphertext = "67d1743e6380be3f7662658d80229bfc4806adf9ce925e2441ae1f5c271173d6"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenV1OpenSSLVector(t *testing.T) {
	w := &fixedWrapper{key: unhex(t, v1VectorKey)}
	e := envelope(t, w, crypto.FormatV2) // reading v1 does not depend on the write format
	for _, c := range []struct{ plain, cipher string }{
		{v1VectorPlaintext, v1VectorCiphertext},
		{"", v1VectorEmptyCiphertext},
		{v1VectorBlockPlaintext, v1VectorBlockCiphertext},
	} {
		for _, f := range []crypto.Format{"", crypto.FormatV1} { // legacy items have no Format
			s := crypto.Sealed{Format: f, MasterKeyID: "alias/legacy", WrappedKey: []byte("kms blob"),
				IV: unhex(t, v1VectorIV), Ciphertext: unhex(t, c.cipher)}
			p, err := e.Open(t.Context(), "app", "db", s)
			if err != nil {
				t.Fatalf("format %q, %q: %v", f, c.plain, err)
			}
			if string(p) != c.plain {
				t.Fatalf("format %q: Open = %q, want %q", f, []byte(p), c.plain)
			}
			if p == nil {
				t.Fatal("an empty value must be a non-nil empty Plaintext")
			}
		}
	}
}

// TestSealV1DecryptsWithStandardLibrary checks what v1 writes with
// crypto/cipher directly, not with this package's decrypt code.
func TestSealV1DecryptsWithStandardLibrary(t *testing.T) {
	w := &fixedWrapper{key: unhex(t, v1VectorKey)}
	e := envelope(t, w, crypto.FormatV1)
	for _, n := range []int{0, 1, 15, 16, 17, 100} {
		value := make([]byte, n)
		_, _ = rand.Read(value)
		s, err := e.Seal(t.Context(), "app", "db", 1, value)
		if err != nil {
			t.Fatal(err)
		}
		if s.Format != crypto.FormatV1 || len(s.IV) != aes.BlockSize || len(w.lastKey) != crypto.DocumentKeySizeV1 {
			t.Fatalf("v1 Seal: format %q, IV %d bytes, key %d bytes", s.Format, len(s.IV), len(w.lastKey))
		}
		block, err := aes.NewCipher(w.lastKey)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Ciphertext)%aes.BlockSize != 0 {
			t.Fatalf("ciphertext of %d bytes is not whole blocks", len(s.Ciphertext))
		}
		out := make([]byte, len(s.Ciphertext))
		cipher.NewCBCDecrypter(block, s.IV).CryptBlocks(out, s.Ciphertext)
		pad := int(out[len(out)-1])
		if pad < 1 || pad > aes.BlockSize || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
			t.Fatalf("n=%d: bad PKCS#7 padding % x", n, out[len(out)-aes.BlockSize:])
		}
		if !bytes.Equal(out[:len(out)-pad], value) {
			t.Fatalf("n=%d: standard library decrypts to a different value", n)
		}
	}
}

// TestSealV2DecryptsWithStandardLibrary opens a v2 value with crypto/cipher
// and the AAD bytes written out in docs/FORMAT.md.
func TestSealV2DecryptsWithStandardLibrary(t *testing.T) {
	w := &fixedWrapper{key: bytes.Repeat([]byte{0x42}, 32)}
	e := envelope(t, w, crypto.FormatV2)
	value := []byte("hunter2")
	s, err := e.Seal(t.Context(), "app", "db", 1, value)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(w.lastKey)
	aead, _ := cipher.NewGCM(block)
	aad := unhex(t, "73656372657466732f763200000003617070000000026462") // docs/FORMAT.md
	got, err := aead.Open(nil, s.IV, s.Ciphertext, aad)
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("standard library GCM: %q, %v", got, err)
	}
	if len(w.lastKey) != 32 || len(s.IV) != 12 || len(s.Ciphertext) != len(value)+16 {
		t.Fatalf("v2 layout: key %d, nonce %d, ciphertext %d bytes", len(w.lastKey), len(s.IV), len(s.Ciphertext))
	}
}

func testValues() map[string][]byte {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	big := make([]byte, 300<<10)
	_, _ = rand.Read(big)
	return map[string][]byte{
		"empty":   {},
		"1 byte":  {'x'},
		"15":      bytes.Repeat([]byte{'a'}, 15),
		"16":      bytes.Repeat([]byte{'b'}, 16),
		"17":      bytes.Repeat([]byte{'c'}, 17),
		"binary":  binary,
		"300 KiB": big,
	}
}

func TestRoundTrip(t *testing.T) {
	values := testValues()
	for wname, w := range wrappers(t) {
		for _, f := range crypto.WriteFormats {
			e := envelope(t, w, f)
			for vname, value := range values {
				t.Run(fmt.Sprintf("%s/%s/%s", wname, f, vname), func(t *testing.T) {
					orig := append([]byte(nil), value...)
					s, err := e.Seal(t.Context(), "app", "db", 5, value)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(value, orig) {
						t.Fatal("Seal modified its input")
					}
					if s.Format != f || s.Version != 5 {
						t.Fatalf("Format, Version = %q, %d; want %q, 5", s.Format, s.Version, f)
					}
					checkLayout(t, s, len(value))
					p, err := e.Open(t.Context(), "app", "db", s)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(p, value) || p == nil {
						t.Fatalf("round trip of %d bytes gave %d different bytes", len(value), len(p))
					}
					p.Wipe()
					if !bytes.Equal(value, orig) {
						t.Fatal("Open's result aliases the value given to Seal")
					}
				})
			}
		}
	}
}

func checkLayout(t *testing.T, s crypto.Sealed, n int) {
	t.Helper()
	switch s.Format {
	case crypto.FormatV2, crypto.FormatV3:
		if len(s.IV) != crypto.NonceSizeV2 || len(s.Ciphertext) != n+crypto.TagSizeV2 {
			t.Fatalf("%s: nonce %d bytes, ciphertext %d for a %d-byte value", s.Format, len(s.IV), len(s.Ciphertext), n)
		}
	case crypto.FormatV1:
		if len(s.IV) != crypto.IVSizeV1 || len(s.Ciphertext) != (n/16+1)*16 {
			t.Fatalf("v1: IV %d bytes, ciphertext %d for a %d-byte value", len(s.IV), len(s.Ciphertext), n)
		}
	}
	if s.MasterKeyID == "" || len(s.WrappedKey) == 0 {
		t.Fatal("missing master key id or wrapped key")
	}
}

func TestSealIsFreshEveryTime(t *testing.T) {
	for wname, w := range wrappers(t) {
		for _, f := range crypto.WriteFormats {
			e := envelope(t, w, f)
			value := []byte("same value")
			a, err := e.Seal(t.Context(), "app", "db", 1, value)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.Seal(t.Context(), "app", "db", 1, value)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(a.IV, b.IV) || bytes.Equal(a.WrappedKey, b.WrappedKey) || bytes.Equal(a.Ciphertext, b.Ciphertext) {
				t.Errorf("%s/%s: two Seals share a nonce, wrapped key or ciphertext", wname, f)
			}
		}
	}
}

// mustFailIntegrity opens s and requires fault.Integrity and a nil value.
func mustFailIntegrity(t *testing.T, e *crypto.Envelope, app, name string, s crypto.Sealed, what string) error {
	t.Helper()
	p, err := e.Open(t.Context(), app, name, s)
	if !fault.Is(fault.Integrity, err) {
		t.Fatalf("%s: Open error = %v, want fault.Integrity", what, err)
	}
	if p != nil {
		t.Fatalf("%s: Open returned %d bytes with its error", what, len(p))
	}
	return err
}

func TestV2AndV3TamperFailsIntegrity(t *testing.T) {
	const secret = "tamper-me"
	for wname, w := range wrappers(t) {
		for _, f := range []crypto.Format{crypto.FormatV2, crypto.FormatV3} {
			t.Run(wname+"/"+string(f), func(t *testing.T) {
				e := envelope(t, w, f)
				s, err := e.Seal(t.Context(), "app", "db", 3, []byte(secret))
				if err != nil {
					t.Fatal(err)
				}
				fields := map[string]func(*crypto.Sealed) []byte{
					"ciphertext+tag": func(s *crypto.Sealed) []byte { return s.Ciphertext },
					"nonce":          func(s *crypto.Sealed) []byte { return s.IV },
					"wrapped key":    func(s *crypto.Sealed) []byte { return s.WrappedKey },
				}
				for fname, field := range fields {
					for i := range field(&s) {
						for _, flip := range []byte{0x01, 0x80} {
							c := clone(s)
							field(&c)[i] ^= flip
							err := mustFailIntegrity(t, e, "app", "db", c, fmt.Sprintf("%s byte %d ^%#x", fname, i, flip))
							if strings.Contains(err.Error(), secret) {
								t.Fatalf("error message contains the plaintext: %v", err)
							}
						}
					}
				}
				c := clone(s)
				c.Ciphertext = c.Ciphertext[:len(c.Ciphertext)-1]
				mustFailIntegrity(t, e, "app", "db", c, "truncated ciphertext")
				c = clone(s)
				c.Ciphertext = append(c.Ciphertext, 0)
				mustFailIntegrity(t, e, "app", "db", c, "extended ciphertext")
				c = clone(s)
				c.IV = append(c.IV, 0)
				mustFailIntegrity(t, e, "app", "db", c, "long nonce")
				// Relabelled as every other format: the AAD names the format.
				for _, other := range []crypto.Format{"", crypto.FormatV1, crypto.FormatV2, crypto.FormatV3} {
					if other != f {
						c = clone(s)
						c.Format = other
						mustFailIntegrity(t, e, "app", "db", c, fmt.Sprintf("format changed to %q", other))
					}
				}
				c = clone(s)
				c.Format = "v9"
				mustFailIntegrity(t, e, "app", "db", c, "unknown format")
				c = clone(s)
				c.MasterKeyID += "x"
				mustFailIntegrity(t, e, "app", "db", c, "other master key id")
				// The untouched value still opens: the failures above are the
				// tampering, not a broken setup.
				if p, err := e.Open(t.Context(), "app", "db", s); err != nil || string(p) != secret {
					t.Fatalf("untampered Open: %v", err)
				}
			})
		}
	}
}

// An old v3 ciphertext relabelled with another Version (a higher one, to
// pass for a newer write, or a lower one) fails authentication; v2, which
// does not bind the Version, is the reason v3 exists.
func TestV3RelabelledVersionFailsIntegrity(t *testing.T) {
	for wname, w := range wrappers(t) {
		e := envelope(t, w, crypto.FormatV3)
		s, err := e.Seal(t.Context(), "app", "db", 2, []byte("old value"))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []int64{3, 4, 1, 1<<32 + 2, 2 - 1<<62} {
			c := clone(s)
			c.Version = v
			err := mustFailIntegrity(t, e, "app", "db", c, fmt.Sprintf("%s: version 2 relabelled %d", wname, v))
			if !strings.Contains(err.Error(), "version") {
				t.Errorf("%s: the error does not say the version may be wrong: %v", wname, err)
			}
		}
		if p, err := e.Open(t.Context(), "app", "db", s); err != nil || string(p) != "old value" {
			t.Fatalf("%s: the item under its own version: %v", wname, err)
		}
	}
	// v2 binds no version: relabelled, it still opens (what v3 fixes).
	e := envelope(t, cryptotest.New(), crypto.FormatV2)
	s, err := e.Seal(t.Context(), "app", "db", 2, []byte("old value"))
	if err != nil {
		t.Fatal(err)
	}
	s.Version = 9
	if p, err := e.Open(t.Context(), "app", "db", s); err != nil || string(p) != "old value" {
		t.Fatalf("v2 relabelled: %v (if v2 gained a version binding, update docs/FORMAT.md)", err)
	}
}

// A v3 item cannot have a Version below 1: Seal refuses to write one, and
// Open refuses one before asking the key wrapper.
func TestV3VersionBelowOneIsRefused(t *testing.T) {
	w := cryptotest.New()
	e := envelope(t, w, crypto.FormatV3)
	for _, v := range []int64{0, -1} {
		if _, err := e.Seal(t.Context(), "app", "db", v, []byte("x")); !fault.Is(fault.Invalid, err) {
			t.Errorf("Seal at version %d: %v, want Invalid", v, err)
		}
	}
	if n := w.NewDocumentKeyCalls(); n != 0 {
		t.Errorf("%d document keys made for versions v3 cannot hold", n)
	}
	s, err := e.Seal(t.Context(), "app", "db", 1, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	s.Version = 0
	mustFailIntegrity(t, e, "app", "db", s, "v3 item of version 0")
	if n := w.UnwrapCalls(); n != 0 {
		t.Errorf("%d unwraps for a v3 item of version 0", n)
	}
}

// The worked example of docs/FORMAT.md, made independently with Python's
// cryptography package (OpenSSL):
//
//	AESGCM(bytes(range(32))).encrypt(bytes.fromhex('f0e1d2c3b4a5968778695a4b'), b'hunter2',
//	    bytes.fromhex('73656372657466732f7633000000036170700000000264620000000000000007'))
const (
	v3ExampleKey        = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	v3ExampleNonce      = "f0e1d2c3b4a5968778695a4b"
	v3ExampleAAD        = "73656372657466732f7633000000036170700000000264620000000000000007"
	v3ExampleCiphertext = "87a0d593c1e1b1ceb4bfa43aee082dbd46e4e28634370e"
	v3ExamplePlaintext  = "hunter2"
)

func TestOpenV3WorkedExampleOfFormatDoc(t *testing.T) {
	e := envelope(t, &fixedWrapper{key: unhex(t, v3ExampleKey)}, crypto.FormatV2) // reading does not depend on the write format
	s := crypto.Sealed{Format: crypto.FormatV3, Version: 7, MasterKeyID: "fixed", WrappedKey: []byte("w"),
		IV: unhex(t, v3ExampleNonce), Ciphertext: unhex(t, v3ExampleCiphertext)}
	p, err := e.Open(t.Context(), "app", "db", s)
	if err != nil || string(p) != v3ExamplePlaintext {
		t.Fatalf("the worked example opens to %q, %v; want %q", []byte(p), err, v3ExamplePlaintext)
	}
	s.Version = 8
	mustFailIntegrity(t, e, "app", "db", s, "the worked example as version 8")
}

// TestSealV3DecryptsWithStandardLibrary opens a v3 value with crypto/cipher
// and the AAD bytes written out in docs/FORMAT.md.
func TestSealV3DecryptsWithStandardLibrary(t *testing.T) {
	w := &fixedWrapper{key: unhex(t, v3ExampleKey)}
	e := envelope(t, w, crypto.FormatV3)
	s, err := e.Seal(t.Context(), "app", "db", 7, []byte(v3ExamplePlaintext))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(w.lastKey)
	aead, _ := cipher.NewGCM(block)
	got, err := aead.Open(nil, s.IV, s.Ciphertext, unhex(t, v3ExampleAAD))
	if err != nil || string(got) != v3ExamplePlaintext {
		t.Fatalf("standard library GCM: %q, %v", got, err)
	}
	if s.Format != crypto.FormatV3 || s.Version != 7 || len(w.lastKey) != 32 || len(s.IV) != 12 || len(s.Ciphertext) != len(v3ExamplePlaintext)+16 {
		t.Fatalf("v3 layout: format %q version %d, key %d, nonce %d, ciphertext %d bytes", s.Format, s.Version, len(w.lastKey), len(s.IV), len(s.Ciphertext))
	}
}

// TestV1HasNoIntegrity pins down the weakness docs/FORMAT.md describes: a
// v1 item modified in its IV decrypts, without error, to a modified value.
// Only malformed lengths and bad padding are caught.
func TestV1HasNoIntegrity(t *testing.T) {
	e := envelope(t, cryptotest.New(), crypto.FormatV1)
	s, err := e.Seal(t.Context(), "app", "db", 1, []byte("pay alice"))
	if err != nil {
		t.Fatal(err)
	}
	c := clone(s)
	c.IV[4] ^= 'a' ^ 'm' // "pay alice" -> "pay mlice"
	p, err := e.Open(t.Context(), "app", "db", c)
	if err != nil || string(p) != "pay mlice" {
		t.Fatalf("v1 IV modification: %q, %v (if v1 gained integrity, update docs/FORMAT.md)", []byte(p), err)
	}
	// Moving a v1 item to another name is not detected either: v1 binds
	// nothing to the name.
	if p, err := e.Open(t.Context(), "other", "name", s); err != nil || string(p) != "pay alice" {
		t.Fatalf("moved v1 item: %v", err)
	}

	c = clone(s)
	c.Ciphertext[len(c.Ciphertext)-1] ^= 0xff // the last byte, read as the padding length: > 16
	mustFailIntegrity(t, e, "app", "db", c, "bad padding")
	c = clone(s)
	c.Ciphertext = c.Ciphertext[:len(c.Ciphertext)-1]
	mustFailIntegrity(t, e, "app", "db", c, "not whole blocks")
	c = clone(s)
	c.Ciphertext = nil
	mustFailIntegrity(t, e, "app", "db", c, "empty ciphertext")
	c = clone(s)
	c.IV = c.IV[:12]
	mustFailIntegrity(t, e, "app", "db", c, "short IV")
	c = clone(s)
	c.WrappedKey[0] ^= 1
	mustFailIntegrity(t, e, "app", "db", c, "tampered wrapped key")
	c = clone(s)
	c.WrappedKey = nil
	mustFailIntegrity(t, e, "app", "db", c, "no wrapped key")
}

func TestV1AcceptsEveryAESKeySize(t *testing.T) {
	value := []byte("legacy value")
	for _, size := range []int{16, 24, 32} {
		key := make([]byte, size)
		_, _ = rand.Read(key)
		iv := make([]byte, 16)
		_, _ = rand.Read(iv)
		padded := append(append([]byte(nil), value...), bytes.Repeat([]byte{4}, 4)...)
		block, _ := aes.NewCipher(key)
		ct := make([]byte, len(padded))
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
		e := envelope(t, &fixedWrapper{key: key}, crypto.FormatV2)
		p, err := e.Open(t.Context(), "a", "b", crypto.Sealed{MasterKeyID: "k", WrappedKey: []byte("w"), IV: iv, Ciphertext: ct})
		if err != nil || !bytes.Equal(p, value) {
			t.Fatalf("%d-byte key: %q, %v", size, []byte(p), err)
		}
	}
	e := envelope(t, &fixedWrapper{key: make([]byte, 17)}, crypto.FormatV2)
	mustFailIntegrity(t, e, "a", "b", crypto.Sealed{MasterKeyID: "k", WrappedKey: []byte("w"), IV: make([]byte, 16), Ciphertext: make([]byte, 16)}, "17-byte v1 key")
}

func TestV2RejectsWrongKeySize(t *testing.T) {
	// A well-formed AES-128-GCM item with the right AAD: v2 promises
	// AES-256, so a 16-byte document key is refused even though GCM would
	// authenticate it.
	key := bytes.Repeat([]byte{3}, 16)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	aad := unhex(t, "73656372657466732f763200000003617070000000026462") // app/db, docs/FORMAT.md
	s := crypto.Sealed{Format: crypto.FormatV2, MasterKeyID: "k", WrappedKey: []byte("w"), IV: nonce,
		Ciphertext: aead.Seal(nil, nonce, []byte("x"), aad)}
	e := envelope(t, &fixedWrapper{key: key}, crypto.FormatV2)
	err := mustFailIntegrity(t, e, "app", "db", s, "16-byte key for v2")
	if !strings.Contains(err.Error(), "document key is 16 bytes") {
		t.Fatalf("wrong reason: %v", err)
	}
}

func TestMovedValueFailsIntegrity(t *testing.T) {
	cases := map[string]struct {
		w      crypto.KeyWrapper
		caught string // which layer must notice: the OAEP label or the AAD
	}{
		"rsakey (OAEP label)": {rsaWrapper(t), "rsakey.Unwrap"},
		"fixed key (AAD)":     {&fixedWrapper{key: bytes.Repeat([]byte{9}, 32)}, "authentication failed"},
	}
	for cname, c := range cases {
		for _, f := range []crypto.Format{crypto.FormatV2, crypto.FormatV3} {
			e := envelope(t, c.w, f)
			s, err := e.Seal(t.Context(), "app", "db", 1, []byte("v"))
			if err != nil {
				t.Fatal(err)
			}
			for _, to := range [][2]string{{"app", "db2"}, {"app2", "db"}, {"ap", "pdb"}, {"appd", "b"}} {
				err := mustFailIntegrity(t, e, to[0], to[1], s, cname+" "+string(f)+" moved to "+to[0]+"/"+to[1])
				if !strings.Contains(err.Error(), c.caught) {
					t.Errorf("%s %s: moved value caught by the wrong layer: %v", cname, f, err)
				}
				if !strings.Contains(err.Error(), to[0]+"/"+to[1]) {
					t.Errorf("%s %s: error does not name the path: %v", cname, f, err)
				}
			}
		}
	}
}

func TestUnwrapKindIsKept(t *testing.T) {
	w := cryptotest.New()
	e := envelope(t, w, crypto.FormatV2)
	s, err := e.Seal(t.Context(), "app", "db", 1, []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []fault.Kind{fault.Permission, fault.Unavailable, fault.Integrity, fault.NotFound} {
		w.FailWith(fault.E(fault.Op("kms.Decrypt"), kind, "injected"))
		p, err := e.Open(t.Context(), "app", "db", s)
		if fault.KindOf(err) != kind || p != nil {
			t.Errorf("Unwrap failing with %v: Open = %d bytes, %v", kind, len(p), err)
		}
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Op != "crypto.Open" || fe.Path != "app/db" {
			t.Errorf("error lacks op and path: %#v", err)
		}
		if _, err := e.Seal(t.Context(), "app", "db", 1, []byte("v")); fault.KindOf(err) != kind {
			t.Errorf("NewDocumentKey failing with %v: Seal error %v", kind, err)
		}
	}
	w.FailWith(nil)
	if _, err := e.Open(t.Context(), "app", "db", s); err != nil {
		t.Fatal(err)
	}
}

func TestCancelledContextIsUnavailable(t *testing.T) {
	ctx, cancel := contextCancelled(t)
	defer cancel()
	e := envelope(t, rsaWrapper(t), crypto.FormatV2)
	if _, err := e.Seal(ctx, "a", "b", 1, []byte("v")); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Seal with a cancelled context: %v", err)
	}
}

func TestRSAPublicOnlyWritesButCannotRead(t *testing.T) {
	k, _ := rsaKeys()
	pub, err := rsakey.NewPublic(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope(t, pub, crypto.FormatV2).Seal(t.Context(), "app", "db", 1, []byte("written by a write-only host"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := envelope(t, pub, crypto.FormatV2).Open(t.Context(), "app", "db", s)
	if !fault.Is(fault.Permission, err) || p != nil {
		t.Fatalf("public-only Open = %v, want fault.Permission", err)
	}
	// The private key reads what the write-only host wrote.
	p, err = envelope(t, rsaWrapper(t), crypto.FormatV2).Open(t.Context(), "app", "db", s)
	if err != nil || string(p) != "written by a write-only host" {
		t.Fatalf("private key Open: %v", err)
	}
}

func TestRSAOtherKeyPairFailsIntegrity(t *testing.T) {
	_, other := rsaKeys()
	ow, err := rsakey.NewPrivate(other)
	if err != nil {
		t.Fatal(err)
	}
	mine := rsaWrapper(t)
	s, err := envelope(t, mine, crypto.FormatV2).Seal(t.Context(), "app", "db", 1, []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	err = mustFailIntegrity(t, envelope(t, ow, crypto.FormatV2), "app", "db", s, "other key pair")
	if !strings.Contains(err.Error(), mine.MasterKeyID()) || !strings.Contains(err.Error(), ow.MasterKeyID()) {
		t.Fatalf("error must name both key ids: %v", err)
	}
}

func TestNewEnvelopeRejects(t *testing.T) {
	if _, err := crypto.NewEnvelope(nil, crypto.FormatV2); !fault.Is(fault.Invalid, err) {
		t.Errorf("nil wrapper: %v", err)
	}
	for _, f := range []crypto.Format{"", "v4"} {
		if _, err := crypto.NewEnvelope(cryptotest.New(), f); !fault.Is(fault.Invalid, err) {
			t.Errorf("write format %q: %v", f, err)
		}
	}
	e := envelope(t, cryptotest.New(), crypto.FormatV1)
	if e.WriteFormat() != crypto.FormatV1 {
		t.Error("WriteFormat")
	}
}

// badWrapper returns what a KeyWrapper must not: a valid AES key of the
// wrong size (16 bytes for v2, 24 for v1), or no master key id. Seal must
// refuse to store something that is not what its format promises.
type badWrapper struct {
	fixedWrapper
	noID bool
}

func (w *badWrapper) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) ([]byte, []byte, string, error) {
	if w.noID {
		k, wr, _, err := w.fixedWrapper.NewDocumentKey(ctx, size, ec)
		return k, wr, "", err
	}
	return w.fixedWrapper.NewDocumentKey(ctx, map[int]int{32: 16, 16: 24}[size], ec)
}

func TestSealRejectsMisbehavingWrapper(t *testing.T) {
	for _, f := range crypto.WriteFormats {
		for _, noID := range []bool{false, true} {
			e := envelope(t, &badWrapper{fixedWrapper{key: make([]byte, 32)}, noID}, f)
			if _, err := e.Seal(t.Context(), "a", "b", 1, []byte("v")); err == nil {
				t.Errorf("%s: Seal accepted a bad document key (noID %v)", f, noID)
			}
		}
	}
}
