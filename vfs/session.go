package vfs

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"sync"

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

// commitFunc commits value at the session's key on the condition that
// the store holds expected; it is the mount's catalog Put.
type commitFunc func(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error)

// loadFunc returns the value a session edits: the plaintext of revision
// meta of k, the one its commit expects to replace. The caller owns the
// result.
type loadFunc func(ctx context.Context, k store.Key, meta store.Meta) (crypto.Plaintext, error)

// session is one open writable file: a private buffer, the revision its
// commit expects to replace, and who wrote it. Nothing in it touches
// FUSE or the network; commit is given the function that does.
//
// The value being edited is loaded only when something needs all of it:
// a read through the file, a truncation to a size other than 0, or the
// commit. Until then the buffer is an overlay: what was written, at the
// offsets written, and the ranges written (spans). Loading lays the
// overlay over the value, so a write never waits for the store or the
// keys, however cold the value is.
//
// Locking: mu guards every field; it is never held while loading or
// committing, so a stat or a write never waits for the network.
type session struct {
	mu        sync.Mutex
	state     sessionState
	key       store.Key        // changes when the secret is renamed
	buf       crypto.Plaintext // owned; wiped on failure and release. Until loaded, the overlay
	spans     []span           // until loaded: the ranges of buf written, sorted, disjoint and apart
	loaded    bool             // buf holds the value with every write applied (see ensure)
	load      loadFunc         // reads the value, the first time something needs it
	meta      store.Meta       // of what the buffer replaces, then of what it committed
	expected  store.Revision   // what the commit's condition expects in the store
	appendTo  bool             // O_APPEND: every write goes to the end; loaded at open (see openWriter)
	writers   map[uint64]bool  // lock owners that wrote since the last commit
	opener    uint32           // the process that opened it
	thread    uint32           // the thread that opened it, while it has done nothing else (see justOpenedBy)
	failure   error            // why it failed
	told      bool             // failure was returned once, and logged then (see failed)
	written   uint64           // writes and truncations so far, to tell those made during a commit
	idle      chan struct{}    // closed when a commit in flight ends
	releasing bool             // the release owes a commit: the closer has returned, others wait (see busy)
	joined    bool             // opened on a secret another session was creating (joinCreation)
	onChange  func()           // told when busy changes; called with mu held, so it takes no lock (Secret.wake)
}

// span is a range of a value, [start, end).
type span struct{ start, end int64 }

// addSpan returns spans (sorted, disjoint, apart) with n added, merged
// with the spans it overlaps or touches.
func addSpan(spans []span, n span) []span {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].end >= n.start })
	j := i
	for ; j < len(spans) && spans[j].start <= n.end; j++ {
		n.start, n.end = min(n.start, spans[j].start), max(n.end, spans[j].end)
	}
	return slices.Replace(spans, i, j, n)
}

// newSession opens a session that edits the revision meta describes. A
// creation (load nil) starts empty and pending: closed without a write,
// it commits an empty value, as `: > file` and touch expect. Otherwise
// the value is loaded when something first needs all of it: the kernel
// sends a truncating open (O_TRUNC) as an open and then a truncation to
// 0, and a value about to be replaced whole need not be decrypted (nor
// can be, on a mount that holds only a public key).
func newSession(k store.Key, meta store.Meta, load loadFunc, appendTo bool, opener, thread uint32, onChange func()) *session {
	s := &session{state: sessionClean, key: k, meta: meta, expected: meta.Revision(), load: load, appendTo: appendTo,
		writers: map[uint64]bool{}, opener: opener, thread: thread, onChange: onChange}
	if load == nil {
		s.state, s.loaded = sessionPending, true
		s.meta.Size = 0
	}
	return s
}

// joinCreation makes a session opened on a secret another session of
// the mount is creating clean: it commits only what is written to it,
// or a truncation, not the empty value a creation commits at its release
// (see Handle.Release for when it does, as the last one).
func (s *session) joinCreation() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.joined = sessionClean, true
}

// joinedUnwritten reports whether the session joined a creation
// (joinCreation) and is still clean, expecting nothing stored: only such
// a session may have to create the secret at its release (createAlone).
func (s *session) joinedUnwritten() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joined && s.state == sessionClean && s.expected.Version == store.Absent
}

// createAlone makes a joined session that is still clean commit the
// empty value a creation commits at its release: its creator is gone
// without committing (see Handle.Release).
func (s *session) createAlone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.joined && s.state == sessionClean && s.expected.Version == store.Absent {
		s.setState(sessionPending)
	}
}

// rebasable reports whether a lock granted now should move the session
// to meta (see rebase). s.mu must be held.
func (s *session) rebasableLocked(meta store.Meta) bool {
	if meta.Version <= s.expected.Version {
		return false // not newer: the session's own commit may have landed after meta was read
	}
	switch s.state {
	case sessionClean:
		return true
	case sessionPending, sessionClosing:
		return len(s.buf) == 0 && len(s.spans) == 0 // truncated to nothing
	}
	return false
}

// rebasable reports whether rebase(meta) would move the session, and
// whether it would need meta's value (an appending session's writes do).
func (s *session) rebasable(meta store.Meta) (ok, needsValue bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok = s.rebasableLocked(meta)
	return ok, ok && s.appendTo && s.state == sessionClean
}

// rebase makes the session expect meta, a revision newer than the one it
// expects, if it has written nothing since its open or last commit (a
// truncation to nothing is not such a write: its value never depended on
// what it replaced), and forget a value it loaded, which load reads again
// when something needs it (see Handle.Locked); value, if not nil, is
// meta's, loaded already (an appending session needs it). It reports
// whether it took value; else the caller wipes it.
func (s *session) rebase(meta store.Meta, load loadFunc, value crypto.Plaintext) (took bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rebasableLocked(meta) {
		return false
	}
	if s.state == sessionClean {
		s.buf.Wipe()
		s.buf, s.spans, s.loaded = nil, nil, false
		if value != nil {
			s.buf, s.loaded, took = value, true, true
		}
	}
	s.meta, s.expected, s.load, s.joined = meta, meta.Revision(), load, false
	if s.state != sessionClean {
		s.meta.Size = 0
	}
	return took
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

// movedOn ends the moment after the open if thread tid opened the
// session: that thread has opened another since.
func (s *session) movedOn(tid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.thread == tid {
		s.used()
	}
}

// ensure loads the value unless it is loaded, or nothing needs it any
// more, and lays the overlay over it. It does not hold the lock while it
// loads: writes meanwhile go to the overlay, and are laid over the value
// too. A failed load fails only the request that needed it (but a commit
// that cannot load fails the session: see commit).
func (s *session) ensure(ctx context.Context) error {
	s.mu.Lock()
	if s.loaded || s.state == sessionFailed || s.state == sessionOrphaned || s.state == sessionReleased {
		s.mu.Unlock()
		return nil
	}
	load, k, meta := s.load, s.key, s.meta
	s.mu.Unlock()
	v, err := load(ctx, k, meta)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded || s.state == sessionFailed || s.state == sessionReleased {
		v.Wipe() // loaded meanwhile, truncated to nothing, or discarded
		return nil
	}
	// The value, as long as the longer of it and the writes, with every
	// range written replaced by what was written.
	v = resize(v, max(int64(len(v)), int64(len(s.buf))))
	for _, sp := range s.spans {
		copy(v[sp.start:sp.end], s.buf[sp.start:sp.end])
	}
	s.buf.Wipe()
	s.buf, s.spans, s.loaded = v, nil, true
	return nil
}

// busy reports whether requests about the secret must wait for this
// session: it is closing (its release is coming), or its release owes a
// commit, which is loading or committing. A commit on close or fsync is
// not waited for: the syscall that makes it has not returned, so nothing
// can depend on it yet. s.mu must be held.
func (s *session) busyLocked() bool {
	switch s.state {
	case sessionClosing:
		return true
	case sessionPending, sessionDirty, sessionCommitting:
		return s.releasing
	}
	return false
}

// busy is busyLocked for callers that do not hold s.mu.
func (s *session) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busyLocked()
}

// change runs f, which changes the state, and tells onChange if busy
// changed. s.mu must be held.
func (s *session) change(f func()) {
	was := s.busyLocked()
	f()
	if s.busyLocked() != was && s.onChange != nil {
		s.onChange()
	}
}

// setState moves to next. s.mu must be held.
func (s *session) setState(next sessionState) {
	s.change(func() { s.state = next })
}

// metadata describes what the session's own descriptor sees: its buffer,
// or, until the value is loaded, as long as the longer of the value and
// the writes.
func (s *session) metadata() store.Meta {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meta
	m.Key = s.key
	if s.loaded {
		m.Size = int64(len(s.buf))
	} else {
		m.Size = max(m.Size, int64(len(s.buf)))
	}
	return m
}

// read copies the buffer at off into dest, loading the value first.
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

// write puts data at off (the end, for O_APPEND) on behalf of owner. It
// never waits for anything but s.mu, which nobody holds across the
// network: a value not loaded yet is written as an overlay. A value over
// max fails the session: what the writer meant cannot be stored, and the
// part written must not be committed.
func (s *session) write(owner uint64, data []byte, off, max int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used()
	switch s.state {
	case sessionFailed:
		return 0, s.failed()
	case sessionReleased:
		return 0, fault.E(s.key.Path(), fault.Invalid, "written after its release")
	}
	if s.appendTo {
		if !s.loaded {
			// The open loads the value of an appending file; nothing
			// unloads it.
			return 0, fault.E(s.key.Path(), "an append to a file whose value was not loaded at open")
		}
		off = int64(len(s.buf))
	}
	end := off + int64(len(data))
	if end > max {
		s.fail(tooLarge(s.key, end, max))
		return 0, s.failed()
	}
	if end > int64(len(s.buf)) {
		s.buf = resize(s.buf, end)
	}
	copy(s.buf[off:], data)
	if !s.loaded && len(data) > 0 {
		s.spans = addSpan(s.spans, span{off, end})
	}
	s.changedBy(owner)
	return len(data), nil
}

// truncate resizes the buffer. A truncation is not a write: it makes the
// session pending, not dirty, so that the shell that truncated a file for
// a redirection (`cmd > file`: open with O_TRUNC, hand the descriptor to
// the command, close its own copy) does not commit an empty value at that
// close; the command's writes and close commit the new one, and a
// truncation nobody writes after commits at the release (`: > file`).
// Truncating to 0 needs no value and discards the overlay; any other size
// loads the value first.
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
		return s.failed()
	case sessionOrphaned, sessionReleased:
		return nil
	}
	if size == 0 && !s.loaded {
		s.loaded, s.spans = true, nil
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
	s.failure, s.told = err, false
	s.buf.Wipe()
	s.buf, s.spans = nil, nil
	clear(s.writers)
	s.setState(sessionFailed)
}

// failed returns the failure to report: itself the first time, which the
// caller logs, and marked as repeated after that, so that each failure
// is logged once however many closes report it. s.mu must be held.
func (s *session) failed() error {
	if s.told {
		return Repeated{s.failure}
	}
	s.told = true
	return s.failure
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
func (s *session) flush(c Caller) (flushAction, error) {
	s.lockIdle()
	defer s.mu.Unlock()
	switch s.state {
	case sessionFailed:
		return flushReport, s.failed()
	case sessionClean, sessionOrphaned, sessionReleased:
		return flushNothing, nil
	}
	wrote := s.writers[c.Owner] || s.writers[AnyOwner]
	onlyCreated := len(s.writers) == 0 // pending or closing: a truncation or creation, nothing written
	if !wrote && !onlyCreated {
		return flushNothing, nil
	}
	if c.KilledBy != 0 {
		s.fail(fault.E(s.key.Path(), "a process writing it was killed by signal "+strconv.Itoa(int(c.KilledBy))+
			" ("+c.KilledBy.String()+") before it closed the file; nothing written through this file is committed"))
		return flushReport, s.failed()
	}
	if wrote {
		return flushCommit, nil
	}
	if c.Process == s.opener && s.state == sessionPending {
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
		return false, s.failed()
	case sessionPending, sessionClosing, sessionDirty:
		return true, nil
	}
	return false, nil
}

// lockIdle locks s once no commit is in flight, for a close or an fsync,
// which decide from where the commit left the session. Only those wait
// for a commit; a write never does.
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

// commit commits the buffer with put, unless there is nothing to commit,
// loading the value first if the writes are still an overlay (a close,
// an fsync or a release may wait on the network; a write may not). The
// lock is not held while loading or while put runs: a stat or a write
// meanwhile does not wait. Whatever the failure, of the load or of put,
// the session fails: the buffer will never be committed later, and every
// later close says so.
func (s *session) commit(ctx context.Context, put commitFunc) (store.Meta, bool, error) {
	s.mu.Lock()
	for {
		for s.state == sessionCommitting {
			s.waitIdle()
		}
		switch s.state {
		case sessionFailed:
			defer s.mu.Unlock()
			return store.Meta{}, false, s.failed()
		case sessionPending, sessionClosing, sessionDirty:
		default:
			defer s.mu.Unlock()
			return store.Meta{}, false, nil
		}
		if s.loaded {
			break
		}
		s.mu.Unlock()
		err := s.ensure(ctx)
		s.mu.Lock()
		if err != nil && !s.loaded {
			switch s.state {
			case sessionPending, sessionClosing, sessionDirty:
				// The writes cannot be laid over a value that cannot
				// be read: they will never be committed.
				s.fail(err)
				defer s.mu.Unlock()
				return store.Meta{}, false, s.failed()
			}
		}
		// Loaded, or the session moved on meanwhile: decide again.
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
		return store.Meta{}, false, s.failed()
	}
	s.expected, s.meta = meta.Revision(), meta
	s.change(func() {
		s.releasing = false // the release's commit, if it was one, is done
		if s.written != written {
			s.state = sessionDirty // written during the commit: the next flush commits that
		} else {
			clear(s.writers)
			s.state = sessionClean
		}
	})
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
// new key. A session that expected old now expects the renamed item (and
// loads it, if it has not loaded the value yet); one that expected an
// earlier revision was already stale, and fails as it would have in
// place.
func (s *session) moved(old store.Revision, meta store.Meta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = meta.Key
	switch {
	case s.state == sessionFailed || s.state == sessionOrphaned || s.state == sessionReleased:
	case s.expected.Equal(old):
		s.expected, s.meta = meta.Revision(), meta
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
		s.change(func() { s.releasing = true })
		return true
	}
	return false
}

// release wipes the buffer; the session is done.
func (s *session) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Wipe()
	s.buf, s.spans = nil, nil
	s.change(func() {
		s.state = sessionReleased
		s.releasing = false
	})
}

// current returns the state, for tests and for the rules that ask whether
// a session still creates its secret.
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
