package fs

import (
	"errors"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/fault"
)

// kindErrno is the one mapping from error kinds to errnos. Anything not
// listed, and any error that is not a *fault.Error, is EIO: the kernel
// must never see an errno that promises more than we know.
var kindErrno = map[fault.Kind]syscall.Errno{
	fault.NotFound:     syscall.ENOENT,
	fault.Exist:        syscall.EEXIST,
	fault.Conflict:     syscall.ESTALE, // another writer committed first; reopen and retry
	fault.Permission:   syscall.EACCES,
	fault.Invalid:      syscall.EINVAL,
	fault.NameTooLong:  syscall.ENAMETOOLONG,
	fault.TooLarge:     syscall.EFBIG,
	fault.NotEmpty:     syscall.ENOTEMPTY,
	fault.ReadOnly:     syscall.EROFS,
	fault.NotSupported: syscall.ENOTSUP,
	fault.NotPermitted: syscall.EPERM,
	fault.CrossDevice:  syscall.EXDEV, // mv(1) then copies and deletes, file by file
	fault.Integrity:    syscall.EIO,
	fault.Unavailable:  syscall.EIO,
	fault.NoSpace:      syscall.ENOSPC, // the write that did not fit; what was stored is intact
}

// logLevel says how loud a failure of each kind is. Lookups of missing
// names are routine (shells probe for files); a refused request is worth a
// warning; a failed decryption or a dead backend is an error an operator
// must see.
var logLevel = map[fault.Kind]logrus.Level{
	fault.NotFound:     logrus.DebugLevel,
	fault.Exist:        logrus.InfoLevel,
	fault.Conflict:     logrus.WarnLevel,
	fault.Permission:   logrus.WarnLevel,
	fault.Invalid:      logrus.WarnLevel,
	fault.NameTooLong:  logrus.WarnLevel,
	fault.TooLarge:     logrus.WarnLevel,
	fault.NotEmpty:     logrus.InfoLevel,
	fault.ReadOnly:     logrus.InfoLevel,
	fault.NotSupported: logrus.InfoLevel,
	fault.NotPermitted: logrus.InfoLevel,
	fault.CrossDevice:  logrus.DebugLevel,
	fault.NoSpace:      logrus.ErrorLevel, // an operator must free space
}

// errno logs err once and returns the errno for it. Every file system
// operation that fails returns through here, or through failure. err
// never holds plaintext (package fault's rule), so logging it is safe.
//
// There is no EINTR: only a fatal signal interrupts a request, as on a
// local file system, and then nobody is left to read the answer. Backend
// calls run without the request's cancellation and end at their own
// deadline.
func (m *mount) errno(op string, p fault.Path, err error) syscall.Errno {
	return m.failure(op, p, err, "")
}

// failure is errno for a failure whose consequence for the caller's data
// the line says first (what). The line names the operation (op: the
// request, "lookup", "close") and what it was about (p) once each: p is
// added only when err does not already name it. A failure a session
// reports again (a later close of a writer whose commit failed) was
// logged when it happened, and is logged again for debugging only.
func (m *mount) failure(op string, p fault.Path, err error, what string) syscall.Errno {
	if err == nil {
		return 0
	}
	e := m.errnoOf(err)
	level, ok := logLevel[fault.KindOf(err)]
	if !ok {
		level = logrus.ErrorLevel
	}
	msg := err.Error()
	if what != "" {
		msg = what + ": " + msg
	}
	var rep repeated
	if errors.As(err, &rep) {
		level, msg = logrus.DebugLevel, "reported again, logged when it happened: "+msg
	}
	fields := logrus.Fields{"op": op, "errno": e.Error()}
	if p != "" && !names(err, p) {
		fields["path"] = string(p)
	}
	m.log.WithFields(fields).Log(level, msg)
	return e
}

// repeated is a failure reported again: a session's, which was logged
// the first time it was returned (see session.failed).
type repeated struct{ error }

func (r repeated) Unwrap() error { return r.error }

// names reports whether err's message names p: some *fault.Error in its
// tree is about p.
func names(err error, p fault.Path) bool {
	switch e := err.(type) {
	case nil:
		return false
	case *fault.Error:
		if e.Path == p {
			return true
		}
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			if names(inner, p) {
				return true
			}
		}
		return false
	}
	return names(errors.Unwrap(err), p)
}

// relookup sends the caller to look the name up again: ESTALE, which the
// kernel answers by retrying the open once with a fresh lookup. It is
// routine (a revision replaced since the kernel cached the name, a writer
// sent to its draft), so it is logged for debugging only.
func (m *mount) relookup(op string, p fault.Path, why string) syscall.Errno {
	m.log.WithFields(logrus.Fields{"op": op, "secret": string(p)}).Debug("looking the name up again: " + why)
	return syscall.ESTALE
}
