package fault

import (
	"syscall"

	"github.com/sirupsen/logrus"
)

// kindInfo is what one Kind is, for everyone who reports it.
type kindInfo struct {
	name  string        // in messages: "op: path: name: ..."
	errno syscall.Errno // what a file system answers with
	level logrus.Level  // how loud a failure of this kind is logged
	label string        // its value of a metric's "kind" or "errno" label
}

// kinds is the one table of Kinds. Anything a file system cannot promise
// more about is EIO. Lookups of missing names are routine (shells probe
// for files) and logged for debugging only; a refused request is worth a
// warning; a failed decryption, a dead backend or a full disk is an
// error an operator must see.
var kinds = [...]kindInfo{
	Other:        {"error", syscall.EIO, logrus.ErrorLevel, "other"},
	NotFound:     {"not found", syscall.ENOENT, logrus.DebugLevel, "not_found"},
	Exist:        {"already exists", syscall.EEXIST, logrus.InfoLevel, "exist"},
	Conflict:     {"changed concurrently", syscall.ESTALE, logrus.WarnLevel, "conflict"}, // another writer committed first; reopen and retry
	Permission:   {"permission denied", syscall.EACCES, logrus.WarnLevel, "permission"},
	Invalid:      {"invalid argument", syscall.EINVAL, logrus.WarnLevel, "invalid"},
	NameTooLong:  {"name too long", syscall.ENAMETOOLONG, logrus.WarnLevel, "name_too_long"},
	TooLarge:     {"value too large", syscall.EFBIG, logrus.WarnLevel, "too_large"},
	NotEmpty:     {"not empty", syscall.ENOTEMPTY, logrus.InfoLevel, "not_empty"},
	ReadOnly:     {"read-only", syscall.EROFS, logrus.InfoLevel, "read_only"},
	Integrity:    {"integrity check failed", syscall.EIO, logrus.ErrorLevel, "integrity"},
	Unavailable:  {"backend unavailable", syscall.EIO, logrus.ErrorLevel, "unavailable"},
	NotSupported: {"not supported", syscall.ENOTSUP, logrus.InfoLevel, "not_supported"},
	NotPermitted: {"not permitted", syscall.EPERM, logrus.InfoLevel, "not_permitted"},
	CrossDevice:  {"cannot be moved in one step", syscall.EXDEV, logrus.DebugLevel, "cross_device"},        // mv(1) then copies and deletes, file by file
	NoSpace:      {"no space left on the store's disk", syscall.ENOSPC, logrus.ErrorLevel, "no_space"},     // the write that did not fit; what was stored is intact
	Locked:       {"locked", syscall.EAGAIN, logrus.DebugLevel, "locked"},                                  // F_SETLK, flock -n: the caller tries again or waits
	Interrupted:  {"interrupted", syscall.EINTR, logrus.DebugLevel, "interrupted"},                         // only a wait for a lock is interrupted; SA_RESTART retries it
	StoreGone:    {"the store's file is gone from its path", syscall.EIO, logrus.ErrorLevel, "store_gone"}, // an answer: the store at the path does not hold the write, and asking again changes nothing
	NoLocks:      {"no locks available", syscall.ENOLCK, logrus.WarnLevel, "no_locks"},                     // a program that locks without end, or one that fills the table on purpose
}

// info returns k's row, or Other's for a Kind the table lacks.
func (k Kind) info() kindInfo {
	if int(k) < len(kinds) && kinds[k].name != "" {
		return kinds[k]
	}
	return kinds[Other]
}

func (k Kind) String() string {
	if int(k) < len(kinds) && kinds[k].name != "" {
		return kinds[k].name
	}
	return "unknown error kind"
}

// Errno is the errno a file system answers a failure of kind k with.
func (k Kind) Errno() syscall.Errno { return k.info().errno }

// LogLevel is how loud a failure of kind k is logged.
func (k Kind) LogLevel() logrus.Level { return k.info().level }

// Label is k as a metric label value: its name in snake case.
func (k Kind) Label() string { return k.info().label }

// Answered reports whether err is the backend's answer (not found,
// refused, conflicting, failing authentication...) rather than its
// silence: no answer in time, throttling beyond retries, or an error it
// could not classify. An answer takes effect at once; silence is an
// outage, during which the last answers may still be served.
func Answered(err error) bool {
	switch KindOf(err) {
	case Unavailable, Other:
		return false
	}
	return true
}

// ConditionFailed reports whether err is the store's refusal of a
// conditional write: it holds another revision than the write expected
// (Conflict), or an item where the write expected none (Exist). Another
// writer won, unless the refusal was of the write's own resend, its first
// answer lost: secrets.Keeper asks the store which before it reports one.
func ConditionFailed(err error) bool {
	switch KindOf(err) {
	case Conflict, Exist:
		return true
	}
	return false
}
