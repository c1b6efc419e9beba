package fs

import (
	"context"
	"errors"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// openWriter starts a session on s for an open with flags, given what
// the store said of the secret (meta, or verr). A writer's expected
// revision is the store's, not the catalog's: only a real concurrent
// writer can make its commit fail.
func (m *mount) openWriter(ctx context.Context, s *secretState, flags uint32, meta store.Meta, verr error) (*writeHandle, error) {
	k := s.currentKey()
	var load loadFunc
	switch {
	case fault.Is(fault.NotFound, verr):
		if cm, ok := s.creating(); ok {
			meta = cm // another descriptor of this mount is creating it: race it
		} else if flags&syscall.O_CREAT != 0 {
			meta = store.Meta{Key: k, Version: store.Absent, Modified: time.Now()}
		} else {
			return nil, fault.E(k.Path(), fault.NotFound, "removed elsewhere")
		}
	case verr != nil:
		return nil, verr
	default:
		load = m.load
	}
	ss := newSession(k, meta, load, flags&syscall.O_APPEND != 0, m.process(ctx), threadOf(ctx), s.wake)
	if load != nil && flags&syscall.O_TRUNC != 0 {
		if err := ss.truncate(ctx, 0, m.cat.MaxValueSize()); err != nil {
			return nil, err
		}
	}
	if flags&syscall.O_APPEND != 0 {
		// Every write of an appending file goes to the end of the value:
		// load it now, so that no write waits for it. (O_TRUNC does not
		// reach OPEN, so `>>` after a truncation loads in vain; nothing
		// does that.)
		if err := ss.ensure(ctx); err != nil {
			ss.release()
			return nil, err
		}
	}
	s.add(ss)
	return &writeHandle{m: m, s: s, ss: ss}, nil
}

// load reads the value a session edits (see loadFunc), when something
// needs all of it: an append at open, a read through the writer's
// descriptor, a truncation to a size other than 0, or the commit of
// writes laid over it. A mount with only a public key cannot. A revision
// the store no longer holds cannot be edited: another writer replaced or
// removed it first, the conflict the commit would have met.
func (m *mount) load(ctx context.Context, k store.Key, meta store.Meta) (crypto.Plaintext, error) {
	if err := m.readable(k.Path()); err != nil {
		return nil, err
	}
	snap := m.cat.Snapshot(k, meta)
	defer snap.Release()
	v, err := snap.Value(ctx)
	if secrets.AsSuperseded(err) != nil || fault.Is(fault.NotFound, err) {
		return nil, fault.E(k.Path(), fault.Conflict, "replaced or removed by another writer before what was written here could be laid over it", err)
	}
	return v, err
}

// truncateByPath truncates k (or zero-extends it) to size for a SETATTR
// that came without a descriptor. The truncation of an open with O_TRUNC
// comes so, right after the open, from the same thread: it goes to the
// session that open made. Any other (truncate(2)) commits at once: there
// is no descriptor to buffer it in.
func (m *mount) truncateByPath(ctx context.Context, s *secretState, k store.Key, size int64) syscall.Errno {
	const op = "truncate"
	if s != nil {
		if ss := s.justOpenedBy(threadOf(ctx)); ss != nil {
			if err := ss.truncate(ctx, size, m.cat.MaxValueSize()); err != nil {
				return m.errno(op, k.Path(), err)
			}
			return 0
		}
	}
	if err := m.writable(k.Path()); err != nil {
		return m.errno(op, k.Path(), err)
	}
	if size > m.cat.MaxValueSize() {
		return m.errno(op, k.Path(), tooLarge(k, size, m.cat.MaxValueSize()))
	}
	if size > 0 {
		if err := m.readable(k.Path()); err != nil {
			return m.errno(op, k.Path(), err)
		}
	}
	if s != nil {
		s.settle()
	}
	meta, err := m.cat.Verify(ctx, k)
	if err != nil {
		return m.errno(op, k.Path(), err)
	}
	var v crypto.Plaintext
	if size > 0 {
		snap := m.cat.Snapshot(k, meta)
		v, err = snap.Value(ctx)
		snap.Release()
		if err != nil {
			return m.errno(op, k.Path(), err)
		}
	}
	v = resize(v, size)
	_, err = m.cat.Put(ctx, k, v, meta.Revision())
	v.Wipe()
	if err != nil {
		return m.errno(op, k.Path(), err)
	}
	if parent := m.root.GetChild(k.App); parent != nil {
		m.notify.entryBeforeReply(parent, k.Name)
	}
	return 0
}

// writeHandle is one open descriptor of a draft: a session.
type writeHandle struct {
	m  *mount
	s  *secretState
	ss *session
}

var (
	_ gofs.FileReader   = (*writeHandle)(nil)
	_ gofs.FileWriter   = (*writeHandle)(nil)
	_ gofs.FileFlusher  = (*writeHandle)(nil)
	_ gofs.FileFsyncer  = (*writeHandle)(nil)
	_ gofs.FileReleaser = (*writeHandle)(nil)
)

func (h *writeHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.ss.read(ctx, dest, off)
	if err != nil {
		return nil, h.m.errno("read", h.ss.metadata().Path(), err)
	}
	return wipingResult(dest[:n]), 0
}

func (h *writeHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.ss.write(h.m.requests.owner(ctx), data, off, h.m.cat.MaxValueSize())
	clear(data) // go-fuse's request buffer, which it reuses: the bytes are in the session now
	if err != nil {
		return 0, h.m.errno("write", h.ss.metadata().Path(), err)
	}
	return uint32(n), 0
}

// Flush runs on every close(2) of a descriptor of this handle.
func (h *writeHandle) Flush(ctx context.Context) syscall.Errno {
	c := h.m.callerOf(ctx)
	action, err := h.ss.flush(closer{owner: h.m.requests.owner(ctx), process: c.process, killedBy: h.m.killedBy(c)})
	switch action {
	case flushReport:
		return h.m.errno("close", h.ss.metadata().Path(), err)
	case flushCommit:
		return h.m.commit(ctx, h.s, h.ss, "close")
	}
	return 0
}

func (h *writeHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	need, err := h.ss.fsyncNeeded()
	switch {
	case err != nil:
		return h.m.errno("fsync", h.ss.metadata().Path(), err)
	case need:
		return h.m.commit(ctx, h.s, h.ss, "fsync")
	}
	return 0
}

// Release commits what no close committed (a creation or truncation
// nobody wrote to, `: > file`, touch), whose failure can only be logged,
// then wipes the buffer.
func (h *writeHandle) Release(ctx context.Context) syscall.Errno {
	if h.ss.releaseNeeded() {
		h.m.commit(ctx, h.s, h.ss, "release")
	}
	h.ss.release()
	h.s.remove(h.ss)
	h.s.forget()
	return 0
}

// commit commits a session and points the name at the new revision before
// the request returns, so that the writer's next command reads what it
// wrote. Once begun it is not interrupted: the store decides it whole or
// not at all, within the backend's deadline, and the caller learns which.
func (m *mount) commit(ctx context.Context, s *secretState, ss *session, when string) syscall.Errno {
	meta, committed, err := ss.commit(ctx, func(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error) {
		meta, err := m.cat.Put(context.WithoutCancel(ctx), k, value, expected)
		if fault.Is(fault.Exist, err) {
			// Created meanwhile by another writer, who won, as any
			// concurrent writer does.
			err = fault.E(k.Path(), fault.Conflict, "created concurrently", err)
		}
		return meta, err
	})
	var again repeated
	if committed || (err != nil && !errors.As(err, &again)) {
		if m.opts.Committed != nil {
			m.opts.Committed(err)
		}
		m.audit(ctx, "commit", ss.metadata().Key, store.Key{}, meta.Version, m.errnoOf(err))
	}
	k := ss.metadata().Key
	switch {
	case err != nil && errors.Is(err, secrets.ErrOutcomeUnknown):
		// Neither committed nor lost, as far as anyone can tell: the
		// error says so.
		return m.failure(when, k.Path(), err, "this file commits nothing more")
	case err != nil:
		return m.failure(when, k.Path(), err, "the value written through this file was not committed, and is discarded")
	case committed:
		m.log.WithFields(logrus.Fields{"secret": k.String(), "at": when, "version": int64(meta.Version), "size": meta.Size}).
			Info("secret written")
		if parent := m.root.GetChild(k.App); parent != nil {
			m.notify.entryBeforeReply(parent, k.Name)
		}
	}
	return 0
}
