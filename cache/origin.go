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
	Fetch(ctx context.Context, k store.Key) (*store.Item, error)

	// Open decrypts item. The caller owns the returned Value.
	Open(ctx context.Context, item *store.Item) (secrets.Secret, error)
}
