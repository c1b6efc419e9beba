package fault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestEInheritsKindOfWrappedFault(t *testing.T) {
	inner := E(Op("sqlite.Get"), Path("app/db"), NotFound)
	outer := E(Op("secrets.Get"), Path("app/db"), inner)
	if got := KindOf(outer); got != NotFound {
		t.Fatalf("KindOf(outer) = %v, want NotFound", got)
	}
	if !errors.Is(outer, inner) {
		t.Fatal("errors.Is(outer, inner) = false; Unwrap chain broken")
	}
}

func TestKindOfSeesThroughFmtWrapping(t *testing.T) {
	err := fmt.Errorf("context: %w", E(Conflict, "version 3 expected"))
	if !Is(Conflict, err) {
		t.Fatalf("Is(Conflict, %v) = false", err)
	}
}

func TestKindOfDeadlineIsUnavailable(t *testing.T) {
	err := E(Op("dynamodb.Get"), fmt.Errorf("send: %w", context.DeadlineExceeded))
	if got := KindOf(err); got != Unavailable {
		t.Fatalf("KindOf = %v, want Unavailable", got)
	}
}

func TestKindOfPlainErrorIsOther(t *testing.T) {
	if got := KindOf(errors.New("boom")); got != Other {
		t.Fatalf("KindOf = %v, want Other", got)
	}
	if Is(NotFound, nil) {
		t.Fatal("Is(NotFound, nil) = true")
	}
}

func TestErrorStringNamesOpPathKindOnce(t *testing.T) {
	inner := E(Op("sqlite.Put"), Path("app/db"), Conflict, "stored version is 4")
	outer := E(Op("secrets.Put"), Path("app/db"), inner)
	want := "secrets.Put: app/db: sqlite.Put: changed concurrently: stored version is 4"
	if got := outer.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
}

func TestENilCauseIsIgnored(t *testing.T) {
	var cause error
	err := E(Op("x.Y"), Path("app/db"), NotFound, cause)
	if got := err.Error(); got != "x.Y: app/db: not found" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestMessageAndCauseAreBothKept(t *testing.T) {
	cause := E(Op("memory.Put"), Path("app/db"), Conflict, "stored version is 4")
	err := E(Path("app/db"), Conflict, "created concurrently", cause)
	want := "app/db: created concurrently: memory.Put: changed concurrently: stored version is 4"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
	if !errors.Is(err, cause) {
		t.Fatal("errors.Is(err, cause) = false: the cause is not in the chain")
	}
}

func TestMessageAndPlainCauseAreBothKept(t *testing.T) {
	err := E(Op("sqlite.Open"), Permission, "cannot tighten the store's mode", errors.New("operation not permitted"))
	want := "sqlite.Open: permission denied: cannot tighten the store's mode: operation not permitted"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
}

func TestMessageAloneHasNoCause(t *testing.T) {
	err := E(Op("fs.Open"), Path("app/db"), NotFound, "removed elsewhere")
	if got, want := err.Error(), "fs.Open: app/db: not found: removed elsewhere"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if errors.Unwrap(err) != nil {
		t.Fatalf("Unwrap = %v, want nil: a message is not a cause", errors.Unwrap(err))
	}
}

// The example of issue 11: a path said by the wrapping Error is not said
// again by the wrapped one.
func TestWrappedErrorDoesNotRepeatThePath(t *testing.T) {
	inner := E(Path("billing/db"), Conflict, "stored version is 7")
	err := E(Op("cache.Bind"), Path("billing/db"), inner)
	want := "cache.Bind: billing/db: changed concurrently: stored version is 7"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
	// Printing leaves the path out; the wrapped Error still has it.
	if got := inner.(*Error).Path; got != "billing/db" {
		t.Fatalf("wrapping changed the inner Error's Path to %q", got)
	}
	if got := inner.Error(); got != "billing/db: changed concurrently: stored version is 7" {
		t.Fatalf("the inner Error on its own prints %q", got)
	}
}

func TestWrappedErrorDoesNotRepeatTheOp(t *testing.T) {
	inner := E(Op("sqlite.Put"), TooLarge, "protected value is 70000 bytes")
	err := E(Op("sqlite.Put"), Path("app/db"), inner)
	want := "sqlite.Put: app/db: value too large: protected value is 70000 bytes"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
}

// An Error behind fmt's wrapping ("%w (%w)", as a write whose outcome is
// unknown says why) does not repeat the op and path said further out.
func TestFmtWrappedErrorDoesNotRepeatThePathOrTheOp(t *testing.T) {
	sentinel := errors.New("the outcome is unknown")
	inner := E(Op("secrets.Put"), Path("app/db"), Unavailable, "no answer within 1s")
	err := E(Op("secrets.Put"), Path("app/db"), Unavailable, fmt.Errorf("%w (%w)", sentinel, inner))
	want := "secrets.Put: app/db: backend unavailable: the outcome is unknown (no answer within 1s)"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
	if !errors.Is(err, sentinel) || !errors.Is(err, inner) {
		t.Fatal("the chain lost what it wraps")
	}
}

// An Error between two that name the same path, naming none itself, does
// not let the path through twice.
func TestPathSaidFurtherOutIsNotRepeated(t *testing.T) {
	inner := E(Op("sqlite.Put"), Path("app/db"), Conflict)
	middle := E(Op("secrets.Put"), inner)
	err := E(Op("fs.Commit"), Path("app/db"), middle)
	want := "fs.Commit: app/db: secrets.Put: sqlite.Put: changed concurrently"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
}

func TestDifferentPathsAndOpsAreAllSaid(t *testing.T) {
	inner := E(Op("sqlite.Put"), Path("app/new"), Exist)
	err := E(Op("fs.Rename"), Path("app/old"), inner)
	want := "fs.Rename: app/old: sqlite.Put: app/new: already exists"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
}

func TestKindIsSaidOnceAcrossFmtWrapping(t *testing.T) {
	err := E(Op("cache.Bind"), Conflict, fmt.Errorf("settling: %w", E(Conflict, "version 3 expected")))
	want := "cache.Bind: settling: changed concurrently: version 3 expected"
	if got := err.Error(); got != want {
		t.Fatalf("Error() =\n %q\nwant\n %q", got, want)
	}
}

// A deadline's cause does not name the kind, so the Error does.
func TestUnavailableIsSaidOverADeadline(t *testing.T) {
	err := E(Op("dynamodb.Get"), Unavailable, context.DeadlineExceeded)
	if got, want := err.Error(), "dynamodb.Get: backend unavailable: context deadline exceeded"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestLastArgumentOfATypeWins(t *testing.T) {
	err := E(Op("a.A"), Op("b.B"), "first", "second", NotFound, Exist)
	if got, want := err.Error(), "b.B: already exists: second"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestEveryKindHasAName(t *testing.T) {
	for k := Other; k < kindCount; k++ {
		if k.String() == Kind(255).String() {
			t.Errorf("Kind %d has no name", k)
		}
	}
}

// Every Kind has one whole row in the table: a name, an errno, a label.
func TestEveryKindHasANameAnErrnoAndALabel(t *testing.T) {
	labels := map[string]Kind{}
	for k := Other; k < kindCount; k++ {
		if k.String() == "unknown error kind" || k.Errno() == 0 || k.Label() == "" {
			t.Errorf("kind %d: name %q, errno %d, label %q", k, k.String(), k.Errno(), k.Label())
		}
		if other, dup := labels[k.Label()]; dup {
			t.Errorf("kinds %d and %d share the label %q", other, k, k.Label())
		}
		labels[k.Label()] = k
	}
	if got := Kind(200).Errno(); got != syscall.EIO {
		t.Errorf("an unknown kind answers %v, want EIO", got)
	}
}

func TestAnswerOrSilence(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{E(NotFound), true},
		{E(Permission), true},
		{E(Integrity), true},
		{E(Conflict), true},
		{E(Unavailable), false},
		{E("unclassified"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := Answered(c.err); got != c.want {
			t.Errorf("Answered(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A conditional write's condition failed for exactly two Kinds, whatever
// wraps them: the store holds another revision (Conflict) or an item
// where none was expected (Exist).
func TestConditionFailedIsConflictOrExist(t *testing.T) {
	for k := Other; k < kindCount; k++ {
		want := k == Conflict || k == Exist
		if got := ConditionFailed(E(Op("store.Put"), Path("app/db"), k)); got != want {
			t.Errorf("ConditionFailed(%v) = %v, want %v", k, got, want)
		}
	}
	if !ConditionFailed(fmt.Errorf("commit: %w", E(Exist))) {
		t.Error("an Exist behind fmt's wrapping: the condition did not fail")
	}
	if ConditionFailed(nil) {
		t.Error("no error: the condition failed")
	}
}

// Message, what the CLI prints, says the path, kind, message and cause,
// and no op at any depth; a plain error prints as itself.
func TestMessageLeavesOutEveryOp(t *testing.T) {
	inner := E(Op("store.ValidName"), Invalid, "name contains '/' or NUL")
	err := E(Op("secrets.Get"), Path("app/x/y"), E(Op("sqlite.Get"), inner))
	if got, want := Message(err), "app/x/y: invalid argument: name contains '/' or NUL"; got != want {
		t.Fatalf("Message =\n %q\nwant\n %q", got, want)
	}
	if got := err.Error(); !strings.Contains(got, "secrets.Get") || !strings.Contains(got, "store.ValidName") {
		t.Fatalf("Error() = %q; the ops belong there still", got)
	}
	flag := fmt.Errorf("--format: %w", E(Op("crypto.ParseFormat"), Invalid, "unknown format"))
	if got, want := Message(flag), "--format: invalid argument: unknown format"; got != want {
		t.Fatalf("Message behind fmt.Errorf = %q, want %q", got, want)
	}
	plain := errors.New("no secret store at /x")
	if got := Message(plain); got != plain.Error() {
		t.Fatalf("Message of a plain error = %q", got)
	}
}

// Names finds the path anywhere in an error's tree: in an *Error, behind
// fmt's wrapping and errors.Join, and not in a message that merely
// mentions it.
func TestNamesFindsThePathAnywhereInTheTree(t *testing.T) {
	p := Path("app/db")
	named := E(Op("secrets.Get"), p, NotFound)
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{named, true},
		{E(Op("outer"), named), true},
		{fmt.Errorf("context: %w", named), true},
		{errors.Join(errors.New("other"), fmt.Errorf("x: %w", named)), true},
		{E(Path("app/other"), NotFound), false},
		{errors.New("app/db"), false},
		{errors.Join(errors.New("a"), E(Path("b"), NotFound)), false},
	} {
		if got := Names(tc.err, p); got != tc.want {
			t.Errorf("Names(%v, %q) = %v, want %v", tc.err, p, got, tc.want)
		}
	}
}
