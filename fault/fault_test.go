package fault

import (
	"context"
	"errors"
	"fmt"
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
	want := "secrets.Put: app/db: sqlite.Put: app/db: changed concurrently: stored version is 4"
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
