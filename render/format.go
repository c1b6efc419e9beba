package render

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

// The formats an application view (app + format) renders in. Every one
// holds each secret of the application, its value as a string, byte for
// byte, under its name made an environment variable's name by EnvName
// (db-password is DB_PASSWORD), in the order of those names: one rule for
// every format, so that a program reads the same keys whichever format
// it is given. Secrets whose names become the same name are an error
// naming every one of them, in every format, never one value silently
// dropped.
const (
	// FormatJSON is one JSON object, one member a line:
	//	{
	//	  "API_TOKEN": "s3cr3t",
	//	  "DB_PASSWORD": "p\"w"
	//	}
	// A value that is itself JSON is still a string. Values must be
	// UTF-8 (a JSON string holds nothing else).
	FormatJSON = "json"
	// FormatDotenv is NAME="value" lines, values quoted for a POSIX
	// shell and systemd's EnvironmentFile= (Dotenv; docker compose reads
	// them too, but keeps the backslash before a backquote).
	FormatDotenv = "dotenv"
	// FormatYAML is one mapping, a "NAME": "value" line per secret,
	// both as double-quoted scalars with JSON's escapes (and the few
	// more YAML needs: appendJSONString), "{}" for an application with
	// no secrets. Values must be UTF-8.
	FormatYAML = "yaml"
	// FormatProperties is NAME=value lines escaped as Java's
	// Properties.store escapes them (\uXXXX for every character beyond
	// ASCII, so the file reads back the same as ISO 8859-1 or UTF-8),
	// without its date comment. Values must be UTF-8.
	FormatProperties = "properties"
)

// formats is every format an application view may name. Only dotenv, an
// environment's file, refuses the names that would make a loader, a
// shell, an interpreter or a common tool run code (see Variables).
var formats = map[string]func(w *buffer, vars []Variable) error{
	FormatJSON:       appendJSONFormat,
	FormatDotenv:     appendDotenvFormat,
	FormatYAML:       appendYAMLFormat,
	FormatProperties: appendPropertiesFormat,
}

// member is one secret of an application view.
type member struct {
	key   store.Key
	value crypto.Plaintext
}

// memberError is a format's refusal of one member's value: it names the
// secret, never the value.
type memberError struct {
	key store.Key
	err error
}

func (e *memberError) Error() string { return e.key.String() + ": " + e.err.Error() }

// named names every member by EnvName, in the order of those names: the
// keys of every format. A collision is an error naming every secret in it.
func named(members []member) ([]Variable, error) {
	values := make(map[store.Key]crypto.Plaintext, len(members))
	for _, m := range members {
		values[m.key] = m.value
	}
	return variables(values)
}

func appendJSONFormat(w *buffer, vars []Variable) error {
	if len(vars) == 0 {
		_, _ = w.WriteString("{}\n")
		return nil
	}
	_, _ = w.WriteString("{\n")
	for i, v := range vars {
		_, _ = w.WriteString("  ")
		_ = appendJSONString(w, v.Name) // [A-Z0-9_]: always valid
		_, _ = w.WriteString(": ")
		if err := appendJSONString(w, alias(v.Value)); err != nil {
			return &memberError{v.From, err}
		}
		if i < len(vars)-1 {
			_ = w.WriteByte(',')
		}
		_ = w.WriteByte('\n')
	}
	_, _ = w.WriteString("}\n")
	return nil
}

func appendYAMLFormat(w *buffer, vars []Variable) error {
	if len(vars) == 0 {
		_, _ = w.WriteString("{}\n")
		return nil
	}
	for _, v := range vars {
		_ = appendJSONString(w, v.Name)
		_, _ = w.WriteString(": ")
		if err := appendJSONString(w, alias(v.Value)); err != nil {
			return &memberError{v.From, err}
		}
		_ = w.WriteByte('\n')
	}
	return nil
}

func appendDotenvFormat(w *buffer, vars []Variable) error {
	if err := refuseCodeVariables(vars); err != nil {
		return err // an environment file: as Variables
	}
	for _, v := range vars {
		_, _ = w.WriteString(v.Name)
		_ = w.WriteByte('=')
		if err := appendQuoted(w, alias(v.Value)); err != nil {
			return &memberError{v.From, err}
		}
		_ = w.WriteByte('\n')
	}
	return nil
}

func appendPropertiesFormat(w *buffer, vars []Variable) error {
	for _, v := range vars {
		if !utf8.Valid(v.Value) {
			return &memberError{v.From, errors.New("the value is not valid UTF-8, which a properties file cannot hold")}
		}
		appendProperty(w, v.Name, true)
		_ = w.WriteByte('=')
		appendProperty(w, alias(v.Value), false)
		_ = w.WriteByte('\n')
	}
	return nil
}

// appendProperty writes s escaped as java.util.Properties.store writes a
// key (escapeSpace) or a value: \\ for a backslash; \t \n \r \f; a
// backslash before = : # and !; before a space that leads a value, or any
// space of a key; and \uXXXX (upper-case hex, UTF-16) for every other
// character outside printable ASCII.
func appendProperty(w *buffer, s string, escapeSpace bool) {
	for i, r := range s {
		switch {
		case r == ' ' && (i == 0 || escapeSpace):
			_, _ = w.WriteString(`\ `)
		case r < 0x20 || r > 0x7e:
			appendPropertyEscape(w, r)
		case r == '\\' || r == '=' || r == ':' || r == '#' || r == '!':
			_ = w.WriteByte('\\')
			_ = w.WriteByte(byte(r))
		default:
			_ = w.WriteByte(byte(r))
		}
	}
}

// appendPropertyEscape writes r, a control character or one beyond ASCII,
// as Properties.store does.
func appendPropertyEscape(w *buffer, r rune) {
	switch r {
	case '\t':
		_, _ = w.WriteString(`\t`)
	case '\n':
		_, _ = w.WriteString(`\n`)
	case '\r':
		_, _ = w.WriteString(`\r`)
	case '\f':
		_, _ = w.WriteString(`\f`)
	default:
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			appendU16(w, r1) // beyond the BMP: Java holds it as two UTF-16 chars
			appendU16(w, r2)
		} else {
			appendU16(w, r)
		}
	}
}

func appendU16(w *buffer, c rune) {
	const hex = "0123456789ABCDEF"
	_, _ = w.WriteString(`\u`)
	_ = w.WriteByte(hex[c>>12&0xf])
	_ = w.WriteByte(hex[c>>8&0xf])
	_ = w.WriteByte(hex[c>>4&0xf])
	_ = w.WriteByte(hex[c&0xf])
}
