package main

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// printable reports whether s, but for the newline that ends it, holds
// nothing that would move the cursor, end a line, reorder what a terminal
// shows, or not be UTF-8.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(strings.TrimSuffix(s, "\n"), unprintable)
}

// The errors of get, put, rm and ls quote a name they repeat as ls lists
// it: a byte that is not UTF-8, a control or a format character of a name
// the user typed never reaches the terminal as it is.
func TestErrorsQuoteTheNamesTheyRepeatAsLsDoes(t *testing.T) {
	dataDir := newStore(t)
	for _, tc := range []struct {
		args []string
		want string // stderr, after "secretfs: "
	}{
		{[]string{"get", "app/\xff"}, `'app/'$'\377': `},                            // not UTF-8: refused
		{[]string{"get", "\xffapp/s"}, `''$'\377''app': `},                          // the application's name alone
		{[]string{"get", "app/a\x1b[31mred"}, `'app/a'$'\033''[31mred': not found`}, // valid, absent
		{[]string{"rm", "a\nb/c"}, `'a'$'\n''b/c': not found`},
		{[]string{"rm", "app/\u202egpj.exe"}, `'app/'$'\u202e''gpj.exe': not found`},
		{[]string{"put", "app/\x9b"}, `'app/'$'\233': `},
		{[]string{"put", "no\x01slash"}, `'no'$'\001''slash': want APPLICATION/SECRET`},
		{[]string{"put", "app/s", "/nonexistent\x1b"}, `open '/nonexistent'$'\033': no such file or directory`},
		{[]string{"ls", "\xff"}, `''$'\377': `},
		{[]string{"ls", "-l", "a\tb"}, `'a'$'\t''b': the application holds no secrets (or does not exist)`},
	} {
		stdout, stderr, status := runMain(t, []byte("v"), append(tc.args, dataDir...)...)
		if status != 1 || len(stdout) != 0 {
			t.Errorf("%q: status %d, stdout %q; want 1 and nothing", tc.args, status, stdout)
		}
		if s := string(stderr); !printable(s) || !strings.Contains(s, tc.want) || strings.Count(s, "\n") != 1 {
			t.Errorf("%q: stderr %q, want one printable line holding %q", tc.args, s, tc.want)
		}
	}
	if stdout, _, err := run(t, nil, append([]string{"ls"}, dataDir...)...); err != nil || stdout != "" {
		t.Errorf("after the refused puts, ls shows %q (%v)", stdout, err)
	}
}

// Quoting a name changes only what the message says: the error is still
// the one the store returned, of the same kind.
func TestQuoteNamesKeepsTheErrorItWraps(t *testing.T) {
	cause := fault.E(fault.Op("sqlite.Get"), fault.Path("app/a\nb"), fault.NotFound)
	err := quoteNames(cause, "app/a\nb", "app", "a\nb")
	if got, want := fault.Message(err), `'app/a'$'\n''b': not found`; got != want {
		t.Errorf("quoted: %q, want %q", got, want)
	}
	if !errors.Is(err, cause) || !fault.Is(fault.NotFound, err) {
		t.Errorf("the quoted error is no longer the store's NotFound: %v", err)
	}
	plain := fault.E(fault.Path("app/s"), fault.NotFound)
	if quoteNames(plain, "app/s", "app", "s") != plain || quoteNames(nil, "a\nb") != nil {
		t.Error("quoteNames changed an error whose names print unchanged, or made one of nil")
	}
}

// A name that is not UTF-8 cannot be a secret's; one the store holds
// anyway (here written into secrets.db by hand) is left out of ls, with
// a warning that shows it escaped, and the rest lists.
func TestLsLeavesOutANameThatIsNotUTF8WithAWarning(t *testing.T) {
	dataDir := newStore(t)
	verb := verbs(t, dataDir)
	verb("v", "put", "app/good")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir[1], storeFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, key := range [][2][]byte{{[]byte("app"), []byte("bad\xff")}, {[]byte("bad\xff"), []byte("s")}} {
		if _, err := db.Exec(`INSERT INTO secrets SELECT CAST(? AS TEXT), CAST(? AS TEXT), MasterKeyId, ProtectedDocumentKey,
			InitialisationVector, ProtectedSecretValue, Format, Version, Size, Modified FROM secrets
			WHERE ApplicationName = 'app' AND SecretName = 'good'`, key[0], key[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ args, stdout string }{{"ls", "app\n"}, {"ls app", "good\n"}, {"ls -l app", "good\n"}} {
		stdout, stderr, status := runMain(t, nil, append(strings.Fields(tc.args), dataDir...)...)
		if status != 0 || !strings.HasSuffix(string(stdout), tc.stdout) || strings.Count(string(stdout), "\n") != 1 {
			t.Errorf("%s: status %d, stdout %q; want 0 and %q", tc.args, status, stdout, tc.stdout)
		}
		if s := string(stderr); !printable(s) || !strings.Contains(s, "level=warning") || !strings.Contains(s, `\\xff`) {
			t.Errorf("%s: stderr %q, want a printable warning naming the name escaped", tc.args, s)
		}
	}
}

// An argument with an empty application or secret name is no
// APPLICATION/SECRET: it is refused as such, before the store's rules on
// names are asked (whose error names a function of secretfs).
func TestAKeyWithAnEmptyPartIsRefusedAsNotApplicationSlashSecret(t *testing.T) {
	dataDir := newStore(t)
	for _, args := range [][]string{{"get", "/x"}, {"get", "app/"}, {"rm", "/"}, {"put", ""}, {"put", "/x"}} {
		_, _, err := run(t, strings.NewReader("v"), append(args, dataDir...)...)
		want := args[1] + ": want APPLICATION/SECRET"
		if args[1] == "" {
			want = "'': want APPLICATION/SECRET"
		}
		if err == nil || err.Error() != want {
			t.Errorf("%q: error %v, want %q", args, err, want)
		}
	}
}

// env and exec refuse two secrets that become one variable naming both,
// each quoted as ls quotes it: no control character of a name reaches
// the terminal.
func TestTwoSecretsThatBecomeOneVariableAreNamedQuoted(t *testing.T) {
	values := map[store.Key]crypto.Plaintext{
		{App: "a", Name: "x\ay"}:   crypto.Plaintext("1"),
		{App: "a", Name: "x\x1by"}: crypto.Plaintext("2"),
	}
	_, err := envVariables(values)
	msg := fault.Message(err)
	if err == nil || !printable(msg) || !strings.Contains(msg, `'a/x'$'\a''y'`) || !strings.Contains(msg, `'a/x'$'\033''y'`) {
		t.Fatalf("envVariables: %q; want both names quoted, nothing unprintable", msg)
	}
}
