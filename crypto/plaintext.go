package crypto

import "fmt"

// Plaintext is a decrypted secret value. It cannot be printed by accident:
// every fmt verb, JSON and text marshalling show Redacted instead of the
// bytes. The holder of a Plaintext owns its memory and must Wipe it when
// done.
//
// One hole remains that no method can close: fmt cannot call methods on
// an unexported struct field, so printing a struct that keeps a Plaintext
// in an unexported field (struct{ value Plaintext }) shows the raw bytes.
// Keep a Plaintext in an exported field, or never print its holder.
type Plaintext []byte

// Redacted is what a Plaintext shows instead of its contents.
const Redacted = "**redacted**"

// Wipe overwrites p with zeros. In Go this is best effort: the garbage
// collector may have copied the bytes before (docs/SECURITY.md).
func (p Plaintext) Wipe() { clear(p) }

// Clone returns a copy of p that the caller owns.
func (p Plaintext) Clone() Plaintext {
	if p == nil {
		return nil
	}
	c := make(Plaintext, len(p))
	copy(c, p)
	return c
}

func (p Plaintext) String() string   { return Redacted }
func (p Plaintext) GoString() string { return Redacted }

// Format makes every fmt verb (%v, %s, %x, %q, %d, ...) print Redacted.
func (p Plaintext) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(Redacted)) }

func (p Plaintext) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
func (p Plaintext) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// Zero overwrites b with zeros; for document keys and other transient
// buffers that are not Plaintext.
func Zero(b []byte) { clear(b) }
