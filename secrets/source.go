// Package secrets composes a store and the envelope crypto into plaintext
// secrets: Get decrypts, Put encrypts with a fresh document key and commits
// with one conditional write. The mount (fs/) and the admin verbs
// (cmd/secretfs) both go through a Source, so they cannot disagree about
// formats, names or limits.
//
// This package never puts a value into an error or a log line. It logs
// only what the Keeper refuses on its own, which no caller would learn of
// otherwise: names from the store that cannot be file names (skipped),
// and the v1 limit tripping (v1limit.go).
//
// # Lock order
//
// Two locks, both leaves: skippedNames.mu (which invalid names were
// logged) and v1Limiter.mu (the v1 failure window). Neither is held while
// the other is taken, nor across a call to the store, the keys or the
// log.
package secrets

import (
	"context"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

// Secret is one decrypted secret: its metadata and its value. The holder
// owns Value and must Wipe it when done.
type Secret struct {
	store.Meta
	Value crypto.Plaintext
}

// Source gives plaintext access to secrets, always asking the backend:
// Keeper implements it, for the admin verbs; the mount reads through a
// Catalog (catalog.go), fresh within a TTL. Every method honours ctx and returns *fault.Error values with
// the Kinds of the store.Store contract, plus fault.Integrity for an item
// that fails authentication and fault.Permission for a key that cannot
// decrypt. Safe for concurrent use.
type Source interface {
	// Stat returns k's metadata without decrypting.
	Stat(ctx context.Context, k store.Key) (store.Meta, error)

	// Get returns k's decrypted value. The caller owns the returned
	// Value and must Wipe it.
	Get(ctx context.Context, k store.Key) (Secret, error)

	// Put encrypts value with a fresh document key and IV and stores it
	// on the condition that the stored item is the expected Revision
	// (store.NoItem for a new secret; else the Revision of the item the
	// caller read, Meta.Revision()). It returns the new metadata. Put
	// does not keep or modify value; the caller still owns it.
	Put(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error)

	// Delete removes k if the stored item is the expected Revision.
	Delete(ctx context.Context, k store.Key, expected store.Revision) error

	// List returns one page of app's metadata, as store.Store.List.
	List(ctx context.Context, app string, after string, limit int) ([]store.Meta, string, error)

	// Apps lists the applications that hold secrets, every page of
	// store.Store.Apps collected: sorted, each name once.
	Apps(ctx context.Context) ([]string, error)

	// MaxValueSize is the largest value Put accepts, in bytes.
	MaxValueSize() int64
}
