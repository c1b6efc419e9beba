package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

// call is one backend operation as the metrics name it.
type call struct {
	r                  *Registry
	service, operation string
	took               prometheus.Observer
}

func (r *Registry) call(service, operation string) call {
	// Zero series for the operation, so that rates start at the first
	// scrape rather than at the first error.
	r.backendRequests.WithLabelValues(service, operation, "ok")
	return call{r: r, service: service, operation: operation, took: r.backendDuration.WithLabelValues(service, operation)}
}

func (c call) start() time.Time { return time.Now() }

// done counts a call made with ctx that began at start and ended with
// err, and judges the backend's health by it.
func (c call) done(ctx context.Context, start time.Time, err error) {
	c.took.Observe(time.Since(start).Seconds())
	c.r.backendRequests.WithLabelValues(c.service, c.operation, resultOf(ctx, err)).Inc()
	c.r.health.record(ctx, err, c.r.now())
}

// storeOperations names each store.Store method after the request a
// service makes for it. A service not listed is named by method.
var storeOperations = map[string]storeOps{
	"dynamodb": {get: "GetItem", put: "PutItem", del: "DeleteItem", list: "Query", apps: "Scan"},
}

type storeOps struct{ get, put, del, list, apps string }

var storeMethods = storeOps{get: "Get", put: "Put", del: "Delete", list: "List", apps: "Apps"}

// WrapStore returns s counted as the backend service ("dynamodb",
// "sqlite", "memory"...). Each call of a Store method counts once, as
// the request that service makes for it: for "dynamodb" Get is GetItem,
// Put PutItem, Delete DeleteItem, List (one page) Query and Apps (one
// page) Scan; for any other service the operation is the method's name.
// A refused conditional write that reads the item to say why counts as
// the one PutItem or DeleteItem it answers, and the SDK's own retries
// within a call are not counted apart. Close is not counted.
//
// The result keeps s's optional interfaces: it is a store.Sizer when s
// is one.
func (r *Registry) WrapStore(s store.Store, service string) store.Store {
	ops, ok := storeOperations[service]
	if !ok {
		ops = storeMethods
	}
	m := &meteredStore{
		inner: s,
		get:   r.call(service, ops.get),
		put:   r.call(service, ops.put),
		del:   r.call(service, ops.del),
		list:  r.call(service, ops.list),
		apps:  r.call(service, ops.apps),
	}
	if sz, ok := s.(store.Sizer); ok {
		return sizedStore{meteredStore: m, sizer: sz}
	}
	return m
}

type meteredStore struct {
	inner                     store.Store
	get, put, del, list, apps call
}

var _ store.Store = (*meteredStore)(nil)

func (s *meteredStore) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	start := s.get.start()
	it, err := s.inner.Get(ctx, k)
	s.get.done(ctx, start, err)
	return it, err
}

func (s *meteredStore) Put(ctx context.Context, item *store.Item, expected store.Revision) error {
	start := s.put.start()
	err := s.inner.Put(ctx, item, expected)
	s.put.done(ctx, start, err)
	return err
}

func (s *meteredStore) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	start := s.del.start()
	err := s.inner.Delete(ctx, k, expected)
	s.del.done(ctx, start, err)
	return err
}

func (s *meteredStore) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	start := s.list.start()
	page, next, err := s.inner.List(ctx, app, after, limit)
	s.list.done(ctx, start, err)
	return page, next, err
}

func (s *meteredStore) Apps(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	start := s.apps.start()
	page, next, err := s.inner.Apps(ctx, cursor, limit)
	s.apps.done(ctx, start, err)
	return page, next, err
}

func (s *meteredStore) Close() error { return s.inner.Close() }

// sizedStore is a meteredStore whose inner store is a store.Sizer.
type sizedStore struct {
	*meteredStore
	sizer store.Sizer
}

var _ store.Sizer = sizedStore{}

func (s sizedStore) MaxValueSize() int64 { return s.sizer.MaxValueSize() }

// keyOperations names the KeyWrapper methods after the request a service
// makes for them. A service not listed (the local "rsa" key) is named by
// method: NewDocumentKey and Unwrap.
var keyOperations = map[string]keyOps{
	"kms": {newKey: "GenerateDataKey", unwrap: "Decrypt"},
}

type keyOps struct{ newKey, unwrap string }

var keyMethods = keyOps{newKey: "NewDocumentKey", unwrap: "Unwrap"}

// WrapKeys returns w counted as the backend service ("kms", "rsa"...):
// for "kms" NewDocumentKey is GenerateDataKey and Unwrap is Decrypt; for
// any other service the operation is the method's name.
func (r *Registry) WrapKeys(w crypto.KeyWrapper, service string) crypto.KeyWrapper {
	ops, ok := keyOperations[service]
	if !ok {
		ops = keyMethods
	}
	return &meteredKeys{inner: w, newKey: r.call(service, ops.newKey), unwrap: r.call(service, ops.unwrap)}
}

type meteredKeys struct {
	inner          crypto.KeyWrapper
	newKey, unwrap call
}

var (
	_ crypto.KeyWrapper = (*meteredKeys)(nil)
	_ crypto.Owner      = (*meteredKeys)(nil)
)

// Owns passes on the wrapped key's answer, so that a Keyring of metered
// wrappers routes each item as it would without metrics. A wrapper
// without the capability owns every id, as the Keyring takes it.
func (k *meteredKeys) Owns(masterKeyID string) bool {
	o, ok := k.inner.(crypto.Owner)
	return !ok || o.Owns(masterKeyID)
}

func (k *meteredKeys) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) (key, wrapped []byte, masterKeyID string, err error) {
	start := k.newKey.start()
	key, wrapped, masterKeyID, err = k.inner.NewDocumentKey(ctx, size, ec)
	k.newKey.done(ctx, start, err)
	return key, wrapped, masterKeyID, err
}

func (k *meteredKeys) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	start := k.unwrap.start()
	key, err := k.inner.Unwrap(ctx, masterKeyID, wrapped, ec)
	k.unwrap.done(ctx, start, err)
	return key, err
}
