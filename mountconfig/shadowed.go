package mountconfig

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/secretfs/secretfs/store"
)

// Owner rules an earlier rule takes paths from. The first pattern that
// matches a path wins (OwnerOf), so a pattern written after a wider one
// (billing/* after */*) does not apply where the wider one matches, or
// nowhere at all. That may be meant, and whether two patterns share a
// path cannot be told cheaply in general, so it is not refused; the
// mount warns of it at start (ShadowedOwners), for each pair of rules in
// which a path can be shown.

// ShadowedOwners describes each owner rule that an earlier pattern takes
// some paths from, with the line of both and one such path; none when
// no pattern shares a path with an earlier one. It is exact, not
// complete: the paths it tries are those the file names (the views' paths
// and the secrets they read, the applications of views, of the watch
// list's names and of exact rules) and, for two patterns of as many
// parts, one path both match, made part by part from one letter for each
// wildcard (sharedPath). Two patterns that share only paths none of these
// is (*/tls* and */*.key share billing/tls.key) are not warned of. Not
// warned of either:
//   - an earlier rule narrower than the later, as the later rule matching
//     the earlier's text tells (billing/* before */*): that is how an
//     exception to a wider rule is written where the first match wins;
//   - a rule for an exact path, which wins wherever it is written, and
//     the paths such a rule names, which it takes from every pattern.
func (c *Config) ShadowedOwners() []string {
	if c == nil {
		return nil
	}
	named := c.namedPaths()
	var out []string
	for i, later := range c.Owners {
		if exact(later.Match) {
			continue
		}
		for _, earlier := range c.Owners[:i] {
			if exact(earlier.Match) {
				continue
			}
			if narrower, _ := path.Match(later.Match, earlier.Match); narrower {
				continue
			}
			tried := named
			if p, ok := sharedPath(earlier.Match, later.Match); ok {
				tried = append(slices.Clip(named), p)
			}
			for _, p := range tried {
				if ok, _ := path.Match(later.Match, p); !ok {
					continue
				}
				if winner, _ := c.OwnerOf(p); winner.Match == earlier.Match {
					out = append(out, fmt.Sprintf("%s:%d: the owner rule for %q does not apply to %s, nor to the other paths the rule for %q at line %d also matches: "+
						"that rule comes first, and the first match wins; put the narrower rule first, unless that is meant",
						c.File, later.Line, later.Match, p, earlier.Match, earlier.Line))
					break
				}
			}
		}
	}
	return out
}

// namedPaths are the paths the file names, each once, in the file's
// order: the views' paths and the secrets they read, with their
// applications, the applications that application views render, the
// names of the watch list that are no patterns, and the applications
// of exact rules for a file.
func (c *Config) namedPaths() []string {
	var out []string
	add := func(paths ...string) {
		for _, p := range paths {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	for _, v := range c.Views {
		for _, k := range append([]store.Key{v.View.Path()}, v.View.Inputs().Secrets...) {
			add(k.App, k.String())
		}
		if app := v.View.Inputs().App; app != "" {
			add(app)
		}
	}
	for _, w := range c.Watch {
		if exact(w.Match) {
			add(w.Match)
		}
	}
	for _, o := range c.Owners {
		if app, _, file := strings.Cut(o.Match, "/"); file && exact(o.Match) {
			add(app)
		}
	}
	return out
}

// sharedPath returns a path that patterns a and b both match, if one is
// made part by part from a sample of either's part (samplePart) that the
// other's matches: a/* and */b give a/b; bill*/* and */db give billx/db.
func sharedPath(a, b string) (string, bool) {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	if len(as) != len(bs) {
		return "", false
	}
	parts := make([]string, len(as))
	for i := range as {
		found := false
		for _, try := range [][2]string{{as[i], bs[i]}, {bs[i], as[i]}} {
			s, ok := samplePart(try[0])
			if !ok {
				continue
			}
			if match, _ := path.Match(try[1], s); match {
				parts[i], found = s, true
				break
			}
		}
		if !found {
			return "", false
		}
	}
	return strings.Join(parts, "/"), true
}

// samplePart returns a name that pat, a pattern of one part, matches:
// each * and ? read as the letter x, each class as the first character
// it lists (bill* gives billx, d[a-c] gives da). A negated class, or a
// pattern whose sample is not a valid name, gives none.
func samplePart(pat string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; c {
		case '*', '?':
			b.WriteByte('x')
		case '\\':
			if i+1 < len(pat) {
				i++
				b.WriteByte(pat[i])
			}
		case '[':
			i++
			if i < len(pat) && pat[i] == '^' {
				return "", false
			}
			if i < len(pat) && pat[i] == '\\' {
				i++
			}
			r, size := utf8.DecodeRuneInString(pat[i:])
			b.WriteRune(r)
			// On to the class's end: the first ] not escaped.
			for i += size; i < len(pat) && pat[i] != ']'; i++ {
				if pat[i] == '\\' {
					i++
				}
			}
		default:
			b.WriteByte(c)
		}
	}
	s := b.String()
	if ok, _ := path.Match(pat, s); !ok || store.ValidName(s) != nil {
		return "", false
	}
	return s, true
}
