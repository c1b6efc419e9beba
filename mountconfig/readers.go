package mountconfig

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/secretfs/secretfs/store"
)

// Who may read a view. A view hands its inputs' bytes (or a field of
// them) to whoever its own owner rule lets read it: a rule that gives a
// view to more users than may read one of its inputs lets them read that
// input, or part of it, through the view. That may be meant (a field of a
// private secret made public), so it is not refused; the mount warns of
// it at start (WiderViews).
//
// Who may read a path is worked out as the kernel does with
// default_permissions, for the users the rules and flags name: the owner
// reads by the user bits, a member of the group by the group bits,
// anyone else by the other bits, and only through an application
// directory it may search. Root reads everything and is not counted.

// Defaults are the mount's flags: the owner and permission bits of what
// no rule names (--uid, --gid, --file-mode, --dir-mode).
type Defaults struct {
	UID, GID          uint32
	FileMode, DirMode uint32
}

// attrs is who owns a path, and its permission bits, every field
// resolved.
type attrs struct{ uid, gid, mode uint32 }

// resolve fills what rule o leaves out with the flags; ok false means no
// rule (o zero): the flags alone.
func (d Defaults) resolve(o Owner, ok, dir bool) attrs {
	a := attrs{d.UID, d.GID, d.FileMode}
	if dir {
		a.mode = d.DirMode
	}
	if !ok {
		return a
	}
	if o.UID != nil {
		a.uid = *o.UID
	}
	if o.GID != nil {
		a.gid = *o.GID
	}
	if o.Mode != nil {
		a.mode = *o.Mode
	}
	return a
}

func (a attrs) String() string { return fmt.Sprintf("uid %d, gid %d, mode %04o", a.uid, a.gid, a.mode) }

// reader is one kind of user: a user by uid (with the groups it is in),
// a member of a group who owns nothing, or anyone else.
type reader struct {
	kind   byte // 'u', 'g' or 'o'
	id     uint32
	groups []uint32 // a user's
}

func (r reader) String() string {
	switch r.kind {
	case 'u':
		return fmt.Sprintf("uid %d", r.id)
	case 'g':
		return fmt.Sprintf("members of gid %d", r.id)
	}
	return "every user"
}

// may reports whether r has the permission bits perm (4 read, 1 search)
// on a path of attributes a.
func (r reader) may(a attrs, perm uint32) bool {
	switch {
	case r.kind == 'u' && r.id == a.uid:
		return a.mode>>6&perm != 0
	case r.kind == 'u' && slices.Contains(r.groups, a.gid), r.kind == 'g' && r.id == a.gid:
		return a.mode>>3&perm != 0
	}
	return a.mode&perm != 0
}

// inGroupOf is r, and in the group of owner if r is owner's user (see
// WiderViews).
func (r reader) inGroupOf(owner attrs) reader {
	if r.kind != 'u' || r.id != owner.uid || slices.Contains(r.groups, owner.gid) {
		return r
	}
	r.groups = append(slices.Clip(r.groups), owner.gid) // Clip: the readers share no array
	return r
}

// WiderViews describes each view that someone may read while they may
// not read one of its inputs, the first such input and reader of each
// view; none when every view is at most as readable as its inputs.
// groups returns the groups of a uid (none when it is not known).
//
// The user a view's owner rule (or the flags) gives it to, uid U and gid
// G, is taken to run with G as its group: the kernel checks the caller's
// gid and groups, which no file says, and a rule that gives a file to
// U:G describes the user who reads it and its group, as a service run
// with User=U and Group=G (or `setpriv --reuid U --regid G`) is, whether
// or not the host's user database puts U in G. So U reads, through the
// group bits, an input of group G. If U's processes run without G after
// all, the view shows them such an input, which they cannot read, and
// this does not warn of it.
func (c *Config) WiderViews(d Defaults, groups func(uid uint32) []uint32) []string {
	if c == nil {
		return nil
	}
	readers := c.readers(d, groups)
	var out []string
	for _, v := range c.Views {
		view := c.pathAttrs(v.View.Path(), d)
		inputs := c.inputAttrs(v, d)
	views:
		for _, r := range readers {
			r = r.inGroupOf(view[1])
			if !r.may(view[0], 1) || !r.may(view[1], 4) {
				continue
			}
			for _, in := range inputs {
				if !r.may(in.dir, 1) || !r.may(in.file, 4) {
					out = append(out, fmt.Sprintf("%s:%d: the view %s is readable by %s, who cannot read its input %s (%s; its directory %s): "+
						"the view shows them what they may not read; give the view the owner and mode of its most private input, unless that is meant",
						c.File, v.Line, v.View.Path(), r, in.what, in.file, in.dir))
					break views
				}
			}
		}
	}
	return out
}

// readers are everyone, the members of each group the rules and flags
// name, and each user they name, with its groups.
func (c *Config) readers(d Defaults, groups func(uint32) []uint32) []reader {
	uids, gids := []uint32{d.UID}, []uint32{d.GID}
	for _, o := range c.Owners {
		if o.UID != nil {
			uids = append(uids, *o.UID)
		}
		if o.GID != nil {
			gids = append(gids, *o.GID)
		}
	}
	out := []reader{{kind: 'o'}} // the widest first: the one a warning names
	for _, g := range sortedUnique(gids) {
		out = append(out, reader{kind: 'g', id: g})
	}
	for _, u := range sortedUnique(uids) {
		if u != 0 { // root reads everything
			out = append(out, reader{kind: 'u', id: u, groups: groups(u)})
		}
	}
	return out
}

func sortedUnique(ids []uint32) []uint32 {
	slices.Sort(ids)
	return slices.Compact(ids)
}

// pathAttrs are the attributes of the directory of k's application and
// of k.
func (c *Config) pathAttrs(k store.Key, d Defaults) [2]attrs {
	dir, dok := c.OwnerOf(k.App)
	file, fok := c.OwnerOf(k.String())
	return [2]attrs{d.resolve(dir, dok, true), d.resolve(file, fok, false)}
}

// input is what a view may read: a secret, or, for an application view,
// the secrets of one owner rule (or of none).
type input struct {
	what      string
	dir, file attrs
}

// inputAttrs are the attributes of v's inputs. An application view's
// inputs are every secret the application holds, which the file cannot
// know: each rule that may apply to one of them stands for its secrets,
// and the flags for those no rule matches, unless a rule matches them
// all.
func (c *Config) inputAttrs(v View, d Defaults) []input {
	var out []input
	for _, k := range v.View.Inputs().Secrets {
		a := c.pathAttrs(k, d)
		out = append(out, input{what: k.String(), dir: a[0], file: a[1]})
	}
	app := v.View.Inputs().App
	if app == "" {
		return out
	}
	dir, dok := c.OwnerOf(app)
	dirAttrs := d.resolve(dir, dok, true)
	matchesAll := false
	for _, o := range c.Owners {
		appPart, namePart, two := strings.Cut(o.Match, "/")
		if ok, _ := path.Match(appPart, app); !two || !ok {
			continue
		}
		if namePart == "*" {
			matchesAll = true
		}
		what := "the secrets of " + app + " that " + o.Match + " matches"
		if exact(o.Match) {
			what = o.Match
		}
		out = append(out, input{what: what, dir: dirAttrs, file: d.resolve(o, true, false)})
	}
	if !matchesAll {
		out = append(out, input{what: "the secrets of " + app + " no rule matches", dir: dirAttrs, file: d.resolve(Owner{}, false, false)})
	}
	return out
}

// UnreachableOwners describes each user and group an owner rule names
// that cannot reach what the rule gives them, the first rule of each:
// without --allow-other (allowOther false), FUSE lets no one but the user
// who mounts (mounter) and root in; with it, one who may not search the
// mount's root, which the flags own (--uid, --gid, --dir-mode), can
// reach nothing beneath it. groups returns the groups of a uid.
func (c *Config) UnreachableOwners(d Defaults, allowOther bool, mounter uint32, groups func(uid uint32) []uint32) []string {
	if c == nil {
		return nil
	}
	root := d.resolve(Owner{}, false, true)
	type who struct {
		kind byte
		id   uint32
	}
	told := map[who]bool{}
	var out []string
	for _, o := range c.Owners {
		var named []reader
		if o.UID != nil && *o.UID != 0 && *o.UID != mounter {
			named = append(named, reader{kind: 'u', id: *o.UID})
		}
		if o.GID != nil && allowOther {
			named = append(named, reader{kind: 'g', id: *o.GID})
		}
		for _, r := range named {
			key := who{r.kind, r.id}
			if told[key] {
				continue
			}
			if r.kind == 'u' {
				r.groups = groups(r.id)
			}
			switch {
			case !allowOther:
				told[key] = true
				out = append(out, fmt.Sprintf("%s:%d: the owner rule %q gives %s what it matches, but without --allow-other no user but the one who mounts (uid %d) and root may enter the mount", c.File, o.Line, o.Match, r, mounter))
			case !r.may(root, 1):
				told[key] = true
				out = append(out, fmt.Sprintf("%s:%d: the owner rule %q gives %s what it matches, but they may not enter the mount's root (%s: --uid, --gid, --dir-mode): give it --dir-mode 0711 or 0755", c.File, o.Line, o.Match, r, root))
			}
		}
	}
	return out
}
