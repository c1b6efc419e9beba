// Package store keeps protected items: the encrypted form of each secret,
// keyed by application and secret name. A Store never sees plaintext; it
// holds what crypto produced and returns it byte for byte.
//
// Implementations: store/sqlite (the embedded default), store/dynamodb (the
// production backend, compatible with the original Secret Store table) and
// store/memory (tests). store/storetest is the conformance suite every
// implementation passes.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/secretfs/secretfs/fault"
)

// Key names one secret: the DynamoDB HASH key (App) and RANGE key (Name).
type Key struct {
	App  string
	Name string
}

func (k Key) String() string { return k.App + "/" + k.Name }

// Path is k as a fault.Path, for error messages.
func (k Key) Path() fault.Path { return fault.Path(k.String()) }

// Version counts the writes of one item: 1 on the first, +1 on every
// write. It starts over when an item is deleted and created again, so a
// conditional write expects a Revision, not a Version alone.
type Version int64

const (
	// Absent is the expected Version of an item that must not exist yet.
	Absent Version = -1
	// Unversioned is the Version of a legacy item written by the original
	// Secret Store, which has no Version attribute. Such an item can be
	// overwritten once, on the condition that it is still unversioned.
	Unversioned Version = 0
)

// Next is the Version a successful write stores when v was expected.
func (v Version) Next() Version {
	if v < Unversioned {
		return 1
	}
	return v + 1
}

// Revision names one write of an item: its Version and its
// InitialisationVector, which is fresh on every write. Every Put and
// Delete is conditional on the Revision the writer read, so two writers
// that read the same Revision cannot both succeed, and a writer that read
// an item since deleted and created again cannot overwrite the new one
// (the Versions may match; the IVs do not).
type Revision struct {
	Version Version
	IV      []byte // nil for NoItem
}

// NoItem is the Revision expected by a write that creates an item, which
// must not exist yet.
var NoItem = Revision{Version: Absent}

// Equal reports whether r and o name the same write.
func (r Revision) Equal(o Revision) bool {
	return r.Version == o.Version && bytes.Equal(r.IV, o.IV)
}

func (r Revision) String() string { return r.Version.String() }

// PutRefused explains a Put at k whose condition (expected) failed, given
// the stored Revision (found false: no item), the same way for every
// Store: fault.Exist when none was expected, else fault.Conflict.
func PutRefused(op fault.Op, k Key, expected, stored Revision, found bool) error {
	switch {
	case expected.Version == Absent:
		return fault.E(op, k.Path(), fault.Exist)
	case !found:
		return fault.E(op, k.Path(), fault.Conflict, "expected version "+expected.String()+", but the item does not exist")
	}
	return conflict(op, k, expected, stored)
}

// DeleteRefused explains a Delete at k whose condition failed, as
// PutRefused: fault.NotFound when there is no item, else fault.Conflict.
func DeleteRefused(op fault.Op, k Key, expected, stored Revision, found bool) error {
	if !found {
		return fault.E(op, k.Path(), fault.NotFound)
	}
	return conflict(op, k, expected, stored)
}

func conflict(op fault.Op, k Key, expected, stored Revision) error {
	msg := "expected version " + expected.String() + ", stored " + stored.String()
	if expected.Version == stored.Version {
		msg += " of another write"
	}
	return fault.E(op, k.Path(), fault.Conflict, msg)
}

func (v Version) String() string {
	switch v {
	case Absent:
		return "absent"
	case Unversioned:
		return "unversioned"
	}
	return strconv.FormatInt(int64(v), 10)
}

// Meta is what can be known of a secret without decrypting it: enough for
// stat(2) and for conditional writes. Listings return Meta only.
type Meta struct {
	Key
	Format               string    // "" for a legacy item (read as v1), else "v1", "v2" or "v3"
	Version              Version   // Unversioned for a legacy item
	InitialisationVector []byte    // the IV or nonce of the value encryption: fresh on every write
	Size                 int64     // plaintext length in bytes; -1 when unknown (legacy items)
	Modified             time.Time // stored at millisecond precision; zero when unknown (legacy items)

	// Invalid is set, by List only, on an entry whose stored item no
	// valid item can be: an attribute of the wrong type or out of range
	// (CheckStored), or, in a store whose layout was altered, a name held
	// by two items. The rest of such an entry may be empty. List returns
	// it so that one bad item does not fail its page; callers skip it
	// (secrets.Keeper logs it once), and Get of its key fails with
	// fault.Integrity.
	Invalid error
}

// Revision is the write that m describes.
func (m Meta) Revision() Revision { return Revision{Version: m.Version, IV: m.InitialisationVector} }

// Item is one stored secret in protected form. The field names follow the
// attributes of the original Secret Store table (docs/FORMAT.md); the
// InitialisationVector is in Meta.
type Item struct {
	Meta
	MasterKeyID          string // the master key that wrapped the document key
	ProtectedDocumentKey []byte // the wrapped document key
	ProtectedSecretValue []byte // the encrypted value
}

// ErrNotWritten is in the chain of a failed Put or Delete that the store
// knows it did not make, although the failure is an outage
// (fault.Unavailable) or unclassified (fault.Other): the store's database
// stayed locked by another process, say, and the write never began. A
// caller need not ask the store whether it landed: it did not.
var ErrNotWritten = errors.New("not written")

// Store is the persistence boundary. Every method honours ctx's deadline
// and cancellation, returns *fault.Error values with Kinds documented
// below, and is safe for concurrent use. Returned items and slices belong
// to the caller.
type Store interface {
	// Get returns the item at k, read with strong consistency.
	// A missing item is fault.NotFound (so is an invalid key: nothing
	// invalid can have been stored).
	Get(ctx context.Context, k Key) (*Item, error)

	// Put stores item on the condition that the stored item is the
	// expected Revision (same Version and same InitialisationVector):
	// NoItem means the item must not exist; a Revision with Version
	// Unversioned means a legacy item without a Version. item.Version must
	// be expected.Version.Next(); the one exception is writing a legacy
	// item (item.Version Unversioned, expected NoItem), which tests use to
	// play the original Secret Store. A failed condition is fault.Exist
	// when NoItem was expected and fault.Conflict otherwise; an item over
	// the store's size limit is fault.TooLarge. Argument errors
	// (store.CheckPut) come first, before any condition is checked. A
	// failed Put changes nothing, but one that is fault.Unavailable or
	// fault.Other may have been made all the same (its answer was lost)
	// unless ErrNotWritten is in its chain.
	Put(ctx context.Context, item *Item, expected Revision) error

	// Delete removes the item at k if it is the expected Revision. A
	// missing item is fault.NotFound, another Revision fault.Conflict.
	Delete(ctx context.Context, k Key, expected Revision) error

	// List returns one page of app's items, in ascending byte order of
	// Name, starting after the name `after` ("" for the first page), with
	// at most limit entries (limit <= 0 lets the store choose). next is
	// the `after` of the following page, or "" when there is none. A page
	// may be shorter than limit and still have a next. An application
	// without items lists empty, without error.
	List(ctx context.Context, app string, after string, limit int) (page []Meta, next string, err error)

	// Apps returns one page of the names of the applications that hold
	// at least one item, starting at cursor ("" for the first page), with
	// at most limit names (limit <= 0 lets the store choose). next is the
	// cursor of the following page, or "" when there is none; a page may
	// be shorter than limit and still have a next, and the following page
	// may then be empty.
	//
	// A cursor is opaque: pass only a next that this store returned (it
	// may refuse any other with fault.Invalid). Within a page the names
	// are sorted and distinct; across pages they need not be: a later
	// page may hold names that sort before an earlier page's, and repeat
	// them (DynamoDB scans in hash order, and one application's items may
	// span pages). AppsAll collects every page sorted and without
	// duplicates.
	Apps(ctx context.Context, cursor string, limit int) (page []string, next string, err error)

	// Close releases the store's resources.
	Close() error
}

// Sizer is implemented by stores with a limit on the size of a value. The
// secrets layer checks plaintext against it before encrypting, so an
// oversized write fails early with fault.TooLarge and harms nothing. The
// store itself refuses, with fault.TooLarge, a ProtectedSecretValue more
// than ValueOverhead bytes over the limit.
type Sizer interface {
	MaxValueSize() int64
}

// DefaultMaxValueSize is the value limit of the embedded store, and of
// any store that reports none. Secrets are passwords, tokens and
// certificates; a larger value is more likely a mistake than a secret.
const DefaultMaxValueSize = 1 << 20

// ValueOverhead is how far a ProtectedSecretValue may exceed a Sizer's
// MaxValueSize: room for any format's nonce, tag or padding.
const ValueOverhead = 4096

// Bounds of a valid item's fields, in bytes, that every store checks
// before it loads a field (CheckStored): a store writer can make a field
// of any size, and a reader must refuse it, not allocate it. They are
// generous (the formats' own checks, in crypto, are exact), so that no
// valid item comes near them.
const (
	// MaxMasterKeyIDLen bounds MasterKeyId: KMS key ids, ARNs and
	// aliases are at most 2048 characters; an RSA id is 75.
	MaxMasterKeyIDLen = 2048
	// MaxWrappedKeyLen bounds ProtectedDocumentKey: a KMS ciphertext
	// blob is at most 6144 bytes, an RSA-OAEP one as long as the modulus.
	MaxWrappedKeyLen = 8192
	// MaxIVLen bounds the InitialisationVector: 16 bytes (v1) or 12
	// (v2, v3) in a valid item, with room to spare.
	MaxIVLen = 1024
	// MaxFormatLen bounds Format ("v1", "v2", "v3").
	MaxFormatLen = 16
)

// MaxProtectedValueLen is the longest ProtectedSecretValue of a valid
// item in a store whose values are at most maxValue bytes: what Put
// accepts (store.Sizer).
func MaxProtectedValueLen(maxValue int64) int64 { return maxValue + ValueOverhead }

// MaxModified is the latest Modified a valid item can have: the end of
// the year 9999, in Unix milliseconds. Modified is the time of a write,
// so it is never before 1970 (0) either; a time outside that range is an
// invalid attribute, not a time to show.
const MaxModified = 253402300799999

// TooLong describes a stored attribute longer than a valid item's, by
// its length only: its bytes are never loaded.
func TooLong(attr string, n, max int64) error {
	return fmt.Errorf("attribute %s is %d bytes; a valid item's is at most %d", attr, n, max)
}

// StoredVersion is the Version of a stored Version attribute: at least 1
// (a legacy item has none at all, which the store maps to Unversioned
// itself).
func StoredVersion(v int64) (Version, error) {
	if v < 1 {
		return 0, fmt.Errorf("attribute Version is %d; stored versions start at 1", v)
	}
	return Version(v), nil
}

// StoredSize is the Size of a stored Size attribute: not negative.
func StoredSize(n int64) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("attribute Size is negative (%d)", n)
	}
	return n, nil
}

// StoredModified is the time of a stored Modified attribute, in Unix
// milliseconds: from 1970 to MaxModified.
func StoredModified(ms int64) (time.Time, error) {
	if ms < 0 || ms > MaxModified {
		return time.Time{}, fmt.Errorf("attribute Modified (%d ms) is not a time between 1970 and 9999", ms)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// CheckStored checks the lengths of an item read from a store whose
// values are at most maxValue bytes (it.ProtectedSecretValue and the
// other protected fields may be empty, as in a listing's Meta): each
// within the bounds above. A store that can tell a field's length before
// loading it (SQLite) checks the same bounds first, and never loads an
// oversized field.
func CheckStored(it *Item, maxValue int64) error {
	for _, f := range []struct {
		attr   string
		n, max int64
	}{
		{"MasterKeyId", int64(len(it.MasterKeyID)), MaxMasterKeyIDLen},
		{"ProtectedDocumentKey", int64(len(it.ProtectedDocumentKey)), MaxWrappedKeyLen},
		{"InitialisationVector", int64(len(it.InitialisationVector)), MaxIVLen},
		{"ProtectedSecretValue", int64(len(it.ProtectedSecretValue)), MaxProtectedValueLen(maxValue)},
		{"Format", int64(len(it.Format)), MaxFormatLen},
	} {
		if f.n > f.max {
			return TooLong(f.attr, f.n, f.max)
		}
	}
	return nil
}

// MaxNameLen is the longest application or secret name, in bytes: NAME_MAX,
// so that every stored name is also a valid file name.
const MaxNameLen = 255

// ValidName reports whether s can name an application or a secret: valid
// UTF-8 (DynamoDB keys are strings), 1 to MaxNameLen bytes, no '/' or NUL,
// and not "." or "..". The error is fault.NameTooLong or fault.Invalid.
func ValidName(s string) error {
	const op fault.Op = "store.ValidName"
	switch {
	case len(s) > MaxNameLen:
		return fault.E(op, fault.NameTooLong, "name is "+strconv.Itoa(len(s))+" bytes; the limit is "+strconv.Itoa(MaxNameLen))
	case s == "":
		return fault.E(op, fault.Invalid, "empty name")
	case s == "." || s == "..":
		return fault.E(op, fault.Invalid, "name "+strconv.Quote(s)+" is reserved")
	case !utf8.ValidString(s):
		return fault.E(op, fault.Invalid, "name is not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '/' || s[i] == 0 {
			return fault.E(op, fault.Invalid, "name contains '/' or NUL")
		}
	}
	return nil
}

// Validate checks both parts of k with ValidName.
func (k Key) Validate() error {
	if err := ValidName(k.App); err != nil {
		return fault.E(fault.Path(k.App), err)
	}
	if err := ValidName(k.Name); err != nil {
		return fault.E(k.Path(), err)
	}
	return nil
}

// CheckPut validates the arguments of Store.Put the same way for every
// implementation: a valid key, a Version that follows the expected one, an
// expected Revision that names a write (an IV unless NoItem), and the
// protected fields present.
func CheckPut(item *Item, expected Revision) error {
	const op fault.Op = "store.Put"
	if err := item.Key.Validate(); err != nil {
		return fault.E(op, err)
	}
	legacy := item.Version == Unversioned && expected.Version == Absent
	if item.Version != expected.Version.Next() && !legacy {
		return fault.E(op, item.Path(), fault.Invalid,
			"version "+item.Version.String()+" does not follow expected "+expected.Version.String())
	}
	if err := CheckExpected(expected); err != nil {
		return fault.E(op, item.Path(), err)
	}
	if expected.IV != nil && bytes.Equal(item.InitialisationVector, expected.IV) {
		// Every write has a fresh IV; a Revision is only unique if so.
		return fault.E(op, item.Path(), fault.Invalid, "the new item reuses the IV of the one it replaces")
	}
	if !item.Modified.IsZero() {
		if _, err := StoredModified(item.Modified.UnixMilli()); err != nil {
			return fault.E(op, item.Path(), fault.Invalid, err)
		}
	}
	if item.MasterKeyID == "" || len(item.ProtectedDocumentKey) == 0 ||
		len(item.InitialisationVector) == 0 || len(item.ProtectedSecretValue) == 0 {
		return fault.E(op, item.Path(), fault.Invalid, "protected fields missing")
	}
	return nil
}

// CheckExpected validates a Revision a write expects: NoItem, or a
// Version with the IV of the write it names.
func CheckExpected(expected Revision) error {
	switch {
	case expected.Version < Absent:
		return fault.E(fault.Invalid, "expected version "+expected.Version.String()+" is not a version")
	case expected.Version == Absent && expected.IV != nil:
		return fault.E(fault.Invalid, "an absent item has no IV")
	case expected.Version != Absent && len(expected.IV) == 0:
		return fault.E(fault.Invalid, "the expected revision has no IV: it would not name one write")
	}
	return nil
}

// MaxListPages bounds the pages of one whole listing (ListAll,
// CollectList, CollectApps). Real listings stay far below it: DynamoDB
// returns up to 1 MB a page, so 100,000 pages is a table of about 100 GB
// of names and metadata. A store that keeps returning pages (a bug, or
// cursors that lead in a circle) then ends in an error, not in a loop.
const MaxListPages = 100_000

// pageGuard ends a listing that would not end: more than MaxListPages
// pages, or a cursor returned twice (the pages after it would repeat
// forever). Cursors are remembered by a 64-bit hash, so a long listing
// costs 8 bytes a page, not a copy of every cursor.
type pageGuard struct {
	what  string // what is listed, for the message
	seed  maphash.Seed
	seen  map[uint64]struct{}
	pages int
}

func newPageGuard(what string) *pageGuard {
	return &pageGuard{what: what, seed: maphash.MakeSeed(), seen: map[uint64]struct{}{}}
}

// next checks the cursor of the page after the one just read.
func (g *pageGuard) next(cursor string) error {
	g.pages++
	if g.pages >= MaxListPages {
		return fault.E(fault.Other, fmt.Sprintf("the listing of %s did not end after %d pages: the store keeps returning more", g.what, MaxListPages))
	}
	h := maphash.String(g.seed, cursor)
	if _, dup := g.seen[h]; dup {
		return fault.E(fault.Other, fmt.Sprintf("the store's listing of %s returned a cursor it had returned before, after %d pages: it would never end", g.what, g.pages))
	}
	g.seen[h] = struct{}{}
	return nil
}

// ListAll collects every page of app's listing, as CollectList.
func ListAll(ctx context.Context, s Store, app string) ([]Meta, error) {
	return CollectList(ctx, app, func(ctx context.Context, after string) ([]Meta, string, error) {
		return s.List(ctx, app, after, 0)
	})
}

// CollectList follows the pages of app's listing from the first to the
// last, as page returns them, and returns every entry in order. A listing
// of more than MaxListPages pages, or one that returns a cursor twice, is
// an error (fault.Other): the store's listing would not end.
func CollectList(ctx context.Context, app string, page func(ctx context.Context, after string) (page []Meta, next string, err error)) ([]Meta, error) {
	const op fault.Op = "store.CollectList"
	guard := newPageGuard("secrets") // the path names the application
	var all []Meta
	after := ""
	for {
		metas, next, err := page(ctx, after)
		if err != nil {
			return nil, err
		}
		all = append(all, metas...)
		if next == "" {
			return all, nil
		}
		if err := guard.next(next); err != nil {
			return nil, fault.E(op, fault.Path(app), err)
		}
		after = next
	}
}

// AppsAll collects every page of s's application listing: sorted, each
// name once.
func AppsAll(ctx context.Context, s Store) ([]string, error) {
	return CollectApps(ctx, func(ctx context.Context, cursor string) ([]string, string, error) {
		return s.Apps(ctx, cursor, 0)
	})
}

// CollectApps follows the cursors of an application listing from the
// first page to the last, as page returns them, and returns every name
// sorted and once. A listing of more than MaxListPages pages, or one that
// returns a cursor twice, is an error (fault.Other): the store's listing
// would not end.
func CollectApps(ctx context.Context, page func(ctx context.Context, cursor string) (apps []string, next string, err error)) ([]string, error) {
	const op fault.Op = "store.CollectApps"
	guard := newPageGuard("applications")
	var all []string
	cursor := ""
	for {
		apps, next, err := page(ctx, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, apps...)
		if next == "" {
			return SortApps(all), nil
		}
		if err := guard.next(next); err != nil {
			return nil, fault.E(op, err)
		}
		cursor = next
	}
}

// SortApps sorts the names collected from pages of Apps in byte order,
// as DynamoDB orders keys, and removes duplicates, in place.
func SortApps(apps []string) []string {
	slices.Sort(apps)
	return slices.Compact(apps)
}
