package render

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/jmespath-community/go-jmespath"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// Spec is a view as the mount's config file gives it. Exactly one way of
// rendering is set: Secret with Field, Template, or App with Format.
type Spec struct {
	// Path is where the view appears, "application/name". Errors name
	// the view by it.
	Path string
	// Secret ("application/name") is a secret whose value is JSON, and
	// Field a JMESPath expression on it. A string result renders as the
	// string's bytes (no quotes, no newline added); any other result as
	// compact JSON (true, 5432, ["a","b"], {"k":"v"} with keys in
	// order). keys, values, items and an object's * give its members
	// in key order (jmespath.go), so the result is a function of the
	// value alone. A missing field, or null, is an error.
	Secret, Field string
	// Template is a Go text/template with these functions, each taking
	// its secret's name as a string literal (so every input is known
	// before anything is rendered):
	//	secret "app/name"          the secret's value
	//	field "app/name" "expr"    a JMESPath field of a JSON secret, as Field renders it
	//	quote                      double-quoted for dotenv (POSIX sh and systemd; see Dotenv)
	//	base64                     standard base64, with padding
	//	toJSON                     a JSON string (or number, or bool)
	// e.g. DB_PASSWORD={{ field "billing/db" "password" | quote }}.
	Template string
	// App is an application, all of whose secrets are rendered in
	// Format: json, dotenv, yaml or properties (see FormatJSON...), each
	// under its name made an environment variable's name (EnvName).
	App, Format string
}

// Inputs are what a view reads. A rendering reads one consistent set of
// them: the same revision of every input, never a mix of two.
type Inputs struct {
	// Secrets are the secrets a field or template view reads, sorted,
	// each once.
	Secrets []store.Key
	// App, for an application view, is the application whose every
	// secret (as one listing says) is an input; "" otherwise.
	App string
}

// View is a compiled Spec: checked, its expressions and template parsed,
// its inputs known. A View is immutable and safe for concurrent use.
type View struct {
	path   store.Key
	inputs Inputs

	// One of these is set, by the kind of view.
	field    *fieldRef          // Secret + Field
	tmpl     *template.Template // Template, with stand-in functions
	tmplRefs map[fieldRef]jmespath.JMESPath
	format   func(*buffer, []Variable) error // App + Format
}

// fieldRef is one JMESPath expression on one secret.
type fieldRef struct {
	key  store.Key
	expr string
	jp   jmespath.JMESPath // nil inside a template's tmplRefs key
}

// Compile checks spec and prepares it for rendering. The error (Invalid)
// names the view and what is wrong; it quotes the spec, never a value.
// Its message is written for the config file's reader: what is wrong,
// each part of the spec named by its key (`format "xml": want ...`),
// without the operations of the checks that found it. Its Path is the
// view's; when the path itself is wrong, it has none, and the message,
// which then starts "view path", quotes it.
func Compile(spec Spec) (*View, error) {
	const op fault.Op = "render.Compile"
	path, err := parseKey(spec.Path)
	if err != nil {
		return nil, fault.E(op, fault.Invalid, "view path "+err.Error())
	}
	v, err := compile(path, spec)
	if err != nil {
		return nil, fault.E(op, fault.Path(spec.Path), fault.Invalid, err.Error())
	}
	return v, nil
}

func compile(path store.Key, spec Spec) (*View, error) {
	var err error
	v := &View{path: path}
	set := 0
	for _, s := range []string{spec.Field, spec.Template, spec.App} {
		if s != "" {
			set++
		}
	}
	switch {
	case set != 1:
		return nil, errors.New("a view needs exactly one of field (with secret), template, or app (with format)")
	case spec.Field != "":
		err = v.compileFieldView(spec)
	case spec.Template != "":
		err = v.compileTemplateView(spec)
	default:
		err = v.compileAppView(spec)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (v *View) compileFieldView(spec Spec) error {
	switch {
	case spec.Secret == "":
		return errors.New("field needs secret: the secret whose value is JSON")
	case spec.Format != "":
		return errors.New("format goes with app, not field")
	}
	ref, err := compileField(spec.Secret, spec.Field)
	if err != nil {
		return err
	}
	v.field = &ref
	v.inputs.Secrets = []store.Key{ref.key}
	return nil
}

func (v *View) compileTemplateView(spec Spec) error {
	if spec.Secret != "" || spec.Format != "" {
		return errors.New("a template view names its secrets in the template; secret and format do not go with it")
	}
	return v.compileTemplate(spec.Template)
}

func (v *View) compileAppView(spec Spec) error {
	if spec.Secret != "" {
		return errors.New("secret goes with field, not app")
	}
	if err := store.ValidName(spec.App); err != nil {
		return errors.New("app " + strconv.Quote(spec.App) + ": " + nameProblem(err))
	}
	f, ok := formats[spec.Format]
	if !ok {
		return errors.New("format " + strconv.Quote(spec.Format) + ": want json, dotenv, yaml or properties")
	}
	v.format = f
	v.inputs.App = spec.App
	return nil
}

// parseKey reads "application/name".
func parseKey(s string) (store.Key, error) {
	app, name, ok := strings.Cut(s, "/")
	if !ok {
		return store.Key{}, errors.New(strconv.Quote(s) + ": want application/name")
	}
	k := store.Key{App: app, Name: name}
	if err := k.Validate(); err != nil {
		return store.Key{}, errors.New(strconv.Quote(s) + ": " + nameProblem(err))
	}
	return k, nil
}

// nameProblem is what the store's check of a name found wrong with it,
// alone: the innermost message, without the op, the path and the kind
// around it, which are for logs; the caller quotes the name before it.
func nameProblem(err error) string {
	msg := err.Error()
	for ; err != nil; err = errors.Unwrap(err) {
		if fe, ok := err.(*fault.Error); ok && fe.Msg != "" {
			msg = fe.Msg
		}
	}
	return msg
}

func compileField(secret, expr string) (fieldRef, error) {
	key, err := parseKey(secret)
	if err != nil {
		return fieldRef{}, errors.New("secret " + err.Error())
	}
	jp, err := compileJMESPath(expr)
	if err != nil {
		// A syntax error quotes the expression: the config, not a value.
		return fieldRef{}, errors.New("field " + strconv.Quote(expr) + ": not a JMESPath expression: " + err.Error())
	}
	return fieldRef{key: key, expr: expr, jp: jp}, nil
}

// Path is where the view appears.
func (v *View) Path() store.Key { return v.path }

// Inputs are what the view reads. The caller must not change the result.
func (v *View) Inputs() Inputs { return v.inputs }

// Render renders the view from in, one consistent set of plaintexts that
// holds at least every input: every key of Inputs().Secrets, and for an
// application view every secret of the application (all entries of in
// whose App is Inputs().App are its members, so in must hold the whole
// listing). in is read, never changed nor kept; the caller must not change
// it until Render returns, and wipes it afterwards.
//
// The result is the view's bytes, which the caller owns and must Wipe.
// The error names the view and the cause (an input missing, a value that
// is not JSON, a field absent, a template's failure, a name collision),
// never a value; its Kind is Other (EIO on a file system). Every buffer
// Render fills is wiped before it returns, except the copies Go keeps out
// of reach: decodeJSON and template.go say which.
func (v *View) Render(in map[store.Key]crypto.Plaintext) (crypto.Plaintext, error) {
	// The error reads as the mount's other failures of a view do
	// (vfs.viewFailure): the view, then why.
	const failed = "the view cannot be rendered: "
	for _, k := range v.inputs.Secrets {
		if _, ok := in[k]; !ok {
			return nil, fault.E(v.path.Path(), failed+k.String()+": the input is missing")
		}
	}
	var out buffer
	err := v.render(&out, in)
	if out.tooBig {
		err = errTooBig
	}
	if err != nil {
		out.wipe()
		return nil, fault.E(v.path.Path(), failed+err.Error())
	}
	return out.bytes(), nil
}

// render writes the view to out. A panic (of JMESPath, of text/template)
// is an error like any other: a view that cannot be rendered must be EIO
// for its reader, never the end of the mount. The panic's message is
// dropped, as those libraries' error messages are: it may quote a value.
func (v *View) render(out *buffer, in map[store.Key]crypto.Plaintext) (err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("the rendering panicked (the panic's message is not shown: it may quote a value)")
		}
	}()
	switch {
	case v.field != nil:
		return v.renderField(out, in)
	case v.tmpl != nil:
		return v.renderTemplate(out, in)
	default:
		vars, err := named(v.members(in))
		if err != nil {
			return err
		}
		return v.format(out, vars)
	}
}

func (v *View) renderField(out *buffer, in map[store.Key]crypto.Plaintext) error {
	doc, err := decodeJSON(in[v.field.key])
	if err != nil {
		return errors.New(v.field.key.String() + ": " + err.Error())
	}
	return appendField(out, *v.field, doc)
}

// appendField writes ref's result on doc, the decoded value of its secret:
// a string as it is, anything else as compact JSON.
func appendField(out *buffer, ref fieldRef, doc any) error {
	result, err := ref.jp.Search(doc)
	if err != nil {
		// The library's messages may print the value searched.
		return errors.New(ref.key.String() + ": the field " + strconv.Quote(ref.expr) + " could not be evaluated on the value (the library's message is not shown: it may quote the value)")
	}
	switch r := result.(type) {
	case nil:
		return errors.New(ref.key.String() + ": the field " + strconv.Quote(ref.expr) + " is missing (or null)")
	case string:
		_, _ = out.WriteString(r)
		return nil
	}
	if err := appendJSON(out, result); err != nil {
		return errors.New(ref.key.String() + ": the field " + strconv.Quote(ref.expr) + ": " + err.Error())
	}
	return nil
}

// members returns the entries of in that belong to the view's
// application, in name order.
func (v *View) members(in map[store.Key]crypto.Plaintext) []member {
	var ms []member
	for k, value := range in {
		if k.App == v.inputs.App {
			ms = append(ms, member{key: k, value: value})
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].key.Name < ms[j].key.Name })
	return ms
}
