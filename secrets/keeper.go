package secrets

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/breaker"
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
	// Now returns the current time, for Modified and the v1 limit;
	// time.Now if nil.
	Now func() time.Time
	// Log is told what the Keeper refuses on its own: names from the
	// store that cannot be file names (once each), and the v1 limit
	// tripping. logrus.StandardLogger() if nil.
	Log logrus.FieldLogger
	// V1Observer is told what the v1 limit does (metrics); nothing if nil.
	V1Observer V1Observer
	// StoreName and KeysName name the store and the key service in an
	// error that says which gave no answer (NoAnswer): "DynamoDB",
	// "KMS". "the store" and "the key service" if empty.
	StoreName, KeysName string
}

// NoAnswer is the error of a backend call that ran out of its deadline:
// which backend was silent, and for how long it was given. An operator's
// first question about an outage is which of the two is down.
type NoAnswer struct {
	From   string        // Options.StoreName or Options.KeysName
	Within time.Duration // the deadline of the call
	Err    error         // what the call returned
}

func (e *NoAnswer) Error() string {
	return "no answer within " + e.Within.String() + " from " + e.From + ": " + e.Err.Error()
}

func (e *NoAnswer) Unwrap() error { return e.Err }

// Keeper is the composition of a store and an envelope: the Source that
// always goes to the backend. cache.Catalog fronts it for the mount.
//
// It trusts nothing the store says that the key does not authenticate:
// a decrypted value must have the length the item's Size records; names
// from listings that cannot be file names are skipped; the integrity
// failures of v1 items are rate-limited (v1limit.go).
type Keeper struct {
	store    store.Store
	envelope *crypto.Envelope
	timeout  time.Duration
	maxValue int64
	now      func() time.Time
	log      logrus.FieldLogger
	v1       *v1Limiter
	v1Seen   V1Observer
	skipped  skippedNames
	// storeName and keysName: see Options.
	storeName, keysName string
}

var _ Source = (*Keeper)(nil)

// NewKeeper returns a Keeper that keeps secrets in s, sealed by e.
func NewKeeper(s store.Store, e *crypto.Envelope, opts Options) *Keeper {
	k := &Keeper{store: s, envelope: e, timeout: opts.Timeout, now: opts.Now, maxValue: store.DefaultMaxValueSize,
		log: opts.Log, v1Seen: opts.V1Observer, storeName: opts.StoreName, keysName: opts.KeysName}
	if k.storeName == "" {
		k.storeName = "the store"
	}
	if k.keysName == "" {
		k.keysName = "the key service"
	}
	if k.timeout <= 0 {
		k.timeout = DefaultTimeout
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.log == nil {
		k.log = logrus.StandardLogger()
	}
	if k.v1Seen == nil {
		k.v1Seen = noV1Observer{}
	}
	k.v1 = newV1Limiter(k.now)
	if sz, ok := s.(store.Sizer); ok {
		k.maxValue = sz.MaxValueSize()
	}
	return k
}

// call runs one call to the store under the Keeper's deadline. A call
// that ran out of its time (not the caller's) says so, which backend it
// was and how long it was given (NoAnswer): that is the first thing an
// operator needs to know about a dead backend.
func (k *Keeper) call(ctx context.Context, op fault.Op, p fault.Path, f func(context.Context) error) error {
	return k.callTo(ctx, k.storeName, op, p, f)
}

// callKeys is call for a call to the key service.
func (k *Keeper) callKeys(ctx context.Context, op fault.Op, p fault.Path, f func(context.Context) error) error {
	return k.callTo(ctx, k.keysName, op, p, f)
}

func (k *Keeper) callTo(ctx context.Context, backend string, op fault.Op, p fault.Path, f func(context.Context) error) error {
	callCtx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	err := f(callCtx)
	if err != nil && ctx.Err() == nil && errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		return fault.E(op, p, fault.Unavailable, &NoAnswer{From: backend, Within: k.timeout, Err: err})
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

// Open decrypts item. The Size of the result is the true plaintext length.
// An item that records a Size (all but legacy ones) must decrypt to
// exactly that many bytes: anything else is fault.Integrity, and the
// value is wiped, never returned. A v1 item is refused (fault.Integrity)
// while the v1 limit is tripped (v1limit.go).
func (k *Keeper) Open(ctx context.Context, item *store.Item) (Secret, error) {
	const op fault.Op = "secrets.Open"
	sealed := sealedOf(item)
	var value crypto.Plaintext
	err := k.callKeys(ctx, op, item.Path(), func(ctx context.Context) error {
		if !sealed.Format.Legacy() {
			var err error
			value, err = k.open(ctx, op, item, sealed)
			return err
		}
		if err := k.v1.acquire(ctx); err != nil {
			if fault.Is(fault.Integrity, err) {
				k.v1Seen.V1Refused()
			}
			return fault.E(op, item.Path(), err)
		}
		var err error
		value, err = k.open(ctx, op, item, sealed)
		if tripped, until := k.v1.end(fault.Is(fault.Integrity, err)); tripped {
			k.log.WithFields(logrus.Fields{"secret": item.Key.String(), "failures": V1FailureLimit, "window": V1FailureWindow.String(),
				"until": until.Format(time.RFC3339)}).
				Error("v1 items failed their integrity check too often, as when someone who can write the store forges items to read others' values: every v1 decryption is refused until then; run `secretfs migrate` to move v1 items to an authenticated format")
			k.v1Seen.V1Tripped(until)
		}
		return err
	})
	if err != nil {
		return Secret{}, err
	}
	s := Secret{Meta: item.Meta, Value: value}
	s.Size = int64(len(value))
	return s, nil
}

// open decrypts sealed, item's protected value, and checks its length
// against the item's Size.
func (k *Keeper) open(ctx context.Context, op fault.Op, item *store.Item, sealed crypto.Sealed) (crypto.Plaintext, error) {
	value, err := k.envelope.Open(ctx, item.App, item.Name, sealed)
	if err != nil {
		return nil, err
	}
	if item.Size >= 0 && int64(len(value)) != item.Size {
		value.Wipe()
		// The decrypted length is not said: for v1 it tells the
		// padding, which is a byte of plaintext.
		return nil, fault.E(op, item.Path(), fault.Integrity,
			"the decrypted value does not have the "+strconv.FormatInt(item.Size, 10)+" bytes the item's Size records: the item was modified")
	}
	return value, nil
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
	err := k.callKeys(ctx, op, key.Path(), func(ctx context.Context) (err error) {
		sealed, err = k.envelope.Seal(ctx, key.App, key.Name, int64(expected.Version.Next()), value)
		return err
	})
	if err != nil {
		return nil, err
	}
	item := &store.Item{
		Meta: store.Meta{
			Key:                  key,
			Format:               string(sealed.Format),
			Version:              store.Version(sealed.Version),
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
	// No answer, or a refusal that may be of the SDK's resend of this
	// very write: confirm asks the store which.
	if err != nil && !errors.Is(err, store.ErrNotWritten) && (!fault.Answered(err) || fault.ConditionFailed(err)) {
		err = k.confirm(ctx, op, item, expected, err)
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

// confirm decides whether a write whose request went out landed, when
// its answer does not say: no answer came in time (the write may land
// all the same), or the condition failed (the SDK may have resent a
// write that had already landed, whose first answer was lost; a store
// never decides that itself). It asks the store for the item within one
// more deadline, even while the store's breaker is open: this question
// decides what close(2) reports. The write landed if the store holds its
// IV, which is fresh on every write. This is the one place that decides
// whether a write landed; a write the store says it did not make
// (store.ErrNotWritten) is not brought here.
//
// A look that finds the revision the write expected proves nothing: the
// write may still be on its way (a server that took it and has not
// applied it yet, as a frozen one) and land after the look. So the write
// is sent again, the same item on the same condition (fence): whichever
// of the two copies comes first lands, the other fails its condition,
// and the answer to the second one decides. Only a store that no longer
// holds the expected revision makes the first copy harmless.
func (k *Keeper) confirm(ctx context.Context, op fault.Op, item *store.Item, expected store.Revision, putErr error) error {
	refused := fault.ConditionFailed(putErr)
	stored, err := k.look(ctx, op, item.Key)
	if !refused && holds(stored, err, expected) {
		putErr = k.fence(ctx, op, item, expected)
		if putErr == nil {
			return nil // the second copy landed; the first, if it comes, fails its condition
		}
		if refused = fault.ConditionFailed(putErr); !refused {
			return fault.E(op, item.Path(), fault.Unavailable, unknownOutcome(putErr))
		}
		stored, err = k.look(ctx, op, item.Key)
	}
	switch {
	case err == nil && stored.Revision().Equal(item.Revision()):
		return nil // ours: landed, its answer lost
	case refused && err == nil:
		return fault.E(op, item.Path(), fault.KindOf(putErr), "the store holds version "+stored.Version.String()+" of another write")
	case refused && fault.Is(fault.NotFound, err):
		return fault.E(op, item.Path(), fault.KindOf(putErr), "the store holds no item")
	case err == nil:
		// Neither ours nor the one it expected: the write's condition can
		// never hold again (IVs are fresh), so it never lands.
		return fault.E(op, item.Path(), fault.Unavailable, "not committed (the store holds another revision)", putErr)
	case fault.Is(fault.NotFound, err):
		return fault.E(op, item.Path(), fault.Unavailable, "not committed (the store holds no item)", putErr)
	}
	// No answer to the look: a refusal may have been the SDK's resend of
	// this very write, and a write without an answer may have landed.
	return fault.E(op, item.Path(), fault.Unavailable, unknownOutcome(putErr))
}

// unknownOutcome is the error of a write that may or may not have
// landed, after putErr, which it wraps (a deadline stays a deadline)
// unless putErr says it was not written (store.ErrNotWritten, of a copy
// sent to settle the outcome): that is not true of the write, so it is
// named, not wrapped.
func unknownOutcome(putErr error) error {
	if errors.Is(putErr, store.ErrNotWritten) {
		return fmt.Errorf("%w (%v)", ErrOutcomeUnknown, putErr)
	}
	return fmt.Errorf("%w (%w)", ErrOutcomeUnknown, putErr)
}

// look reads the item at key for confirm, within one more deadline, even
// while the store's breaker is open.
func (k *Keeper) look(ctx context.Context, op fault.Op, key store.Key) (stored *store.Item, err error) {
	err = k.call(breaker.Always(ctx), op, key.Path(), func(ctx context.Context) (err error) {
		stored, err = k.store.Get(ctx, key)
		return err
	})
	return stored, err
}

// holds reports whether a look (stored, err) found the revision expected:
// that item, or no item where the write creates one.
func holds(stored *store.Item, err error, expected store.Revision) bool {
	if expected.Version == store.Absent {
		return fault.Is(fault.NotFound, err)
	}
	return err == nil && stored.Revision().Equal(expected)
}

// fence sends item again on the same condition, within one more
// deadline, even while the store's breaker is open (see confirm).
func (k *Keeper) fence(ctx context.Context, op fault.Op, item *store.Item, expected store.Revision) error {
	return k.call(breaker.Always(ctx), op, item.Path(), func(ctx context.Context) error {
		return k.store.Put(ctx, item, expected)
	})
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

// List returns one page of app's metadata. Entries whose name is not
// valid (store.ValidName) are skipped and logged, once per name: the
// store is not trusted to hold only names a file can have.
func (k *Keeper) List(ctx context.Context, app, after string, limit int) (page []store.Meta, next string, err error) {
	const op fault.Op = "secrets.List"
	if err := store.ValidName(app); err != nil {
		return nil, "", fault.E(op, fault.Path(app), err)
	}
	err = k.call(ctx, op, fault.Path(app), func(ctx context.Context) (err error) {
		page, next, err = k.store.List(ctx, app, after, limit)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return k.validMetas(app, page), next, nil
}

// ListAll returns every entry of app's listing, in name order, as List
// skipping invalid names. Each page is one backend call under the
// Keeper's deadline, so a long listing is not failed by one deadline for
// all; the whole listing lasts as long as ctx allows, and a store's
// listing that would not end (store.MaxListPages, a repeated cursor) is
// an error.
func (k *Keeper) ListAll(ctx context.Context, app string) ([]store.Meta, error) {
	const op fault.Op = "secrets.ListAll"
	if err := store.ValidName(app); err != nil {
		return nil, fault.E(op, fault.Path(app), err)
	}
	all, err := store.CollectList(ctx, app, func(ctx context.Context, after string) (page []store.Meta, next string, err error) {
		if err := ctx.Err(); err != nil { // the caller gave up between pages
			return nil, "", fault.E(op, fault.Path(app), fault.Unavailable, err)
		}
		err = k.call(ctx, op, fault.Path(app), func(ctx context.Context) (err error) {
			page, next, err = k.store.List(ctx, app, after, 0)
			return err
		})
		return page, next, err
	})
	if err != nil {
		return nil, err
	}
	return k.validMetas(app, all), nil
}

// Apps lists the applications that hold secrets, sorted, each once.
// Names that are not valid (store.ValidName) are skipped and logged, once
// per name.
//
// It collects every page of the store's listing, and each page is one
// backend call under the Keeper's deadline: listing applications may take
// many calls (DynamoDB's Scan reads the table 1 MB per page), and one
// deadline for all of them would fail every listing of a large table. The
// whole listing lasts as long as ctx allows, and a store's listing that
// would not end (store.MaxListPages, a repeated cursor) is an error.
func (k *Keeper) Apps(ctx context.Context) ([]string, error) {
	const op fault.Op = "secrets.Apps"
	apps, err := store.CollectApps(ctx, func(ctx context.Context, cursor string) (page []string, next string, err error) {
		if err := ctx.Err(); err != nil { // the caller gave up between pages
			return nil, "", fault.E(op, fault.Unavailable, err)
		}
		err = k.call(ctx, op, "", func(ctx context.Context) (err error) {
			page, next, err = k.store.Apps(ctx, cursor, 0)
			return err
		})
		return page, next, err
	})
	if err != nil {
		return nil, err
	}
	valid := apps[:0]
	for _, app := range apps {
		if err := store.ValidName(app); err != nil {
			k.skip("application", app, "", err)
			continue
		}
		valid = append(valid, app)
	}
	return valid, nil
}

// validMetas returns the entries of app's listing whose key is valid and
// in app, in place, and logs the others; an entry of a malformed item
// (store.Meta.Invalid) with a valid name is kept, and logged.
func (k *Keeper) validMetas(app string, metas []store.Meta) []store.Meta {
	valid := metas[:0]
	for _, m := range metas {
		var err error
		what := "secret"
		switch {
		case m.App != app:
			err = fault.E(fault.Invalid, "an entry of another application, "+quoteName(m.App))
		case m.Invalid != nil && store.ValidName(m.Name) == nil:
			// Kept, so that reading it is EIO (the catalog refuses an
			// invalid entry) rather than ENOENT: a program may take a
			// missing secret for an unconfigured one.
			k.skip("item", app, m.Name, m.Invalid)
			valid = append(valid, m)
			continue
		default:
			err = store.ValidName(m.Name)
		}
		if err != nil {
			k.skip(what, app, m.Name, err)
			continue
		}
		valid = append(valid, m)
	}
	clear(metas[len(valid):]) // no stale copies of the skipped entries
	return valid
}

// maxSkippedNames bounds the invalid names a Keeper remembers having
// logged: a store writer could add any number of them, and each is logged
// once; past this many, the rest are skipped with a single line saying so.
const maxSkippedNames = 1024

// skippedNames remembers which invalid names were logged.
type skippedNames struct {
	mu     sync.Mutex
	logged map[string]struct{}
	full   bool
}

// skip logs, once per name per process, that a name from the store was
// skipped: an application (what "application") or a secret name in app
// ("secret"); or that a secret's item is malformed ("item": an attribute
// of the wrong type or out of range, store.Meta.Invalid), which is kept.
func (k *Keeper) skip(what, app, name string, why error) {
	id := app
	if what != "application" {
		id = what + "\x00" + app + "\x00" + name
	}
	k.skipped.mu.Lock()
	_, seen := k.skipped.logged[id]
	full := !seen && len(k.skipped.logged) >= maxSkippedNames
	announceFull := full && !k.skipped.full
	if !seen && !full {
		if k.skipped.logged == nil {
			k.skipped.logged = map[string]struct{}{}
		}
		k.skipped.logged[id] = struct{}{}
	}
	if announceFull {
		k.skipped.full = true
	}
	k.skipped.mu.Unlock()
	switch {
	case announceFull:
		k.log.WithField("logged", maxSkippedNames).Warn("the store holds more invalid names than are logged one by one: further ones are skipped without a log line")
	case seen || full:
	case what == "item":
		k.log.WithFields(logrus.Fields{"application": app, "name": quoteName(name), "error": why.Error()}).
			Warn("a secret in the store's listing has a malformed item: reading it fails with EIO")
	case what == "secret":
		k.log.WithFields(logrus.Fields{"application": app, "name": quoteName(name), "error": why.Error()}).
			Warn("skipped a secret from the store's listing: its name cannot be a file name")
	default:
		k.log.WithFields(logrus.Fields{"name": quoteName(app), "error": why.Error()}).
			Warn("skipped an application from the store's listing: its name cannot be a directory name")
	}
}

// quoteName quotes a name from the store for a log line, escaping what a
// terminal would act on and cutting it short: the store may hold anything.
func quoteName(s string) string {
	const max = 300
	if len(s) > max {
		return strconv.QuoteToASCII(s[:max]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

// MaxValueSize is the store's limit on a value.
func (k *Keeper) MaxValueSize() int64 { return k.maxValue }

func sealedOf(item *store.Item) crypto.Sealed {
	return crypto.Sealed{
		Format:      crypto.Format(item.Format),
		Version:     int64(item.Version),
		MasterKeyID: item.MasterKeyID,
		WrappedKey:  item.ProtectedDocumentKey,
		IV:          item.InitialisationVector,
		Ciphertext:  item.ProtectedSecretValue,
	}
}
