package render

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/jmespath-community/go-jmespath"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

// A buffer wipes every array it leaves behind as it grows.
func TestBufferWipesWhatItOutgrows(t *testing.T) {
	var w buffer
	_, _ = w.WriteString("SECRET")
	first := w.b[:cap(w.b)]
	_, _ = w.Write(bytes.Repeat([]byte("x"), 2*minBuffer))
	if !isZero(first) {
		t.Fatalf("the outgrown array still holds %q", first[:6])
	}
	out := w.bytes()
	if !bytes.HasPrefix(out, []byte("SECRET")) || len(out) != 6+2*minBuffer {
		t.Fatalf("bytes() = %q...", out[:6])
	}
	if !isZero(out[len(out):cap(out)]) {
		t.Fatal("the spare capacity of the result was written")
	}
}

func TestBufferWipe(t *testing.T) {
	var w buffer
	_, _ = w.WriteString("SECRET")
	held := w.b
	w.wipe()
	if !isZero(held) || w.b != nil {
		t.Fatalf("wipe left %q", held)
	}
}

// What the template functions make lives in the arena, whose arrays are
// wiped when the rendering ends; the strings text/template saw alias
// them.
func TestTemplateFunctionResultsAreWipedWithTheArena(t *testing.T) {
	r := &templateRendering{
		view:    &View{tmplRefs: map[fieldRef]jmespath.JMESPath{}},
		in:      map[store.Key]crypto.Plaintext{},
		decoded: map[store.Key]any{},
	}
	quoted, err := r.quote("SECRET")
	if err != nil {
		t.Fatal(err)
	}
	encoded, _ := r.base64("SECRET")
	asJSON, err := r.toJSON("SECRET")
	if err != nil {
		t.Fatal(err)
	}
	if quoted != `"SECRET"` || encoded != "U0VDUkVU" || asJSON != `"SECRET"` {
		t.Fatalf("quote, base64, toJSON = %q %q %q", quoted, encoded, asJSON)
	}
	r.arena.wipe()
	for _, s := range []string{quoted, encoded, asJSON} {
		if !isZero(unsafe.Slice(unsafe.StringData(s), len(s))) {
			t.Fatalf("a function's result survived the arena's wipe: %q", s)
		}
	}
}

// panickingJMESPath stands for a JMESPath library that panics with the
// value it searched in the message.
type panickingJMESPath struct{}

func (panickingJMESPath) Search(doc any) (any, error) { panic(fmt.Sprint("bad value: ", doc)) }

// A library panic fails the rendering (EIO for the reader), without the
// value, and never ends the mount.
func TestAJMESPathPanicIsARenderingError(t *testing.T) {
	v, err := Compile(Spec{Path: "a/v", Secret: "a/db", Field: "password"})
	if err != nil {
		t.Fatal(err)
	}
	v.field.jp = panickingJMESPath{}
	_, err = v.Render(map[store.Key]crypto.Plaintext{{App: "a", Name: "db"}: crypto.Plaintext(`{"password": "SECRET"}`)})
	if err == nil || !strings.Contains(err.Error(), "a/v: the view cannot be rendered: the rendering panicked") || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("Render with a panicking library: %v", err)
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
