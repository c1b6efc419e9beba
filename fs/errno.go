package fs

import (
	"errors"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/vfs"
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
// operation that fails returns through here (nil is 0, and logs
// nothing). err never holds plaintext (package fault's rule), so logging
// it is safe. The line names the operation (op: the request, "lookup",
// "close") and what it was about (p) once each: p is added only when err
// does not already name it.
//
// There is no EINTR: only a fatal signal interrupts a request, as on a
// local file system, and then nobody is left to read the answer. Backend
// calls run without the request's cancellation and end at their own
// deadline.
func (m *mount) errno(op string, p fault.Path, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	e := errnoOf(err)
	if errors.Is(err, vfs.ErrLookUpAgain) {
		// Routine: a revision replaced since the kernel cached the name,
		// a writer sent to its draft.
		m.log.WithField("op", op).Debug(err.Error())
		return e
	}
	level, ok := logLevel[fault.KindOf(err)]
	if !ok {
		level = logrus.ErrorLevel
	}
	msg := err.Error()
	var again vfs.Repeated
	if errors.As(err, &again) {
		// A session's failure, logged when it was first reported.
		level, msg = logrus.DebugLevel, "reported again, logged when it happened: "+msg
	}
	fields := logrus.Fields{"op": op, "errno": e.Error()}
	if p != "" && !names(err, p) {
		fields["path"] = string(p)
	}
	m.log.WithFields(fields).Log(level, msg)
	return e
}

// errnoOf is the errno err maps to, without logging it (errno does):
// what the caller sees, and what the audit log records. An open sent to
// look the name up again is ESTALE, which the kernel answers by retrying
// the open once with a fresh lookup.
func errnoOf(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, vfs.ErrLookUpAgain):
		return syscall.ESTALE
	}
	if e, ok := kindErrno[fault.KindOf(err)]; ok {
		return e
	}
	return syscall.EIO
}

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
