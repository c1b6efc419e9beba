package vfs

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Handle is one descriptor open for writing: a session of a secret. What
// is written through it stays private to it until the process that wrote
// closes it (Flush), an fsync, or the release commits it.
type Handle struct {
	v  *FS
	s  *Secret
	ss *session
	// signal marks the handle of the mount's own change signal (see
	// Caller.Own): it has no session, and every call on it changes
	// nothing.
	signal bool
	key    store.Key // of a signal handle
	opener Caller    // who opened it, to whom a commit at the release is due
	// released records, in Options.Changes, that the kernel released
	// the handle (see Changes.WritersReleased).
	released func()
	open     uint64 // the open file's number, which its locks go with (lockfs.go)
}

// signalHandle is the handle an open for writing by the mount's own
// change signal gets, for k.
func (v *FS) signalHandle(k store.Key) *Handle {
	return &Handle{v: v, signal: true, key: k, open: v.opens.Add(1)}
}

// errSignalHandle refuses what the change signal never does through its
// descriptor: reading or writing bytes.
func errSignalHandle(k store.Key) error {
	return fault.E(k.Path(), fault.NotSupported, "the descriptor of the mount's own change signal neither reads nor writes")
}

// Writes reports whether an open with flags may change the file: it then
// makes a session, which records who opened it (Caller.Process).
func Writes(flags uint32) bool {
	return flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
}

// needsValue reports whether an open for writing with flags surely needs
// the current value: to read it, or to append to it (which loads it at
// open: see openWriter). Such an open on a mount that cannot read fails at
// once. (An open for writing only may also be an edit in place, which
// needs the value too, at its commit; but O_TRUNC does not reach the open
// (the kernel sends it as a truncation after it), so such an open may as
// well replace the value whole, and only its commit can tell.)
func needsValue(flags uint32) bool {
	return flags&syscall.O_ACCMODE != syscall.O_WRONLY || flags&syscall.O_APPEND != 0
}

// Create makes the secret k, or opens it for writing if it exists after
// all (the kernel believed the name free; another host may have made it
// since): the open of O_CREAT, with flags. Nothing is stored until the
// handle commits: the new value is committed whole, on the condition that
// no secret of that name appeared in the meantime. The Entry says what the
// name now points at: the stored revision, or (Created, held for the
// caller) the secret being created here. Caller: Thread, Process, and the
// audit fields.
func (v *FS) Create(ctx context.Context, c Caller, k store.Key, flags uint32) (*Handle, Entry, error) {
	h, e, err := v.create(ctx, c, k, flags)
	version := store.Version(0)
	if err == nil {
		version = h.ss.metadata().Version
	}
	v.audit(c, "open", k, store.Key{}, version, err)
	return h, e, err
}

func (v *FS) create(ctx context.Context, c Caller, k store.Key, flags uint32) (*Handle, Entry, error) {
	if err := v.writable(k.Path()); err != nil {
		return nil, Entry{}, err
	}
	if err := k.Validate(); err != nil {
		return nil, Entry{}, err
	}
	if err := v.shown(k.App); err != nil {
		return nil, Entry{}, err
	}
	if v.IsView(k) {
		return nil, Entry{}, fault.E(k.Path(), fault.Exist, "a view of the mount's config file is at that path")
	}
	s, done := v.opener(k)
	defer done()
	// As Secret.open: a creation of this mount whose release is about to
	// commit it is waited for.
	s.awaitClosingWriters()
	meta, err := v.cat.Verify(ctx, k)
	if err == nil && flags&syscall.O_EXCL != 0 {
		return nil, Entry{}, fault.E(k.Path(), fault.Exist)
	}
	if cerr := v.checkCreator(c, k, flags, err); cerr != nil {
		return nil, Entry{}, cerr
	}
	if err == nil && needsValue(flags) {
		if rerr := v.readable(k.Path()); rerr != nil {
			return nil, Entry{}, rerr
		}
	}
	h, err := v.openWriter(ctx, c, s, flags|syscall.O_CREAT, meta, err)
	if err != nil {
		return nil, Entry{}, err
	}
	if h.ss.metadata().Version != store.Absent {
		// It existed after all: the writer opens its current revision,
		// and the name may change at its first commit.
		return h, Entry{Meta: meta}, nil
	}
	s.Hold()
	return h, Entry{Meta: h.Meta(), Created: s}, nil
}

// Mknod makes the file k for c as mknod(2) asks, with mode's file type:
// a regular file is created empty, as creat(2) then close(2) would
// (committed at once; EEXIST if there is one); anything else is a special
// file, which no application holds (see NotOffered). The permission bits
// are the owner rules', as for any file created here.
func (v *FS) Mknod(ctx context.Context, c Caller, k store.Key, mode uint32) error {
	if mode&syscall.S_IFMT != syscall.S_IFREG {
		return v.NotOffered(k.Path(), "special files")
	}
	h, e, err := v.Create(ctx, c, k, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL)
	if err != nil {
		return err
	}
	if e.Created != nil {
		e.Created.Unhold()
	}
	return h.Release(ctx)
}

// openWriter starts a session on s for an open with flags, given what
// the store said of the secret (meta, or verr). A writer's expected
// revision is the store's, not the catalog's: only a real concurrent
// writer can make its commit fail.
func (v *FS) openWriter(ctx context.Context, c Caller, s *Secret, flags uint32, meta store.Meta, verr error) (*Handle, error) {
	k := s.Key()
	var load loadFunc
	joining := false
	switch {
	case fault.Is(fault.NotFound, verr):
		if cm, ok := s.creating(); ok {
			meta, joining = cm, true // another descriptor of this mount is creating it: race it
		} else if flags&syscall.O_CREAT != 0 {
			meta = store.Meta{Key: k, Version: store.Absent, Modified: time.Now()}
		} else {
			return nil, fault.E(k.Path(), fault.NotFound, "removed elsewhere")
		}
	case verr != nil:
		return nil, verr
	default:
		load = v.load
	}
	ss := newSession(k, meta, load, flags&syscall.O_APPEND != 0, c.Process, c.Thread, s.wake)
	if joining {
		// It found the name another is creating: it commits only what
		// it writes (or a truncation), never an empty value of its own
		// that would win the race against the creator's (touch, or
		// `exec 9<>f`, while `cmd > f` runs).
		ss.joinCreation()
	}
	if load != nil && flags&syscall.O_TRUNC != 0 {
		if err := ss.truncate(ctx, 0, v.cat.MaxValueSize()); err != nil {
			return nil, err
		}
	}
	if flags&syscall.O_APPEND != 0 {
		// Every write of an appending file goes to the end of the value:
		// load it now, so that no write waits for it. (O_TRUNC does not
		// reach the open, so `>>` after a truncation loads in vain;
		// nothing does that.)
		if err := ss.ensure(ctx); err != nil {
			ss.release()
			return nil, err
		}
	}
	s.add(ss)
	return &Handle{v: v, s: s, ss: ss, opener: c, released: v.opts.Changes.opened(), open: v.opens.Add(1)}, nil
}

// load reads the value a session edits (see loadFunc), when something
// needs all of it: an append at open, a read through the writer's
// descriptor, a truncation to a size other than 0, or the commit of
// writes laid over it. A mount with only a public key cannot. A revision
// the store no longer holds cannot be edited: another writer replaced or
// removed it first, the conflict the commit would have met.
func (v *FS) load(ctx context.Context, k store.Key, meta store.Meta) (crypto.Plaintext, error) {
	if err := v.readable(k.Path()); err != nil {
		return nil, err
	}
	snap := v.cat.Snapshot(k, meta)
	defer snap.Release()
	val, err := snap.Value(ctx)
	if secrets.AsSuperseded(err) != nil || fault.Is(fault.NotFound, err) {
		return nil, fault.E(k.Path(), fault.Conflict, "replaced or removed by another writer before what was written here could be laid over it", err)
	}
	return val, err
}

// Locked tells h that its opener was just granted a lock of its secret
// (flock, fcntl): a descriptor opened before the lock then edits what the
// lock's last holder committed, not what was stored at its open (the
// usual pattern: open, lock, read, write, close). A session that has
// written nothing since its open or last commit (a truncation to nothing
// is not a write) moves the revision its commit expects to the one
// stored now, and forgets a value it loaded; an appending one loads the
// new one. One that wrote keeps the revision it wrote over, and meets a
// change made meanwhile as a conflict at its commit, as before.
func (h *Handle) Locked(ctx context.Context) error {
	if h.signal || h.ss == nil {
		return nil
	}
	k := h.ss.metadata().Key
	// What the catalog knows, without asking the store: locks are this
	// mount's, so the last holder's commit went through its catalog.
	meta, ok := h.v.cat.Known(k)
	if !ok {
		return nil
	}
	rebase, needsValue := h.ss.rebasable(meta)
	if !rebase {
		return nil
	}
	var value crypto.Plaintext
	if needsValue {
		var err error
		if value, err = h.v.load(ctx, k, meta); err != nil {
			return err // the session keeps the revision and value it had
		}
	}
	if !h.ss.rebase(meta, h.v.load, value) {
		value.Wipe()
	}
	return nil
}

// Closing reports whether the handle's session is closing: its opener
// closed a descriptor, and its release owes a commit.
func (h *Handle) Closing() bool { return !h.signal && h.ss.current() == sessionClosing }

// Meta describes what the descriptor sees: its buffer (see
// session.metadata).
func (h *Handle) Meta() store.Meta {
	if h.signal {
		return store.Meta{Key: h.key}
	}
	return h.ss.metadata()
}

// Attr is the descriptor's attributes (an fstat): its buffer's.
func (h *Handle) Attr() Attr { return h.v.fileAttr(h.Meta(), 1) }

// Read copies the buffer at off into dest, loading the value first.
func (h *Handle) Read(ctx context.Context, dest []byte, off int64) (int, error) {
	if h.signal {
		return 0, errSignalHandle(h.key)
	}
	return h.ss.read(ctx, dest, off)
}

// Write puts data at off into the buffer (at its end, for O_APPEND) on
// behalf of c.Owner. It never waits for the store or the keys. A value
// over the store's limit fails the write and the handle: nothing written
// through it is committed.
func (h *Handle) Write(c Caller, data []byte, off int64) (int, error) {
	if h.signal {
		return 0, errSignalHandle(h.key)
	}
	return h.ss.write(c.Owner, data, off, h.v.cat.MaxValueSize())
}

// Truncate resizes the buffer (see session.truncate: a truncation is not
// a write, and commits at the release if nobody writes after it).
func (h *Handle) Truncate(ctx context.Context, size int64) error {
	if h.signal {
		return nil
	}
	return h.ss.truncate(ctx, size, h.v.cat.MaxValueSize())
}

// Flush is a close(2) of a descriptor of the handle by c (Owner, Process,
// KilledBy, and the audit fields). A process that wrote through it
// commits; a child closing an inherited copy, a shell closing its copy of
// a redirection, or a process killed by a signal commits nothing (see
// session.flush). An error means nothing of the buffer is ever committed.
//
// Then it releases the record locks c.Owner took through this open file
// (POSIX: a close releases the closer's locks), once what they guarded is
// committed; unless the session is closing, whose release owes the
// commit and releases them after it.
func (h *Handle) Flush(ctx context.Context, c Caller) error {
	err := h.flush(ctx, c)
	if !h.Closing() {
		h.v.locks.ReleaseOwner(h.open, c.Owner)
	}
	return err
}

// flush is Flush but for the locks.
func (h *Handle) flush(ctx context.Context, c Caller) error {
	if h.signal {
		return nil
	}
	action, err := h.ss.flush(c)
	switch action {
	case flushReport:
		return err
	case flushCommit:
		return h.commit(ctx, c, "close", nil)
	}
	if h.ss.current() == sessionClosing && h.v.opts.Events != nil {
		// Views read nothing new yet: told the cache alone (not tell).
		h.v.opts.Events(Event{Kind: CommitAtRelease, Key: h.Meta().Key})
	}
	return nil
}

// Fsync commits what is pending, as a close by the writer does; a
// failure is reported by this and every later fsync and close.
func (h *Handle) Fsync(ctx context.Context, c Caller) error {
	if h.signal {
		return nil
	}
	need, err := h.ss.fsyncNeeded()
	switch {
	case err != nil:
		return err
	case need:
		return h.commit(ctx, c, "fsync", nil)
	}
	return nil
}

// Release is the last close: it commits what no close committed (a
// creation or truncation nobody wrote to, `: > file`, touch), whose
// failure it returns for the caller to log (nobody else will hear of it),
// then wipes the buffer and releases every lock taken through the open
// file (Discard), after that commit. The kernel's RELEASE names no caller (it may
// come after the writer exited): the commit is the opener's, and is
// audited as theirs.
func (h *Handle) Release(ctx context.Context) error {
	if h.signal {
		return nil
	}
	if h.ss.joinedUnwritten() && !h.s.creatingBesides(h.ss) {
		if _, stored := h.v.cat.Known(h.ss.metadata().Key); !stored {
			// It joined a creation whose creator is gone without
			// committing: it creates the secret, as its opener (touch)
			// meant.
			h.ss.createAlone()
		}
	}
	var err error
	if h.ss.releaseNeeded() {
		err = h.commit(ctx, h.opener, "release", h.released)
	}
	h.Discard()
	return err
}

// Discard releases the handle, and every lock taken through it, without
// committing anything: for a handle the caller could not hand on, and the
// end of Release.
func (h *Handle) Discard() {
	defer h.v.locks.ReleaseOpen(h.open) // after the commit Release may have made
	if h.signal {
		return
	}
	h.ss.release()
	h.s.remove(h.ss)
	h.released()
}

// commit commits the session and points the name at the new revision
// before it returns (Committed), so that the writer's next command reads
// what it wrote. Once begun it is not interrupted: the store decides it
// whole or not at all, within the backend's deadline, and the caller
// learns which. when names the request ("close", "fsync", "release");
// begun, if not nil, is called once the change is counted in flight
// (Changes.begin).
func (h *Handle) commit(ctx context.Context, c Caller, when string, begun func()) error {
	v := h.v
	// The change ends once recorded: the audit log and the log hear of it
	// before a stop lets the process end. A change the stop refuses fails
	// the session as any failed commit does: reported once, by this and
	// every later close, and never tried again.
	end := func() {}
	defer func() { end() }()
	meta, committed, err := h.ss.commit(ctx, func(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error) {
		began, err := v.opts.Changes.begin(k.Path())
		if err != nil {
			return store.Meta{}, err
		}
		end = began
		if begun != nil {
			begun()
		}
		meta, err := v.cat.Put(context.WithoutCancel(ctx), k, value, expected)
		if fault.Is(fault.Exist, err) {
			// Created meanwhile by another writer, who won, as any
			// concurrent writer does.
			err = fault.E(k.Path(), fault.Conflict, "created concurrently", err)
		}
		return meta, err
	})
	k := h.ss.metadata().Key
	var again Repeated
	if committed || (err != nil && !errors.As(err, &again)) {
		v.recordCommit(c, k, meta, err, when)
	}
	switch {
	case err != nil && errors.Is(err, secrets.ErrOutcomeUnknown):
		// Neither committed nor lost, as far as anyone can tell: the
		// error says so.
		return fault.E(k.Path(), "this file commits nothing more", err)
	case err != nil:
		return fault.E(k.Path(), "the value written through this file was not committed, and is discarded", err)
	}
	return nil
}

// recordCommit records one attempt to commit k, by c, made at when
// ("close", "fsync", "release", "truncate"), whichever way it ended: the
// Committed hook and the audit log hear of each; one that landed (meta)
// is logged and told to the Event callback, before the request that made
// it returns.
func (v *FS) recordCommit(c Caller, k store.Key, meta store.Meta, err error, when string) {
	if v.opts.Committed != nil {
		v.opts.Committed(err)
	}
	v.audit(c, "commit", k, store.Key{}, meta.Version, err)
	if err != nil {
		return
	}
	v.log.WithFields(logrus.Fields{"secret": k.String(), "at": when, "version": int64(meta.Version), "size": meta.Size}).
		Info("secret written")
	v.emit(Committed, k)
}

// truncate truncates k (or zero-extends it) to size for a request that
// came without a descriptor. The truncation of an open with O_TRUNC comes
// so, right after the open, from the same thread (c.Thread): it goes to
// the session that open made. Any other (truncate(2)) commits at once:
// there is no descriptor to buffer it in.
func (v *FS) truncate(ctx context.Context, c Caller, k store.Key, size int64) error {
	limit := v.cat.MaxValueSize()
	s := v.secret(k)
	if s != nil {
		if ss := s.justOpenedBy(c.Thread); ss != nil {
			return ss.truncate(ctx, size, limit)
		}
	}
	if err := v.writable(k.Path()); err != nil {
		return err
	}
	if size > limit {
		return tooLarge(k, size, limit)
	}
	if size > 0 {
		if err := v.readable(k.Path()); err != nil {
			return err
		}
	}
	if s != nil {
		s.awaitClosingWriters()
	}
	meta, err := v.cat.Verify(ctx, k)
	if err != nil {
		return err
	}
	var val crypto.Plaintext
	if size > 0 {
		snap := v.cat.Snapshot(k, meta)
		val, err = snap.Value(ctx)
		snap.Release()
		if err != nil {
			return err
		}
	}
	val = resize(val, size)
	end, err := v.opts.Changes.begin(k.Path())
	if err != nil {
		val.Wipe()
		v.recordCommit(c, k, store.Meta{}, err, "truncate")
		return err
	}
	defer end()
	meta, err = v.cat.Put(ctx, k, val, meta.Revision())
	val.Wipe()
	v.recordCommit(c, k, meta, err, "truncate")
	return err
}
