package crypto_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
)

// FuzzOpen feeds arbitrary stored fields to Open against a fixed wrapper.
// Open must never panic, must fail with fault.Integrity and a nil value,
// and may succeed only where the format allows it:
//
//   - v3: only on the untouched seed under its own Version, giving
//     exactly its plaintext;
//   - v2: only on the untouched seed (under any Version: v2 binds none),
//     giving exactly its plaintext;
//   - v1 (and legacy ""): only with the seed's master key id and wrapped
//     key (the test wrapper authenticates those), and with exactly the
//     seed's plaintext when IV and ciphertext are untouched too. Other v1
//     successes are the format's documented lack of integrity.
//
// Run it with: go test -run='^$' -fuzz=FuzzOpen -fuzztime=30s ./crypto/
func FuzzOpen(f *testing.F) {
	const secret = "fuzz-secret-value-0123456789" // longer than any capped field in a message
	const version = 4
	w := cryptotest.New()
	seeds := map[crypto.Format]crypto.Sealed{}
	for _, format := range crypto.WriteFormats {
		e, err := crypto.NewEnvelope(w, format)
		if err != nil {
			f.Fatal(err)
		}
		s, err := e.Seal(f.Context(), "app", "db", version, []byte(secret))
		if err != nil {
			f.Fatal(err)
		}
		seeds[format] = s
		f.Add(string(s.Format), s.MasterKeyID, s.WrappedKey, s.IV, s.Ciphertext, "app", "db", s.Version)
	}
	v1 := seeds[crypto.FormatV1]
	f.Add("", v1.MasterKeyID, v1.WrappedKey, v1.IV, v1.Ciphertext, "app", "db", int64(0)) // a legacy item
	v3 := seeds[crypto.FormatV3]
	f.Add(string(v3.Format), v3.MasterKeyID, v3.WrappedKey, v3.IV, v3.Ciphertext, "app", "db", int64(version+1)) // relabelled
	f.Add("v9", "", []byte{}, []byte{}, []byte{}, "", "", int64(1))

	e, err := crypto.NewEnvelope(w, crypto.FormatV2)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, format, keyID string, wrapped, iv, ct []byte, app, name string, v int64) {
		s := crypto.Sealed{Format: crypto.Format(format), Version: v, MasterKeyID: keyID, WrappedKey: wrapped, IV: iv, Ciphertext: ct}
		p, err := e.Open(t.Context(), app, name, s)
		if err != nil {
			if p != nil {
				t.Fatalf("Open returned %d bytes with error %v", len(p), err)
			}
			if !fault.Is(fault.Integrity, err) {
				t.Fatalf("Open error is %v, want fault.Integrity", fault.KindOf(err))
			}
			if strings.Contains(err.Error(), secret) && !strings.Contains(format+keyID+app+name, secret) {
				t.Fatalf("error message contains the plaintext: %v", err)
			}
			return
		}
		if p == nil {
			t.Fatal("Open succeeded with a nil value")
		}
		same := func(seed crypto.Sealed, withData bool) bool {
			ok := keyID == seed.MasterKeyID && bytes.Equal(wrapped, seed.WrappedKey)
			if withData {
				ok = ok && bytes.Equal(iv, seed.IV) && bytes.Equal(ct, seed.Ciphertext)
			}
			return ok
		}
		switch format {
		case string(crypto.FormatV3):
			if !same(seeds[crypto.FormatV3], true) || app != "app" || name != "db" || v != version {
				t.Fatal("a modified or relabelled v3 item opened")
			}
			if string(p) != secret {
				t.Fatal("the v3 seed opened to a different value")
			}
		case string(crypto.FormatV2):
			if !same(seeds[crypto.FormatV2], true) || app != "app" || name != "db" {
				t.Fatal("a modified v2 item opened")
			}
			if string(p) != secret {
				t.Fatal("the v2 seed opened to a different value")
			}
		case "", string(crypto.FormatV1):
			seed := seeds[crypto.FormatV1]
			if !same(seed, false) {
				t.Fatal("a v1 item with a foreign master key id or wrapped key opened")
			}
			if same(seed, true) && string(p) != secret {
				t.Fatal("the v1 seed opened to a different value")
			}
			if len(ct)%crypto.BlockSizeV1 != 0 || len(p) >= len(ct) || len(p) < len(ct)-crypto.BlockSizeV1 {
				t.Fatalf("v1 value of %d bytes from a %d-byte ciphertext", len(p), len(ct))
			}
		default:
			t.Fatalf("unknown format %q opened", format)
		}
	})
}
