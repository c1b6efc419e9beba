package secrets

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// DefaultTimeout bounds each backend call (one store request, one page of
// a listing, or one key operation) when Options.Timeout is zero. A dead
// backend must give a clear error quickly, never a hung mount.
const DefaultTimeout = 5 * time.Second

// Options configures a Keeper.
type Options struct {
	// Timeout bounds every single backend call; DefaultTimeout if zero.
	Timeout time.Duration
	// Now returns the current time, for Modified; time.Now if nil.
	Now func() time.Time
}

// Keeper is the composition of a store and an envelope: the Source that
// always goes to the backend. cache.Catalog fronts it for the mount.
type Keeper struct {
	store    store.Store
	envelope *crypto.Envelope
	timeout  time.Duration
	maxValue int64
	now      func() time.Time
}

var _ Source = (*Keeper)(nil)

// NewKeeper returns a Keeper that keeps secrets in s, sealed by e.
func NewKeeper(s store.Store, e *crypto.Envelope, opts Options) *Keeper {
	k := &Keeper{store: s, envelope: e, timeout: opts.Timeout, now: opts.Now, maxValue: store.DefaultMaxValueSize}
	if k.timeout <= 0 {
		k.timeout = DefaultTimeout
	}
	if k.now == nil {
		k.now = time.Now
	}
	if sz, ok := s.(store.Sizer); ok {
		k.maxValue = sz.MaxValueSize()
	}
	return k
}

// call runs one backend call under the Keeper's deadline. A call that ran
// out of its time (not the caller's) says so, and how long it was given:
// that is the first thing an operator needs to know about a dead backend.
func (k *Keeper) call(ctx context.Context, op fault.Op, p fault.Path, f func(context.Context) error) error {
	callCtx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	err := f(callCtx)
	if err != nil && ctx.Err() == nil && errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		return fault.E(op, p, fault.Unavailable, fmt.Errorf("no answer within %s: %w", k.timeout, err))
	}
	return err
}

// Fetch reads k's protected item.
func (k *Keeper) Fetch(ctx context.Context, key store.Key) (*store.Item, error) {
	const op fault.Op = "secrets.Fetch"
	if err := key.Validate(); err != nil {
		return nil, fault.E(op, err)
	}
	var item *store.Item
	err := k.call(ctx, op, key.Path(), func(ctx context.Context) (err error) {
		item, err = k.store.Get(ctx, key)
		return err
	})
	return item, err
}

// Open decrypts item. The Size of the result is the true plaintext length,
// whatever the item's Size attribute said (legacy items have none).
func (k *Keeper) Open(ctx context.Context, item *store.Item) (Secret, error) {
	const op fault.Op = "secrets.Open"
	var value crypto.Plaintext
	err := k.call(ctx, op, item.Path(), func(ctx context.Context) (err error) {
		value, err = k.envelope.Open(ctx, item.App, item.Name, sealedOf(item))
		return err
	})
	if err != nil {
		return Secret{}, err
	}
	s := Secret{Meta: item.Meta, Value: value}
	s.Size = int64(len(value))
	return s, nil
}

// Stat reads k's metadata from the store.
func (k *Keeper) Stat(ctx context.Context, key store.Key) (store.Meta, error) {
	item, err := k.Fetch(ctx, key)
	if err != nil {
		return store.Meta{}, err
	}
	return item.Meta, nil
}

// Get reads and decrypts k.
func (k *Keeper) Get(ctx context.Context, key store.Key) (Secret, error) {
	item, err := k.Fetch(ctx, key)
	if err != nil {
		return Secret{}, err
	}
	return k.Open(ctx, item)
}

// Put seals value with a fresh document key and IV and commits it with one
// conditional write.
func (k *Keeper) Put(ctx context.Context, key store.Key, value []byte, expected store.Revision) (store.Meta, error) {
	item, err := k.Write(ctx, key, value, expected)
	if err != nil {
		return store.Meta{}, err
	}
	return item.Meta, nil
}

// Write is Put returning the item as stored.
func (k *Keeper) Write(ctx context.Context, key store.Key, value []byte, expected store.Revision) (*store.Item, error) {
	const op fault.Op = "secrets.Put"
	if err := key.Validate(); err != nil {
		return nil, fault.E(op, err)
	}
	if int64(len(value)) > k.maxValue {
		return nil, fault.E(op, key.Path(), fault.TooLarge,
			"value is "+strconv.Itoa(len(value))+" bytes; the limit is "+strconv.FormatInt(k.maxValue, 10))
	}
	var sealed crypto.Sealed
	err := k.call(ctx, op, key.Path(), func(ctx context.Context) (err error) {
		sealed, err = k.envelope.Seal(ctx, key.App, key.Name, value)
		return err
	})
	if err != nil {
		return nil, err
	}
	item := &store.Item{
		Meta: store.Meta{
			Key:                  key,
			Format:               string(sealed.Format),
			Version:              expected.Version.Next(),
			InitialisationVector: sealed.IV,
			Size:                 int64(len(value)),
			Modified:             k.now().Truncate(time.Millisecond),
		},
		MasterKeyID:          sealed.MasterKeyID,
		ProtectedDocumentKey: sealed.WrappedKey,
		ProtectedSecretValue: sealed.Ciphertext,
	}
	err = k.call(ctx, op, key.Path(), func(ctx context.Context) error {
		return k.store.Put(ctx, item, expected)
	})
	if err != nil {
		switch fault.KindOf(err) {
		case fault.Unavailable, fault.Other, fault.Conflict, fault.Exist:
			err = k.settle(ctx, op, item, err)
		}
	}
	if err != nil {
		return nil, err
	}
	return item, nil
}

// ErrOutcomeUnknown is in the chain of a Put's error when the store was
// sent the write and neither it nor a second look told whether the write
// landed: the caller must not claim it was lost, and must ask the store
// before trusting what it remembers of the secret.
var ErrOutcomeUnknown = errors.New("the outcome is unknown: the store took the write but did not answer, nor say afterwards what it holds; the next read asks it")

// settle finds out whether a write whose request went out landed, when
// its answer does not say: no answer came in time (the write may land
// all the same), or the condition failed (the SDK may have retried a
// write that had already landed, whose first answer was lost). It asks
// the store for the item within one more deadline. The write landed if
// the store holds its IV, which is fresh on every write.
func (k *Keeper) settle(ctx context.Context, op fault.Op, item *store.Item, putErr error) error {
	var stored *store.Item
	err := k.call(ctx, op, item.Path(), func(ctx context.Context) (err error) {
		stored, err = k.store.Get(ctx, item.Key)
		return err
	})
	switch {
	case err == nil && stored.Revision().Equal(item.Revision()):
		return nil
	case err == nil || fault.Is(fault.NotFound, err):
		if fault.Is(fault.Conflict, putErr) || fault.Is(fault.Exist, putErr) {
			return putErr // a real conflict
		}
		held := "another revision"
		if err != nil {
			held = "no item"
		}
		return fault.E(op, item.Path(), fault.Unavailable, fmt.Errorf("not committed (the store holds %s): %w", held, putErr))
	}
	if fault.Is(fault.Conflict, putErr) || fault.Is(fault.Exist, putErr) {
		return putErr // the store answered the write; only the second look failed
	}
	return fault.E(op, item.Path(), fault.Unavailable, fmt.Errorf("%w (%w)", ErrOutcomeUnknown, putErr))
}

// Delete removes k if the stored item is the expected Revision.
func (k *Keeper) Delete(ctx context.Context, key store.Key, expected store.Revision) error {
	const op fault.Op = "secrets.Delete"
	if err := key.Validate(); err != nil {
		return fault.E(op, err)
	}
	return k.call(ctx, op, key.Path(), func(ctx context.Context) error {
		return k.store.Delete(ctx, key, expected)
	})
}

// List returns one page of app's metadata.
func (k *Keeper) List(ctx context.Context, app, after string, limit int) (page []store.Meta, next string, err error) {
	const op fault.Op = "secrets.List"
	if err := store.ValidName(app); err != nil {
		return nil, "", fault.E(op, fault.Path(app), err)
	}
	err = k.call(ctx, op, fault.Path(app), func(ctx context.Context) (err error) {
		page, next, err = k.store.List(ctx, app, after, limit)
		return err
	})
	return page, next, err
}

// Apps lists the applications that hold secrets, sorted, each once.
//
// It collects every page of the store's listing, and each page is one
// backend call under the Keeper's deadline: listing applications may take
// many calls (DynamoDB's Scan reads the table 1 MB per page), and one
// deadline for all of them would fail every listing of a large table. The
// whole listing lasts as long as ctx allows.
func (k *Keeper) Apps(ctx context.Context) ([]string, error) {
	const op fault.Op = "secrets.Apps"
	return store.CollectApps(ctx, func(ctx context.Context, cursor string) (page []string, next string, err error) {
		if err := ctx.Err(); err != nil { // the caller gave up between pages
			return nil, "", fault.E(op, fault.Unavailable, err)
		}
		err = k.call(ctx, op, "", func(ctx context.Context) (err error) {
			page, next, err = k.store.Apps(ctx, cursor, 0)
			return err
		})
		return page, next, err
	})
}

// MaxValueSize is the store's limit on a value.
func (k *Keeper) MaxValueSize() int64 { return k.maxValue }

func sealedOf(item *store.Item) crypto.Sealed {
	return crypto.Sealed{
		Format:      crypto.Format(item.Format),
		MasterKeyID: item.MasterKeyID,
		WrappedKey:  item.ProtectedDocumentKey,
		IV:          item.InitialisationVector,
		Ciphertext:  item.ProtectedSecretValue,
	}
}
