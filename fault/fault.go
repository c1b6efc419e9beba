// Package fault is secretfs's one error type. Every layer reports failures
// as a *fault.Error carrying the operation, the secret's path and a Kind;
// each Kind's errno, log level and metric label are in one table
// (kinds.go), which the file system applies in exactly one place
// (fs/errno.go, which adds only ESTALE for vfs.ErrLookUpAgain). Messages
// name secrets and operations, never values: no plaintext may ever be
// placed in an Error.
//
// An Error prints as "op: path: kind: message: cause", leaving out what is
// empty. Wrapping says each thing once, as Upspin's errors.E does:
//
//   - An *Error that is the cause of another does not repeat the op or
//     the path of the one around it (or, when that one names none, of the
//     nearest one out that does): E(Op("cache.Bind"), Path("app/db"),
//     inner), with inner about "app/db", prints "cache.Bind: app/db: ..."
//     and then inner without its path. An *Error behind a fmt.Errorf
//     prints itself whole: to add words, give E a message instead.
//   - The kind is said once, by the innermost Error of a run of that kind:
//     an Error whose nearest classified cause (at any depth) is of the
//     same Kind leaves its own out.
//   - A message and a cause are both kept: E(Conflict, "created
//     concurrently", err) prints the message and then err.
//
// The fields themselves are never changed by wrapping: only the printing
// leaves repeats out, so errors.Is and errors.As see every Error as built.
package fault

import (
	"context"
	"errors"
	"strings"
)

// Kind classifies an error by what a caller can do about it. The list is
// append-only: the file system, the CLI and the metrics depend on the
// meaning of each value. What each Kind is (its name, errno, log level and
// metric label) is in one table, kinds.go.
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
	NoSpace                  // the store's disk is full: the write that did not fit was not made
	Locked                   // an advisory lock another owner holds
	Interrupted              // a signal ended a wait (for a lock), as the kernel asked
	StoreGone                // the store's file is no longer at its path (removed, moved, replaced): a write is refused, or is in the file that went, not at the path
	NoLocks                  // a secret holds as many advisory locks as it may: the request for another changed nothing

	kindCount // not a Kind: the number of Kinds, for the tests that visit each
)

// Op names the operation that failed, as "package.Method", e.g. "sqlite.Put".
type Op string

// Path names what the operation was about: "app/name", or "app".
type Path string

// Error is the one error type of secretfs.
type Error struct {
	Op   Op
	Path Path
	Kind Kind
	Msg  string // what happened, in words, beyond the Kind; may be empty
	Err  error  // the underlying cause; may be nil
}

// E builds an *Error from its arguments, which may come in any order:
// an Op, a Path, a Kind, a string (the message) or an error (the cause).
// When an argument of one type is given more than once, the last one
// wins. A nil error is ignored. When no Kind (or Other) is given, the
// cause's Kind is inherited, so wrapping keeps the classification.
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
		case string:
			e.Msg = a
		case nil:
		case error:
			e.Err = a
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
	return e.text(true)
}

// Message is err as a person at a terminal should read it: Error without
// the operation names, which tell where in secretfs a failure arose and
// belong in logs, not in what a command says. Behind a fmt.Errorf, the
// first *Error in err's chain is printed so, in place; an error with no
// *Error in its chain prints as Error does.
func Message(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	if error(e) == err {
		return e.text(false)
	}
	return strings.Replace(err.Error(), e.Error(), e.text(false), 1)
}

// text is e printed, with its ops or without.
func (e *Error) text(ops bool) string {
	var b strings.Builder
	e.print(&b, "", "", Other, ops)
	if b.Len() == 0 {
		return Other.String()
	}
	return b.String()
}

// print appends e to b. saidOp, saidPath and saidKind are the op, path
// and kind the enclosing Errors already printed, which e leaves out (see
// the package comment); ops says whether ops are printed at all.
func (e *Error) print(b *strings.Builder, saidOp Op, saidPath Path, saidKind Kind, ops bool) {
	add := func(s string) {
		if s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(s)
	}
	if ops && e.Op != saidOp {
		add(string(e.Op))
	}
	if e.Op != "" {
		saidOp = e.Op
	}
	if e.Path != saidPath {
		add(string(e.Path))
	}
	if e.Path != "" {
		saidPath = e.Path
	}
	if e.Kind != Other && e.Kind != saidKind && kindSaidBy(e.Err) != e.Kind {
		add(e.Kind.String())
		saidKind = e.Kind
	}
	add(e.Msg)
	if inner, ok := e.Err.(*Error); ok {
		inner.print(b, saidOp, saidPath, saidKind, ops)
	} else if e.Err != nil {
		add(withoutRepeats(e.Err, saidOp, saidPath, saidKind, ops))
	}
}

// withoutRepeats is err, which is no *Error, printed with the first
// *Error in its chain (behind fmt's wrapping: "%w (%w)") printed as
// print prints a wrapped one, without the op and path said already.
func withoutRepeats(err error, saidOp Op, saidPath Path, saidKind Kind, ops bool) string {
	s := err.Error()
	var inner *Error
	if !errors.As(err, &inner) {
		return s
	}
	var b strings.Builder
	inner.print(&b, saidOp, saidPath, saidKind, ops)
	return strings.Replace(s, inner.Error(), b.String(), 1)
}

// kindSaidBy is the Kind that err's message states: that of the
// outermost *Error in its chain with a Kind other than Other, which
// prints it (or leaves it to one further in of the same Kind).
func kindSaidBy(err error) Kind {
	for ; err != nil; err = errors.Unwrap(err) {
		if fe, ok := err.(*Error); ok && fe.Kind != Other {
			return fe.Kind
		}
	}
	return Other
}

func (e *Error) Unwrap() error { return e.Err }

// Names reports whether err's message names p: some *Error in its tree
// (through fmt's wrapping, and errors.Join's) is about p. A log line adds
// the path it is about only when the error does not name it already.
func Names(err error, p Path) bool {
	switch e := err.(type) {
	case nil:
		return false
	case *Error:
		if e.Path == p {
			return true
		}
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			if Names(inner, p) {
				return true
			}
		}
		return false
	}
	return Names(errors.Unwrap(err), p)
}

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
