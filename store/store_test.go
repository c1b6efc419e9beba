package store

import (
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
