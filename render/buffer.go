package render

import (
	"errors"
	"strconv"
	"unsafe"

	"github.com/secretfs/secretfs/crypto"
)

// buffer is where a rendering is written: an io.Writer over a Plaintext
// that wipes every array it leaves behind as it grows, so the bytes of a
// view exist in one array at the end, the one returned to the caller.
type buffer struct {
	b crypto.Plaintext
	// tooBig: something was refused because the rendering would have
	// grown over MaxRendering; what was written is incomplete.
	tooBig bool
}

// MaxRendering bounds a view's bytes. A rendering is held whole in memory,
// and a template can loop (`{{ range 100000000 }}...{{ end }}`): one over
// this fails, naming the view, rather than take the mount's memory. It is
// far above what a file of configuration or the store's values (DynamoDB:
// 400 KB an item) need.
const MaxRendering = 16 << 20

var errTooBig = errors.New("the rendering is over its limit of " + strconv.Itoa(MaxRendering>>20) + " MiB")

// room makes room for n more bytes, or reports that they would make the
// rendering too big.
func (w *buffer) room(n int) bool {
	if w.tooBig || len(w.b)+n > MaxRendering {
		w.tooBig = true
		return false
	}
	w.grow(n)
	return true
}

// minBuffer is the first array a buffer takes: most views are a few lines.
const minBuffer = 512

func (w *buffer) grow(n int) {
	if len(w.b)+n <= cap(w.b) {
		return
	}
	size := max(2*cap(w.b), len(w.b)+n, minBuffer)
	grown := make(crypto.Plaintext, len(w.b), size)
	copy(grown, w.b)
	w.b.Wipe()
	w.b = grown
}

// Write, WriteString and WriteByte refuse what would make the rendering
// too big (errTooBig): text/template then stops, and the formats, which
// write without looking at errors, find it in tooBig at the end.
func (w *buffer) Write(p []byte) (int, error) {
	if !w.room(len(p)) {
		return 0, errTooBig
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *buffer) WriteString(s string) (int, error) {
	if !w.room(len(s)) {
		return 0, errTooBig
	}
	w.b = append(w.b, s...)
	return len(s), nil
}

func (w *buffer) WriteByte(c byte) error {
	if !w.room(1) {
		return errTooBig
	}
	w.b = append(w.b, c)
	return nil
}

// bytes hands the rendering over: the caller owns it and must Wipe it.
// The array's spare capacity was never written.
func (w *buffer) bytes() crypto.Plaintext {
	b := w.b
	w.b = nil
	return b
}

// wipe clears what was written, for a rendering that failed half way.
func (w *buffer) wipe() {
	w.b.Wipe()
	w.b = nil
}

// arena holds the values a template's functions make during one
// rendering (a quoted value, a base64 encoding, a field rendered as JSON):
// they are handed to text/template as strings that alias arrays the arena
// owns, and wiped when the rendering ends.
type arena struct {
	held []crypto.Plaintext
}

// keep makes the arena own p.
func (a *arena) keep(p crypto.Plaintext) { a.held = append(a.held, p) }

// wipe clears every array the arena owns. No string made by alias over
// them may be used afterwards.
func (a *arena) wipe() {
	for _, p := range a.held {
		p.Wipe()
	}
	a.held = nil
}

// alias returns p's bytes as a string without copying them, so that a
// value given to text/template is not one more array out of our reach.
//
// Go promises that a string never changes; unsafe.String leaves keeping
// that promise to us: p must not change while the string is reachable. It
// holds because alias is used only for the arrays of one rendering (the
// inputs, which the caller keeps unchanged until Render returns, and the
// arena's), whose strings live in text/template's evaluation and in the
// arguments of our own functions, all gone when Execute returns; only
// then are the arena's arrays wiped. Nothing a rendering makes keeps such
// a string: errors never quote a value, and the output is copied into
// the buffer.
func alias(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

// readOnlyBytes returns s's bytes without copying them, for functions
// that take a []byte and only read it (base64's encoder).
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
