package crypto_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/crypto"
)

func TestPlaintextNeverPrints(t *testing.T) {
	const secret = "s3cr3t-Valu3"
	p := crypto.Plaintext(secret)
	// Holder mimics secrets.Secret: an exported Plaintext field. (fmt cannot
	// call methods on unexported fields: see the Plaintext doc comment.)
	type Holder struct {
		Name  string
		Value crypto.Plaintext
	}
	h := Holder{Name: "db", Value: p}

	var outs []string
	for _, verb := range []string{"%v", "%s", "%q", "%x", "%X", "%+v", "%#v", "%d", "%10.3v", "%-8s"} {
		outs = append(outs, fmt.Sprintf(verb, p), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	outs = append(outs, fmt.Sprint(p), fmt.Sprint(h), fmt.Sprintln(h), p.String(), p.GoString())
	for _, v := range []any{p, h, &h, []crypto.Plaintext{p}, map[string]crypto.Plaintext{"k": p}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(b))
	}
	if b, err := p.MarshalText(); err != nil || string(b) != crypto.Redacted {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	// The secret in every encoding fmt could have used: raw, hex, and the
	// decimal byte list of %v on a []byte.
	forms := []string{secret, hex.EncodeToString([]byte(secret)), strings.ToUpper(hex.EncodeToString([]byte(secret))),
		strings.Trim(fmt.Sprint([]byte(secret)), "[]")}
	for _, out := range outs {
		for _, f := range forms {
			if strings.Contains(out, f) {
				t.Fatalf("output %q contains the secret", out)
			}
		}
		if !strings.Contains(out, crypto.Redacted) {
			t.Fatalf("output %q does not say %s", out, crypto.Redacted)
		}
	}
}

func TestPlaintextWipeAndClone(t *testing.T) {
	p := crypto.Plaintext("abc")
	c := p.Clone()
	p.Wipe()
	if string(p) != "\x00\x00\x00" || string(c) != "abc" {
		t.Fatalf("Wipe/Clone: %q %q", []byte(p), []byte(c))
	}
	if crypto.Plaintext(nil).Clone() != nil {
		t.Fatal("Clone(nil) must stay nil")
	}
}
