// Package crypto is secretfs's envelope encryption: it turns a secret's
// plaintext into the protected fields of a store item (Sealed) and back.
//
// Every value is encrypted under its own fresh document key, and the
// document key is wrapped under a master key by a KeyWrapper (crypto/kms
// for AWS KMS, crypto/rsakey for an RSA key pair). Three formats exist:
//
//   - v3, the default for writes: a 256-bit document key, a 96-bit nonce
//     and AES-256-GCM, with associated data that binds the ciphertext to
//     its format, application, secret name and the item's Version, so
//     that an item copied onto another name, or an old value relabelled
//     with another Version, fails to decrypt.
//   - v2: the same as v3 but for the Version, which its associated data
//     lacks. Readable, and written when asked for.
//   - v1, the original Secret Store's format: a 128-bit document key and
//     AES-CBC with PKCS#7 padding. v1 has NO integrity protection: a
//     modified v1 item may decrypt to a modified value without any error,
//     and whether its padding is valid is an oracle on its plaintext. It
//     is always readable and written only when asked for, so that old
//     clients can keep reading what secretfs writes; the secrets package
//     rate-limits its integrity failures and `secretfs migrate` rewrites
//     it in the current format.
//
// The byte layout of every format is documented in docs/FORMAT.md.
//
// This package is pure: it does no I/O except through the KeyWrapper. It
// never logs, never returns partially decrypted bytes (a failed Open
// returns nil), and never puts plaintext or key bytes into an error.
// Document keys and intermediate plaintext buffers are zeroed as soon as
// they are no longer needed; in Go that is best effort (the runtime may
// have copied them, and the AES key schedule inside crypto/aes cannot be
// wiped), see docs/SECURITY.md.
package crypto
