package secrets

import (
	"context"
	"errors"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

// Catalog is what the mount serves from: which secrets exist and which
// revision of each is current, no older than a TTL, and the content of
// each revision (a Snapshot), decrypted once and kept while it is read.
// cache.Catalog implements it in front of a Keeper.
//
// Freshness is a promise about names, not about open files: Lookup never
// answers from what the store said more than the TTL ago, unless the store
// cannot answer at all, and then only within the stale window
// (Entry.Stale says so). A Snapshot never changes: it is one revision.
//
// Every method returns *fault.Error values with the Kinds of the
// store.Store contract; none ever holds plaintext. Safe for concurrent use.
type Catalog interface {
	// Lookup returns what k is now: the metadata of its current
	// revision. A secret with no item is fault.NotFound. The returned
	// revision's protected item is in memory when Lookup returns (a
	// Snapshot of it needs no store read, only a key unwrap); it stays
	// there while the catalog holds that revision for current (Known),
	// whatever snapshots of it are released meanwhile.
	Lookup(ctx context.Context, k store.Key) (Entry, error)

	// Known returns what the catalog last learned of k, without asking
	// anyone: the metadata of the revision it holds for current, or
	// false if it holds none (never looked up, or absent).
	Known(k store.Key) (store.Meta, bool)

	// Fresh returns how much longer what the catalog knows of k (from a
	// lookup or a listing) stands without asking the store, as
	// Entry.Fresh: 0 if it must be asked now. A name answered from a
	// listing stands no longer than that listing.
	Fresh(k store.Key) time.Duration

	// Snapshot returns the content of the revision of k that meta
	// describes (as Lookup or List returned it), pinned until the caller
	// Releases it.
	Snapshot(k store.Key, meta store.Meta) Snapshot

	// HasSecrets reports whether app holds at least one secret, fresh
	// within the TTL, as Lookup.
	HasSecrets(ctx context.Context, app string) (bool, error)

	// List returns one page of app's metadata, as store.Store.List, and
	// learns from it.
	List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error)

	// Apps lists the applications that hold secrets, as Source.Apps.
	Apps(ctx context.Context) ([]string, error)

	// Verify asks the store what k is now, ignoring the TTL: for writers,
	// whose conditional write must expect the stored revision.
	Verify(ctx context.Context, k store.Key) (store.Meta, error)

	// Put, Delete and MaxValueSize are Source's. A successful Put makes
	// the new revision current at once, with its value in memory (no key
	// unwrap to read it back); a failed one makes the catalog ask the
	// store about k next time, whatever the failure.
	Put(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error)
	Delete(ctx context.Context, k store.Key, expected store.Revision) error
	MaxValueSize() int64
}

// Entry is Lookup's answer.
type Entry struct {
	store.Meta
	// Fresh is how much longer the answer stands without asking the
	// store: the kernel may keep the name and attributes that long.
	Fresh time.Duration
	// Stale says the store could not be asked, and the answer is the last
	// one it gave, older than the TTL (within the stale window).
	Stale bool
}

// Snapshot is the content of one committed revision of a secret. It never
// changes; its plaintext may be wiped when unused (the catalog's idle and
// size bounds) and decrypted again from the protected item it keeps, so
// that it always gives the same bytes for as long as it is pinned.
type Snapshot interface {
	// Meta describes the revision. Size is -1 for a legacy item until
	// the value has been decrypted once (see Size).
	Meta() store.Meta

	// Size returns the plaintext length, decrypting a legacy item to
	// learn it.
	Size(ctx context.Context) (int64, error)

	// Bind makes sure the protected item of this revision is in memory,
	// reading it from the store if need be. If it must be read and the
	// store holds another revision now, the one asked for can no longer
	// be read: the error is a *Superseded naming what is stored instead
	// (or fault.NotFound if nothing is). An item the catalog still holds
	// binds without the store: a pinned revision's, and a catalog may keep
	// the item of a replaced revision whose value it still holds (the
	// last value read, for stale-if-error); so a replaced revision is not
	// always Superseded.
	Bind(ctx context.Context) error

	// ReadAt copies the plaintext at off into p, as io.ReaderAt without
	// io.EOF: n < len(p) means the value ended. It binds and decrypts as
	// needed; concurrent callers share one store read and one unwrap,
	// which no caller's cancellation stops (each backend call has its own
	// deadline).
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)

	// Value returns a copy of the whole plaintext, which the caller owns
	// and must Wipe.
	Value(ctx context.Context) (crypto.Plaintext, error)

	// Touch records a read that did not need the plaintext (the kernel
	// served it from its page cache, and said so by a lookup or getattr):
	// it keeps the plaintext from being wiped as idle.
	Touch()

	// OnWipe registers f, called (from its own goroutine) whenever the
	// plaintext is wiped while the snapshot is pinned, so that copies of
	// it elsewhere (the kernel's page cache) can be dropped too. The
	// returned function unregisters it.
	OnWipe(f func()) (cancel func())

	// Release unpins the snapshot; once nothing pins it, its plaintext
	// is wiped and its protected item dropped.
	Release()
}

// Superseded is Snapshot.Bind's error when the revision asked for is no
// longer stored: Now describes the item the store holds instead.
type Superseded struct {
	Key store.Key
	Now store.Meta
}

func (e *Superseded) Error() string {
	return e.Key.String() + ": revision " + e.Now.Version.String() + " replaced the one asked for"
}

// AsSuperseded returns the *Superseded in err's chain, or nil.
func AsSuperseded(err error) *Superseded {
	var s *Superseded
	if errors.As(err, &s) {
		return s
	}
	return nil
}

// Watcher is implemented by a Catalog that says when it learns from the
// store that a secret changed or went (not when the change went through
// it): the mount then points the name at the new revision at once, rather
// than when the kernel's entry expires.
type Watcher interface {
	OnChange(f func(k store.Key))
}
