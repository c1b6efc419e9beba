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
