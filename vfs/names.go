package vfs

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/sorted"
	"github.com/secretfs/secretfs/store"
)

// Entry is what a name points at: a committed revision (Meta), which
// stands for Fresh more without asking the store; or, when Created is
// set, a secret being created here that has committed nothing yet (the
// caller takes over one hold of Created: see Secret.Hold); or, when View
// is set, a view's rendering from one set of its inputs' revisions (the
// caller takes it over: NewViewRevision, or Release), which stands for
// Fresh too.
type Entry struct {
	Meta    store.Meta
	Fresh   time.Duration
	Created *Secret
	View    *ViewInputs
}

// Lookup returns what the name k points at now, fresh within the TTL,
// after waiting out its closing writers (see
// Secret.awaitClosingWriters): the revision the catalog holds for
// current, or the secret being created here; or, for a view, the
// revisions of its inputs the catalog holds for current.
func (v *FS) Lookup(ctx context.Context, k store.Key) (Entry, error) {
	if err := k.Validate(); err != nil {
		return Entry{}, err
	}
	if v.shown(k.App) != nil {
		return Entry{}, fault.E(k.Path(), fault.NotFound, "no such application: --apps leaves it out")
	}
	if vw := v.viewAt(k); vw != nil {
		return v.lookupView(ctx, vw)
	}
	s := v.awaitClosingWritersOf(k)
	e, err := v.cat.Lookup(ctx, k)
	if fault.Is(fault.NotFound, err) && isCreating(s) {
		s.Hold()
		return Entry{Meta: s.Meta(), Created: s}, nil
	}
	if err != nil {
		return Entry{}, err
	}
	return Entry{Meta: e.Meta, Fresh: e.Fresh}, nil
}

// LookupListed is Lookup for the name a listing just gave (meta), as
// READDIRPLUS asks: answered from the listing, which is as fresh as the
// TTL, unless the secret has writers here (then Lookup decides). A legacy
// item lists without its size: it is left to a Lookup, which decrypts it
// to learn it (fault.NotFound here); so is a malformed item
// (store.Meta.Invalid), which a Lookup refuses.
//
// A view is left to a Lookup as well: a listing (`ls`) renders nothing,
// a stat does.
func (v *FS) LookupListed(ctx context.Context, meta store.Meta) (Entry, error) {
	if v.IsView(meta.Key) {
		return Entry{}, fault.E(meta.Path(), fault.NotFound, "a view is rendered when it is looked up, not listed")
	}
	if meta.Invalid != nil {
		return Entry{}, fault.E(meta.Path(), fault.NotFound, "a malformed item is left to a lookup, which refuses it")
	}
	if meta.Size < 0 {
		return Entry{}, fault.E(meta.Path(), fault.NotFound, "a legacy item lists without its size; a lookup will learn it")
	}
	if v.secret(meta.Key) != nil {
		return v.Lookup(ctx, meta.Key)
	}
	// As long as the listing stands, not a whole TTL from now: a listing
	// served near the end of its TTL must not let the kernel keep the
	// name for nearly two.
	return Entry{Meta: meta, Fresh: v.cat.Fresh(meta.Key)}, nil
}

// Open opens a secret being created here for c (Thread, Process and the
// audit fields): a writer gets a handle of its own; a reader waits for a
// writer that is closing, then is sent to look the name up again (to the
// committed revision: ErrLookUpAgain), or finds nothing while nothing is
// committed.
func (s *Secret) Open(ctx context.Context, c Caller, flags uint32) (*Handle, error) {
	if c.Own && Writes(flags) {
		return s.v.signalHandle(s.Key()), nil
	}
	h, err := s.open(ctx, c, flags)
	k := s.Key()
	version := store.Version(0)
	if m, ok := s.v.cat.Known(k); ok {
		version = m.Version
	}
	s.v.audit(c, "open", k, store.Key{}, version, err)
	return h, err
}

func (s *Secret) open(ctx context.Context, c Caller, flags uint32) (*Handle, error) {
	v, k := s.v, s.Key()
	if !Writes(flags) {
		s.awaitClosingWriters()
		if _, committed := v.cat.Known(k); !committed {
			// Deliberately not the empty file a stat by path shows
			// meanwhile (Secret.Meta): the kernel keeps the name the
			// creation made for every process, so a stat cannot be
			// told "not there", but a reader that opened it would
			// take the nothing committed yet (or, later, a value
			// half written) for the secret; ENOENT makes it wait and
			// try again, as the listing does, which lists committed
			// names only (docs/SEMANTICS.md, "a name being created").
			return nil, fault.E(k.Path(), fault.NotFound, "being created; nothing committed yet")
		}
		return nil, lookUpAgain(k.Path(), "a reader reached the inode of a creation since committed")
	}
	if err := v.writable(k.Path()); err != nil {
		return nil, err
	}
	// A writer that closed may be about to commit (`: > f; echo v > f`):
	// expect what it commits, or the two writes would conflict.
	s.awaitClosingWriters()
	if _, committed := v.cat.Known(k); committed && needsValue(flags) {
		if err := v.readable(k.Path()); err != nil {
			return nil, err
		}
	}
	meta, err := v.cat.Verify(ctx, k)
	if fault.Is(fault.NotFound, err) && !isCreating(s) && flags&unix.O_CREAT == 0 {
		// Nothing stored, and no creation left (it failed, or was
		// removed): the kernel, which sends no O_CREAT to an OPEN, looks
		// the name up again, and then creates it if it was asked to.
		return nil, lookUpAgain(k.Path(), "a creation that ended without committing")
	}
	return v.openWriter(ctx, c, s, flags, meta, err)
}

// Unlink deletes the secret k for c (the audit fields), on the condition
// that it is still the revision just read: a secret rewritten meanwhile
// is not deleted blind. Sessions still open on it are orphaned, as on any
// file system: their writes vanish instead of bringing it back. Readers
// keep reading the revision they opened.
func (v *FS) Unlink(ctx context.Context, c Caller, k store.Key) error {
	return v.change(c, "unlink", k, store.Key{}, func() error { return v.checkUnlink(k) },
		func() (store.Version, error) { return v.unlink(ctx, k) })
}

// change makes the change op of from (to a rename's to) by c: check
// refuses what the change may never do, then do makes it, counted in
// Options.Changes, so a refusal says why whether or not the mount is
// stopping. It audits the change once it ended, before the count lets a
// stop end the process.
func (v *FS) change(c Caller, op string, from, to store.Key, check func() error, do func() (store.Version, error)) error {
	var version store.Version
	err := check()
	if err == nil {
		var end func()
		if end, err = v.opts.Changes.begin(from.Path()); err == nil {
			defer end()
			version, err = do()
		}
	}
	v.audit(c, op, from, to, version, err)
	return err
}

// checkUnlink refuses what no unlink may do: on a read-only mount, out
// of the applications shown, or a view.
func (v *FS) checkUnlink(k store.Key) error {
	if err := v.writable(k.Path()); err != nil {
		return err
	}
	if err := v.shown(k.App); err != nil {
		return err
	}
	if v.IsView(k) {
		return viewReadOnly(k)
	}
	return nil
}

func (v *FS) unlink(ctx context.Context, k store.Key) (store.Version, error) {
	s := v.awaitClosingWritersOf(k)
	var removed []*session // the sessions the removal orphans: those open now
	if s != nil {
		removed = s.all()
	}
	meta, err := v.cat.Verify(ctx, k)
	switch {
	case fault.Is(fault.NotFound, err) && isCreating(s):
		// Created here and never committed: nothing is stored.
	case err != nil:
		return 0, err
	default:
		if err := v.cat.Delete(context.WithoutCancel(ctx), k, meta.Revision()); err != nil {
			return 0, err
		}
	}
	if s != nil {
		s.orphan(removed)
	}
	v.log.WithField("secret", k.String()).Info("secret removed")
	v.emit(Removed, k)
	return meta.Version, nil
}

// Rename moves the secret from to to for c (the audit fields), with the
// flags of renameat2: RENAME_NOREPLACE is honoured, the others refused
// (see renameFlags). A to.App of "" is a place outside every application. It
// re-encrypts: the ciphertext is bound to its application and name, so
// the value is written under the new name with a fresh document key, then
// the old item is deleted. The new item is written first, so a failure in
// between leaves two copies, never none; once begun, the two writes are
// not interrupted. Open writers follow the file (Renamed); a writer that
// had read an older revision fails as it would have in place.
func (v *FS) Rename(ctx context.Context, c Caller, from, to store.Key, flags uint32) error {
	return v.change(c, "rename", from, to, func() error { return v.checkRename(c, from, to, flags) },
		func() (store.Version, error) { return v.rename(ctx, from, to, flags) })
}

// rename returns the revision written under the new name; checkRename
// has let it through.
func (v *FS) rename(ctx context.Context, from, to store.Key, flags uint32) (store.Version, error) {
	if from == to {
		return 0, nil
	}
	src, replaced := v.awaitClosingWritersOf(from), v.awaitClosingWritersOf(to)
	var overwritten []*session // the sessions of to the rename orphans: those open now
	if replaced != nil {
		overwritten = replaced.all()
	}
	expected, err := v.renameExpects(ctx, to, flags)
	if err != nil {
		return 0, err
	}
	old, err := v.cat.Verify(ctx, from)
	if fault.Is(fault.NotFound, err) && isCreating(src) {
		// Being created and not committed yet: the sessions follow the
		// name and will commit it at its new place.
		v.move(src, from, to, store.NoItem, store.Meta{Key: to, Version: expected.Version, InitialisationVector: expected.IV})
		v.tell(Event{Kind: Renamed, Key: to, From: from})
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	meta, err := v.reencrypt(ctx, from, to, old, expected)
	if err != nil {
		return 0, err
	}
	if replaced != nil {
		replaced.orphan(overwritten)
	}
	if src != nil {
		v.move(src, from, to, old.Revision(), meta)
	}
	v.tell(Event{Kind: Renamed, Key: to, From: from, Was: old.Revision(), Now: meta})
	v.log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("secret renamed")
	return meta.Version, nil
}

// checkRename refuses what no rename of a secret may do. A view cannot
// move, no secret may take a view's path, none may move into or out of
// an application --apps leaves out, and c may not change its owner by
// moving it (checkMove).
func (v *FS) checkRename(c Caller, from, to store.Key, flags uint32) error {
	if err := v.writable(from.Path()); err != nil {
		return err
	}
	if err := renameFlags(from.Path(), flags); err != nil {
		return err
	}
	if err := v.shown(from.App, to.App); err != nil {
		return err
	}
	if v.IsView(from) {
		return viewReadOnly(from)
	}
	if v.IsView(to) {
		return fault.E(to.Path(), fault.Exist, "a view of the mount's config file is at that path")
	}
	if to.App == "" {
		return fault.E(from.Path(), fault.NotPermitted, "a secret can only move into an application directory")
	}
	if err := to.Validate(); err != nil {
		return err
	}
	return v.checkMove(c, from, to)
}

// renameFlags refuses the flags of renameat2 a rename here cannot honour:
// RENAME_NOREPLACE is the only one it can. RENAME_EXCHANGE would swap two
// items in one step, which the store cannot do. RENAME_WHITEOUT (what
// overlayfs asks of its upper layer) would leave a whiteout, a character
// device, at the old name, and secretfs makes no special files: refused
// as ext4 or tmpfs refuse a flag they do not support, with the file
// system's "not supported" rather than a plain rename that leaves no
// whiteout behind. (The kernel itself refuses RENAME_WHITEOUT to a caller
// without CAP_MKNOD, with EPERM, before it asks the mount.) A bit
// renameat2 does not define is EINVAL, as the kernel answers it.
func renameFlags(p fault.Path, flags uint32) error {
	switch {
	case flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE|unix.RENAME_WHITEOUT) != 0:
		return fault.E(p, fault.Invalid, fmt.Sprintf("rename flags %#x that renameat2 does not define", flags))
	case flags&unix.RENAME_EXCHANGE != 0:
		return fault.E(p, fault.NotSupported, "exchanging two secrets")
	case flags&unix.RENAME_WHITEOUT != 0:
		return fault.E(p, fault.NotSupported, "leaving a whiteout: secretfs makes no special files")
	}
	return nil
}

// renameExpects returns the revision a rename to to replaces: what the
// store holds there, or none (and none may be there for
// RENAME_NOREPLACE).
func (v *FS) renameExpects(ctx context.Context, to store.Key, flags uint32) (store.Revision, error) {
	if flags&unix.RENAME_NOREPLACE != 0 {
		return store.NoItem, nil
	}
	meta, err := v.cat.Verify(ctx, to)
	switch {
	case err == nil:
		return meta.Revision(), nil
	case fault.Is(fault.NotFound, err):
		return store.NoItem, nil
	}
	return store.Revision{}, err
}

// reencrypt writes the value of revision old of from under to, expecting
// expected there, then deletes from.
func (v *FS) reencrypt(ctx context.Context, from, to store.Key, old store.Meta, expected store.Revision) (store.Meta, error) {
	snap := v.cat.Snapshot(from, old)
	value, err := snap.Value(ctx)
	snap.Release()
	if err != nil {
		return store.Meta{}, err
	}
	defer value.Wipe()
	ctx = context.WithoutCancel(ctx)
	meta, err := v.cat.Put(ctx, to, value, expected)
	if err != nil {
		return store.Meta{}, err
	}
	if err := v.cat.Delete(ctx, from, old.Revision()); err != nil {
		// One line says both what happened and why: the value is now
		// under both names.
		return store.Meta{}, fault.E(from.Path(), "written under its new name "+to.String()+", but the old name could not be removed: both hold the value", err)
	}
	return meta, nil
}

// move re-keys the writers of a renamed secret: open files follow a
// rename, as on any file system.
func (v *FS) move(s *Secret, from, to store.Key, old store.Revision, meta store.Meta) {
	v.mu.Lock()
	if v.secrets[from] == s {
		delete(v.secrets, from)
	}
	if prev := v.secrets[to]; prev != nil && prev != s {
		// The replaced secret's writers were orphaned; their state
		// lives on only as long as their descriptors.
		prev.key = store.Key{}
	}
	v.secrets[to] = s
	s.key = to
	v.mu.Unlock()
	for _, ss := range s.all() {
		ss.moved(old, meta)
	}
}

// shown refuses any of apps that --apps leaves out (fault.NotPermitted;
// "", the root, is no application and passes): with --apps the mount
// shows those applications and the ones holding views, and nothing of
// any other, which no operation may show, make, fill or move anything
// into or out of. Without --apps every application is shown.
//
// EPERM, as for what the layout forbids at the root (a file there, rmdir
// of an --apps application): the mount's options refuse it, for every
// user. EACCES would say that permissions did (modes, IAM), which another
// user or role might have. A lookup of such a name stays "no such
// application" (ENOENT): the mount neither knows nor says whether the
// store holds it.
func (v *FS) shown(apps ...string) error {
	for _, app := range apps {
		if v.opts.Apps != nil && app != "" && !slices.Contains(v.opts.Apps, app) && len(v.views.apps[app]) == 0 {
			return fault.E(fault.Path(app), fault.NotPermitted, "not one of the applications --apps shows")
		}
	}
	return nil
}

// LookupApp reports whether app is an application (fault.NotFound if
// not): in the --apps list when one is given, made by mkdir here,
// holding at least one view, or holding at least one secret.
func (v *FS) LookupApp(ctx context.Context, app string) error {
	if err := store.ValidName(app); err != nil {
		return err
	}
	ok, err := v.appExists(ctx, app)
	if err == nil && !ok {
		err = fault.E(fault.Path(app), fault.NotFound, "no such application")
	}
	return err
}

func (v *FS) appExists(ctx context.Context, app string) (bool, error) {
	v.mu.Lock()
	made := v.made[app]
	v.mu.Unlock()
	if made || len(v.views.apps[app]) > 0 {
		return true, nil
	}
	if v.opts.Apps != nil {
		return slices.Contains(v.opts.Apps, app), nil
	}
	return v.cat.HasSecrets(ctx, app)
}

// Apps lists the applications to show at the root, sorted: the --apps
// list, or those the store holds, and those made here or holding views.
func (v *FS) Apps(ctx context.Context) ([]string, error) {
	var names []string
	if v.opts.Apps != nil {
		names = append(names, v.opts.Apps...)
	} else {
		var err error
		if names, err = v.cat.Apps(ctx); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for a := range v.views.apps {
		if !seen[a] {
			names = append(names, a)
			seen[a] = true
		}
	}
	// The applications made here, and what the root showed, in one hold
	// of the lock: a mkdir between the two would be taken for a change
	// learnt from the store.
	v.mu.Lock()
	for a := range v.made {
		if !seen[a] {
			names = append(names, a)
		}
	}
	sort.Strings(names)
	learnt := v.rootListed && !slices.Equal(v.shownApps, names)
	v.shownApps, v.rootListed = slices.Clone(names), true
	v.mu.Unlock()
	if learnt {
		v.dirChanged("")
	}
	return names, nil
}

// appShownLocked records that app was made (shown) or removed (not
// shown) here, so that the next listing of the root does not take it for
// a change it learnt of from the store. v.mu must be held, in the same
// hold that changes v.made.
func (v *FS) appShownLocked(app string, shown bool) {
	if v.rootListed {
		v.shownApps = sorted.Set(v.shownApps, app, shown)
	}
}

// Mkdir makes a new, empty application. The store has no empty
// applications, so it exists in this mount only until its first secret.
// With --apps every application the mount shows exists already: mkdir
// of one is fault.Exist, of any other fault.NotPermitted (see shown).
func (v *FS) Mkdir(ctx context.Context, app string) error {
	p := fault.Path(app)
	if err := v.writable(p); err != nil {
		return err
	}
	if err := store.ValidName(app); err != nil {
		return err
	}
	if err := v.shown(app); err != nil {
		return err
	}
	ok, err := v.appExists(ctx, app)
	if err == nil && ok {
		err = fault.E(p, fault.Exist)
	}
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.made[app] = true
	v.appShownLocked(app, true)
	v.mu.Unlock()
	v.dirChanged("")
	v.log.WithField("app", app).Info("application created")
	return nil
}

// Rmdir removes an application that holds no secrets (fault.NotEmpty
// otherwise), once its closing writers are done: a secret created and
// closed just now counts.
func (v *FS) Rmdir(ctx context.Context, app string) error {
	p := fault.Path(app)
	if err := v.writable(p); err != nil {
		return err
	}
	if err := v.shown(app); err != nil {
		return err
	}
	if slices.Contains(v.opts.Apps, app) {
		return fault.E(p, fault.NotPermitted, "listed by --apps")
	}
	if len(v.views.apps[app]) > 0 {
		return fault.E(p, fault.NotEmpty, "the application holds views of the mount's config file")
	}
	v.awaitClosingWritersIn(app)
	nonEmpty, err := v.cat.HasSecrets(ctx, app)
	if err != nil {
		return err
	}
	if nonEmpty {
		return fault.E(p, fault.NotEmpty, "the application still holds secrets")
	}
	v.mu.Lock()
	delete(v.made, app)
	v.appShownLocked(app, false)
	v.mu.Unlock()
	v.dirChanged("")
	v.log.WithField("app", app).Info("application removed")
	return nil
}

// RenameApp refuses to rename the application app to to, a name at the
// root ("" for a place inside an application), with the flags of
// renameat2: it would have to re-encrypt every secret in it (the
// ciphertext is bound to the application's name). fault.CrossDevice makes
// mv(1) do exactly that, file by file, through the file system. With
// --apps, app and to must be applications the mount shows (see shown).
func (v *FS) RenameApp(app, to string, flags uint32) error {
	p := fault.Path(app)
	if err := v.writable(p); err != nil {
		return err
	}
	if err := renameFlags(p, flags); err != nil {
		return err
	}
	if err := v.shown(app, to); err != nil {
		return err
	}
	return fault.E(p, fault.CrossDevice, "an application is moved secret by secret")
}

// CreateInRoot refuses a file at the root: every secret belongs to an
// application. With --apps, a name the mount does not show is refused as
// every change of one is (see shown).
func (v *FS) CreateInRoot(name string) error {
	p := fault.Path(name)
	if err := v.writable(p); err != nil {
		return err
	}
	if err := v.shown(name); err != nil {
		return err
	}
	return fault.E(p, fault.NotPermitted, "secrets live in an application directory, not at the root")
}

// NotOffered refuses what secretfs does not make (special files, links),
// at p: EROFS on a read-only mount, as every change there.
func (v *FS) NotOffered(p fault.Path, what string) error {
	if err := v.writable(p); err != nil {
		return err
	}
	return fault.E(p, fault.NotSupported, what)
}

// WriteWithoutOpen refuses a write of k through a descriptor the file
// system never saw opened: on a read-only mount the kernel opens files
// without asking (package fs), so that is where such a write comes from.
func (v *FS) WriteWithoutOpen(k store.Key) error {
	if err := v.writable(k.Path()); err != nil {
		return err
	}
	return fault.E(k.Path(), fault.NotSupported, "a write through a descriptor the file system did not open")
}

// MkdirInApp refuses a directory inside an application: applications
// hold secrets, not directories.
func (v *FS) MkdirInApp(app, name string) error {
	p := fault.Path(app + "/" + name)
	if err := v.writable(p); err != nil {
		return err
	}
	return fault.E(p, fault.NotPermitted, "applications hold secrets, not directories")
}

// Listing is one listing of an application's secrets, a page of the
// store at a time: the same listing the catalog's revalidation makes, so
// `ls -l` costs its pages and nothing per secret. The application's
// views come in it too, in name order among the secrets; a secret stored
// under a view's path is not listed (the view hides it).
//
// It remembers the name it gave at each position, so that a Seek to a
// position (seekdir(3)) goes on after that name.
type Listing struct {
	v     *FS
	app   string
	page  []store.Meta
	i     int
	next  string   // where the next page starts
	done  bool     // no page after this one
	views []string // the views not listed yet, sorted
	// last is what Next gave last, while listed is set (see Lookup).
	last   store.Meta
	listed bool
	// pos is the number of entries given since the start (or the
	// position Seek moved to); given the name given at each position
	// (given[p-1] at position p; "" at one never given: a seek past the
	// names known); ahead an entry Seek read past, which Next gives
	// next.
	pos   uint64
	given []string
	ahead *store.Meta
}

// List starts a listing of app, once its closing writers are done: a
// listing right after `touch new` must show it.
// An application --apps leaves out lists nothing.
func (v *FS) List(app string) *Listing {
	v.awaitClosingWritersIn(app)
	l := v.listing(app)
	return &l
}

// listing is a listing of app from its start.
func (v *FS) listing(app string) Listing {
	return Listing{v: v, app: app, views: v.views.apps[app], done: v.shown(app) != nil}
}

// Next returns the metadata of the next secret or view (a view's is its
// path alone: see IsView), or false at the end.
func (l *Listing) Next(ctx context.Context) (store.Meta, bool, error) {
	var meta store.Meta
	var ok bool
	var err error
	if l.ahead != nil {
		meta, ok, l.ahead = *l.ahead, true, nil // recorded as last when Seek read it
	} else {
		meta, ok, err = l.step(ctx)
	}
	if ok {
		l.pos++
		for uint64(len(l.given)) < l.pos {
			l.given = append(l.given, "")
		}
		l.given[l.pos-1] = meta.Name
	}
	return meta, ok, err
}

// step is the store's (or the views') next entry, recorded as the last
// one given for Lookup.
func (l *Listing) step(ctx context.Context) (store.Meta, bool, error) {
	meta, ok, err := l.advance(ctx)
	l.last, l.listed = meta, ok
	return meta, ok, err
}

// Seek moves to pos, the number of entries Next had given at a position
// of this listing (0 is the start), as telldir(3) and seekdir(3) expect:
// the listing starts again and goes on after the name it gave at pos, so
// that a name added or removed before it since moves nothing (the listing
// is in name order). A position this listing never gave (another
// descriptor's) is counted from the start instead.
func (l *Listing) Seek(ctx context.Context, pos uint64) error {
	given := l.given
	*l = l.v.listing(l.app)
	l.pos, l.given = pos, given
	var name string
	if pos > 0 && pos <= uint64(len(given)) {
		name = given[pos-1]
	}
	named := name != ""
	for skip := pos; named || skip > 0; skip-- {
		meta, ok, err := l.step(ctx)
		switch {
		case err != nil:
			return err
		case !ok:
			return nil // past the end: the next Next finds nothing
		case named && meta.Name > name:
			l.ahead = &meta
			return nil
		}
	}
	return nil
}

// Lookup answers the lookup of name from the listing (LookupListed) if
// it is the name Next just gave, as READDIRPLUS looks up each name it
// lists; listed is false for any other name, which needs a Lookup.
func (l *Listing) Lookup(ctx context.Context, name string) (e Entry, listed bool, err error) {
	if !l.listed || l.last.Name != name {
		return Entry{}, false, nil
	}
	e, err = l.v.LookupListed(ctx, l.last)
	return e, true, err
}

// advance is Next, without recording what it gave.
func (l *Listing) advance(ctx context.Context) (store.Meta, bool, error) {
	secret, ok, err := l.peek(ctx)
	if err != nil {
		return store.Meta{}, false, err
	}
	if len(l.views) > 0 && (!ok || l.views[0] <= secret.Name) {
		name := l.views[0]
		l.views = l.views[1:]
		if ok && secret.Name == name {
			l.i++ // hidden by the view
			l.v.toldHidden(secret.Key)
		}
		return store.Meta{Key: store.Key{App: l.app, Name: name}, Size: -1}, true, nil
	}
	if !ok {
		return store.Meta{}, false, nil
	}
	l.i++
	return secret, true, nil
}

// toldHidden logs, once per view, that the store holds a secret at the
// view's path k: one stored after the mount checked (CheckStore at start;
// through the mount it is EEXIST), which the view hides from every
// reader, so that whoever stored it can learn why it is never read.
func (v *FS) toldHidden(k store.Key) {
	if _, told := v.hiddenTold.LoadOrStore(k, struct{}{}); !told {
		v.log.WithField("view", k.String()).
			Warn("the store holds a secret at a view's path, stored after the mount started: the view hides it; store it under another name, or remove the view")
	}
}

// peek returns the next secret of the store's listing without taking it,
// or false at its end.
func (l *Listing) peek(ctx context.Context) (store.Meta, bool, error) {
	for l.i >= len(l.page) {
		if l.done {
			return store.Meta{}, false, nil
		}
		page, next, err := l.v.cat.List(context.WithoutCancel(ctx), l.app, l.next, 0)
		if err != nil {
			return store.Meta{}, false, err
		}
		l.page, l.i, l.next, l.done = page, 0, next, next == ""
	}
	return l.page[l.i], true, nil
}
