package fs

import (
	"errors"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/vfs"
)

// errno logs err once and returns the errno for it. Every file system
// operation that fails returns through here (nil is 0, and logs
// nothing). err never holds plaintext (package fault's rule), so logging
// it is safe. The line names the operation (op: the request, "lookup",
// "close") and what it was about (p) once each: p is added only when err
// does not already name it.
//
// Only a lock's wait answers EINTR (a signal interrupts fcntl(F_SETLKW)
// and flock(2) on a local file system too). Nothing else does: only a
// fatal signal interrupts a request, as on a local file system, and then
// nobody is left to read the answer. Backend calls run without the
// request's cancellation and end at their own deadline.
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
	level, msg := fault.KindOf(err).LogLevel(), err.Error()
	var again vfs.Repeated
	if errors.As(err, &again) {
		// A session's failure, logged when it was first reported.
		level, msg = logrus.DebugLevel, "reported again, logged when it happened: "+msg
	}
	fields := logrus.Fields{"op": op, "errno": e.Error()}
	if p != "" && !fault.Names(err, p) {
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
	return fault.KindOf(err).Errno()
}
