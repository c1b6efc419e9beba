package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"unicode"
)

// The quoted forms are those GNU ls 9.1 printed for these names with
// LC_ALL=C.UTF-8 ls --quoting-style=shell-escape, except that it starts
// the last one with a redundant pair of single quotes, and that it prints
// format characters (Cf) as they are, which formatNames escapes.
var listedNames = append([]struct{ name, listed string }{
	{"plain", "plain"},
	{"db-password.v2", "db-password.v2"},
	{"a b", "a b"}, // printable: unchanged, although a shell would need quotes
	{"it's", "it's"},
	{"café", "café"}, // non-ASCII printable characters
	{"日本語 ñ €", "日本語 ñ €"},
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
}, formatNames...)

// formatNames hold format characters (Unicode category Cf), which GNU ls
// prints raw: bidi controls reorder what a terminal shows ("\u202egpj.exe"
// shows as "exe.jpg"), zero-width ones hide. They are escaped as \u or \U
// with the code point, a run of them in one $'...'.
var formatNames = []struct{ name, listed string }{
	{"\u202egpj.exe", `''$'\u202e''gpj.exe'`}, // RIGHT-TO-LEFT OVERRIDE
	{"café \u202ex", `'café '$'\u202e''x'`},
	{"a\u200bb", `'a'$'\u200b''b'`},                   // ZERO WIDTH SPACE
	{"\u2066x\u2069", `''$'\u2066''x'$'\u2069'`},      // LEFT-TO-RIGHT ISOLATE ... POP DIRECTIONAL ISOLATE
	{"\u2067\u2068ab", `''$'\u2067\u2068''ab'`},       // a run of them
	{"\ufeffbom", `''$'\ufeff''bom'`},                 // ZERO WIDTH NO-BREAK SPACE
	{"soft\u00adhyphen", `'soft'$'\u00ad''hyphen'`},   // SOFT HYPHEN
	{"tag\U000e0041", `'tag'$'\U000e0041'`},           // TAG LATIN CAPITAL LETTER A, beyond U+FFFF
	{"\u202eabc", `''$'\u202e''abc'`},                 // hex digits after the escape stay outside it
	{"a\u0085\u202e\nb", `'a'$'\302\205\u202e\n''b'`}, // with a C1 and a C0 control
	{"\u202e'x", `''$'\u202e'\''x'`},                  // and a single quote
	{"\u202e\xff", `''$'\u202e\377'`},                 // and a byte that is not UTF-8
}

func TestListedNameQuotesNamesWithControlCharactersAsGNULsDoes(t *testing.T) {
	for _, tc := range listedNames {
		if got := listedName(tc.name); got != tc.listed {
			t.Errorf("listedName(%q) = %s, want %s", tc.name, got, tc.listed)
		}
	}
}

// Every format character, not only those listed above, is escaped: no
// name holding one prints as it is.
func TestListedNameEscapesEveryFormatCharacter(t *testing.T) {
	n := 0
	for _, rng := range unicode.Cf.R16 {
		for r := rune(rng.Lo); r <= rune(rng.Hi); r += rune(rng.Stride) {
			escapedInDollarQuotes(t, r)
			n++
		}
	}
	for _, rng := range unicode.Cf.R32 {
		for r := rune(rng.Lo); r <= rune(rng.Hi); r += rune(rng.Stride) {
			escapedInDollarQuotes(t, r)
			n++
		}
	}
	if n < 100 {
		t.Fatalf("only %d format characters checked", n)
	}
}

func escapedInDollarQuotes(t *testing.T, r rune) {
	t.Helper()
	got := listedName("x" + string(r) + "y")
	if strings.ContainsRune(got, r) || !strings.HasPrefix(got, "'x'$'\\") || !strings.HasSuffix(got, "''y'") {
		t.Errorf("listedName(x U+%04X y) = %s, want it escaped in $'...'", r, got)
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
	// Format characters, each beside every byte that needs quoting.
	for _, r := range []rune{0x202e, 0x200b, 0x2066, 0xfeff, 0xe0041} {
		for c := 1; c < 256; c++ {
			names = append(names, string(r)+string([]byte{byte(c)})+"f"+string(r))
		}
	}
	var script strings.Builder
	for _, n := range names {
		script.WriteString("printf '%s\\0' " + listedName(n) + "\n")
	}
	// bash turns \u escapes into UTF-8 in a UTF-8 locale only.
	bash := exec.Command("bash", "-c", script.String())
	bash.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	out, err := bash.Output()
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
	for _, k := range []string{"app/plain", "app/a\nb", "app/\u202egpj.exe", "tab\tapp/s"} {
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
	if got, want := ls("app"), "'a'$'\\n''b'\nplain\n''$'\\u202e''gpj.exe'\n"; got != want {
		t.Errorf("ls app: %q, want %q", got, want)
	}
	long := strings.Split(strings.TrimSuffix(ls("-l", "app"), "\n"), "\n")
	if len(long) != 3 || !strings.HasSuffix(long[0], " 'a'$'\\n''b'") || !strings.HasSuffix(long[1], " plain") || !strings.HasSuffix(long[2], ` ''$'\u202e''gpj.exe'`) {
		t.Errorf("ls -l app: %q", long)
	}
}
