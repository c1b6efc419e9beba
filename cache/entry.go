package cache

import (
	"bytes"
	"sync"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// entry is what the cache knows of one secret: its Meta, and its protected
// item, its decrypted value, or both (an entry made by a fetch has no
// value until it is opened).
//
// The value is filled at most once and wiped when the entry leaves the
// cache. Readers copy it under mu and check gone first, so a reader that
// races with an eviction misses instead of copying zeros.
type entry struct {
	item    *store.Item // never changes
	expires time.Time   // when the LRU drops it; set once, before it is filed

	mu        sync.RWMutex
	meta      store.Meta       // Open's Meta replaces the item's: it knows a legacy item's true Size
	value     crypto.Plaintext // owned by the entry
	decrypted bool             // value holds the secret (an empty secret may be a nil value)
	gone      bool             // the entry left the cache, or never entered it; value is wiped
}

// metadata returns the entry's Meta.
func (e *entry) metadata() store.Meta {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.meta
}

// secret returns a copy of the value, which the caller owns, or false if
// there is none to copy.
func (e *entry) secret() (secrets.Secret, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.gone || !e.decrypted {
		return secrets.Secret{}, false
	}
	return secrets.Secret{Meta: e.meta, Value: e.value.Clone()}, true
}

func (e *entry) isGone() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.gone
}

// needsOpen reports whether the entry is in the cache without a value.
func (e *entry) needsOpen() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return !e.gone && !e.decrypted
}

// fill gives s's value to the entry, which owns it from then on. It
// reports false, and takes nothing, if the entry already left the cache.
func (e *entry) fill(s secrets.Secret) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone || e.decrypted {
		return false
	}
	e.meta, e.value, e.decrypted = s.Meta, s.Value, true
	return true
}

// take moves the value out of an entry that is about to be replaced by
// one for the same ciphertext. The old entry is gone from then on:
// readers still holding it miss and look again.
func (e *entry) take() (store.Meta, crypto.Plaintext, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone || !e.decrypted {
		return store.Meta{}, nil, false
	}
	value := e.value
	e.value, e.decrypted, e.gone = nil, false, true
	return e.meta, value, true
}

// wipe zeroes the value; the entry is gone from then on.
func (e *entry) wipe() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.value.Wipe()
	e.value, e.decrypted, e.gone = nil, false, true
}

// sameCiphertext reports whether item is the one this entry was fetched
// as: same Version and same (non-empty) IV.
func (e *entry) sameCiphertext(item *store.Item) bool {
	return e.item != nil && e.item.Version == item.Version &&
		len(item.InitialisationVector) > 0 &&
		bytes.Equal(e.item.InitialisationVector, item.InitialisationVector)
}
