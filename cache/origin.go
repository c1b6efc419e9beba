package cache

import (
	"context"

	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Origin is what a Plaintext cache fronts: a Source that can also hand out
// an item in protected form and decrypt a given protected item. Splitting
// the two lets a stat (Fetch) and the open that follows it (Open) cost one
// store read and one key unwrap between them. secrets.Keeper is an Origin.
type Origin interface {
	secrets.Source

	// Fetch reads k's protected item from the store, strongly consistent.
	// The item belongs to the caller: the cache keeps it until the entry
	// expires, to Open it later and to recognise an unchanged item by
	// its Version and InitialisationVector.
	Fetch(ctx context.Context, k store.Key) (*store.Item, error)

	// Open decrypts item without modifying it (the cache keeps item and
	// may Open it again after a failure). The returned Meta describes item, with
	// Size the true plaintext length; the caller owns the returned Value.
	Open(ctx context.Context, item *store.Item) (secrets.Secret, error)

	// Write is Put returning the item as stored, so that the cache can
	// later recognise it by Version and InitialisationVector and skip
	// decrypting what it wrote itself.
	Write(ctx context.Context, k store.Key, value []byte, expected store.Revision) (*store.Item, error)
}
