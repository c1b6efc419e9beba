package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/fault"
)

// aadAppDB is the worked example of docs/FORMAT.md: the v2 associated data
// of app "app", name "db". Produced independently with
//
//	printf 'secretfs/v2\x00\x00\x00\x03app\x00\x00\x00\x02db' | xxd -p
const aadAppDB = "73656372657466732f763200000003617070000000026462"

// ecAppDB is Canonical of ItemContext("app", "db"), also in
// docs/FORMAT.md, produced with
//
//	printf '\x00\x00\x00\x0fApplicationName\x00\x00\x00\x03app\x00\x00\x00\x0aSecretName\x00\x00\x00\x02db' | xxd -p
const ecAppDB = "0000000f4170706c69636174696f6e4e616d65000000036170700000000a5365637265744e616d65000000026462"

func TestAssociatedDataMatchesFormatDoc(t *testing.T) {
	if got := hex.EncodeToString(associatedDataV2("app", "db")); got != aadAppDB {
		t.Fatalf("associatedDataV2(app, db) = %s, docs/FORMAT.md says %s", got, aadAppDB)
	}
}

func TestAssociatedDataIsUnambiguous(t *testing.T) {
	pairs := [][2]string{{"ab", "c"}, {"a", "bc"}, {"abc", ""}, {"", "abc"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		k := string(associatedDataV2(p[0], p[1]))
		if q, dup := seen[k]; dup {
			t.Fatalf("associatedDataV2(%q, %q) == associatedDataV2(%q, %q)", p[0], p[1], q[0], q[1])
		}
		seen[k] = p
	}
}

func TestCanonical(t *testing.T) {
	if got := hex.EncodeToString(ItemContext("app", "db").Canonical()); got != ecAppDB {
		t.Fatalf("Canonical = %s, docs/FORMAT.md says %s", got, ecAppDB)
	}
	if EncryptionContext(nil).Canonical() != nil || (EncryptionContext{}).Canonical() != nil {
		t.Fatal("an empty context must encode as nil")
	}
	// Key order must not depend on map iteration: build the same context
	// many times with different insertion orders.
	want := EncryptionContext{"b": "2", "a": "1", "c": "3"}.Canonical()
	for range 50 {
		ec := EncryptionContext{}
		for _, k := range []string{"c", "a", "b"} {
			ec[k] = map[string]string{"a": "1", "b": "2", "c": "3"}[k]
		}
		if !bytes.Equal(ec.Canonical(), want) {
			t.Fatal("Canonical is not deterministic")
		}
	}
	// Moving bytes between key and value, or between entries, changes it.
	if bytes.Equal(EncryptionContext{"ab": "c"}.Canonical(), EncryptionContext{"a": "bc"}.Canonical()) {
		t.Fatal("Canonical is ambiguous")
	}
}

func TestGCMParametersAreTheNamedConstants(t *testing.T) {
	aead, err := newGCM(make([]byte, DocumentKeySizeV2))
	if err != nil {
		t.Fatal(err)
	}
	if aead.NonceSize() != NonceSizeV2 || aead.Overhead() != TagSizeV2 {
		t.Fatalf("GCM nonce %d tag %d, constants say %d and %d", aead.NonceSize(), aead.Overhead(), NonceSizeV2, TagSizeV2)
	}
	if IVSizeV1 != 16 || BlockSizeV1 != 16 || DocumentKeySizeV1 != 16 || DocumentKeySizeV2 != 32 ||
		DocumentKeySizeV3 != 32 || NonceSizeV3 != 12 || TagSizeV3 != 16 || VersionSizeV3 != 8 || MinVersionV3 != 1 ||
		AADPrefixV2 != "secretfs/v2" || AADPrefixV3 != "secretfs/v3" {
		t.Fatal("a format constant changed: that changes the stored format")
	}
}

func TestUnpad(t *testing.T) {
	block := func(tail ...byte) []byte {
		b := bytes.Repeat([]byte{'x'}, BlockSizeV1-len(tail))
		return append(b, tail...)
	}
	full := bytes.Repeat([]byte{16}, 16)
	cases := []struct {
		name string
		buf  []byte
		n    int
		ok   bool
	}{
		{"one byte", block(1), 15, true},
		{"two bytes", block(2, 2), 14, true},
		{"full block", full, 0, true},
		{"full block after data", append(block(1), full...), 16, true},
		{"zero", block(0), 0, false},
		{"over block size", block(17), 0, false},
		{"max byte", block(255), 0, false},
		{"inconsistent", block(1, 2), 0, false},
		{"one wrong in full block", append([]byte{15}, full[1:]...), 0, false},
	}
	for _, c := range cases {
		n, ok := unpad(c.buf)
		if ok != c.ok || (ok && n != c.n) {
			t.Errorf("%s: unpad = %d, %v; want %d, %v", c.name, n, ok, c.n, c.ok)
		}
	}
}

// TestUnpadAgreesWithSimpleCheck compares the constant-time check with the
// obvious one on every last byte and every padding corruption position.
func TestUnpadAgreesWithSimpleCheck(t *testing.T) {
	simple := func(b []byte) (int, bool) {
		p := int(b[len(b)-1])
		if p < 1 || p > BlockSizeV1 {
			return 0, false
		}
		for _, c := range b[len(b)-p:] {
			if int(c) != p {
				return 0, false
			}
		}
		return len(b) - p, true
	}
	for last := range 256 {
		for wrong := -1; wrong < BlockSizeV1-1; wrong++ {
			b := bytes.Repeat([]byte{byte(last)}, BlockSizeV1)
			if wrong >= 0 {
				b[wrong] ^= 0x40
			}
			n1, ok1 := unpad(b)
			n2, ok2 := simple(b)
			if ok1 != ok2 || n1 != n2 {
				t.Fatalf("last=%d wrong=%d: unpad %d,%v simple %d,%v", last, wrong, n1, ok1, n2, ok2)
			}
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"v1", "v2", "v3"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	for _, s := range []string{"", "V2", "v4", "aes", " v2"} {
		_, err := ParseFormat(s)
		if !fault.Is(fault.Invalid, err) {
			t.Errorf("ParseFormat(%q) error = %v, want fault.Invalid", s, err)
		}
		if err != nil && !strings.Contains(err.Error(), "want v3, v2 or v1") {
			t.Errorf("ParseFormat(%q) error %q does not list the formats", s, err)
		}
	}
	if DefaultFormat != FormatV3 {
		t.Errorf("new writes default to %s, want v3", DefaultFormat)
	}
	for f, legacy := range map[Format]bool{"": true, FormatV1: true, FormatV2: false, FormatV3: false, "v9": false} {
		if f.Legacy() != legacy {
			t.Errorf("Format(%q).Legacy() = %v", f, !legacy)
		}
	}
	if f, ok := readFormat(""); !ok || f != FormatV1 {
		t.Errorf("a legacy item (Format \"\") must read as v1, got %q %v", f, ok)
	}
}

func TestV1PaddingLeavesNoPlaintextBehind(t *testing.T) {
	// sealV1 encrypts in place: the ciphertext buffer must not start with
	// the plaintext (it would if the copy were kept and returned).
	w := &fixedKey{key: bytes.Repeat([]byte{7}, 16)}
	e, _ := NewEnvelope(w, FormatV1)
	value := []byte("0123456789abcdef0123")
	s, err := e.Seal(t.Context(), "a", "b", 1, value)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Ciphertext, value[:8]) {
		t.Fatal("ciphertext contains plaintext")
	}
	block, _ := aes.NewCipher(w.key)
	out := make([]byte, len(s.Ciphertext))
	cipher.NewCBCDecrypter(block, s.IV).CryptBlocks(out, s.Ciphertext)
	if !bytes.HasPrefix(out, value) {
		t.Fatal("in-place encryption produced the wrong ciphertext")
	}
}
