package render

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"text/template"
	"text/template/parse"

	"github.com/jmespath-community/go-jmespath"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

// templateName is the name every view's template is parsed under. Errors
// name the view by its path, not by this; it holds no ':' so that an
// error's position can be read back from text/template's message.
const templateName = "view"

// Template functions. secret and field read inputs; their arguments must
// be string literals.
const (
	fnSecret = "secret"
	fnField  = "field"
)

// standIns are the template functions at parse time: text/template needs
// every function to exist when it parses; a rendering replaces them with
// functions over its inputs.
var standIns = template.FuncMap{
	fnSecret: func(string) (string, error) { return "", errors.New("not rendering") },
	fnField:  func(string, string) (string, error) { return "", errors.New("not rendering") },
	"quote":  func(string) (string, error) { return "", errors.New("not rendering") },
	"base64": func(string) (string, error) { return "", errors.New("not rendering") },
	"toJSON": func(any) (string, error) { return "", errors.New("not rendering") },
}

func (v *View) compileTemplate(text string) error {
	// A template is executed with no data. The walk refuses a field of
	// dot ({{ .Password }}); missingkey=error is the second guard, so
	// that no rendering prints "<no value>" into the view.
	t, err := template.New(templateName).Option("missingkey=error").Funcs(standIns).Parse(text)
	if err != nil {
		// A parse error quotes the template: the config, not a value.
		return errors.New(parsePosition.ReplaceAllString(err.Error(), "template: line $1: "))
	}
	inputs := map[store.Key]bool{}
	v.tmplRefs = map[fieldRef]jmespath.JMESPath{}
	walk := &templateWalk{view: v, inputs: inputs, defined: map[string]bool{}}
	for _, tt := range t.Templates() {
		walk.defined[tt.Name()] = tt.Tree != nil && tt.Tree.Root != nil
	}
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		walk.tree = tt.Tree
		walk.node(tt.Tree.Root)
		if walk.err != nil {
			return walk.err
		}
	}
	for k := range inputs {
		v.inputs.Secrets = append(v.inputs.Secrets, k)
	}
	sortKeys(v.inputs.Secrets)
	v.tmpl = t
	return nil
}

// templateWalk visits every node of a parsed template, to find the
// secrets it reads and refuse any way of naming one that is not a string
// literal: a variable, a field of dot, a pipeline's value. It also refuses
// what would fail every rendering, so that the mistake is found at start,
// not at the first read: a field of anything (a template runs without
// data, and every value it makes is a string) and a call of a template
// that is not defined.
type templateWalk struct {
	view    *View
	tree    *parse.Tree // the one being walked, to locate nodes in
	defined map[string]bool
	inputs  map[store.Key]bool
	err     error
}

func (w *templateWalk) fail(n parse.Node, msg string) {
	if w.err == nil {
		w.err = errors.New("template: " + w.position(n) + msg)
	}
}

// position locates n as text/template's messages do: "line L, column C: ".
func (w *templateWalk) position(n parse.Node) string {
	location, _ := w.tree.ErrorContext(n)
	if m := nodePosition.FindStringSubmatch(location); m != nil {
		return "line " + m[1] + ", column " + column(m[2]) + ": "
	}
	return ""
}

func (w *templateWalk) node(n parse.Node) {
	if n == nil || w.err != nil {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		w.list(n)
	case *parse.ActionNode:
		w.pipe(n.Pipe)
	case *parse.IfNode:
		w.branch(&n.BranchNode)
	case *parse.RangeNode:
		w.branch(&n.BranchNode)
	case *parse.WithNode:
		w.branch(&n.BranchNode)
	case *parse.TemplateNode:
		if !w.defined[n.Name] {
			w.fail(n, "no template "+strconv.Quote(n.Name)+" is defined")
		}
		w.pipe(n.Pipe)
	case *parse.PipeNode:
		w.pipe(n)
	case *parse.ChainNode:
		w.node(n.Node)
		w.fields(n, n.Field)
	case *parse.FieldNode:
		w.fields(n, n.Ident)
	case *parse.VariableNode:
		w.fields(n, n.Ident[1:])
	case *parse.IdentifierNode:
		w.identifier(n)
	}
}

// fields refuses a field (.Name) of anything: a template runs without
// data, and secret, field and every other function give a string, so a
// field names nothing and would fail every rendering.
func (w *templateWalk) fields(n parse.Node, names []string) {
	if len(names) > 0 {
		w.fail(n, "."+names[0]+" names nothing: a view's template has no data; read a secret with secret or field")
	}
}

func (w *templateWalk) list(l *parse.ListNode) {
	if l == nil { // an if or range without an else
		return
	}
	for _, n := range l.Nodes {
		w.node(n)
	}
}

// identifier is reached for a function's name only where it is not the
// head of a command: as an argument it would be called with no arguments.
func (w *templateWalk) identifier(n *parse.IdentifierNode) {
	if n.Ident == fnSecret || n.Ident == fnField {
		w.fail(n, n.Ident+" must be called with its secret's name as a string literal")
	}
}

func (w *templateWalk) branch(b *parse.BranchNode) {
	w.pipe(b.Pipe)
	w.list(b.List)
	w.list(b.ElseList)
}

func (w *templateWalk) pipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	for i, cmd := range p.Cmds {
		w.command(cmd, i > 0)
	}
}

// command checks one command; piped says it receives the value of the
// command before it in its pipeline as its last argument.
func (w *templateWalk) command(cmd *parse.CommandNode, piped bool) {
	if len(cmd.Args) == 0 || w.err != nil {
		return
	}
	ident, ok := cmd.Args[0].(*parse.IdentifierNode)
	if !ok || (ident.Ident != fnSecret && ident.Ident != fnField) {
		for _, a := range cmd.Args {
			w.node(a)
		}
		return
	}
	want, usage := 1, `secret "application/name"`
	if ident.Ident == fnField {
		want, usage = 2, `field "application/name" "expression"`
	}
	lits := w.literals(ident.Ident, usage, cmd.Args[1:])
	if w.err != nil {
		return
	}
	if piped || len(lits) != want {
		w.fail(cmd, ident.Ident+" takes "+strconv.Itoa(want)+" string literal(s), as in "+usage+", and no piped value")
		return
	}
	w.input(cmd, lits)
}

// literals returns the texts of args, which must all be string literals.
func (w *templateWalk) literals(fn, usage string, args []parse.Node) []string {
	var lits []string
	for _, a := range args {
		s, ok := a.(*parse.StringNode)
		if !ok {
			w.fail(a, fn+": every argument must be a string literal, as in "+usage+", so that the view's inputs are known before it is rendered")
			return nil
		}
		lits = append(lits, s.Text)
	}
	return lits
}

// input records the secret a secret or field call reads (lits[0]), and
// compiles a field's expression (lits[1]).
func (w *templateWalk) input(cmd *parse.CommandNode, lits []string) {
	key, err := parseKey(lits[0])
	if err != nil {
		w.fail(cmd, cmd.Args[0].String()+": "+err.Error())
		return
	}
	w.inputs[key] = true
	if len(lits) == 2 {
		ref, err := compileField(lits[0], lits[1])
		if err != nil {
			w.fail(cmd, err.Error())
			return
		}
		w.view.tmplRefs[fieldRef{key: ref.key, expr: ref.expr}] = ref.jp
	}
}

// column turns text/template's byte offset in a line, counted from 0,
// into a column as editors count them, from 1.
func column(offset string) string {
	n, err := strconv.Atoi(offset)
	if err != nil {
		return offset
	}
	return strconv.Itoa(n + 1)
}

// funcError is a failure of one of our template functions: its message
// names secrets and expressions, never a value, so it may be shown.
type funcError struct{ msg string }

func (e *funcError) Error() string { return e.msg }

// execPosition reads the position text/template's messages start with,
// "template: view:LINE:COL: executing ...".
var (
	execPosition = regexp.MustCompile(`^template: ` + templateName + `:(\d+):(\d+): `)
	nodePosition = regexp.MustCompile(`^` + templateName + `:(\d+):(\d+)$`)
	// parsePosition is how text/template's parse errors start.
	parsePosition = regexp.MustCompile(`^template: ` + templateName + `:(\d+): `)
)

// templateError describes err, an error of Execute, without a value:
// text/template's own messages may print one (range can't iterate over
// VALUE), so only the position is kept from them, with our functions'
// messages, which never hold one.
func templateError(err error) error {
	where := ""
	if m := execPosition.FindStringSubmatch(err.Error()); m != nil {
		where = " at line " + m[1] + ", column " + column(m[2])
	}
	var fe *funcError
	if errors.As(err, &fe) {
		return errors.New("the template failed" + where + ": " + fe.msg)
	}
	return errors.New("the template failed" + where + " (text/template's message is not shown: it may quote a value)")
}

// templateRendering is the state of one template rendering: the inputs,
// each JSON input decoded once, and the arena of values the functions
// made.
type templateRendering struct {
	view    *View
	in      map[store.Key]crypto.Plaintext
	decoded map[store.Key]any
	arena   arena
}

// renderTemplate executes the view's template over in. Copies of values
// out of our reach: text/template prints every value through fmt, whose
// pooled print buffer keeps the last bytes printed until it is reused;
// strings decoded from JSON inputs (decodeJSON). secret's results are not
// copies (they alias in), and what quote, base64, toJSON and field make is
// in the arena, wiped here.
func (v *View) renderTemplate(out *buffer, in map[store.Key]crypto.Plaintext) error {
	r := &templateRendering{view: v, in: in, decoded: map[store.Key]any{}}
	defer r.arena.wipe()
	t, err := v.tmpl.Clone()
	if err != nil {
		return errors.New("the template could not be prepared: " + err.Error())
	}
	t.Funcs(template.FuncMap{
		fnSecret: r.secret,
		fnField:  r.field,
		"quote":  r.quote,
		"base64": r.base64,
		"toJSON": r.toJSON,
	})
	if err := t.Execute(out, nil); err != nil {
		return templateError(err)
	}
	return nil
}

func (r *templateRendering) secret(name string) (string, error) {
	key, err := parseKey(name)
	if err != nil {
		return "", &funcError{"secret: " + err.Error()}
	}
	value, ok := r.in[key]
	if !ok {
		return "", &funcError{"secret: the input " + key.String() + " is missing"}
	}
	return alias(value), nil
}

func (r *templateRendering) field(name, expr string) (string, error) {
	key, err := parseKey(name)
	if err != nil {
		return "", &funcError{"field: " + err.Error()}
	}
	jp, ok := r.view.tmplRefs[fieldRef{key: key, expr: expr}]
	if !ok { // compileTemplate saw every literal call
		return "", &funcError{"field: " + key.String() + " " + strconv.Quote(expr) + " was not compiled"}
	}
	doc, ok := r.decoded[key]
	if !ok {
		value, ok := r.in[key]
		if !ok {
			return "", &funcError{"field: the input " + key.String() + " is missing"}
		}
		if doc, err = decodeJSON(value); err != nil {
			return "", &funcError{"field: " + key.String() + ": " + err.Error()}
		}
		r.decoded[key] = doc
	}
	var b buffer
	if err := appendField(&b, fieldRef{key: key, expr: expr, jp: jp}, doc); err != nil {
		b.wipe()
		return "", &funcError{"field: " + err.Error()}
	}
	return r.keep(&b), nil
}

// keep gives b's bytes to the arena and returns them as a string.
func (r *templateRendering) keep(b *buffer) string {
	p := b.bytes()
	r.arena.keep(p)
	return alias(p)
}

func (r *templateRendering) quote(value string) (string, error) {
	var b buffer
	if err := appendQuoted(&b, value); err != nil {
		b.wipe()
		return "", &funcError{"quote: " + err.Error()}
	}
	return r.keep(&b), nil
}

func (r *templateRendering) base64(value string) (string, error) {
	var b buffer
	b.grow(base64.StdEncoding.EncodedLen(len(value)))
	b.b = base64.StdEncoding.AppendEncode(b.b, readOnlyBytes(value))
	return r.keep(&b), nil
}

func (r *templateRendering) toJSON(value any) (string, error) {
	var b buffer
	var err error
	switch v := value.(type) {
	case string:
		err = appendJSONString(&b, v)
	case bool:
		err = appendJSON(&b, v)
	case int:
		_, _ = b.WriteString(strconv.Itoa(v))
	case float64:
		err = appendFloat(&b, v)
	default:
		err = errors.New("takes a string, a number or a bool")
	}
	if err != nil {
		b.wipe()
		return "", &funcError{"toJSON: " + err.Error()}
	}
	return r.keep(&b), nil
}
