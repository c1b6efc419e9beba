package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/secretfs/secretfs/fault"
)

// listedName is how `secretfs ls` prints a name. A name whose characters
// are all printable prints unchanged. A name holding a control character
// (C0, DEL, C1), a format character (Unicode category Cf: the bidi
// controls such as U+202E RIGHT-TO-LEFT OVERRIDE, zero-width characters)
// or a byte that is not UTF-8 would otherwise print as something else
// ("\u202egpj.exe" shows as "exe.jpg"), or move the cursor or end a line
// where a script reading the listing expects a name to end. It is printed
// instead as one shell word, the way GNU ls's shell-escape quoting style
// prints a name with control characters in a UTF-8 locale: in single
// quotes, each run of such characters in $'...' with C escapes or octal
// bytes, and each single quote escaped with a backslash between quoted
// parts:
//
//	a<newline>b      'a'$'\n''b'
//	<ESC>[31m        ''$'\033''[31m'
//	it's<newline>    'it'\''s'$'\n'
//	<U+202E>gpj.exe  ''$'\u202e''gpj.exe'
//
// GNU ls prints format characters as they are; secretfs escapes them too,
// as \uXXXX (\UXXXXXXXX beyond U+FFFF), which names the character for a
// reader where octal bytes would not. Pasted into bash, zsh or ksh the
// word gives back the exact name; for \u escapes, in a UTF-8 locale (in
// the C locale bash leaves \u202e as it is), which is the only one in
// which names, UTF-8 by the store's rule, read right. (Before a name
// holding a single quote after its first character, GNU ls 9.1 prints a
// redundant pair of quotes; that is not copied.)
func listedName(name string) string {
	if !strings.ContainsFunc(name, unprintable) && utf8.ValidString(name) {
		return name
	}
	var b strings.Builder
	b.WriteByte('\'')
	inDollar := false // inside $'...' rather than '...'
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		chunk := name[i : i+size]
		i += size
		if (r == utf8.RuneError && size == 1) || unprintable(r) {
			if !inDollar {
				b.WriteString("'$'")
				inDollar = true
			}
			if unicode.Is(unicode.Cf, r) {
				b.WriteString(runeEscape(r))
				continue
			}
			for _, c := range []byte(chunk) {
				b.WriteString(byteEscape(c))
			}
			continue
		}
		if r == '\'' {
			// Closes either kind of quote, then an escaped ', then reopens '.
			b.WriteString(`'\''`)
			inDollar = false
			continue
		}
		if inDollar {
			b.WriteString("''") // close $'...', open '...'
			inDollar = false
		}
		b.WriteString(chunk)
	}
	b.WriteByte('\'')
	return b.String()
}

// unprintable reports whether r is a control character (C0, DEL or C1)
// or a format character (Cf). Other characters, including every other
// non-ASCII one, print as they are, as GNU ls prints them in a UTF-8
// locale.
func unprintable(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || unicode.Is(unicode.Cf, r)
}

// runeEscape is r inside $'...' as bash, zsh and ksh93 read it: \u and
// four hex digits, or \U and eight beyond U+FFFF. The digits are always
// that many, so that a hex digit after the escape is never read into it.
func runeEscape(r rune) string {
	if r > 0xffff {
		return fmt.Sprintf(`\U%08x`, r)
	}
	return fmt.Sprintf(`\u%04x`, r)
}

// byteEscape is c inside $'...': the C escape bash understands there for
// \a, \b, \t, \n, \v, \f and \r (bytes 7 to 13), else three octal digits.
func byteEscape(c byte) string {
	if c >= '\a' && c <= '\r' {
		return `\` + "abtnvfr"[c-'\a':c-'\a'+1]
	}
	return `\` + string([]byte{'0' + c>>6, '0' + c>>3&7, '0' + c&7})
}

// quoteNames returns err with each of names that its message repeats
// printed as listedName prints it, so that an error never writes a
// control character, a format character or a byte that is not UTF-8 of a
// name the user gave to the terminal. `get $'app/\e[2J'` says
//
//	'app/'$'\033''[2J': not found
//
// Names that print unchanged are left alone. errors.Is, errors.As and
// fault.KindOf see err as it was.
func quoteNames(err error, names ...string) error {
	if err == nil {
		return nil
	}
	// The longest first: APP/NAME holds APP.
	names = slices.SortedFunc(slices.Values(names), func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	msg := fault.Message(err) // what the CLI prints, which this replaces
	quoted := msg
	for _, n := range names {
		if q := listedName(n); q != n {
			quoted = strings.ReplaceAll(quoted, n, q)
		}
	}
	if quoted == msg {
		return err
	}
	return &reworded{msg: quoted, err: err}
}

// reworded is err said in other words: with its names quoted
// (quoteNames), as what a verb was about when it timed out (timedOut), or
// as what a store file that is not SQLite is (notSQLite). errors.Is,
// errors.As and fault.KindOf see err.
type reworded struct {
	msg string
	err error
}

func (e *reworded) Error() string { return e.msg }
func (e *reworded) Unwrap() error { return e.err }
