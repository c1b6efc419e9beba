package breaker

import (
	"context"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

// Store returns s behind b: every call meets b's outage rule. The
// returned store keeps s's size limit (store.Sizer).
func Store(s store.Store, b *Breaker) store.Store {
	bs := &breakerStore{inner: s, b: b}
	if sz, ok := s.(store.Sizer); ok {
		return sizedStore{bs, sz}
	}
	return bs
}

type breakerStore struct {
	inner store.Store
	b     *Breaker
}

var _ store.Store = (*breakerStore)(nil)

type sizedStore struct {
	*breakerStore
	store.Sizer
}

func (s *breakerStore) Get(ctx context.Context, k store.Key) (item *store.Item, err error) {
	err = s.b.Do(ctx, "breaker.Get", func() error {
		item, err = s.inner.Get(ctx, k)
		return err
	})
	return item, err
}

func (s *breakerStore) Put(ctx context.Context, item *store.Item, expected store.Revision) error {
	return s.b.Do(ctx, "breaker.Put", func() error { return s.inner.Put(ctx, item, expected) })
}

func (s *breakerStore) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	return s.b.Do(ctx, "breaker.Delete", func() error { return s.inner.Delete(ctx, k, expected) })
}

func (s *breakerStore) List(ctx context.Context, app, after string, limit int) (page []store.Meta, next string, err error) {
	err = s.b.Do(ctx, "breaker.List", func() error {
		page, next, err = s.inner.List(ctx, app, after, limit)
		return err
	})
	return page, next, err
}

func (s *breakerStore) Apps(ctx context.Context, cursor string, limit int) (page []string, next string, err error) {
	err = s.b.Do(ctx, "breaker.Apps", func() error {
		page, next, err = s.inner.Apps(ctx, cursor, limit)
		return err
	})
	return page, next, err
}

func (s *breakerStore) Close() error { return s.inner.Close() }

// Keys returns w behind b: every generation and unwrap of a document key
// meets b's outage rule. The returned wrapper keeps w's Owns
// (crypto.Owner), so that a Keyring routes items as it would without it.
func Keys(w crypto.KeyWrapper, b *Breaker) crypto.KeyWrapper {
	return &breakerKeys{inner: w, b: b}
}

type breakerKeys struct {
	inner crypto.KeyWrapper
	b     *Breaker
}

var (
	_ crypto.KeyWrapper = (*breakerKeys)(nil)
	_ crypto.Owner      = (*breakerKeys)(nil)
)

func (k *breakerKeys) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) (key, wrapped []byte, id string, err error) {
	err = k.b.Do(ctx, "breaker.NewDocumentKey", func() error {
		key, wrapped, id, err = k.inner.NewDocumentKey(ctx, size, ec)
		return err
	})
	return key, wrapped, id, err
}

func (k *breakerKeys) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec crypto.EncryptionContext) (key []byte, err error) {
	err = k.b.Do(ctx, "breaker.Unwrap", func() error {
		key, err = k.inner.Unwrap(ctx, masterKeyID, wrapped, ec)
		return err
	})
	return key, err
}

// Owns passes on the wrapped key's answer; a wrapper without the
// capability owns every id, as the Keyring takes it.
func (k *breakerKeys) Owns(masterKeyID string) bool {
	o, ok := k.inner.(crypto.Owner)
	return !ok || o.Owns(masterKeyID)
}
