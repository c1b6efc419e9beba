package fs

import (
	"context"
	"strconv"
	"sync"
	"syscall"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// sessionState is where a write session stands. The transitions:
//
//	clean --write--------------------------------> dirty
//	clean --truncate-----------------------------> pending
//	pending (created or truncated) --write-------> dirty
//	pending --the opener closes a descriptor-----> closing
//	closing --write------------------------------> dirty
//	dirty, pending, closing --flush/fsync/release-> committing
//	committing --success--> clean (or dirty, if written meanwhile)
//	committing --failure--> failed
//	any but released --the secret is removed-----> orphaned
//	any --release---------------------------------> released
//
// A failed session never commits again and reports its failure at every
// later close and fsync: what close() said is true. An orphaned one
// accepts writes and commits nothing, as an unlinked file does.
type sessionState int

const (
	sessionClean      sessionState = iota // nothing to commit: the buffer is what was opened or last committed
	sessionPending                        // created or truncated, nothing written yet: commits the empty or truncated value
	sessionClosing                        // pending, and the opener closed a descriptor: its release follows, others wait for it
	sessionDirty                          // written since the last commit
	sessionCommitting                     // a commit is in flight
	sessionFailed                         // a write or commit failed: nothing is committed any more
	sessionOrphaned                       // the secret was removed: writes vanish
	sessionReleased                       // the last descriptor closed; the buffer is wiped
)

var sessionStateNames = [...]string{"clean", "pending", "closing", "dirty", "committing", "failed", "orphaned", "released"}

func (s sessionState) String() string { return sessionStateNames[s] }

// anyOwner stands for a writer whose lock owner the kernel did not send:
// then any flush commits, as the plain FUSE model would.
const anyOwner uint64 = 0

// closer describes who is closing a descriptor (see requests.go).
type closer struct {
	owner    uint64         // lock owner of the FLUSH: the closing process's file table
	process  uint32         // the process, or 0 if unknown
	killedBy syscall.Signal // the signal killing it, or 0
}

// commitFunc commits value at the session's key on the condition that
// the store holds expected; it is the mount's catalog Put.
type commitFunc func(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error)

// loadFunc returns the value a session edits: the plaintext of the
// revision it expects to replace. The caller owns the result.
type loadFunc func(ctx context.Context) (crypto.Plaintext, error)

// session is one open writable file: a private buffer, the revision its
// commit expects to replace, and who wrote it. Nothing in it touches
// FUSE or the network; commit is given the function that does.
//
// Locking: mu guards every field; it is never held while committing, so a
// stat or another writer never waits for the network.
type session struct {
	mu        sync.Mutex
	state     sessionState
	key       store.Key        // changes when the secret is renamed
	buf       crypto.Plaintext // owned; wiped on failure and release
	loaded    bool             // buf holds the value (see load)
	load      loadFunc         // reads the value, the first time something needs it
	meta      store.Meta       // of what the buffer replaces, then of what it committed
	expected  store.Revision   // what the commit's condition expects in the store
	appendTo  bool             // O_APPEND: every write goes to the end
	writers   map[uint64]bool  // lock owners that wrote since the last commit
	opener    uint32           // the process that opened it
	thread    uint32           // the thread that opened it, while it has done nothing else (see justOpenedBy)
	failure   error            // why it failed
	written   uint64           // writes and truncations so far, to tell those made during a commit
	idle      chan struct{}    // closed when a commit in flight ends
	releasing bool             // the commit in flight is the release's: the closer has returned, others wait
	onChange  func()           // told when the session enters or leaves closing or committing
}

// newSession opens a session that edits the revision meta describes. A
// creation (load nil) starts empty and pending: closed without a write,
// it commits an empty value, as `: > file` and touch expect. Otherwise
// the value is loaded when something first needs it: the kernel sends a
// truncating open (O_TRUNC) as an open and then a truncation to 0, and a
// value about to be replaced whole need not be decrypted (nor can be, on
// a mount that holds only a public key).
func newSession(k store.Key, meta store.Meta, load loadFunc, appendTo bool, opener, thread uint32, onChange func()) *session {
	s := &session{state: sessionClean, key: k, meta: meta, expected: meta.Revision(), load: load, appendTo: appendTo,
		writers: map[uint64]bool{}, opener: opener, thread: thread, onChange: onChange}
	if load == nil {
		s.state, s.loaded = sessionPending, true
		s.meta.Size = 0
	}
	return s
}

// justOpenedBy reports whether thread tid opened the session and nothing
// has happened to it since. The kernel sends the truncation of an open
// with O_TRUNC right after the OPEN, from the same thread, but without the
// descriptor (fuse_setattr drops the file for ATTR_OPEN): this is how the
// truncation finds its session.
func (s *session) justOpenedBy(tid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tid != 0 && s.thread == tid
}

// used ends the moment after the open (see justOpenedBy). s.mu must be
// held.
func (s *session) used() { s.thread = 0 }

// ensure loads the value unless it is loaded, or nothing needs it any
// more. It does not hold the lock while it loads. A failed load fails
// only the request that needed it.
func (s *session) ensure(ctx context.Context) error {
	s.mu.Lock()
	if s.loaded || s.state == sessionFailed || s.state == sessionOrphaned || s.state == sessionReleased {
		s.mu.Unlock()
		return nil
	}
	load := s.load
	s.mu.Unlock()
	v, err := load(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded || s.state == sessionReleased {
		v.Wipe() // loaded meanwhile, or truncated to nothing
		return nil
	}
	s.buf, s.loaded = v, true
	return nil
}

// setState moves to next, telling onChange when the move enters or
// leaves a state others wait for. s.mu must be held.
func (s *session) setState(next sessionState) {
	waited := func(st sessionState) bool { return st == sessionClosing || st == sessionCommitting }
	prev := s.state
	s.state = next
	if waited(prev) != waited(next) && s.onChange != nil {
		s.onChange()
	}
}

// metadata describes what the session's own descriptor sees: its buffer.
func (s *session) metadata() store.Meta {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meta
	m.Key = s.key
	if s.loaded {
		m.Size = int64(len(s.buf))
	}
	return m
}

// read copies the buffer at off into dest.
func (s *session) read(ctx context.Context, dest []byte, off int64) (int, error) {
	if err := s.ensure(ctx); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used()
	if off >= int64(len(s.buf)) {
		return 0, nil
	}
	return copy(dest, s.buf[off:]), nil
}

// write puts data at off (the end, for O_APPEND) on behalf of owner. A
// value over max fails the session: what the writer meant cannot be
// stored, and the part written must not be committed.
func (s *session) write(ctx context.Context, owner uint64, data []byte, off, max int64) (int, error) {
	if err := s.ensure(ctx); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used()
	switch s.state {
	case sessionFailed:
		return 0, s.failure
	case sessionReleased:
		return 0, fault.E(s.key.Path(), fault.Invalid, "written after its release")
	}
	if s.appendTo {
		off = int64(len(s.buf))
	}
	end := off + int64(len(data))
	if end > max {
		s.fail(tooLarge(s.key, end, max))
		return 0, s.failure
	}
	if end > int64(len(s.buf)) {
		s.buf = resize(s.buf, end)
	}
	copy(s.buf[off:], data)
	s.changedBy(owner)
	return len(data), nil
}

// truncate resizes the buffer. A truncation is not a write: it makes the
// session pending, not dirty, so that the shell that truncated a file for
// a redirection (`cmd > file`: open with O_TRUNC, hand the descriptor to
// the command, close its own copy) does not commit an empty value at that
// close; the command's writes and close commit the new one, and a
// truncation nobody writes after commits at the release (`: > file`).
func (s *session) truncate(ctx context.Context, size, max int64) error {
	if size > max {
		return tooLarge(s.key, size, max) // refused; the buffer stays as it was
	}
	if size > 0 {
		if err := s.ensure(ctx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used()
	switch s.state {
	case sessionFailed:
		return s.failure
	case sessionOrphaned, sessionReleased:
		return nil
	}
	if size == 0 && !s.loaded {
		s.loaded = true
	}
	s.buf = resize(s.buf, size)
	s.written++
	switch s.state {
	case sessionClean, sessionClosing:
		s.setState(sessionPending)
	}
	return nil
}

// changedBy records a change of the buffer by owner. s.mu must be held.
func (s *session) changedBy(owner uint64) {
	s.written++
	switch s.state {
	case sessionOrphaned, sessionReleased:
		return
	case sessionCommitting:
		// Committed later, by the flush that follows this write.
	default:
		s.setState(sessionDirty)
	}
	s.writers[owner] = true
}

// fail discards the buffer for good. s.mu must be held.
func (s *session) fail(err error) {
	s.failure = err
	s.buf.Wipe()
	s.buf = nil
	clear(s.writers)
	s.setState(sessionFailed)
}

// flushAction is what a close of a descriptor asks of a session.
type flushAction int

const (
	flushNothing flushAction = iota // nothing to commit for this closer
	flushCommit                     // commit now and report the result to the closer
	flushReport                     // report the session's failure
)

// flush decides what a close by c does. A process that wrote through the
// file commits on its close; a child closing an inherited copy commits
// nothing (a shell's `cmd > file` has its child close the file first); a
// process killed by a signal commits nothing, so the value stays whole;
// an opener that only truncated or created moves to closing, so that
// others wait for the release that follows.
func (s *session) flush(c closer) (flushAction, error) {
	s.lockIdle()
	defer s.mu.Unlock()
	switch s.state {
	case sessionFailed:
		return flushReport, s.failure
	case sessionClean, sessionOrphaned, sessionReleased:
		return flushNothing, nil
	}
	wrote := s.writers[c.owner] || s.writers[anyOwner]
	onlyCreated := len(s.writers) == 0 // pending or closing: a truncation or creation, nothing written
	if !wrote && !onlyCreated {
		return flushNothing, nil
	}
	if c.killedBy != 0 {
		s.fail(fault.E(s.key.Path(), "a process writing it was killed by signal "+strconv.Itoa(int(c.killedBy))+
			" ("+c.killedBy.String()+") before it closed the file; nothing written through this file is committed"))
		return flushReport, s.failure
	}
	if wrote {
		return flushCommit, nil
	}
	if c.process == s.opener && s.state == sessionPending {
		s.setState(sessionClosing)
	}
	return flushNothing, nil
}

// fsyncNeeded reports whether an fsync must commit, or the failure it
// must report.
func (s *session) fsyncNeeded() (bool, error) {
	s.lockIdle()
	defer s.mu.Unlock()
	switch s.state {
	case sessionFailed:
		return false, s.failure
	case sessionPending, sessionClosing, sessionDirty:
		return true, nil
	}
	return false, nil
}

// lockIdle locks s once no commit is in flight, for a close or an fsync,
// which decide from where the commit left the session.
func (s *session) lockIdle() {
	s.mu.Lock()
	s.used()
	for s.state == sessionCommitting {
		s.waitIdle()
	}
}

// waitIdle waits until the commit in flight ends. s.mu must be held; it is
// released while waiting.
func (s *session) waitIdle() {
	idle := s.idle
	s.mu.Unlock()
	<-idle
	s.mu.Lock()
}

// commit commits the buffer with put, unless there is nothing to commit.
// The lock is not held while put runs: a stat or a write meanwhile does
// not wait. Whatever put's failure, the session fails: the buffer will
// never be committed later, and every later close says so.
func (s *session) commit(ctx context.Context, put commitFunc) (store.Meta, bool, error) {
	s.mu.Lock()
	for s.state == sessionCommitting {
		s.waitIdle()
	}
	switch s.state {
	case sessionFailed:
		defer s.mu.Unlock()
		return store.Meta{}, false, s.failure
	case sessionPending, sessionClosing, sessionDirty:
	default:
		defer s.mu.Unlock()
		return store.Meta{}, false, nil
	}
	k, expected, written := s.key, s.expected, s.written
	value := s.buf.Clone()
	s.idle = make(chan struct{})
	s.setState(sessionCommitting)
	s.mu.Unlock()

	meta, err := put(ctx, k, value, expected)
	value.Wipe()

	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(s.idle)
	if s.state != sessionCommitting {
		// Orphaned or released while committing: the store decided, and
		// the caller reports it, but the session stays where it went.
		return meta, err == nil, err
	}
	if err != nil {
		s.fail(err)
		return store.Meta{}, false, err
	}
	s.expected, s.meta = meta.Revision(), meta
	if s.written != written {
		s.setState(sessionDirty) // written during the commit: the next flush commits that
	} else {
		clear(s.writers)
		s.setState(sessionClean)
	}
	return meta, true, nil
}

// orphan detaches the session from the store: the secret was removed.
func (s *session) orphan() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != sessionReleased {
		s.setState(sessionOrphaned)
		clear(s.writers)
	}
}

// moved follows a rename of the secret from a revision old to meta at its
// new key. A session that expected old now expects the renamed item; one
// that expected an earlier revision was already stale, and fails as it
// would have in place.
func (s *session) moved(old store.Revision, meta store.Meta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = meta.Key
	switch {
	case s.state == sessionFailed || s.state == sessionOrphaned || s.state == sessionReleased:
	case s.expected.Equal(old):
		s.expected = meta.Revision()
		s.meta = meta
	default:
		s.fail(fault.E(meta.Path(), fault.Conflict, "renamed after another writer changed it"))
	}
}

// releaseNeeded reports whether the last close owes a commit (a pending
// creation or truncation, or writes no close committed), and marks that
// commit as the release's: the process has closed the file and moved on,
// so others wait for it (see busy).
func (s *session) releaseNeeded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.state == sessionCommitting {
		s.waitIdle()
	}
	switch s.state {
	case sessionPending, sessionClosing, sessionDirty:
		s.releasing = true
		return true
	}
	return false
}

// busy reports whether requests about the secret must wait for this
// session: it is closing (its release is coming), or committing for a
// release. A commit on close or fsync is not waited for: the syscall that
// makes it has not returned, so nothing can depend on it yet.
func (s *session) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == sessionClosing || (s.state == sessionCommitting && s.releasing)
}

// release wipes the buffer; the session is done.
func (s *session) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Wipe()
	s.buf = nil
	s.setState(sessionReleased)
}

// current returns the state, for tests and for the settle rule.
func (s *session) current() sessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func tooLarge(k store.Key, size, max int64) error {
	return fault.E(k.Path(), fault.TooLarge, "value would be "+strconv.FormatInt(size, 10)+
		" bytes; the limit is "+strconv.FormatInt(max, 10))
}

// resize returns v with length size. Growing may move the bytes to a new
// array; the old one is wiped, so no stale copy of the value stays behind.
// Shrinking wipes the bytes cut off, so that growing again reads zeros.
func resize(v crypto.Plaintext, size int64) crypto.Plaintext {
	switch {
	case size <= int64(len(v)):
		v[size:].Wipe()
		return v[:size]
	case size <= int64(cap(v)):
		old := len(v)
		v = v[:size]
		v[old:].Wipe() // capacity we did not fill may hold anything
		return v
	}
	grown := make(crypto.Plaintext, size, max(size, 2*int64(cap(v))))
	copy(grown, v)
	v.Wipe()
	return grown
}
