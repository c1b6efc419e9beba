package store

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/fault"
)

func TestValidNameRejectsWhatCannotBeAFileOrAKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind fault.Kind // Other: valid
	}{
		{"db-password", fault.Other},
		{"日本語.pem", fault.Other},
		{strings.Repeat("é", MaxNameLen/2), fault.Other}, // 254 bytes
		{strings.Repeat("n", MaxNameLen), fault.Other},
		{strings.Repeat("n", MaxNameLen+1), fault.NameTooLong},
		{"", fault.Invalid},
		{".", fault.Invalid},
		{"..", fault.Invalid},
		{"a/b", fault.Invalid},
		{"a\x00b", fault.Invalid},
		{"\xff\xfe", fault.Invalid},
	} {
		err := ValidName(tc.name)
		if got := fault.KindOf(err); (err == nil) != (tc.kind == fault.Other) || got != tc.kind {
			t.Errorf("ValidName(%q) = %v (kind %v), want kind %v", tc.name, err, got, tc.kind)
		}
	}
}

func TestVersionNextStartsAtOneForNewAndLegacyItems(t *testing.T) {
	for v, want := range map[Version]Version{Absent: 1, Unversioned: 1, 1: 2, 41: 42} {
		if got := v.Next(); got != want {
			t.Errorf("%v.Next() = %v, want %v", v, got, want)
		}
	}
}

func TestRevisionsDifferWhereVersionsRepeat(t *testing.T) {
	a := Meta{Version: 1, InitialisationVector: []byte{1, 2, 3}}.Revision()
	b := Meta{Version: 1, InitialisationVector: []byte{4, 5, 6}}.Revision()
	if a.Equal(b) {
		t.Error("two writes with the same Version and different IVs are Equal")
	}
	if !a.Equal(Revision{Version: 1, IV: []byte{1, 2, 3}}) {
		t.Error("a Revision is not Equal to itself")
	}
}

func TestCheckExpectedWantsAnIVForEveryWrittenRevision(t *testing.T) {
	for _, tc := range []struct {
		r  Revision
		ok bool
	}{
		{NoItem, true},
		{Revision{Version: 3, IV: []byte{1}}, true},
		{Revision{Version: Unversioned, IV: []byte{1}}, true},
		{Revision{Version: 3}, false},
		{Revision{Version: Absent, IV: []byte{1}}, false},
		{Revision{Version: -7, IV: []byte{1}}, false},
	} {
		if err := CheckExpected(tc.r); (err == nil) != tc.ok {
			t.Errorf("CheckExpected(%+v) = %v", tc.r, err)
		}
	}
}

func TestCheckPutRefusesAnItemThatReusesTheExpectedIV(t *testing.T) {
	item := &Item{
		Meta:                 Meta{Key: Key{App: "app", Name: "s"}, Version: 2, InitialisationVector: []byte{7}},
		MasterKeyID:          "k",
		ProtectedDocumentKey: []byte{1},
		ProtectedSecretValue: []byte{1},
	}
	if err := CheckPut(item, Revision{Version: 1, IV: []byte{7}}); err == nil {
		t.Error("CheckPut accepted a new item with the IV of the write it replaces")
	}
	if err := CheckPut(item, Revision{Version: 1, IV: []byte{8}}); err != nil {
		t.Errorf("CheckPut of a proper write: %v", err)
	}
}

// endless is a listing whose page i leads to cursor next(i) and never
// ends by itself; it counts the pages asked for.
type endless struct {
	next  func(i int) string
	calls int
}

func (e *endless) apps(_ context.Context, _ string) ([]string, string, error) {
	e.calls++
	return []string{"app" + strconv.Itoa(e.calls)}, e.next(e.calls), nil
}

func (e *endless) list(_ context.Context, _ string) ([]Meta, string, error) {
	e.calls++
	return []Meta{{Key: Key{App: "app", Name: "n" + strconv.Itoa(e.calls)}}}, e.next(e.calls), nil
}

// collect runs both collectors over the same listing; each gets its own
// count of calls.
func collect(next func(i int) string) (appsCalls, listCalls int, appsErr, listErr error) {
	a := &endless{next: next}
	_, appsErr = CollectApps(context.Background(), a.apps)
	l := &endless{next: next}
	_, listErr = CollectList(context.Background(), "app", l.list)
	return a.calls, l.calls, appsErr, listErr
}

func TestAListingThatNeverEndsStopsAtThePageLimit(t *testing.T) {
	appsCalls, listCalls, appsErr, listErr := collect(func(i int) string { return "c" + strconv.Itoa(i) })
	for what, err := range map[string]error{"CollectApps": appsErr, "CollectList": listErr} {
		if !fault.Is(fault.Other, err) || err == nil || !strings.Contains(err.Error(), "did not end after 100000 pages") {
			t.Errorf("%s of an endless listing: %v; want an error saying it did not end after %d pages", what, err, MaxListPages)
		}
	}
	if appsCalls != MaxListPages || listCalls != MaxListPages {
		t.Errorf("asked for %d and %d pages, want %d each", appsCalls, listCalls, MaxListPages)
	}
}

func TestAListingOfExactlyThePageLimitSucceeds(t *testing.T) {
	next := func(i int) string {
		if i == MaxListPages {
			return ""
		}
		return "c" + strconv.Itoa(i)
	}
	appsCalls, listCalls, appsErr, listErr := collect(next)
	if appsErr != nil || listErr != nil || appsCalls != MaxListPages || listCalls != MaxListPages {
		t.Errorf("a listing of %d pages: %v, %v after %d and %d pages", MaxListPages, appsErr, listErr, appsCalls, listCalls)
	}
}

func TestARepeatedCursorEndsTheListing(t *testing.T) {
	for name, tc := range map[string]struct {
		next  func(i int) string
		pages int // asked for before the repeat is seen
	}{
		"the same cursor again and again": {func(int) string { return "same" }, 2},
		"a circle of three":               {func(i int) string { return "c" + strconv.Itoa(i%3) }, 4},
	} {
		appsCalls, listCalls, appsErr, listErr := collect(tc.next)
		for what, err := range map[string]error{"CollectApps": appsErr, "CollectList": listErr} {
			if !fault.Is(fault.Other, err) || err == nil || !strings.Contains(err.Error(), "returned a cursor it had returned before") {
				t.Errorf("%s, %s: %v; want an error naming the repeated cursor", name, what, err)
			}
		}
		if appsCalls != tc.pages || listCalls != tc.pages {
			t.Errorf("%s: asked for %d and %d pages, want %d", name, appsCalls, listCalls, tc.pages)
		}
	}
	_, _, appsErr, listErr := collect(func(int) string { return "same" })
	if !strings.Contains(appsErr.Error(), "store.CollectApps: the store's listing of applications") ||
		!strings.Contains(listErr.Error(), "store.CollectList: app: the store's listing of secrets") {
		t.Errorf("messages do not say what was listed: %q, %q", appsErr, listErr)
	}
}
