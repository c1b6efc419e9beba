package vfs

import (
	"sync/atomic"
	"time"

	"github.com/secretfs/secretfs/store"
)

// Secret is what this file system knows of one secret beyond the
// catalog: its writers (sessions), and whether the adapter holds it (the
// inode of a secret being created here: see Hold). Readers never see it:
// they read immutable revisions. It follows a rename: Key says where it
// lives now.
type Secret struct {
	v *FS

	// Guarded by v.mu.
	key      store.Key
	sessions map[*session]struct{}
	opening  int // opens for writing under way (see FS.opener)
	held     int // the adapter's holds (see Hold)

	// changed is closed, and dropped, when a session's busy state may
	// have changed (see wake): a lock-free leaf, so that a session may
	// wake waiters while it holds its own lock.
	changed atomic.Pointer[chan struct{}]
}

// closingWriterWait bounds how long a request waits for a closing writer
// (New makes it FS.closingWriterWait):
// a release follows the last close within moments, so only a process that
// holds a truncated file open without writing makes others wait this
// long, after which they see the committed value. A commit in flight for a
// release is waited for until it ends: the backend's deadline bounds it.
const closingWriterWait = time.Second

// secret returns k's state, or nil if it has none.
func (v *FS) secret(k store.Key) *Secret {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.secrets[k]
}

// opener returns k's state, making it, for an open for writing under
// way: it stays (forget leaves it) until done is called, by when the
// open has added its session or failed.
func (v *FS) opener(k store.Key) (s *Secret, done func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s = v.secrets[k]
	if s == nil {
		s = &Secret{v: v, key: k, sessions: map[*session]struct{}{}}
		v.secrets[k] = s
	}
	s.opening++
	return s, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		s.opening--
		v.forgetLocked(s)
	}
}

// secretsOf returns the states of app's secrets.
func (v *FS) secretsOf(app string) []*Secret {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*Secret
	for k, s := range v.secrets {
		if k.App == app {
			out = append(out, s)
		}
	}
	return out
}

// forgetLocked drops s once nothing needs it: no sessions, no open under
// way, no hold. v.mu must be held.
func (v *FS) forgetLocked(s *Secret) {
	if len(s.sessions) == 0 && s.opening == 0 && s.held == 0 && v.secrets[s.key] == s {
		delete(v.secrets, s.key)
	}
}

// Key returns where the secret lives now.
func (s *Secret) Key() store.Key {
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	return s.key
}

// Hold keeps the secret's state while the adapter refers to it (the
// kernel holds the inode of a secret created here), even once it has no
// writers. Each Hold is ended by one Unhold.
//
// A secret whose last session was released just before Hold (a lookup
// found it creating, then its writer closed) was dropped from the
// file system's secrets: Hold puts it back, unless another took its
// name meanwhile, so that the writers of one name stay in one Secret.
func (s *Secret) Hold() {
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	s.held++
	if _, ok := s.v.secrets[s.key]; !ok && s.key != (store.Key{}) {
		s.v.secrets[s.key] = s
	}
}

// Unhold ends one Hold.
func (s *Secret) Unhold() {
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	s.held--
	s.v.forgetLocked(s)
}

// add registers a new session. Its opener moved on from any session it
// opened before (see justOpenedBy).
func (s *Secret) add(ss *session) {
	for _, other := range s.all() {
		other.movedOn(ss.thread)
	}
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	s.sessions[ss] = struct{}{}
}

// remove unregisters a released session, and drops the secret's state if
// nothing else needs it.
func (s *Secret) remove(ss *session) {
	s.v.mu.Lock()
	delete(s.sessions, ss)
	s.v.forgetLocked(s)
	s.v.mu.Unlock()
	s.wake()
}

// all returns the sessions.
func (s *Secret) all() []*session {
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}

// justOpenedBy returns the session thread tid has just opened, if any
// (see session.justOpenedBy).
func (s *Secret) justOpenedBy(tid uint32) *session {
	for _, ss := range s.all() {
		if ss.justOpenedBy(tid) {
			return ss
		}
	}
	return nil
}

// creating returns the metadata of a session creating the secret here,
// if one is: the name then exists for this mount before anything is
// stored (touch sets the times of its new file before closing it).
func (s *Secret) creating() (store.Meta, bool) {
	for _, ss := range s.all() {
		if m := ss.metadata(); m.Version == store.Absent && ss.current() != sessionOrphaned && ss.current() != sessionFailed {
			return m, true
		}
	}
	return store.Meta{}, false
}

// creatingBesides reports whether a session of s other than own is
// creating it.
func (s *Secret) creatingBesides(own *session) bool {
	for _, ss := range s.all() {
		if ss == own {
			continue
		}
		if m := ss.metadata(); m.Version == store.Absent && ss.current() != sessionOrphaned && ss.current() != sessionFailed && ss.current() != sessionReleased {
			return true
		}
	}
	return false
}

// closingMetadata describes what a closing session is about to commit:
// the answer to a stat by path while it does.
func (s *Secret) closingMetadata() (store.Meta, bool) {
	for _, ss := range s.all() {
		if ss.busy() {
			return ss.metadata(), true
		}
	}
	return store.Meta{}, false
}

// Meta answers a stat by path of a secret created here: what a closing
// or creating session is about to commit, else what was committed, else
// an empty secret made now. It never waits: the closing writer may be the
// caller itself (a program's first fstat of the stdout its shell
// redirected).
func (s *Secret) Meta() store.Meta {
	if m, ok := s.closingMetadata(); ok {
		return m
	}
	if m, ok := s.creating(); ok {
		return m
	}
	k := s.Key()
	if m, ok := s.v.cat.Known(k); ok {
		return m
	}
	return store.Meta{Key: k, Version: store.Absent, Modified: time.Now()}
}

// Attr is the secret's attributes for a stat by path (see Meta). They
// change as it is written: nobody should keep them.
func (s *Secret) Attr() Attr { return s.v.fileAttr(s.Meta(), 1) }

// changes returns the channel that wake closes next.
func (s *Secret) changes() <-chan struct{} {
	for {
		if ch := s.changed.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if s.changed.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// wake tells waiters that a session's busy state may have changed.
func (s *Secret) wake() {
	if ch := s.changed.Swap(nil); ch != nil {
		close(*ch)
	}
}

// awaitClosingWriters waits until no session of the secret is busy (see
// session.busyLocked), so that `touch f && cat f`, `: > f && cat f` or
// vim's create-close-unlink of its swap file act on what the first
// command committed:
//
//   - a session whose opener closed a descriptor without writing after
//     a creation or a truncation (closing) is waited for until its
//     release, at most FS.closingWriterWait;
//   - the commit a release owes (its load of the value, if the writes
//     were an overlay, then the commit) is waited for until it ends,
//     which its backend calls' deadlines bound.
//
// It never waits for a commit made by a close or fsync still in progress:
// nothing can depend on that yet.
func (s *Secret) awaitClosingWriters() {
	deadline := time.Now().Add(s.v.closingWriterWait)
	for {
		changed := s.changes()
		closing, committing := false, false
		for _, ss := range s.all() {
			if ss.busy() {
				if ss.current() == sessionClosing {
					closing = true
				} else {
					committing = true
				}
			}
		}
		if !closing && !committing {
			return
		}
		wait := time.Until(deadline)
		if committing {
			wait = time.Hour // the commit's own deadline ends it long before
		} else if wait <= 0 {
			s.v.log.WithField("secret", s.Key().String()).Debug("stopped waiting for a writer that closed a descriptor without writing")
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// awaitClosingWritersOf waits out the closing writers of k, if it has
// any (see Secret.awaitClosingWriters), and returns its state, or nil.
func (v *FS) awaitClosingWritersOf(k store.Key) *Secret {
	s := v.secret(k)
	if s != nil {
		s.awaitClosingWriters()
	}
	return s
}

// awaitClosingWritersIn waits out the closing writers of every secret of
// app: a listing, or an rmdir, right after `touch new` must see it.
func (v *FS) awaitClosingWritersIn(app string) {
	for _, s := range v.secretsOf(app) {
		s.awaitClosingWriters()
	}
}

// orphan detaches sessions, those of the secret when it was removed
// (taken with all before the store was asked to remove it): as with any
// unlinked file their writes succeed and vanish. A session opened since
// is not theirs: it expects what the store held when it opened (nothing,
// once the removal landed), and commits or fails on its own.
func (s *Secret) orphan(sessions []*session) {
	for _, ss := range sessions {
		ss.orphan()
	}
	s.wake()
}

// isCreating reports whether s, if any, is being created here and has
// committed nothing yet.
func isCreating(s *Secret) bool {
	if s == nil {
		return false
	}
	_, ok := s.creating()
	return ok
}
