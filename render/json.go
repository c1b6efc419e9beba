package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxExactInteger is the largest integer a float64 holds exactly, 2^53.
// JMESPath's numbers are IEEE doubles; an integer beyond this one would
// be rounded, so it is kept as the text it was written as.
const maxExactInteger = 1 << 53

// decodeJSON decodes value, which must be exactly one JSON text, into what
// JMESPath searches: maps, slices, strings, bools, nil, and numbers as
// float64, except a number a float64 cannot hold (an integer beyond 2^53,
// or beyond float64's range), which is kept as its json.Number text so
// that it renders exactly as written (it is then not a number to
// JMESPath's comparisons and functions).
//
// A value that is not JSON gets one error, errNotJSON, whatever is wrong
// with it: encoding/json's messages show the offending character, a byte
// of the value, and even where decoding failed, or why, tells something
// of the plaintext (how long a prefix of it is JSON). A string holding a
// lone surrogate escape is refused (hasLoneSurrogate).
//
// Hygiene: the decoder copies value into an internal buffer, and every
// string and number in the result is a Go string; neither can be wiped.
// They are dropped when the rendering ends, and the garbage collector
// reclaims them in time (best effort, docs/SECURITY.md). A rendering
// decodes each input once.
func decodeJSON(value []byte) (any, error) {
	if !utf8.Valid(value) {
		// encoding/json would replace the bad bytes with U+FFFD, and a
		// field would render bytes the secret does not hold.
		return nil, errNotJSON
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errNotJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotJSON // more follows the first JSON value
	}
	if hasLoneSurrogate(value) {
		return nil, errLoneSurrogate
	}
	return numbersForJMESPath(v), nil
}

// errNotJSON is the error of every value that is not one JSON text in
// UTF-8.
var errNotJSON = errors.New("the value is not JSON")

// errLoneSurrogate is the error of a value with a string that holds half
// of a UTF-16 surrogate pair: encoding/json would decode it as U+FFFD,
// and a view would render bytes the secret does not hold.
var errLoneSurrogate = errors.New("the value holds a lone UTF-16 surrogate escape (\\uD800 to \\uDFFF, not as a pair), which no UTF-8 text can hold")

// jsonEscapeLen is the length of a \uXXXX escape.
const jsonEscapeLen = len(`\u0000`)

// hasLoneSurrogate reports whether value, a valid JSON text, holds a
// \uXXXX escape of a surrogate that is not a high one followed at once by
// an escaped low one: what encoding/json turns into U+FFFD. A backslash
// is found only in a string, always starting an escape.
func hasLoneSurrogate(value []byte) bool {
	for i := 0; i < len(value); i++ {
		if value[i] != '\\' {
			continue
		}
		if value[i+1] != 'u' {
			i++ // a one-character escape, \\ included
			continue
		}
		r := escapedRune(value[i:])
		switch {
		case !utf16.IsSurrogate(r):
		case utf16.DecodeRune(r, escapedRune(value[i+jsonEscapeLen:])) != utf8.RuneError:
			i += jsonEscapeLen // a pair: its low half is read here
		default:
			return true
		}
		i += jsonEscapeLen - 1
	}
	return false
}

// escapedRune is the rune of the \uXXXX escape esc starts with, or -1 if
// it starts with no such escape. It reads the digits in place: a copy
// of them (a string for strconv) would be plaintext left unwiped.
func escapedRune(esc []byte) rune {
	if len(esc) < jsonEscapeLen || esc[0] != '\\' || esc[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range esc[2:jsonEscapeLen] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(d)
	}
	return r
}

// numbersForJMESPath replaces, in place, the json.Numbers of v that a
// float64 holds exactly enough with float64s, which is what JMESPath
// compares and computes with.
func numbersForJMESPath(v any) any {
	switch v := v.(type) {
	case json.Number:
		return jmesNumber(v)
	case map[string]any:
		for k, e := range v {
			v[k] = numbersForJMESPath(e)
		}
	case []any:
		for i, e := range v {
			v[i] = numbersForJMESPath(e)
		}
	}
	return v
}

func jmesNumber(n json.Number) any {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil { // beyond float64's range
		return n
	}
	if !strings.ContainsAny(string(n), ".eE") && math.Abs(f) > maxExactInteger {
		return n
	}
	return f
}

// appendJSON writes v, a value JMESPath returned (or a string), to w as
// compact JSON: object members in key order, no HTML escaping, numbers as
// encoding/json writes them.
func appendJSON(w *buffer, v any) error {
	switch v := v.(type) {
	case nil:
		_, _ = w.WriteString("null")
	case bool:
		_, _ = w.WriteString(strconv.FormatBool(v))
	case float64:
		return appendFloat(w, v)
	case json.Number:
		_, _ = w.WriteString(string(v))
	case string:
		return appendJSONString(w, v)
	case []any:
		return appendJSONArray(w, len(v), func(i int) any { return v[i] })
	case map[string]any:
		return appendJSONObject(w, v)
	default:
		// A few JMESPath functions return typed slices ([]string,
		// []float64); anything else is not JSON.
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice {
			return errors.New("the result is a " + rv.Type().String() + ", which is not JSON")
		}
		return appendJSONArray(w, rv.Len(), func(i int) any { return rv.Index(i).Interface() })
	}
	return nil
}

// appendJSONArray writes the n elements that at returns as a JSON array.
func appendJSONArray(w *buffer, n int, at func(int) any) error {
	_ = w.WriteByte('[')
	for i := range n {
		if i > 0 {
			_ = w.WriteByte(',')
		}
		if err := appendJSON(w, at(i)); err != nil {
			return err
		}
	}
	_ = w.WriteByte(']')
	return nil
}

// appendJSONObject writes m as a JSON object, its members in key order.
func appendJSONObject(w *buffer, m map[string]any) error {
	_ = w.WriteByte('{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			_ = w.WriteByte(',')
		}
		if err := appendJSONString(w, k); err != nil {
			return err
		}
		_ = w.WriteByte(':')
		if err := appendJSON(w, m[k]); err != nil {
			return err
		}
	}
	_ = w.WriteByte('}')
	return nil
}

// appendFloat writes f as encoding/json does: the shortest text that reads
// back as f, in exponent form only for very large or small magnitudes.
func appendFloat(w *buffer, f float64) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return errors.New("the result is a number JSON cannot hold (infinite or not a number)")
	}
	var scratch [32]byte
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(scratch[:0], f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	_, _ = w.Write(b)
	clear(scratch[:]) // a number may be the secret (a PIN)
	return nil
}

// appendJSONString writes s as a JSON string. Besides what JSON requires
// (", \ and the C0 controls), it escapes DEL, the C1 controls, U+2028,
// U+2029, U+FEFF, U+FFFE and U+FFFF, so that the same text is also a YAML
// double-quoted scalar holding exactly s (YAML 1.1 reads U+0085, U+2028
// and U+2029 as line breaks, and YAML may not hold the others raw). s
// must be valid UTF-8: a JSON string cannot hold other bytes, and
// encoding/json would silently replace them.
func appendJSONString(w *buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("the value is not valid UTF-8, which a JSON or YAML string cannot hold")
	}
	_ = w.WriteByte('"')
	start := 0
	for i, r := range s {
		esc := jsonEscape(r)
		if esc == "" {
			continue
		}
		_, _ = w.WriteString(s[start:i])
		_, _ = w.WriteString(esc)
		start = i + utf8.RuneLen(r)
	}
	_, _ = w.WriteString(s[start:])
	_ = w.WriteByte('"')
	return nil
}

// jsonEscape returns the escape that stands for r in a string that is
// both JSON and YAML, or "" when r stands for itself.
func jsonEscape(r rune) string {
	switch r {
	case '"':
		return `\"`
	case '\\':
		return `\\`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	}
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f,
		r == 0x2028, r == 0x2029, r == 0xfeff, r == 0xfffe, r == 0xffff:
		const hex = "0123456789abcdef"
		return `\u` + string([]byte{hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf]})
	}
	return ""
}
