package render_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/store"
)

// inputs makes a Render input map from "app/name" -> value.
func inputs(t *testing.T, values map[string]string) map[store.Key]crypto.Plaintext {
	t.Helper()
	in := make(map[store.Key]crypto.Plaintext, len(values))
	for k, v := range values {
		app, name, ok := strings.Cut(k, "/")
		if !ok {
			t.Fatalf("bad key %q", k)
		}
		in[store.Key{App: app, Name: name}] = crypto.Plaintext(v)
	}
	return in
}

func key(s string) store.Key {
	app, name, _ := strings.Cut(s, "/")
	return store.Key{App: app, Name: name}
}

func compile(t *testing.T, spec render.Spec) *render.View {
	t.Helper()
	v, err := render.Compile(spec)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", spec, err)
	}
	return v
}

// renderOK compiles spec, renders it from values, and checks the bytes.
func renderOK(t *testing.T, spec render.Spec, values map[string]string, want string) {
	t.Helper()
	got, err := compile(t, spec).Render(inputs(t, values))
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if string(got) != want {
		t.Fatalf("Render gave\n%q\nwant\n%q", got, want)
	}
}

// renderFails compiles spec, renders it from values, and checks that the
// error names the view, says want, is EIO's kind, and holds none of the
// values (nor any of secretBits, bytes of them that a message could show).
func renderFails(t *testing.T, spec render.Spec, values map[string]string, want string, secretBits ...string) {
	t.Helper()
	got, err := compile(t, spec).Render(inputs(t, values))
	if err == nil {
		t.Fatalf("Render gave %q, want an error", got)
	}
	msg := err.Error()
	if !strings.Contains(msg, spec.Path) || !strings.Contains(msg, want) {
		t.Fatalf("error %q does not name the view %s and say %q", msg, spec.Path, want)
	}
	// One shape for every failure of a view, the mount's too: the view,
	// then why (no package's name).
	if prefix := spec.Path + ": the view cannot be rendered: "; !strings.HasPrefix(msg, prefix) {
		t.Fatalf("error %q does not begin %q", msg, prefix)
	}
	if k := fault.KindOf(err); k != fault.Other {
		t.Fatalf("error kind %v, want Other (EIO)", k)
	}
	for _, v := range values {
		secretBits = append(secretBits, v)
	}
	for _, s := range secretBits {
		if s != "" && strings.Contains(msg, s) {
			t.Fatalf("error %q holds a value, %q", msg, s)
		}
	}
}

const dbCredentials = `{"username": "billing", "password": "p@ss \"w0rd\"", "port": 5432, "ratio": 1.5,
 "tls": true, "hosts": ["a.example", "b.example"], "pool": {"min": 1, "max": 10, "name": "<main>"},
 "account": 12345678901234567890, "empty": "", "nothing": null,
 "servers": [{"name": "x", "port": 80}, {"name": "y", "port": 8080}]}`

func TestFieldViewRendersAStringAsItsBytesAndAnythingElseAsCompactJSON(t *testing.T) {
	in := map[string]string{"billing/db": dbCredentials}
	for _, c := range []struct{ field, want string }{
		{"username", "billing"},
		{"password", `p@ss "w0rd"`},
		{"empty", ""},
		{"port", "5432"},
		{"ratio", "1.5"},
		{"tls", "true"},
		{"hosts", `["a.example","b.example"]`},
		{"hosts[1]", "b.example"},
		{"pool", `{"max":10,"min":1,"name":"<main>"}`},
		{"account", "12345678901234567890"}, // beyond 2^53: kept as written
		{"servers[?port > `100`].name | [0]", "y"},
		{"length(hosts)", "2"},
		{"{u: username, p: port}", `{"p":5432,"u":"billing"}`},
	} {
		t.Run(c.field, func(t *testing.T) {
			renderOK(t, render.Spec{Path: "billing/v", Secret: "billing/db", Field: c.field}, in, c.want)
		})
	}
}

func TestFieldViewFailsWithoutAValueInTheError(t *testing.T) {
	const value = `{"password": "hunter2-SECRET", "n": 5}`
	spec := func(field string) render.Spec {
		return render.Spec{Path: "billing/v", Secret: "billing/db", Field: field}
	}
	in := map[string]string{"billing/db": value}
	t.Run("missing field", func(t *testing.T) {
		renderFails(t, spec("user"), in, `the field "user" is missing`)
	})
	t.Run("null field", func(t *testing.T) {
		renderFails(t, spec("nothing"), map[string]string{"billing/db": `{"nothing": null}`}, "is missing (or null)")
	})
	t.Run("missing input", func(t *testing.T) {
		renderFails(t, spec("password"), map[string]string{"billing/other": value}, "billing/db: the input is missing")
	})
	t.Run("not JSON", func(t *testing.T) {
		// encoding/json's message would quote the character 'Q'.
		renderFails(t, spec("password"), map[string]string{"billing/db": `{"password": Qhunter2}`},
			"billing/db: the value is not JSON", "'Q'", "Q", "14")
	})
	t.Run("truncated JSON", func(t *testing.T) {
		renderFails(t, spec("password"), map[string]string{"billing/db": `{"password": "hunt`}, "the value is not JSON")
	})
	t.Run("trailing data", func(t *testing.T) {
		renderFails(t, spec("password"), map[string]string{"billing/db": `{"password": "x"} {"SECRET": 1}`}, "the value is not JSON", "SECRET")
	})
	t.Run("not UTF-8", func(t *testing.T) {
		renderFails(t, spec("password"), map[string]string{"billing/db": "{\"password\": \"\xff\"}"}, "the value is not JSON")
	})
	t.Run("JMESPath error", func(t *testing.T) {
		// The library's message for this is "invalid type for: hunter2-SECRET, ...".
		renderFails(t, spec("abs(password)"), in, "could not be evaluated", "hunter2")
	})
	t.Run("infinite result", func(t *testing.T) {
		renderFails(t, spec("n / `0`"), in, "JSON cannot hold")
	})
}

// The template of the issue's config example, byte for byte.
func TestTemplateViewRendersTheIssuesExample(t *testing.T) {
	spec := render.Spec{Path: "billing/app.env", Template: `DB_USER={{ field "billing/db-credentials" "username" }}
DB_PASSWORD={{ field "billing/db-credentials" "password" | quote }}
API_TOKEN={{ secret "billing/api-token" | quote }}
`}
	v := compile(t, spec)
	want := []store.Key{key("billing/api-token"), key("billing/db-credentials")}
	if got := v.Inputs(); len(got.Secrets) != 2 || got.Secrets[0] != want[0] || got.Secrets[1] != want[1] || got.App != "" {
		t.Fatalf("Inputs() = %+v, want %v", got, want)
	}
	renderOK(t, spec, map[string]string{
		"billing/db-credentials": `{"username": "billing", "password": "p$ss \"q\" \\ ` + "`x`" + `"}`,
		"billing/api-token":      "tok-123",
	}, "DB_USER=billing\nDB_PASSWORD=\"p\\$ss \\\"q\\\" \\\\ \\`x\\`\"\nAPI_TOKEN=\"tok-123\"\n")
}

func TestTemplateFunctions(t *testing.T) {
	in := map[string]string{"a/s": "line1\nlin\"e2", "a/j": `{"k": [1, "two"], "s": "x<y"}`, "a/bin": "\x00\x01\xfe"}
	for _, c := range []struct{ name, tmpl, want string }{
		{"secret", `{{ secret "a/s" }}`, "line1\nlin\"e2"},
		{"quote keeps newlines", `{{ secret "a/s" | quote }}`, "\"line1\nlin\\\"e2\""},
		{"base64", `{{ secret "a/bin" | base64 }}`, "AAH+"},
		{"toJSON", `{"v": {{ secret "a/s" | toJSON }}}`, `{"v": "line1\nlin\"e2"}`},
		{"toJSON of a field", `{{ field "a/j" "s" | toJSON }}`, `"x<y"`},
		{"field as JSON", `{{ field "a/j" "k" }}`, `[1,"two"]`},
		{"printf", `{{ printf "%s=%d" (field "a/j" "s") 3 }}`, "x<y=3"},
		{"if and eq", `{{ if eq (field "a/j" "s") "x<y" }}yes{{ else }}no{{ end }}`, "yes"},
		{"define", `{{ define "t" }}[{{ secret "a/s" | base64 }}]{{ end }}{{ template "t" }}`, "[bGluZTEKbGluImUy]"},
		{"the same field twice", `{{ field "a/j" "s" }}{{ field "a/j" "s" }}`, "x<yx<y"},
		{"no inputs", `static`, "static"},
	} {
		t.Run(c.name, func(t *testing.T) {
			renderOK(t, render.Spec{Path: "a/v", Template: c.tmpl}, in, c.want)
		})
	}
}

// A template names its secrets with string literals only, so that the
// inputs are known at parse time; everything else is refused then.
func TestTemplateThatNamesASecretWithoutAStringLiteralIsRefusedAtCompile(t *testing.T) {
	for _, c := range []struct{ name, tmpl, want string }{
		{"variable", `{{ $n := "a/b" }}{{ secret $n }}`, "every argument must be a string literal"},
		{"dot field", `{{ secret .Name }}`, "every argument must be a string literal"},
		{"sub-pipeline", `{{ secret (print "a/b") }}`, "every argument must be a string literal"},
		{"piped name", `{{ "a/b" | secret }}`, "no piped value"},
		{"piped into field", `{{ "x" | field "a/b" }}`, "no piped value"},
		{"field expression as variable", `{{ $e := "k" }}{{ field "a/b" $e }}`, "every argument must be a string literal"},
		{"too many", `{{ secret "a/b" "c/d" }}`, "takes 1 string literal"},
		{"too few", `{{ field "a/b" }}`, "takes 2 string literal"},
		{"as an argument", `{{ print secret }}`, "must be called with its secret's name as a string literal"},
		{"in a define", `{{ define "x" }}{{ secret .N }}{{ end }}`, "every argument must be a string literal"},
		{"in an if", `{{ if true }}{{ with 1 }}{{ range $i := 3 }}{{ secret $i }}{{ end }}{{ end }}{{ end }}`, "every argument must be a string literal"},
		{"not app/name", `{{ secret "nokey" }}`, `"nokey": want application/name`},
		{"bad name", `{{ secret "a/.." }}`, "reserved"},
		{"bad expression", `{{ field "a/b" "k[" }}`, "not a JMESPath expression"},
		{"parse error", `{{ secret "a/b" `, "template: "},
		{"unknown function", `{{ env "HOME" }}`, `function "env" not defined`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := render.Compile(render.Spec{Path: "a/v", Template: c.tmpl})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "a/v") {
				t.Fatalf("Compile: %v, want an error naming a/v that says %q", err, c.want)
			}
			if !fault.Is(fault.Invalid, err) {
				t.Fatalf("Compile: kind %v, want Invalid", fault.KindOf(err))
			}
		})
	}
}

// A mistake that would fail every rendering is refused at start, not at
// the first read.
func TestTemplateThatWouldFailEveryRenderingIsRefusedAtCompile(t *testing.T) {
	for _, c := range []struct{ name, tmpl, want string }{
		{"undefined template", `{{ template "nosuch" }}`, `no template "nosuch" is defined`},
		{"undefined template in a define", `{{ define "t" }}{{ template "u" }}{{ end }}{{ template "t" }}`, `no template "u" is defined`},
		{"field of dot", `{{ .Password }}`, ".Password names nothing"},
		{"field of dot in print", `{{ print .Password }}`, ".Password names nothing"},
		{"field of the root", `{{ $.Password }}`, ".Password names nothing"},
		{"field of a variable", `{{ $s := secret "a/b" }}{{ $s.Len }}`, ".Len names nothing"},
		{"field of a value", `{{ (secret "a/b").Len }}`, ".Len names nothing"},
		{"field of dot in a with", `{{ with secret "a/b" }}{{ .User }}{{ end }}`, ".User names nothing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := render.Compile(render.Spec{Path: "a/v", Template: c.tmpl})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "a/v") {
				t.Fatalf("Compile: %v, want an error naming a/v that says %q", err, c.want)
			}
		})
	}
	for _, ok := range []string{
		`{{ define "t" }}x{{ end }}{{ template "t" }}`,
		`{{ block "b" . }}{{ . }}{{ end }}`,
		`{{ with secret "a/b" }}{{ . }}{{ end }}{{ $ }}{{ $x := 1 }}{{ $x }}`,
	} {
		if _, err := render.Compile(render.Spec{Path: "a/v", Template: ok}); err != nil {
			t.Errorf("Compile(%q): %v, want it compiled", ok, err)
		}
	}
}

func TestTemplateCompileErrorSaysWhere(t *testing.T) {
	_, err := render.Compile(render.Spec{Path: "a/v", Template: "{{ $v := 1 }}x\ny {{ secret $v }}"})
	if err == nil || !strings.Contains(err.Error(), "line 2, column") {
		t.Fatalf("Compile: %v, want the line of the refused call", err)
	}
}

func TestTemplateFailsWithoutAValueInTheError(t *testing.T) {
	in := map[string]string{"a/s": "TOPSECRET", "a/j": `{"k": "TOPSECRET2"}`, "a/nul": "x\x00y"}
	for _, c := range []struct{ name, tmpl, want string }{
		// text/template's own message here is "range can't iterate over TOPSECRET".
		{"range over a value", "\n {{ range secret \"a/s\" }}{{ end }}", "the template failed at line 2, column 18 (text/template's message is not shown"},
		{"range over a field", `{{ range field "a/j" "k" }}{{ end }}`, "text/template's message is not shown"},
		{"index error", `{{ index (secret "a/s") 99 }}`, "text/template's message is not shown"},
		{"missing field", `{{ field "a/j" "nope" }}`, `field: a/j: the field "nope" is missing`},
		{"quote of a NUL", `{{ secret "a/nul" | quote }}`, "quote: the value holds a NUL byte"},
		{"toJSON of a map", `{{ toJSON . }}`, "toJSON: takes a string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			renderFails(t, render.Spec{Path: "a/v", Template: c.tmpl}, in, c.want, "TOPSECRET")
		})
	}
	t.Run("an input missing", func(t *testing.T) {
		renderFails(t, render.Spec{Path: "a/v", Template: `{{ if false }}{{ secret "a/gone" }}{{ end }}`}, in, "the view cannot be rendered: a/gone: the input is missing")
	})
}

// Every app view holds the application's secrets under their names made
// environment variables' names (EnvName), in the order of those names;
// other applications' entries in the map are not members.
var appInputs = map[string]string{
	"billing/db-password": `p"w\d $HOME` + "\n" + `line2`,
	"billing/api-token":   "tok",
	"billing/empty":       "",
	"billing/unicode":     "é ✓ 😀 \u0085\u2028\ufeff\x7f\x01\t",
	"other/secret":        "NOT-A-MEMBER",
}

// appInputsByEnvName is appInputs' members by the names every format
// gives them.
var appInputsByEnvName = map[string]string{
	"API_TOKEN":   appInputs["billing/api-token"],
	"DB_PASSWORD": appInputs["billing/db-password"],
	"EMPTY":       appInputs["billing/empty"],
	"UNICODE":     appInputs["billing/unicode"],
}

func TestAppViewJSON(t *testing.T) {
	want := `{
  "API_TOKEN": "tok",
  "DB_PASSWORD": "p\"w\\d $HOME\nline2",
  "EMPTY": "",
  "UNICODE": "é ✓ 😀 \u0085\u2028\ufeff\u007f\u0001\t"
}
`
	renderOK(t, render.Spec{Path: "billing/all.json", App: "billing", Format: "json"}, appInputs, want)
	var back map[string]string
	if err := json.Unmarshal([]byte(want), &back); err != nil {
		t.Fatal(err)
	}
	for k, v := range back {
		if appInputsByEnvName[k] != v {
			t.Fatalf("JSON read back %s as %q, want %q", k, v, appInputsByEnvName[k])
		}
	}
	if len(back) != 4 {
		t.Fatalf("JSON read back %d members, want 4", len(back))
	}
}

func TestAppViewYAMLReadsBackTheSameBytes(t *testing.T) {
	want := `"API_TOKEN": "tok"
"DB_PASSWORD": "p\"w\\d $HOME\nline2"
"EMPTY": ""
"UNICODE": "é ✓ 😀 \u0085\u2028\ufeff\u007f\u0001\t"
`
	renderOK(t, render.Spec{Path: "billing/all.yaml", App: "billing", Format: "yaml"}, appInputs, want)
	var back map[string]string
	if err := yaml.Unmarshal([]byte(want), &back); err != nil {
		t.Fatal(err)
	}
	for k, v := range back {
		if appInputsByEnvName[k] != v {
			t.Fatalf("YAML read back %s as %q, want %q", k, v, appInputsByEnvName[k])
		}
	}
	if len(back) != 4 {
		t.Fatalf("YAML read back %d members, want 4", len(back))
	}
}

func TestAppViewProperties(t *testing.T) {
	in := map[string]string{
		"billing/db.url":   "jdbc:postgresql://h:5432/db?a=b#frag!",
		"billing/key with": " leading space, inner space\\",
		"billing/unicode":  "é😀\n\t\r\f",
	}
	// As java.util.Properties.store writes them (less its date comment).
	want := `DB_URL=jdbc\:postgresql\://h\:5432/db?a\=b\#frag\!
KEY_WITH=\ leading space, inner space\\
UNICODE=\u00E9\uD83D\uDE00\n\t\r\f
`
	renderOK(t, render.Spec{Path: "billing/app.properties", App: "billing", Format: "properties"}, in, want)
}

func TestAppViewDotenv(t *testing.T) {
	want := `API_TOKEN="tok"
DB_PASSWORD="p\"w\\d \$HOME
line2"
EMPTY=""
UNICODE="é ✓ 😀 ` + "\u0085\u2028\ufeff\x7f\x01\t" + `"
`
	renderOK(t, render.Spec{Path: "billing/app.env", App: "billing", Format: "dotenv"}, appInputs, want)
}

func TestAppViewOfAnEmptyApplication(t *testing.T) {
	for format, want := range map[string]string{"json": "{}\n", "yaml": "{}\n", "dotenv": "", "properties": ""} {
		renderOK(t, render.Spec{Path: "billing/v", App: "billing", Format: format}, map[string]string{"other/x": "y"}, want)
	}
}

func TestAppViewRefusals(t *testing.T) {
	for _, format := range []string{"json", "yaml", "properties", "dotenv"} {
		t.Run(format+" collision names both secrets", func(t *testing.T) {
			renderFails(t, render.Spec{Path: "billing/app." + format, App: "billing", Format: format},
				map[string]string{"billing/db-password": "VALUE-1", "billing/db_password": "VALUE-2"},
				"billing/db-password and billing/db_password both become the environment variable DB_PASSWORD", "VALUE-")
		})
	}
	for _, format := range []string{"json", "yaml", "properties", "dotenv"} {
		t.Run(format+" not UTF-8", func(t *testing.T) {
			renderFails(t, render.Spec{Path: "billing/v", App: "billing", Format: format},
				map[string]string{"billing/bin": "SECRET\xff"}, "billing/bin: the value is not valid UTF-8", "SECRET")
		})
	}
	t.Run("dotenv NUL", func(t *testing.T) {
		renderFails(t, render.Spec{Path: "billing/v", App: "billing", Format: "dotenv"},
			map[string]string{"billing/bin": "SECRET\x00"}, "billing/bin: the value holds a NUL byte", "SECRET")
	})
}

func TestCompileRefusesABadSpec(t *testing.T) {
	for _, c := range []struct {
		name string
		spec render.Spec
		want string
	}{
		{"nothing", render.Spec{Path: "a/v"}, "exactly one of"},
		{"two ways", render.Spec{Path: "a/v", Template: "x", App: "a", Format: "json"}, "exactly one of"},
		{"field without secret", render.Spec{Path: "a/v", Field: "k"}, "field needs secret"},
		{"secret without field", render.Spec{Path: "a/v", Secret: "a/b", App: "a", Format: "json"}, "secret goes with field"},
		{"format with field", render.Spec{Path: "a/v", Secret: "a/b", Field: "k", Format: "json"}, "format goes with app"},
		{"secret with template", render.Spec{Path: "a/v", Secret: "a/b", Template: "x"}, "do not go with it"},
		{"bad format", render.Spec{Path: "a/v", App: "a", Format: "toml"}, `format "toml": want json, dotenv, yaml or properties`},
		{"bad app", render.Spec{Path: "a/v", App: "a/b", Format: "json"}, `app "a/b": name contains '/' or NUL`},
		{"bad path", render.Spec{Path: "noslash", Template: "x"}, `view path "noslash": want application/name`},
		{"bad secret", render.Spec{Path: "a/v", Secret: "b", Field: "k"}, `secret "b": want application/name`},
		{"bad field", render.Spec{Path: "a/v", Secret: "a/b", Field: "[?"}, "not a JMESPath expression"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := render.Compile(c.spec)
			if err == nil || !strings.Contains(err.Error(), c.want) || !fault.Is(fault.Invalid, err) {
				t.Fatalf("Compile: %v, want Invalid saying %q", err, c.want)
			}
		})
	}
}

func TestInputs(t *testing.T) {
	v := compile(t, render.Spec{Path: "a/v", Secret: "a/db", Field: "k"})
	if got := v.Inputs(); len(got.Secrets) != 1 || got.Secrets[0] != key("a/db") || got.App != "" {
		t.Fatalf("field view Inputs() = %+v", got)
	}
	v = compile(t, render.Spec{Path: "a/v", App: "b", Format: "yaml"})
	if got := v.Inputs(); len(got.Secrets) != 0 || got.App != "b" {
		t.Fatalf("app view Inputs() = %+v", got)
	}
	v = compile(t, render.Spec{Path: "a/v", Template: `{{ secret "b/z" }}{{ field "a/y" "k" }}{{ secret "a/y" }}{{ secret "b/z" }}`})
	if got := v.Inputs(); len(got.Secrets) != 2 || got.Secrets[0] != key("a/y") || got.Secrets[1] != key("b/z") {
		t.Fatalf("template view Inputs() = %+v, want a/y and b/z, sorted, each once", got)
	}
	if v.Path() != key("a/v") {
		t.Fatalf("Path() = %v", v.Path())
	}
}

// Render reads its inputs and never changes them: the caller wipes them.
func TestRenderLeavesItsInputsAsTheyWere(t *testing.T) {
	in := inputs(t, map[string]string{"a/s": "value", "a/j": `{"k": "v"}`})
	v := compile(t, render.Spec{Path: "a/v", Template: `{{ secret "a/s" | quote }}{{ field "a/j" "k" | base64 }}{{ secret "a/s" }}`})
	out, err := v.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `"value"dg==value` {
		t.Fatalf("Render = %q", out)
	}
	out.Wipe()
	if string(in[key("a/s")]) != "value" || string(in[key("a/j")]) != `{"k": "v"}` {
		t.Fatalf("inputs changed: %q", in)
	}
}

// One compiled view renders concurrently (the file system renders views
// from many goroutines); run with -race.
func TestRenderConcurrently(t *testing.T) {
	v := compile(t, render.Spec{Path: "a/v", Template: `{{ field "a/j" "k" | quote }}`})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			value := strings.Repeat("x", i)
			out, err := v.Render(inputs(t, map[string]string{"a/j": `{"k": "` + value + `"}`}))
			if err == nil && string(out) != `"`+value+`"` {
				err = errors.New("got " + string(out))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// manyKeys is a JSON object of n members, "k00": "v00"... in key order:
// enough that Go's randomised map iteration would show in two renderings.
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `"k%02d": {"v": "v%02d"}`, i, i)
	}
	b.WriteString("}")
	return b.String()
}

// A view's bytes are a pure function of its inputs: whatever comes out of
// an object in an order of its own (keys, values, items, an object's *)
// comes out in key order, every time.
func TestAFieldViewRendersTheSameBytesFromTheSameInput(t *testing.T) {
	const n, renderings = 20, 20
	in := map[string]string{"a/db": manyKeys(n)}
	var keys, values, items, star []string
	for i := range n {
		keys = append(keys, fmt.Sprintf(`"k%02d"`, i))
		values = append(values, fmt.Sprintf(`{"v":"v%02d"}`, i))
		items = append(items, fmt.Sprintf(`["k%02d",{"v":"v%02d"}]`, i, i))
		star = append(star, fmt.Sprintf(`"v%02d"`, i))
	}
	list := func(s []string) string { return "[" + strings.Join(s, ",") + "]" }
	for field, want := range map[string]string{
		"keys(@)":      list(keys),
		"values(@)":    list(values),
		"items(@)":     list(items),
		"*.v":          list(star),
		"@.*.v":        list(star),
		"{a: *.v}.a":   list(star),
		"values(@)[0]": `{"v":"v00"}`,
	} {
		t.Run(field, func(t *testing.T) {
			v := compile(t, render.Spec{Path: "a/v", Secret: "a/db", Field: field})
			for range renderings {
				got, err := v.Render(inputs(t, in))
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Fatalf("rendered\n%s\nwant\n%s", got, want)
				}
			}
		})
	}
}

// Why a value is not JSON, and where, would tell something of the value
// (where a syntax error is is how long a prefix is valid): every value
// that is not JSON gets one message, whatever its shape.
func TestNotJSONIsOneMessageWhateverTheValue(t *testing.T) {
	v := compile(t, render.Spec{Path: "a/v", Secret: "a/db", Field: "password"})
	var first string
	for _, value := range []string{
		`{"password": Qhunter2}`,
		`[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,`,
		`{"password": "x"} trailing`,
		`hunter2`,
		"\"\xff\"",
		``,
	} {
		_, err := v.Render(inputs(t, map[string]string{"a/db": value}))
		if err == nil {
			t.Fatalf("%q rendered", value)
		}
		if first == "" {
			first = err.Error()
		}
		if err.Error() != first {
			t.Errorf("%q: the error is\n%s\nanother value's is\n%s", value, err, first)
		}
	}
}

// encoding/json turns a lone UTF-16 surrogate escape into U+FFFD: the
// value is refused rather than rendered as bytes it does not hold.
func TestAJSONStringWithALoneSurrogateIsRefused(t *testing.T) {
	spec := render.Spec{Path: "a/v", Secret: "a/db", Field: "password"}
	for _, value := range []string{
		`{"password": "ab\ud800cd"}`,
		`{"password": "\udc00"}`,
		`{"password": "\ud800\ud800"}`,
		`{"password": "\ud800\n"}`,
		`{"\ud800": 1, "password": "x"}`,
		`{"password": "x\\\ud800"}`,
	} {
		renderFails(t, spec, map[string]string{"a/db": value}, "a lone UTF-16 surrogate", "ab", "cd")
	}
	// A pair is one character; an escaped backslash before "ud800" is
	// no escape.
	renderOK(t, spec, map[string]string{"a/db": `{"password": "\ud83d\ude00 \\ud800"}`}, "\U0001F600 \\ud800")
}

// A rendering is held whole in memory, so its size is bounded: a
// template that loops, or a format over an application whose values add
// up to more, fails naming the view; one just under the limit renders.
func TestARenderingOverItsLimitFailsNamingTheView(t *testing.T) {
	over := strconv.Itoa(render.MaxRendering + 1)
	renderFails(t, render.Spec{Path: "a/v", Template: `{{ range ` + over + ` }}x{{ end }}`}, map[string]string{}, "over its limit")
	big := map[string]string{}
	for i := range 17 {
		big["a/s"+strconv.Itoa(i)] = strings.Repeat("v", 1<<20)
	}
	renderFails(t, render.Spec{Path: "a/all.json", App: "a", Format: "json"}, big, "over its limit")
	under := strconv.Itoa(render.MaxRendering)
	got, err := compile(t, render.Spec{Path: "a/v", Template: `{{ range ` + under + ` }}x{{ end }}`}).Render(inputs(t, nil))
	if err != nil || len(got) != render.MaxRendering {
		t.Fatalf("a rendering of exactly the limit: %d bytes, %v", len(got), err)
	}
	got.Wipe()
}

// A dotenv view, an environment's file, refuses a secret that would set a
// variable that runs code (as secretfs exec and env do); a JSON view of
// the same application, whose keys set nothing, renders it.
func TestADotenvViewRefusesAVariableThatRunsCodeAndJSONDoesNot(t *testing.T) {
	in := map[string]string{"billing/ld-preload": "/tmp/x.so", "billing/token": "TOKEN-VALUE"}
	renderFails(t, render.Spec{Path: "billing/app.env", App: "billing", Format: "dotenv"}, in,
		"billing/ld-preload would set LD_PRELOAD, which makes a loader, a shell, an interpreter or a common tool run code")
	renderOK(t, render.Spec{Path: "billing/all.json", App: "billing", Format: "json"}, in,
		"{\n  \"LD_PRELOAD\": \"/tmp/x.so\",\n  \"TOKEN\": \"TOKEN-VALUE\"\n}\n")
}
