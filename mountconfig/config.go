// Package mountconfig reads a mount's configuration file (`secretfs mount
// --config FILE`): who owns each application and secret and with which
// mode, the views (read-only files rendered from secrets), and the
// applications whose changes the mount watches for programs waiting on
// inotify. It parses and checks; it knows nothing of FUSE, of the store or
// of the file system that uses it.
//
// The file is YAML:
//
//	owners:                      # an exact path's rule, else the first match wins; paths nothing matches use --uid/--gid/--file-mode/--dir-mode
//	  - match: billing           # an application's directory
//	    uid: 1001
//	    gid: 1001
//	    mode: "0500"
//	  - match: billing/*         # path.Match on application/secret (views included)
//	    uid: 1001
//	    gid: 1001
//	    mode: "0400"
//	  - match: billing/tls.key   # one exact path: wins over every pattern, wherever it is
//	    uid: 0
//	    gid: 1001
//	    mode: "0440"
//	views:                       # read-only files rendered from secrets (package render)
//	  - path: billing/db-user
//	    secret: billing/db-credentials
//	    field: username
//	  - path: billing/app.env
//	    template: |
//	      DB_PASSWORD={{ field "billing/db-credentials" "password" | quote }}
//	  - path: billing/all.json
//	    app: billing
//	    format: json
//	watch:                       # applications listed once per --ttl even when nobody reads them,
//	  - billing                  # so that a change made elsewhere reaches inotify watchers
//
// Everything wrong with it is refused whole, at start, as "FILE:LINE:
// reason": a key this package does not know (as yaml's KnownFields
// would), a bad pattern, an owner rule that can never apply (an earlier
// rule has the same pattern), a mode that is not octal, a view that does not compile, two
// views at one path, a view that hides a secret another view reads, and
// a second YAML document in the file. Whether a view's path names a stored secret can only be
// told against the store: CheckStore. An owner rule that an earlier
// pattern takes some paths from is warned of, not refused: ShadowedOwners;
// so is a view's path written as a pattern: ViewPathsLikePatterns.
package mountconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/owned"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/store"
)

// Config is one configuration file, checked.
type Config struct {
	File   string  // where it was read from, for messages
	Owners []Owner // in the file's order; see OwnerOf for which wins
	Views  []View
	Watch  []Watch
}

// Owner is one rule of owners: who owns what Match matches, with which
// permission bits. A field the rule leaves out (nil) is the mount's flag
// (--uid, --gid, --file-mode or --dir-mode).
type Owner struct {
	Match    string // a path.Match pattern on "application" or "application/name"
	UID, GID *uint32
	Mode     *uint32 // permission bits, at most 0777
	Line     int
}

// View is one view: its spec and the view compiled from it.
type View struct {
	Spec render.Spec
	View *render.View
	Line int
}

// Watch is one pattern of applications whose changes are watched.
type Watch struct {
	Match string // a path.Match pattern on an application's name
	Line  int
}

// Error is what is wrong with a configuration file, and where.
type Error struct {
	File string
	Line int // 0 when the file as a whole is wrong
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	}
	return e.File + ": " + e.Msg
}

// Load reads and checks the configuration file at file. It says who may
// read which secret, so a file that someone other than root or this
// process's user could write or put in its place is refused: one every
// user may write, one another user owns, one a group other than root's
// may write, or one in a directory that another user owns, or that every
// user or a group other than root's may write without the sticky bit
// (see owned.Check).
func Load(file string) (*Config, error) {
	data, err := readOwned(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the Error names the file, once
		}
		return nil, &Error{File: file, Msg: err.Error()}
	}
	return Parse(file, data)
}

// says is why a configuration file that someone else could write is
// refused.
const says = "it says who may read which secret"

// readOwned reads file, unless someone other than root or this process's
// user could have written it or put it in its place (see Load).
func readOwned(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := owned.Check(f, file, says); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// Parse checks data, the content of the configuration file named file.
func Parse(file string, data []byte) (*Config, error) {
	p := parser{file: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	c := &Config{File: file}
	switch {
	case errors.Is(err, io.EOF):
		return c, nil // an empty file: the flags alone
	case err != nil:
		return nil, p.yamlError(err)
	}
	// One document: a second (after "---") would be ignored by a
	// reader of the first, and what it says silently lost. An empty one
	// (a "---" that ends the file) says nothing.
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, p.yamlError(err)
		}
		if len(more.Content) > 0 && !isNull(more.Content[0]) {
			return nil, p.errorAt(more.Content[0], "a second YAML document (after \"---\"): the file must hold one")
		}
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return c, nil
	}
	root := doc.Content[0]
	err = p.mapping(root, "the file", map[string]func(*yaml.Node) error{
		"owners": func(n *yaml.Node) error {
			return p.sequence(n, "owners", func(n *yaml.Node) error { return c.addOwner(&p, n) })
		},
		"views": func(n *yaml.Node) error {
			return p.sequence(n, "views", func(n *yaml.Node) error { return c.addView(&p, n) })
		},
		"watch": func(n *yaml.Node) error {
			return p.sequence(n, "watch", func(n *yaml.Node) error { return c.addWatch(&p, n) })
		},
	})
	if err != nil {
		return nil, err
	}
	if err := c.checkViews(); err != nil {
		return nil, err
	}
	return c, nil
}

// isNull reports whether n is YAML's null: nothing written.
func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// parser reads yaml.Nodes, refusing with the file and line.
type parser struct{ file string }

func (p *parser) errorAt(n *yaml.Node, format string, args ...any) error {
	return &Error{File: p.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// yamlLine finds the line in a message of the yaml package.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError is a syntax error of the yaml package, as an *Error.
func (p *parser) yamlError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: p.file, Line: line, Msg: "not YAML: " + m[2]}
	}
	return &Error{File: p.file, Msg: "not YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// mapping calls each key's function with its value. A key it does not
// know, or one given twice, is refused.
func (p *parser) mapping(n *yaml.Node, what string, keys map[string]func(*yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return p.errorAt(n, "%s must be a mapping of keys to values", what)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		set, ok := keys[k.Value]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Tag == "!!merge" {
			return p.errorAt(k, "a YAML merge key (<<) in %s: write the keys out", what)
		}
		if !ok || k.Kind != yaml.ScalarNode {
			return p.errorAt(k, "unknown key %q in %s (known: %s)", k.Value, what, known(keys))
		}
		if line, twice := seen[k.Value]; twice {
			return p.errorAt(k, "%q is given twice in %s (first at line %d)", k.Value, what, line)
		}
		seen[k.Value] = k.Line
		if err := set(v); err != nil {
			return err
		}
	}
	return nil
}

// deref is what n stands for: the anchored node, if n is an alias
// (`gid: *a`), else n.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func known(keys map[string]func(*yaml.Node) error) string {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func (p *parser) sequence(n *yaml.Node, what string, each func(*yaml.Node) error) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // "views:" with nothing under it
	}
	if n.Kind != yaml.SequenceNode {
		return p.errorAt(n, "%s must be a list", what)
	}
	for _, item := range n.Content {
		if err := each(deref(item)); err != nil {
			return err
		}
	}
	return nil
}

// str reads a string: a scalar, not a list or a mapping.
func (p *parser) str(n *yaml.Node, key string, into *string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return p.errorAt(n, "%s must be a string", key)
	}
	*into = n.Value
	return nil
}

// id reads a uid or gid: a whole number from 0 to 4294967294 (-1, all
// ones, means "no change" to chown(2) and is no one's id).
func (p *parser) id(n *yaml.Node, key string, into **uint32) error {
	v, err := strconv.ParseUint(n.Value, 10, 32)
	if n.Kind != yaml.ScalarNode || err != nil || v == 1<<32-1 {
		return p.errorAt(n, "%s %q: want a number from 0 to 4294967294", key, n.Value)
	}
	id := uint32(v)
	*into = &id
	return nil
}

// mode reads permission bits in octal, as chmod(1) takes them: "0640",
// "640" or "0o640". Quote it: YAML reads an unquoted 0640 as octal but
// 640 as decimal; this reads the digits as written, always octal. The
// setuid, setgid and sticky bits are refused: the mount is nosuid, and
// `ls -l` would show an "s" that means nothing.
func (p *parser) mode(n *yaml.Node, into **uint32) error {
	digits := strings.TrimPrefix(n.Value, "0o")
	v, err := strconv.ParseUint(digits, 8, 32)
	if n.Kind != yaml.ScalarNode || err != nil || digits == "" || v > 0o7777 {
		return p.errorAt(n, "mode %q: want permission bits in octal, such as \"0640\"", n.Value)
	}
	if v > 0o777 {
		return p.errorAt(n, "mode %q: want permission bits from 0 to 0777: setuid, setgid and sticky mean nothing on this nosuid mount", n.Value)
	}
	m := uint32(v)
	*into = &m
	return nil
}

// pattern checks the path.Match pattern n, the value of key, of at most
// parts parts.
func (p *parser) pattern(n *yaml.Node, key string, parts int, want string) (string, error) {
	var pat string
	if err := p.str(n, key, &pat); err != nil {
		return "", err
	}
	if _, err := path.Match(pat, ""); err != nil {
		return "", p.errorAt(n, "%s %q: not a pattern (path.Match: %v)", key, pat, err)
	}
	segs := strings.Split(pat, "/")
	if len(segs) > parts {
		return "", p.errorAt(n, "%s %q: %s", key, pat, want)
	}
	for _, s := range segs {
		if s == "" {
			return "", p.errorAt(n, "%s %q: %s", key, pat, want)
		}
	}
	return pat, nil
}

func (c *Config) addOwner(p *parser, n *yaml.Node) error {
	o := Owner{Line: n.Line}
	var match *yaml.Node
	err := p.mapping(n, "an owner rule", map[string]func(*yaml.Node) error{
		"match": func(v *yaml.Node) error { match = v; return nil },
		"uid":   func(v *yaml.Node) error { return p.id(v, "uid", &o.UID) },
		"gid":   func(v *yaml.Node) error { return p.id(v, "gid", &o.GID) },
		"mode":  func(v *yaml.Node) error { return p.mode(v, &o.Mode) },
	})
	if err != nil {
		return err
	}
	if match == nil {
		return p.errorAt(n, "an owner rule needs match: the application (app) or files (app/name) it is for")
	}
	if o.Match, err = p.pattern(match, "match", 2, "want an application (app) or its files (app/name), as patterns"); err != nil {
		return err
	}
	if o.UID == nil && o.GID == nil && o.Mode == nil {
		return p.errorAt(n, "the owner rule for %q sets none of uid, gid and mode", o.Match)
	}
	if i := slices.IndexFunc(c.Owners, func(r Owner) bool { return r.Match == o.Match }); i >= 0 {
		first := c.Owners[i]
		return p.errorAt(match, "the owner rule for %q never applies: the rule at line %d has the same match; merge the two", o.Match, first.Line)
	}
	c.Owners = append(c.Owners, o)
	return nil
}

// exact reports whether pat names one path, with nothing for path.Match
// to expand: its rule wins over every pattern (see OwnerOf).
func exact(pat string) bool { return !strings.ContainsAny(pat, `*?[\`) }

func (c *Config) addView(p *parser, n *yaml.Node) error {
	var s render.Spec
	str := func(key string, into *string) func(*yaml.Node) error {
		return func(v *yaml.Node) error { return p.str(v, key, into) }
	}
	err := p.mapping(n, "a view", map[string]func(*yaml.Node) error{
		"path":     str("path", &s.Path),
		"secret":   str("secret", &s.Secret),
		"field":    str("field", &s.Field),
		"template": str("template", &s.Template),
		"app":      str("app", &s.App),
		"format":   str("format", &s.Format),
	})
	if err != nil {
		return err
	}
	if s.Path == "" {
		return p.errorAt(n, "a view needs path: application/name, where it appears")
	}
	v, err := render.Compile(s)
	if err != nil {
		return p.errorAt(n, "%s", compileProblem(err))
	}
	c.Views = append(c.Views, View{Spec: s, View: v, Line: n.Line})
	return nil
}

// compileProblem is what render.Compile found wrong with a view, as the
// file's reader should read it: the view's path once, then what is wrong,
// without render's operation and kind, which are for logs. An error
// without a path is about the path, which its message quotes.
func compileProblem(err error) string {
	var fe *fault.Error
	switch {
	case !errors.As(err, &fe) || fe.Msg == "":
		return fault.Message(err)
	case fe.Path == "":
		return fe.Msg
	}
	return "the view " + string(fe.Path) + ": " + fe.Msg
}

func (c *Config) addWatch(p *parser, n *yaml.Node) error {
	pat, err := p.pattern(n, "watch", 1, "want an application, as a pattern: watch lists applications")
	if err != nil {
		return err
	}
	c.Watch = append(c.Watch, Watch{Match: pat, Line: n.Line})
	return nil
}

// checkViews refuses two views at one path, and a view at the path of a
// secret another view reads: a reader of that path would get the view,
// while the other view renders from the stored secret of the same name.
func (c *Config) checkViews() error {
	at := map[store.Key]View{}
	for _, v := range c.Views {
		if first, ok := at[v.View.Path()]; ok {
			return &Error{File: c.File, Line: v.Line, Msg: fmt.Sprintf("the view %s is already defined at line %d", v.View.Path(), first.Line)}
		}
		at[v.View.Path()] = v
	}
	for _, v := range c.Views {
		for _, in := range v.View.Inputs().Secrets {
			if hider, ok := at[in]; ok {
				return &Error{File: c.File, Line: v.Line, Msg: fmt.Sprintf(
					"the view %s reads the secret %s, which the view at line %d hides: a view reads stored secrets, not views", v.View.Path(), in, hider.Line)}
			}
		}
	}
	return nil
}

// CheckStore refuses a view whose path names a secret the store holds,
// as exists says: reading that path would give the view, never the
// secret. It is checked when the mount starts; a secret created later
// under a view's path through the mount is refused (EEXIST), and one
// created elsewhere stays hidden by the view.
func (c *Config) CheckStore(ctx context.Context, exists func(context.Context, store.Key) (bool, error)) error {
	for _, v := range c.Views {
		ok, err := exists(ctx, v.View.Path())
		if err != nil {
			return &Error{File: c.File, Line: v.Line, Msg: "cannot tell whether the store holds a secret at the view's path " + v.View.Path().String() + ": " + fault.Message(err)}
		}
		if ok {
			return &Error{File: c.File, Line: v.Line, Msg: "the view " + v.View.Path().String() + " names a secret the store holds: remove the secret (secretfs rm) or give the view another path"}
		}
	}
	return nil
}

// OwnerOf returns the rule for p, an application ("app") for its
// directory or "app/name" for a secret or a view: the rule whose match is
// exactly p, else the first pattern in the file's order that matches it.
// An exact path wins wherever it is written, so that a rule for one file
// (billing/tls.key) is never made unreachable by the rule for its
// application's files (billing/*) above it: the file reads the way its
// writer evidently meant, in either order.
func (c *Config) OwnerOf(p string) (Owner, bool) {
	if c == nil {
		return Owner{}, false
	}
	for _, o := range c.Owners {
		if o.Match == p {
			return o, true
		}
	}
	for _, o := range c.Owners {
		if exact(o.Match) {
			continue
		}
		if ok, _ := path.Match(o.Match, p); ok {
			return o, true
		}
	}
	return Owner{}, false
}

// Watched reports whether the changes of app are watched.
func (c *Config) Watched(app string) bool {
	if c == nil {
		return false
	}
	for _, w := range c.Watch {
		if ok, _ := path.Match(w.Match, app); ok {
			return true
		}
	}
	return false
}

// ViewAt returns the view at k, if there is one.
func (c *Config) ViewAt(k store.Key) (View, bool) {
	if c == nil {
		return View{}, false
	}
	for _, v := range c.Views {
		if v.View.Path() == k {
			return v, true
		}
	}
	return View{}, false
}
