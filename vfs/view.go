package vfs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// Views: read-only files rendered from secrets (package render) at the
// paths the mount's config file gives them.
//
// A view's rendering is a pure function of one consistent set of
// revisions of its inputs: the same revision of every input, never two
// mixed. So a rendering is an immutable revision like a secret's
// (ViewRevision), named by the view and a digest of those revisions: the
// adapter gives each its own inode, readers of an open one keep its
// bytes, and a lookup after an input changed finds a new one. A lookup
// whose inputs did not change finds the rendering made before: unchanged
// inputs cost no decryption and no rendering.

// maxViewAttempts bounds how often a lookup of a view takes its inputs
// again when one of them was replaced between its lookup and the read of
// its item.
const maxViewAttempts = 3

// views indexes the views of the file system by path, and who reads
// what.
type views struct {
	at      map[store.Key]*render.View
	apps    map[string][]string       // the names of the views of each application, sorted
	readers map[store.Key][]store.Key // the views that read each secret (field and template views)
	appOf   map[string][]store.Key    // the views that read each application whole (app views)
}

func newViews(list []*render.View) views {
	vs := views{at: map[store.Key]*render.View{}, apps: map[string][]string{},
		readers: map[store.Key][]store.Key{}, appOf: map[string][]store.Key{}}
	for _, vw := range list {
		k := vw.Path()
		vs.at[k] = vw
		vs.apps[k.App] = append(vs.apps[k.App], k.Name)
		for _, in := range vw.Inputs().Secrets {
			vs.readers[in] = append(vs.readers[in], k)
		}
		if app := vw.Inputs().App; app != "" {
			vs.appOf[app] = append(vs.appOf[app], k)
		}
	}
	for _, names := range vs.apps {
		sort.Strings(names)
	}
	return vs
}

// viewAt returns the view at k, or nil.
func (v *FS) viewAt(k store.Key) *render.View { return v.views.at[k] }

// IsView reports whether k is a view's path.
func (v *FS) IsView(k store.Key) bool { return v.viewAt(k) != nil }

// readersOf returns the views that read k: one that names it, or one of
// its whole application.
func (v *FS) readersOf(k store.Key) []store.Key {
	return append(slices.Clone(v.views.readers[k]), v.views.appOf[k.App]...)
}

// viewReadOnly is the refusal of every change of a view.
func viewReadOnly(k store.Key) error {
	return fault.E(k.Path(), fault.ReadOnly, "a view is read-only: it is rendered from secrets, as the mount's config file says")
}

// viewFailure is why the view k cannot be rendered now. A view that
// cannot be rendered is EIO whatever the input's trouble was (a missing
// input is not a missing view), except a refusal of the backend or the
// keys, which is EACCES as it is for the input itself.
func viewFailure(k store.Key, err error) error {
	switch fault.KindOf(err) {
	case fault.Permission, fault.Unavailable:
		return fault.E(k.Path(), "the view cannot be rendered", err)
	}
	return fault.E(k.Path(), "the view cannot be rendered: "+err.Error())
}

// ViewInputs is one consistent set of revisions of a view's inputs, each
// pinned and its item in memory: what a rendering is made from. The
// caller of Lookup takes it over: it gives it to NewViewRevision, or
// Releases it.
type ViewInputs struct {
	view     *render.View
	metas    []store.Meta // by key
	snaps    []secrets.Snapshot
	digest   string
	modified time.Time // the latest input's
}

// Key is the view's path.
func (in *ViewInputs) Key() store.Key { return in.view.Path() }

// Digest names the set of revisions: two sets with one digest are the
// same revisions of the same inputs, and render the same bytes.
func (in *ViewInputs) Digest() string { return in.digest }

// Release unpins the inputs.
func (in *ViewInputs) Release() {
	for _, s := range in.snaps {
		s.Release()
	}
	in.snaps = nil
}

// digestOf names a set of revisions, each length-prefixed: the key, the
// Version and the IV (fresh on every write).
func digestOf(metas []store.Meta) string {
	h := sha256.New()
	var b []byte
	for _, m := range metas {
		b = b[:0]
		for _, part := range [][]byte{[]byte(m.Key.App), []byte(m.Key.Name), m.InitialisationVector} {
			b = binary.AppendUvarint(b, uint64(len(part)))
			b = append(b, part...)
		}
		b = binary.AppendVarint(b, int64(m.Version))
		h.Write(b)
	}
	return string(h.Sum(nil))
}

// lookupView returns what the view vw is now: the revisions of its
// inputs the catalog holds for current, fresh within the TTL (or stale,
// as the catalog's stale-if-error rule allows), pinned. The name stands
// for as long as the least fresh of them.
func (v *FS) lookupView(ctx context.Context, vw *render.View) (Entry, error) {
	k := vw.Path()
	for attempt := 1; ; attempt++ {
		metas, fresh, err := v.viewInputs(ctx, vw)
		if err != nil {
			return Entry{}, viewFailure(k, err)
		}
		in := &ViewInputs{view: vw, metas: metas, digest: digestOf(metas)}
		err = in.bind(ctx, v.cat)
		if err == nil {
			v.setCurrentView(k, in.digest)
			meta := store.Meta{Key: k, Size: -1, Modified: in.modified}
			return Entry{Meta: meta, Fresh: fresh, View: in}, nil
		}
		in.Release()
		if replaced := secrets.AsSuperseded(err) != nil || fault.Is(fault.NotFound, err); !replaced || attempt == maxViewAttempts {
			return Entry{}, viewFailure(k, err)
		}
	}
}

// viewInputs returns the current revisions of vw's inputs, by key, and
// how long they all stand.
func (v *FS) viewInputs(ctx context.Context, vw *render.View) ([]store.Meta, time.Duration, error) {
	var metas []store.Meta
	fresh := v.opts.TTL
	keys := slices.Clone(vw.Inputs().Secrets)
	if app := vw.Inputs().App; app != "" {
		members, err := v.members(ctx, app)
		if err != nil {
			return nil, 0, err
		}
		keys = append(keys, members...)
	}
	slices.SortFunc(keys, compareKeys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		e, err := v.cat.Lookup(ctx, k)
		if fault.Is(fault.NotFound, err) {
			return nil, 0, fault.E(k.Path(), "the input is missing")
		}
		if err != nil {
			return nil, 0, err
		}
		metas = append(metas, e.Meta)
		fresh = min(fresh, e.Fresh)
	}
	return metas, fresh, nil
}

// members lists the secrets of app, as a listing of it says.
func (v *FS) members(ctx context.Context, app string) ([]store.Key, error) {
	var keys []store.Key
	after := ""
	for {
		page, next, err := v.cat.List(ctx, app, after, 0)
		if err != nil {
			return nil, err
		}
		for _, m := range page {
			keys = append(keys, m.Key)
		}
		if next == "" {
			return keys, nil
		}
		after = next
	}
}

func compareKeys(a, b store.Key) int {
	if c := cmp.Compare(a.App, b.App); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// bind pins every input's revision and makes sure its item is in memory,
// so that the rendering can be made (and made again after its plaintext
// was wiped) from exactly these revisions, whatever the store holds
// later. A revision the store replaced before its item was read is a
// *secrets.Superseded: the lookup then takes the inputs again.
func (in *ViewInputs) bind(ctx context.Context, cat secrets.Catalog) error {
	for _, m := range in.metas {
		s := cat.Snapshot(m.Key, m)
		in.snaps = append(in.snaps, s)
		if err := s.Bind(ctx); err != nil {
			return err
		}
		if m.Modified.After(in.modified) {
			in.modified = m.Modified
		}
	}
	return nil
}

// setCurrentView records the rendering a lookup of the view k found
// current (see ViewRevision.current).
func (v *FS) setCurrentView(k store.Key, digest string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.currentViews[k] = digest
}

// forgetCurrentView records that the view k may have changed: an input
// changed, and until the next lookup nobody knows which rendering is
// current.
func (v *FS) forgetCurrentView(k store.Key) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.currentViews, k)
}

// ViewRevision is one rendering of a view as a file: its content and
// attributes never change. It pins the revisions of its inputs, and
// holds its bytes from its first read until they are idle for
// Options.Idle (then wiped, as a secret's plaintext is) or until Unpin;
// a later read renders them again, from the same revisions: the same
// bytes.
//
// Locking: mu guards every field below it; it is a leaf (see the package
// comment), never held across a call into the catalog or a callback.
type ViewRevision struct {
	v      *FS
	view   *render.View
	metas  []store.Meta
	digest string
	mtime  time.Time
	onPin  func()
	onWipe func()

	mu       sync.Mutex
	snaps    []secrets.Snapshot // the pinned inputs; nil once unpinned
	value    crypto.Plaintext   // the rendering, while held
	size     int64              // its length, -1 until rendered once
	lastRead time.Time
	idle     *time.Timer // wipes value once idle
}

// NewViewRevision returns the file of the rendering of in, which it takes
// over. onPin and onWipe are as for NewRevision: onPin is told when the
// revision pins its inputs again after an Unpin; onWipe, from a goroutine
// of its own, when the held rendering is wiped.
func (v *FS) NewViewRevision(in *ViewInputs, onPin, onWipe func()) *ViewRevision {
	return &ViewRevision{v: v, view: in.view, metas: in.metas, digest: in.digest, mtime: in.modified,
		onPin: onPin, onWipe: onWipe, snaps: in.snaps, size: -1}
}

// Key returns the view's path.
func (r *ViewRevision) Key() store.Key { return r.view.Path() }

// Is reports whether r is the rendering of the view k named digest.
func (r *ViewRevision) Is(k store.Key, digest string) bool {
	return r.view.Path() == k && r.digest == digest
}

// current reports whether the last lookup of the view found this
// rendering, and no input changed since.
func (r *ViewRevision) current() bool {
	r.v.mu.Lock()
	defer r.v.mu.Unlock()
	return r.v.currentViews[r.Key()] == r.digest
}

// Prepare renders the view if its size is not known yet: a stat shows
// it, so the first lookup of a rendering renders it. A view that cannot
// be rendered fails here, naming itself and the cause (never a value).
func (r *ViewRevision) Prepare(ctx context.Context) error {
	r.mu.Lock()
	known := r.size >= 0
	r.mu.Unlock()
	if known {
		return nil
	}
	return r.withValue(ctx, func(crypto.Plaintext) {})
}

// Attr is the rendering's attributes: its size, the latest of its inputs'
// modification times, the view's owner and mode, and nlink 1 while it is
// the view's current rendering as far as the file system knows, 0 once
// an input changed.
func (r *ViewRevision) Attr() Attr {
	r.mu.Lock()
	size := max(r.size, 0)
	r.mu.Unlock()
	nlink := uint32(0)
	if r.current() {
		nlink = 1
	}
	return r.v.fileAttr(store.Meta{Key: r.Key(), Size: size, Modified: r.mtime}, nlink)
}

// Open opens the rendering with flags for c. A reader of the current
// rendering reads it (Read); one of a rendering an input has replaced
// since is sent to look the name up again (ErrLookUpAgain). Writing is
// refused (EROFS), except for the mount's own change signal (c.Own),
// which gets a handle that changes nothing.
func (r *ViewRevision) Open(ctx context.Context, c Caller, flags uint32) (*Handle, error) {
	k := r.Key()
	if Writes(flags) {
		if c.Own {
			return r.v.signalHandle(k), nil
		}
		err := viewReadOnly(k)
		r.v.audit(c, "open", k, store.Key{}, 0, err)
		return nil, err
	}
	var err error
	if !r.current() {
		err = lookUpAgain(k.Path(), "an input of the view changed since it was looked up")
	}
	r.v.audit(c, "open", k, store.Key{}, 0, err)
	return nil, err
}

// Read copies the rendering at off into dest: n < len(dest) means it
// ended. A rendering wiped for idleness is rendered again first.
func (r *ViewRevision) Read(ctx context.Context, dest []byte, off int64) (int, error) {
	n := 0
	err := r.withValue(ctx, func(value crypto.Plaintext) {
		if off < int64(len(value)) {
			n = copy(dest, value[off:])
		}
	})
	return n, err
}

// Touch records a read the kernel served from its page cache: the
// rendering is not idle.
func (r *ViewRevision) Touch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastRead = time.Now()
}

// withValue calls use with the rendering, rendering it if it is not held.
func (r *ViewRevision) withValue(ctx context.Context, use func(crypto.Plaintext)) error {
	r.mu.Lock()
	if r.value != nil || r.size == 0 {
		r.lastRead = time.Now()
		use(r.value)
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	out, err := r.render(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.value != nil || r.size == 0:
		out.Wipe() // another read rendered it meanwhile
	case r.size >= 0 && int64(len(out)) != r.size:
		out.Wipe()
		return fault.E(r.Key().Path(), fault.Integrity, "rendered again from the same inputs, the view has another length: it cannot be served")
	default:
		r.hold(out)
	}
	r.lastRead = time.Now()
	use(r.value)
	return nil
}

// hold keeps out, the rendering, until it is idle. r.mu must be held.
func (r *ViewRevision) hold(out crypto.Plaintext) {
	r.size = int64(len(out))
	if len(out) == 0 {
		return // nothing to hold, nothing to wipe
	}
	r.value = out
	r.v.held(r, true)
	if r.idle == nil {
		r.idle = time.AfterFunc(r.v.opts.Idle, r.sweep)
	} else {
		r.idle.Reset(r.v.opts.Idle)
	}
}

// sweep wipes the rendering if nobody read it for Options.Idle, and
// comes back when it would be if not.
func (r *ViewRevision) sweep() {
	r.mu.Lock()
	if r.value == nil {
		r.mu.Unlock()
		return
	}
	if left := r.v.opts.Idle - time.Since(r.lastRead); left > 0 {
		r.idle.Reset(left)
		r.mu.Unlock()
		return
	}
	r.wipeLocked()
	r.mu.Unlock()
	r.onWipe()
}

// wipeLocked zeroes the held rendering. r.mu must be held.
func (r *ViewRevision) wipeLocked() {
	if r.value != nil {
		r.value.Wipe()
		r.value = nil
		r.v.held(r, false)
	}
	if r.idle != nil {
		r.idle.Stop()
	}
}

// render renders the view from its pinned inputs, pinning them again
// first if they were unpinned.
func (r *ViewRevision) render(ctx context.Context) (crypto.Plaintext, error) {
	snaps := r.pinned()
	values := make(map[store.Key]crypto.Plaintext, len(snaps))
	defer func() {
		for _, val := range values {
			val.Wipe()
		}
	}()
	for i, s := range snaps {
		val, err := s.Value(ctx)
		if err != nil {
			return nil, viewFailure(r.Key(), fault.E(r.metas[i].Key.Path(), err))
		}
		values[r.metas[i].Key] = val
	}
	out, err := r.view.Render(values)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pinned returns the pinned inputs, pinning them if they are not (after
// an Unpin: see onPin).
func (r *ViewRevision) pinned() []secrets.Snapshot {
	r.mu.Lock()
	snaps := r.snaps
	r.mu.Unlock()
	if snaps != nil || len(r.metas) == 0 {
		return snaps
	}
	fresh := make([]secrets.Snapshot, len(r.metas))
	for i, m := range r.metas {
		fresh[i] = r.v.cat.Snapshot(m.Key, m)
	}
	r.mu.Lock()
	if r.snaps == nil {
		r.snaps = fresh
		r.mu.Unlock()
		r.onPin()
		return fresh
	}
	snaps = r.snaps
	r.mu.Unlock()
	for _, s := range fresh {
		s.Release()
	}
	return snaps
}

// Unpin wipes the rendering and unpins the inputs: nothing can read this
// rendering through the adapter any more, until its next use.
func (r *ViewRevision) Unpin() {
	r.mu.Lock()
	r.wipeLocked()
	snaps := r.snaps
	r.snaps = nil
	r.mu.Unlock()
	for _, s := range snaps {
		s.Release()
	}
}

// held records whether r holds a rendering, for Close.
func (v *FS) held(r *ViewRevision, holds bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if holds {
		v.renderings[r] = struct{}{}
	} else {
		delete(v.renderings, r)
	}
}

// Close wipes every rendering held: the mount is going away.
func (v *FS) Close() {
	v.mu.Lock()
	held := make([]*ViewRevision, 0, len(v.renderings))
	for r := range v.renderings {
		held = append(held, r)
	}
	v.mu.Unlock()
	for _, r := range held {
		r.mu.Lock()
		r.wipeLocked()
		r.mu.Unlock()
	}
}

// Current returns the revision the catalog holds for k now, without
// asking anyone (false if it holds none, or k is a view).
func (v *FS) Current(k store.Key) (store.Meta, bool) {
	if v.IsView(k) {
		return store.Meta{}, false
	}
	return v.cat.Known(k)
}

// Revalidate makes sure what the file system knows of app, and of every
// application its views read, is no older than the TTL: a listing each,
// if theirs is older. What changed is then told (Options.Events) as the
// catalog learns it (see Watch). It is for watched applications
// (package fs lists them so when nobody reads them); a reader
// revalidates what it reads by itself.
func (v *FS) Revalidate(ctx context.Context, app string) error {
	apps := []string{app}
	for _, name := range v.views.apps[app] {
		in := v.views.at[store.Key{App: app, Name: name}].Inputs()
		for _, k := range in.Secrets {
			apps = append(apps, k.App)
		}
		if in.App != "" {
			apps = append(apps, in.App)
		}
	}
	slices.Sort(apps)
	var first error
	for _, a := range slices.Compact(apps) {
		if _, _, err := v.cat.List(ctx, a, "", 1); err != nil && first == nil {
			first = err
		}
	}
	return first
}
