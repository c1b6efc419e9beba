package crypto

import (
	"encoding/binary"
	"maps"
	"slices"
)

// ItemContext is the EncryptionContext of the v2 item app/name.
func ItemContext(app, name string) EncryptionContext {
	return EncryptionContext{ContextApplicationName: app, ContextSecretName: name}
}

// Canonical returns a deterministic encoding of ec: for each key in
// ascending byte order, the key then its value, each as a 4-byte
// big-endian length followed by its bytes. An empty or nil context
// encodes as nil. The RSA wrapper uses it as the OAEP label, so it is part
// of the stored format (docs/FORMAT.md) and must never change.
//
// Length prefixes make the encoding unambiguous: no two different
// contexts encode to the same bytes.
func (ec EncryptionContext) Canonical() []byte {
	if len(ec) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(ec))
	n := 0
	for _, k := range keys {
		n += 8 + len(k) + len(ec[k])
	}
	b := make([]byte, 0, n)
	for _, k := range keys {
		b = appendLenPrefixed(b, k)
		b = appendLenPrefixed(b, ec[k])
	}
	return b
}

// appendLenPrefixed appends s to b as a 4-byte big-endian length and the
// bytes of s. Names are at most 255 bytes (store.MaxNameLen), far below
// the 4 GiB a length can express.
func appendLenPrefixed(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
