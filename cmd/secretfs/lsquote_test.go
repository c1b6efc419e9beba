package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The quoted forms are those GNU ls 9.1 printed for these names with
// LC_ALL=C.UTF-8 ls --quoting-style=shell-escape, except that it starts
// the last one with a redundant pair of single quotes.
var listedNames = []struct{ name, listed string }{
	{"plain", "plain"},
	{"db-password.v2", "db-password.v2"},
	{"a b", "a b"}, // printable: unchanged, although a shell would need quotes
	{"it's", "it's"},
	{"café ‮x", "café ‮x"}, // non-ASCII printable characters, a bidi override included
	{"a\nb", `'a'$'\n''b'`},
	{"\nb", `''$'\n''b'`},
	{"a\n", `'a'$'\n'`},
	{"a\n\n", `'a'$'\n\n'`},
	{"a\tb", `'a'$'\t''b'`},
	{"a\n\tb", `'a'$'\n\t''b'`},
	{"a\r\v\f\a\bb", `'a'$'\r\v\f\a\b''b'`},
	{"\x01", `''$'\001'`},
	{"a\x1bb", `'a'$'\033''b'`},
	{"a\x7fb", `'a'$'\177''b'`},
	{"a\u0085b", `'a'$'\302\205''b'`}, // C1
	{"\x9b", `''$'\233'`},             // a lone C1 byte: not UTF-8
	{"a\xffb", `'a'$'\377''b'`},
	{"x\xc3", `'x'$'\303'`}, // a cut UTF-8 sequence
	{"a b\n", `'a b'$'\n'`},
	{"$x\n", `'$x'$'\n'`},
	{`a\b` + "\n", `'a\b'$'\n'`},
	{`"q"` + "\n", `'"q"'$'\n'`},
	{"café\n", `'café'$'\n'`},
	{"'\n", `''\'''$'\n'`},
	{"\n'", `''$'\n'\'''`},
	{"a\n'b", `'a'$'\n'\''b'`},
	{"it's\n", `'it'\''s'$'\n'`},
}

func TestListedNameQuotesNamesWithControlCharactersAsGNULsDoes(t *testing.T) {
	for _, tc := range listedNames {
		if got := listedName(tc.name); got != tc.listed {
			t.Errorf("listedName(%q) = %s, want %s", tc.name, got, tc.listed)
		}
	}
}

// Every quoted name is one shell word that bash reads back as the name,
// byte for byte, whatever byte it holds.
func TestAQuotedNameIsAShellWordForTheExactName(t *testing.T) {
	names := []string{}
	for _, tc := range listedNames {
		if tc.listed != tc.name {
			names = append(names, tc.name)
		}
	}
	// Each byte beside one that needs quoting, so that the name is quoted.
	for c := 1; c < 256; c++ {
		b := byte(c)
		names = append(names, string([]byte{'a', b, '1', '\n'}), string([]byte{'\t', b, '\''}), string([]byte{b, 0x7f, b}))
	}
	var script strings.Builder
	for _, n := range names {
		script.WriteString("printf '%s\\0' " + listedName(n) + "\n")
	}
	out, err := exec.Command("bash", "-c", script.String()).Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(names) {
		t.Fatalf("bash printed %d names, want %d", len(got), len(names))
	}
	for i, n := range names {
		if listedName(n) == n {
			t.Errorf("%q is printed unquoted", n)
		}
		if got[i] != n {
			t.Errorf("bash reads %s as %q, want %q", listedName(n), got[i], n)
		}
	}
}

func TestLsQuotesApplicationAndSecretNamesInShortAndLongListings(t *testing.T) {
	dataDir := newStore(t)
	for _, k := range []string{"app/plain", "app/a\nb", "tab\tapp/s"} {
		if _, stderr, err := run(t, strings.NewReader("v"), append([]string{"put", k}, dataDir...)...); err != nil {
			t.Fatalf("put %q: %v\n%s", k, err, stderr)
		}
	}
	ls := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := run(t, nil, append(append([]string{"ls"}, args...), dataDir...)...)
		if err != nil {
			t.Fatalf("ls %q: %v\n%s", args, err, stderr)
		}
		return stdout
	}
	if got, want := ls(), "app\n'tab'$'\\t''app'\n"; got != want {
		t.Errorf("ls: %q, want %q", got, want)
	}
	if got, want := ls("app"), "'a'$'\\n''b'\nplain\n"; got != want {
		t.Errorf("ls app: %q, want %q", got, want)
	}
	long := strings.Split(strings.TrimSuffix(ls("-l", "app"), "\n"), "\n")
	if len(long) != 2 || !strings.HasSuffix(long[0], " 'a'$'\\n''b'") || !strings.HasSuffix(long[1], " plain") {
		t.Errorf("ls -l app: %q", long)
	}
}
