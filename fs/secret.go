package fs

import (
	"sync"
	"time"

	"github.com/secretfs/secretfs/store"
)

// secretState is what this mount knows of one secret beyond the catalog:
// its writers (sessions), and the inode of the secret while it is being
// created here. Readers never see it: they read immutable revisions
// (versionNode).
//
// Locking, in the order locks are taken: the mount's mu, then mu, then a
// session's, then wakeMu. mu guards the fields below it; wakeMu guards
// changed only and is a leaf (nothing is taken while it is held), so that
// a session may wake waiters while it holds its own lock.
type secretState struct {
	m *mount

	mu       sync.Mutex
	key      store.Key // changes on rename
	created  *createdNode
	sessions map[*session]struct{}
	opening  int // opens for writing under way (see opener)

	wakeMu  sync.Mutex
	changed chan struct{} // closed (and replaced) when a session's busy state may have changed
}

// settleTimeout bounds how long a request waits for a closing writer: a
// release follows the last close within moments, so only a process that
// holds a truncated file open without writing makes others wait this
// long, after which they see the committed value. A commit in flight for a
// release is waited for until it ends: the backend's deadline bounds it.
const settleTimeout = time.Second

// secret returns k's state, or nil if it has none.
func (m *mount) secret(k store.Key) *secretState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.secrets[k]
}

// opener returns k's state, making it, for an open for writing under
// way: it stays (forget leaves it) until done is called, by when the
// open has added its session or failed.
func (m *mount) opener(k store.Key) (s *secretState, done func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s = m.secrets[k]
	if s == nil {
		s = &secretState{m: m, key: k, sessions: map[*session]struct{}{}}
		m.secrets[k] = s
	}
	s.mu.Lock()
	s.opening++
	s.mu.Unlock()
	return s, func() {
		s.mu.Lock()
		s.opening--
		s.mu.Unlock()
		s.forget()
	}
}

// secretsOf returns the states of app's secrets.
func (m *mount) secretsOf(app string) []*secretState {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*secretState
	for k, s := range m.secrets {
		if k.App == app {
			out = append(out, s)
		}
	}
	return out
}

// forget drops s once it has no sessions, unless the kernel still holds
// its created inode.
func (s *secretState) forget() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) == 0 && s.opening == 0 && s.created == nil && s.m.secrets[s.key] == s {
		delete(s.m.secrets, s.key)
	}
}

// currentKey returns where the secret lives now.
func (s *secretState) currentKey() store.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// add registers a new session. Its opener moved on from any session it
// opened before (see justOpenedBy).
func (s *secretState) add(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for other := range s.sessions {
		other.mu.Lock()
		if other.thread == ss.thread {
			other.used()
		}
		other.mu.Unlock()
	}
	s.sessions[ss] = struct{}{}
}

// remove unregisters a released session.
func (s *secretState) remove(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.wake()
}

// all returns the sessions.
func (s *secretState) all() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}

// justOpenedBy returns the session thread tid has just opened, if any
// (see session.justOpenedBy).
func (s *secretState) justOpenedBy(tid uint32) *session {
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
func (s *secretState) creating() (store.Meta, bool) {
	for _, ss := range s.all() {
		if m := ss.metadata(); m.Version == store.Absent && ss.current() != sessionOrphaned && ss.current() != sessionFailed {
			return m, true
		}
	}
	return store.Meta{}, false
}

// closingMetadata describes what a closing session is about to commit:
// the answer to a stat by path while it does.
func (s *secretState) closingMetadata() (store.Meta, bool) {
	for _, ss := range s.all() {
		if ss.busy() {
			return ss.metadata(), true
		}
	}
	return store.Meta{}, false
}

// wake tells waiters that a session's busy state may have changed.
func (s *secretState) wake() {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// settle waits until no session of the secret is busy (see
// session.busyLocked), so that `touch f && cat f`, `: > f && cat f` or
// vim's create-close-unlink of its swap file act on what the first
// command committed:
//
//   - a session whose opener closed a descriptor without writing after
//     a creation or a truncation (closing) is waited for until its
//     release, at most settleTimeout;
//   - the commit a release owes (its load of the value, if the writes
//     were an overlay, then the commit) is waited for until it ends,
//     which its backend calls' deadlines bound.
//
// It never waits for a commit made by a close or fsync still in progress:
// nothing can depend on that yet.
func (s *secretState) settle() {
	deadline := time.Now().Add(settleTimeout)
	for {
		s.wakeMu.Lock()
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.wakeMu.Unlock()
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
			s.m.log.WithField("secret", s.currentKey().String()).Debug("stopped waiting for a writer that closed a descriptor without writing")
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

// orphan detaches every session: the secret was removed under them, and
// as with any unlinked file their writes succeed and vanish.
func (s *secretState) orphan() {
	for _, ss := range s.all() {
		ss.orphan()
	}
	s.wake()
}
