// Package fault is secretfs's one error type. Every layer reports failures
// as a *fault.Error carrying the operation, the secret's path and a Kind;
// the file system maps the Kind to an errno in exactly one place
// (fs/errno.go). Messages name secrets and operations, never values: no
// plaintext may ever be placed in an Error.
package fault

import (
	"context"
	"errors"
	"strings"
)

// Kind classifies an error by what a caller can do about it. The list is
// append-only: fs/errno.go and the CLI depend on the meaning of each value.
type Kind uint8

const (
	Other        Kind = iota // unclassified; becomes EIO
	NotFound                 // no such application or secret
	Exist                    // the item exists but was expected not to
	Conflict                 // the stored Version is not the expected one: a concurrent writer won
	Permission               // the backend or the key refused (AccessDenied, public key only)
	Invalid                  // bad input: a malformed name or argument
	NameTooLong              // a name over the length limit
	TooLarge                 // a value over the store's size limit
	NotEmpty                 // an application that still holds secrets
	ReadOnly                 // a write on a read-only mount
	Integrity                // authentication failed: tampered item, wrong key, malformed ciphertext
	Unavailable              // the backend did not answer in time, or kept throttling
	NotSupported             // an operation secretfs does not offer
	NotPermitted             // an operation the layout forbids: a file at the root, a directory in an application, chmod
	CrossDevice              // a move secretfs leaves to the caller, file by file (renaming an application)
)

var kindNames = [...]string{
	Other:        "error",
	NotFound:     "not found",
	Exist:        "already exists",
	Conflict:     "changed concurrently",
	Permission:   "permission denied",
	Invalid:      "invalid argument",
	NameTooLong:  "name too long",
	TooLarge:     "value too large",
	NotEmpty:     "not empty",
	ReadOnly:     "read-only",
	Integrity:    "integrity check failed",
	Unavailable:  "backend unavailable",
	NotSupported: "not supported",
	NotPermitted: "not permitted",
	CrossDevice:  "cannot be moved in one step",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown error kind"
}

// Op names the operation that failed, as "package.Method", e.g. "sqlite.Put".
type Op string

// Path names what the operation was about: "app/name", or "app".
type Path string

// Error is the one error type of secretfs.
type Error struct {
	Op   Op
	Path Path
	Kind Kind
	Err  error // the underlying cause; may be nil
}

// E builds an *Error from its arguments, which may come in any order:
// an Op, a Path, a Kind, an error (the cause) or a string (a message that
// becomes the cause). A nil error is ignored. When the cause is itself an
// *Error and no Kind is given, the cause's Kind is inherited, so wrapping
// keeps the classification.
func E(args ...any) error {
	e := &Error{}
	for _, a := range args {
		switch a := a.(type) {
		case Op:
			e.Op = a
		case Path:
			e.Path = a
		case Kind:
			e.Kind = a
		case nil:
		case error:
			e.Err = a
		case string:
			e.Err = errors.New(a)
		default:
			panic("fault.E: unexpected argument type")
		}
	}
	if e.Kind == Other {
		e.Kind = KindOf(e.Err)
	}
	return e
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(string(e.Op))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(string(e.Path))
		b.WriteString(": ")
	}
	inner, isFault := e.Err.(*Error)
	// Say the kind once: a wrapped *Error of the same kind already says it.
	if e.Kind != Other && !(isFault && inner.Kind == e.Kind) {
		b.WriteString(e.Kind.String())
		if e.Err != nil {
			b.WriteString(": ")
		}
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return strings.TrimSuffix(b.String(), ": ")
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf reports the Kind of err: that of the outermost *Error in its chain
// with a Kind other than Other. A deadline that expired or a cancelled
// context, anywhere in the chain, counts as Unavailable: the backend did
// not answer in time.
func KindOf(err error) Kind {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if fe, ok := e.(*Error); ok && fe.Kind != Other {
			return fe.Kind
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Unavailable
	}
	return Other
}

// Is reports whether err is of the given kind.
func Is(kind Kind, err error) bool {
	return err != nil && KindOf(err) == kind
}
