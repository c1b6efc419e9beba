package vfs

import (
	"fmt"
	"path"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// root is a caller the kernel knows as root.
var root = Caller{Thread: 50, Process: 50, Owner: 5, UID: 0, GID: 0, Command: "mv"}

// rule is an owner rule: the paths match matches belong to uid:gid with
// mode.
type rule struct {
	match          string
	uid, gid, mode uint32
}

// rulesOf returns owner rules, the first match winning, as the
// configuration file's.
func rulesOf(rules ...rule) func(string) Owner {
	return func(p string) Owner {
		for _, r := range rules {
			if ok, _ := path.Match(r.match, p); ok {
				return Owner{UID: &r.uid, GID: &r.gid, Mode: &r.mode}
			}
		}
		return Owner{}
	}
}

// billingRules give billing to uid 1001 (other), but billing/tls.key to
// root alone, and billing/public to 1001 for everyone to read.
var billingRules = rulesOf(
	rule{"billing/tls.key", 0, 0, 0o400},
	rule{"billing/team", 0, 1000, 0o660},
	rule{"billing/other-group", 1001, 50, 0o600},
	rule{"billing/public", 1001, 1001, 0o444},
	rule{"billing/*", 1001, 1001, 0o400},
)

var (
	tlsKey   = store.Key{App: "billing", Name: "tls.key"}
	mine     = store.Key{App: "billing", Name: "mine"}
	public   = store.Key{App: "billing", Name: "public"}
	teamFile = store.Key{App: "billing", Name: "team"}
	ofGroup  = store.Key{App: "billing", Name: "other-group"}
)

// A secret made here is shown as its path's owner's, so only a user who
// could write it as shown (its owner, or one its mode lets write) or
// root may make it: else a user who may write the directory could
// remove root's secret and make one of that name, shown as root's,
// holding a value of their own. Nothing is stored for a refusal.
func TestAUserMayMakeOnlyASecretTheyCouldWrite(t *testing.T) {
	f := newFixture(t, Options{UID: 7, GID: 7, OwnerOf: billingRules})
	_, _, err := f.fs.Create(ctx, other, tlsKey, wronly|syscall.O_CREAT)
	wantKind(t, "uid 1001 makes billing/tls.key, shown as root's", err, fault.NotPermitted)
	_, _, err = f.fs.Create(ctx, shell, mine, wronly|syscall.O_CREAT)
	wantKind(t, "uid 1000 makes billing/mine, shown as 1001's", err, fault.NotPermitted)
	wantKind(t, "uid 1000 mknods billing/mine", f.fs.Mknod(ctx, shell, mine, syscall.S_IFREG|0o600), fault.NotPermitted)
	if n := f.puts(); n != 0 {
		t.Errorf("%d writes stored for refused creations", n)
	}

	h, _ := f.create(mine, other, wronly)
	f.replaceWith(h, other, "1001's")
	h, _ = f.create(tlsKey, root, wronly)
	f.replaceWith(h, root, "root's")
	if got := f.value(mine) + " " + f.value(tlsKey); got != "1001's root's" {
		t.Errorf("the owners made %q, want \"1001's root's\"", got)
	}
	h, _ = f.create(teamFile, shell, wronly) // root:1000 0660: the group may write it
	f.replaceWith(h, shell, "the team's")
	if got := f.value(teamFile); got != "the team's" {
		t.Errorf("a member of the group made %q", got)
	}
}

// A move gives a secret its new path's owner and mode, so a user may move
// one where that changes them only if they may read it where it is and
// make it where it goes (as `cat old > new; rm old` would): else a user
// who may write billing could read root's tls.key by moving it to a path
// of theirs. A move that changes nothing of them is a plain rename. Root
// moves anything. A refused move leaves both names as they were.
func TestAMoveThatWouldChangeASecretsOwnerIsRefused(t *testing.T) {
	f := newFixture(t, Options{UID: 7, GID: 7, OwnerOf: billingRules})
	f.cat.Store(tlsKey, "key")
	f.cat.Store(token, "token")

	wantKind(t, "uid 1001 moves root's tls.key to its own billing/mine", f.fs.Rename(ctx, other, tlsKey, mine, 0), fault.NotPermitted)
	wantKind(t, "uid 1001 moves its api-token over root's tls.key", f.fs.Rename(ctx, other, token, tlsKey, 0), fault.NotPermitted)
	wantKind(t, "uid 1000 moves 1001's 0400 api-token to 1001's 0444 public", f.fs.Rename(ctx, shell, token, public, 0), fault.NotPermitted)
	if got := f.value(tlsKey) + " " + f.value(token) + " " + f.value(mine) + " " + f.value(public); got != "key token <none> <none>" {
		t.Errorf("after refused moves the store holds %q", got)
	}

	f.mustNot("uid 1001 moves its api-token to its billing/mine", f.fs.Rename(ctx, other, token, mine, 0))
	f.mustNot("uid 1001 moves its billing/mine to its 0444 public", f.fs.Rename(ctx, other, mine, public, 0))
	f.mustNot("root moves tls.key to billing/mine", f.fs.Rename(ctx, root, tlsKey, mine, 0))
	if got := f.value(public) + " " + f.value(mine); got != "token key" {
		t.Errorf("after the allowed moves public and mine hold %q, want \"token key\"", got)
	}
	// An editor's temporary file renamed over the file it edits, under
	// a rule that gives the file another group: its owner may.
	f.mustNot("uid 1001 moves its billing/mine over its billing/other-group (gid 50)", f.fs.Rename(ctx, other, mine, ofGroup, 0))
}

// A creation that finds the secret stored after all (made elsewhere since
// the kernel last looked, and the kernel checked only the directory)
// opens it only as its mode lets the caller (owner's bits, else group's,
// the request's own group: supplementary groups are not sent, else
// other's), for reading, writing or both as its flags ask, and is
// refused as the kernel would refuse it, EACCES.
func TestACreationThatFindsASecretMadeElsewhereOpensItOnlyAsItsModeAllows(t *testing.T) {
	f := newFixture(t, Options{UID: 7, GID: 7, OwnerOf: rulesOf(
		rule{"app/owner-reads", 1000, 1000, 0o400},
		rule{"app/group-reads", 1001, 1000, 0o640},
		rule{"app/group-writes", 1001, 1000, 0o620},
		rule{"app/*", 1000, 1000, 0o600},
	)})
	for _, name := range []string{"owner-reads", "group-reads", "group-writes", "mine"} {
		f.cat.Store(store.Key{App: "app", Name: name}, "stored")
	}
	for _, c := range []struct {
		name  string
		flags uint32
		ok    bool
	}{
		{"owner-reads", syscall.O_RDONLY, true},
		{"owner-reads", wronly | syscall.O_TRUNC, false},
		{"group-reads", syscall.O_RDONLY, true},
		{"group-reads", wronly, false},
		{"group-reads", syscall.O_RDONLY | syscall.O_TRUNC, false},
		{"group-writes", syscall.O_RDONLY, false},
		{"group-writes", syscall.O_RDWR, false},
		{"group-writes", wronly | syscall.O_TRUNC, true},
		{"mine", syscall.O_RDWR, true},
	} {
		k := store.Key{App: "app", Name: c.name}
		what := fmt.Sprintf("uid 1000 opens %s with flags %#o", c.name, c.flags)
		h, _, err := f.fs.Create(ctx, shell, k, c.flags|syscall.O_CREAT)
		if c.ok {
			f.mustNot(what, err)
			h.Release(ctx)
			continue
		}
		wantKind(t, what, err, fault.Permission)
	}
	for _, name := range []string{"owner-reads", "group-reads"} {
		if got := f.value(store.Key{App: "app", Name: name}); got != "stored" {
			t.Errorf("app/%s, refused, holds %q", name, got)
		}
	}
}

// The group's bits apply to a member by a supplementary group too, as
// the kernel applies them: a mode that keeps a group out (0604) keeps
// such a member out of moving the secret where they could read it and of
// opening one made elsewhere, and so it does a caller whose groups are
// not known; a user in no such group reads by the others' bits.
func TestAGroupTheModeKeepsOutIsKeptOutOfMovesAndOpens(t *testing.T) {
	f := newFixture(t, Options{UID: 7, GID: 7, OwnerOf: rulesOf(
		rule{"billing/kept-from-50", 0, 50, 0o604},
		rule{"billing/*", 1001, 1001, 0o600},
	)})
	kept := store.Key{App: "billing", Name: "kept-from-50"}
	f.cat.Store(kept, "value")
	member := Caller{Thread: 60, Process: 60, Owner: 6, UID: 1001, GID: 1001, Groups: []uint32{50}}
	unknown := member
	unknown.Groups = nil
	stranger := Caller{Thread: 70, Process: 70, Owner: 7, UID: 1002, GID: 1002, Groups: []uint32{}}
	for _, c := range []struct {
		what string
		c    Caller
	}{{"a member of group 50 by a supplementary group", member}, {"a caller whose groups are not known", unknown}} {
		wantKind(t, c.what+" moves billing/kept-from-50 to its own billing/mine", f.fs.Rename(ctx, c.c, kept, mine, 0), fault.NotPermitted)
		_, _, err := f.fs.Create(ctx, c.c, kept, syscall.O_RDONLY|syscall.O_CREAT)
		wantKind(t, c.what+" opens billing/kept-from-50, made elsewhere", err, fault.Permission)
	}
	h, _, err := f.fs.Create(ctx, stranger, kept, syscall.O_RDONLY|syscall.O_CREAT)
	f.mustNot("a user in no group opens billing/kept-from-50, which others may read", err)
	h.Release(ctx)
	if got := f.value(kept) + " " + f.value(mine); got != "value <none>" {
		t.Errorf("the store holds %q", got)
	}
}

// A member of a file's group by a supplementary group makes and edits by
// rename what the group may write (root:60 0660), as one whose primary
// group it is; a caller whose groups are not known may not.
func TestASupplementaryMemberMakesAndEditsWhatItsGroupMayWrite(t *testing.T) {
	f := newFixture(t, Options{UID: 7, GID: 7, OwnerOf: rulesOf(
		rule{"billing/team", 0, 60, 0o660},
		rule{"billing/*", 1001, 1001, 0o600},
	)})
	member := Caller{Thread: 60, Process: 60, Owner: 6, UID: 1001, GID: 1001, Groups: []uint32{60}}
	unknown := member
	unknown.Groups = nil
	_, _, err := f.fs.Create(ctx, unknown, teamFile, wronly|syscall.O_CREAT)
	wantKind(t, "a caller whose groups are not known makes billing/team", err, fault.NotPermitted)
	h, _ := f.create(teamFile, member, wronly)
	f.replaceWith(h, member, "first")
	tmp := store.Key{App: "billing", Name: "team.tmp"}
	h, _ = f.create(tmp, member, wronly)
	f.replaceWith(h, member, "edited")
	f.mustNot("the member moves its billing/team.tmp over billing/team", f.fs.Rename(ctx, member, tmp, teamFile, 0))
	if got := f.value(teamFile); got != "edited" {
		t.Errorf("billing/team holds %q, want edited", got)
	}
}
