package vfs

import (
	"cmp"
	"context"
	"crypto/hmac"
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
// (ViewRevision), named by the view and a name: the adapter gives each
// its own inode, readers of an open one keep its bytes, and a lookup
// after an input changed finds a new one if, and only if, the view's
// bytes changed. A lookup whose inputs did not change finds the rendering
// made before: unchanged inputs cost no decryption and no rendering.
//
// A rendering is named by a digest of the revisions of the inputs it was
// first made from. When an input changes (a lookup finds it, or the
// catalog tells of it), the view is rendered from the new revisions and
// a keyed hash of the bytes (viewMAC) compared with the current
// rendering's: byte-identical, the current rendering stays current under
// its name, now standing for the new revisions too (the same file, and
// the kernel keeps its pages), and nothing is told; otherwise the new
// rendering becomes current under a name of its own, and the view's
// change is told (Event Changed), once: what watchers were told of last
// is kept (viewState.told), whichever of a lookup or the catalog saw the
// change first. Only the bytes' keyed hashes are kept and compared, never
// the bytes.

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
	digest   string           // of the revisions (digestOf)
	name     string           // of the rendering they make (see adopt)
	out      crypto.Plaintext // the rendering, if adopt made it for a new name; nil if not
	modified time.Time        // the latest input's
}

// Key is the view's path.
func (in *ViewInputs) Key() store.Key { return in.view.Path() }

// Digest names the rendering: two sets of inputs with one name render
// the same bytes (the same revisions, or revisions found to render the
// same bytes as the rendering of that name).
func (in *ViewInputs) Digest() string { return in.name }

// Release unpins the inputs.
func (in *ViewInputs) Release() {
	for _, s := range in.snaps {
		s.Release()
	}
	in.snaps = nil
	in.out.Wipe()
	in.out = nil
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
// as the catalog's stale-if-error rule allows), pinned, and the name of
// their rendering (adopt). The name stands for as long as the least
// fresh of them.
func (v *FS) lookupView(ctx context.Context, vw *render.View) (Entry, error) {
	in, fresh, err := v.currentInputs(ctx, vw)
	if err != nil {
		return Entry{}, err
	}
	in.name, _ = v.adopt(ctx, in, false)
	meta := store.Meta{Key: vw.Path(), Size: -1, Modified: in.modified}
	return Entry{Meta: meta, Fresh: fresh, View: in}, nil
}

// currentInputs returns the current revisions of vw's inputs, pinned, and
// how long they all stand.
func (v *FS) currentInputs(ctx context.Context, vw *render.View) (*ViewInputs, time.Duration, error) {
	k := vw.Path()
	for attempt := 1; ; attempt++ {
		metas, fresh, err := v.viewInputs(ctx, vw)
		if err != nil {
			return nil, 0, viewFailure(k, err)
		}
		in := &ViewInputs{view: vw, metas: metas, digest: digestOf(metas)}
		err = in.bind(ctx, v.cat)
		if err == nil {
			if len(metas) == 0 {
				// An application with no secrets yet: its view dates
				// from the mount's start, as the directories do.
				in.modified = v.started
			}
			return in, fresh, nil
		}
		in.Release()
		if replaced := secrets.AsSuperseded(err) != nil || fault.Is(fault.NotFound, err); !replaced || attempt == maxViewAttempts {
			return nil, 0, viewFailure(k, err)
		}
	}
}

// viewInputs returns the current revisions of vw's inputs, by key, and
// how long they all stand. A secret the view names must exist; a member
// of an application the view renders whole that is gone by its lookup
// (removed since the listing) is no member: the view renders the
// application as it is now, as a listing a moment later would show it.
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
			if !slices.Contains(vw.Inputs().Secrets, k) {
				continue // a member removed since the listing
			}
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

// members lists the secrets of app, as a listing of it says, but for
// those a view hides (stored at a view's path): the application's view
// shows what the mount's listing of it shows.
func (v *FS) members(ctx context.Context, app string) ([]store.Key, error) {
	var keys []store.Key
	after := ""
	for {
		page, next, err := v.cat.List(ctx, app, after, 0)
		if err != nil {
			return nil, err
		}
		for _, m := range page {
			if !v.IsView(m.Key) {
				keys = append(keys, m.Key)
			}
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

// viewState is what the file system knows of a view's current
// rendering. Its fields are guarded by FS.mu; a state is replaced whole,
// never changed in place, so that adopt can tell whether another
// changed the view's state meanwhile.
type viewState struct {
	inputs string // the digest of the revisions the rendering stands for ("" none)
	name   string // the rendering's name ("" none: no rendering is current)
	mac    []byte // viewMAC of its bytes; nil until rendered
	// told is the viewMAC of the bytes watchers were last told of: nil
	// if none was told since the mount began, unrendered (a change then
	// is always told); noRendering once the view could not be rendered.
	told []byte
}

// noRendering is viewState.told of a view that could not be rendered: no
// bytes' hash is empty.
var noRendering = []byte{}

func isNoRendering(told []byte) bool { return told != nil && len(told) == 0 }

// maxAdoptAttempts bounds how often adopt starts again when another
// changed the same view's state meanwhile; then the last one wins.
const maxAdoptAttempts = 3

// adopt makes the rendering of in the view's current one, and returns
// its name: the current rendering's if it is made from the same
// revisions, or (once rendered) has the same bytes; else a name of its
// own (in.digest). An adoption for a lookup (announce false) renders only
// when the current rendering's bytes are known and the revisions differ;
// one for a change of an input (announce true) always knows the bytes,
// and reports whether they differ from what watchers were told of last,
// recording them as told. A view that cannot be rendered has then no
// current rendering (and is told, as changed).
//
// A rendering made for a new name is left in in.out, for the adapter's
// first read; one of the current name is wiped.
func (v *FS) adopt(ctx context.Context, in *ViewInputs, announce bool) (name string, changed bool) {
	k, d := in.Key(), in.digest
	var made viewMade
	for attempt := 1; ; attempt++ {
		v.mu.Lock()
		st := v.currentViews[k]
		v.mu.Unlock()
		cur := viewState{}
		if st != nil {
			cur = *st
		}
		made.renderIfNeeded(ctx, v, in, cur, announce)
		next, changed := cur.next(d, made, announce)
		if v.swapViewState(k, st, &next, attempt == maxAdoptAttempts) {
			if next.name != d {
				in.out.Wipe()
				in.out = nil
			}
			return next.name, changed
		}
	}
}

// viewMade is what adopt learnt of the rendering of its inputs: its
// viewMAC, once rendered, or that it could not be rendered.
type viewMade struct {
	mac    []byte
	failed bool
}

// renderIfNeeded renders in, unless the current state cur already knows
// its bytes (the same inputs), it was rendered or failed already, or
// there is nothing to compare it with on a lookup (the current
// rendering's bytes unknown).
func (m *viewMade) renderIfNeeded(ctx context.Context, v *FS, in *ViewInputs, cur viewState, announce bool) {
	if cur.inputs == in.digest && (!announce || cur.mac != nil) {
		m.mac = cur.mac
		return
	}
	if m.mac != nil || m.failed || !(announce || cur.mac != nil) {
		return
	}
	out, err := in.render(ctx)
	if err != nil {
		m.failed = true
		return
	}
	m.mac = v.viewMAC(out)
	in.out.Wipe()
	in.out = out
}

// next is the view's state once the rendering of the inputs d (made)
// is its current one, and whether, for a change of an input (announce),
// watchers are to be told.
func (cur viewState) next(d string, made viewMade, announce bool) (viewState, bool) {
	next := viewState{inputs: d, name: d, mac: made.mac, told: cur.told}
	switch {
	case made.failed && announce:
		next = viewState{told: noRendering}
	case cur.inputs == d && cur.name != "":
		next.name = cur.name
		if next.mac == nil {
			next.mac = cur.mac
		}
	case cur.mac != nil && made.mac != nil && hmac.Equal(cur.mac, made.mac):
		next.name = cur.name // byte-identical: the current rendering stays
	}
	if !announce {
		return next, false
	}
	if made.failed {
		return next, !isNoRendering(cur.told) // a view broken already did not change
	}
	changed := next.told == nil || isNoRendering(next.told) || !hmac.Equal(next.told, next.mac)
	next.told = next.mac
	return next, changed
}

// swapViewState makes next the state of the view k if its state is
// still was (or, with force, whatever it is), and reports whether it did.
func (v *FS) swapViewState(k store.Key, was, next *viewState, force bool) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.currentViews[k] != was && !force {
		return false
	}
	v.currentViews[k] = next
	return true
}

// inputChanged adopts the current rendering of the view k after a change
// of one of its inputs, and reports whether its bytes changed: they did if its inputs cannot be
// had now. A view not rendered since the mount began has no bytes to
// compare with: it is told of as changed, and nothing is rendered (or
// decrypted) for it; its first rendering is what later changes are
// compared with.
func (v *FS) inputChanged(k store.Key) bool {
	v.mu.Lock()
	if st := v.currentViews[k]; st == nil || st.told == nil {
		delete(v.currentViews, k)
		v.mu.Unlock()
		return true
	}
	v.mu.Unlock()
	vw := v.viewAt(k)
	ctx := context.Background() // the catalog bounds every call to the store
	in, _, err := v.currentInputs(ctx, vw)
	if err != nil {
		v.mu.Lock()
		defer v.mu.Unlock()
		broken := false
		if st := v.currentViews[k]; st != nil {
			broken = isNoRendering(st.told)
		}
		v.currentViews[k] = &viewState{told: noRendering}
		return !broken
	}
	defer in.Release()
	_, changed := v.adopt(ctx, in, true)
	return changed
}

// viewMAC is the keyed hash of a rendering's bytes, under a key of this
// file system's own: what tells two renderings apart without keeping
// either's bytes. It is HMAC-SHA256 of the bytes zero-padded to whole
// blocks, then their length (so that no padding makes two renderings
// one), written so that no byte of the rendering rests in the hash's
// buffer, which nobody can wipe: HMAC's inner hash has taken one whole
// block (the padded key), so whole blocks go straight to its compression
// function; the last part is copied into a block of this function's own,
// wiped once hashed.
func (v *FS) viewMAC(out crypto.Plaintext) []byte {
	mac := hmac.New(sha256.New, v.macKey)
	whole := len(out) &^ (sha256.BlockSize - 1)
	mac.Write(out[:whole])
	last := make([]byte, sha256.BlockSize)
	copy(last, out[whole:])
	mac.Write(last)
	clear(last)
	mac.Write(binary.BigEndian.AppendUint64(nil, uint64(len(out))))
	return mac.Sum(nil)
}

// rendered records the viewMAC of the rendering of the view k named name,
// if it is the current one and its bytes were not known yet: a watcher
// told of nothing yet is told of changes from these bytes on.
func (v *FS) rendered(k store.Key, name string, mac []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.currentViews[k]
	if st == nil || st.name != name || st.mac != nil {
		return
	}
	next := *st
	next.mac = mac
	if next.told == nil {
		next.told = mac
	}
	v.currentViews[k] = &next
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
	mac      []byte             // viewMAC of its bytes, nil until rendered once
	lastRead time.Time
	idle     *time.Timer // wipes value once idle
}

// NewViewRevision returns the file of the rendering of in, which it takes
// over. onPin and onWipe are as for NewRevision: onPin is told when the
// revision pins its inputs again after an Unpin; onWipe, from a goroutine
// of its own, when the held rendering is wiped.
func (v *FS) NewViewRevision(in *ViewInputs, onPin, onWipe func()) *ViewRevision {
	r := &ViewRevision{v: v, view: in.view, metas: in.metas, digest: in.name, mtime: in.modified,
		onPin: onPin, onWipe: onWipe, snaps: in.snaps, size: -1}
	if in.out != nil {
		r.mu.Lock()
		r.hold(in.out, v.viewMAC(in.out)) // rendered already, by adopt
		r.lastRead = time.Now()
		r.mu.Unlock()
	}
	in.snaps, in.out = nil, nil
	return r
}

// Key returns the view's path.
func (r *ViewRevision) Key() store.Key { return r.view.Path() }

// Is reports whether r is the rendering of the view k named digest.
func (r *ViewRevision) Is(k store.Key, digest string) bool {
	return r.view.Path() == k && r.digest == digest
}

// Digest names the set of input revisions r is rendered from (see
// ViewInputs.Digest).
func (r *ViewRevision) Digest() string { return r.digest }

// current reports whether the last lookup of the view found this
// rendering, and no input changed since.
func (r *ViewRevision) current() bool {
	r.v.mu.Lock()
	defer r.v.mu.Unlock()
	st := r.v.currentViews[r.Key()]
	return st != nil && st.name == r.digest
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
// modification times, the view's owner and its mode without write bits,
// and nlink 1 while it is the view's current rendering as far as the file
// system knows, 0 once an input changed. A view is never written (EROFS),
// so it says so where programs look first: `ls -l`, test -w and access(2),
// an editor's read-only warning. The mount's own change signal writes it
// nonetheless, as root (CAP_DAC_OVERRIDE passes the kernel's check).
func (r *ViewRevision) Attr() Attr {
	r.mu.Lock()
	size := max(r.size, 0)
	r.mu.Unlock()
	nlink := uint32(0)
	if r.current() {
		nlink = 1
	}
	a := r.v.fileAttr(store.Meta{Key: r.Key(), Size: size, Modified: r.mtime}, nlink)
	a.Perm &^= viewWriteBits
	return a
}

// viewWriteBits are the permission bits a view never shows.
const viewWriteBits = 0o222

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
// A rendering made again (after an idle wipe) must be the bytes made
// first, whose viewMAC r keeps: a reader may hold pages of the first, and
// must never read a file mixed of two. Other bytes, of any length, are an
// Integrity failure (EIO, logged by the adapter), never served.
func (r *ViewRevision) withValue(ctx context.Context, use func(crypto.Plaintext)) error {
	r.mu.Lock()
	if r.value != nil || r.size == 0 {
		r.lastRead = time.Now()
		use(r.value)
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	out, mac, err := r.render(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	same := r.mac == nil || hmac.Equal(mac, r.mac)
	switch {
	case r.value != nil || r.size == 0:
		out.Wipe() // another read rendered it meanwhile
	case !same:
		r.mu.Unlock()
		out.Wipe()
		return fault.E(r.Key().Path(), fault.Integrity, "rendered again from the same inputs, the view has other bytes than before: it cannot be served")
	default:
		r.hold(out, mac)
	}
	r.lastRead = time.Now()
	use(r.value)
	r.mu.Unlock()
	if same {
		// Only bytes that are this rendering's may stand for it.
		r.v.rendered(r.Key(), r.digest, mac)
	}
	return nil
}

// hold keeps out, the rendering, until it is idle, and the first
// rendering's mac, its viewMAC. r.mu must be held.
func (r *ViewRevision) hold(out crypto.Plaintext, mac []byte) {
	r.size = int64(len(out))
	if r.mac == nil {
		r.mac = mac
	}
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
// first if they were unpinned, and returns the bytes' viewMAC too.
func (r *ViewRevision) render(ctx context.Context) (crypto.Plaintext, []byte, error) {
	out, err := renderFrom(ctx, r.view, r.metas, r.pinned())
	if err != nil {
		return nil, nil, err
	}
	return out, r.v.viewMAC(out), nil
}

// render renders the view from the inputs.
func (in *ViewInputs) render(ctx context.Context) (crypto.Plaintext, error) {
	return renderFrom(ctx, in.view, in.metas, in.snaps)
}

// renderFrom renders vw from the revisions metas, pinned as snaps.
func renderFrom(ctx context.Context, vw *render.View, metas []store.Meta, snaps []secrets.Snapshot) (crypto.Plaintext, error) {
	values := make(map[store.Key]crypto.Plaintext, len(snaps))
	defer func() {
		for _, val := range values {
			val.Wipe()
		}
	}()
	for i, s := range snaps {
		val, err := s.Value(ctx)
		if err != nil {
			return nil, viewFailure(vw.Path(), fault.E(metas[i].Key.Path(), err))
		}
		values[metas[i].Key] = val
	}
	return vw.Render(values)
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

// RevalidateEvery is how often a watched application should be
// revalidated (Revalidate lists only what is older than the TTL), so that
// a change made elsewhere is learnt within the TTL plus this even when
// nobody reads: a quarter of the TTL, at most half a second; under a TTL
// of a second (0: ask at every open), once a second.
func (v *FS) RevalidateEvery() time.Duration {
	if v.opts.TTL < time.Second {
		return time.Second
	}
	return min(v.opts.TTL/4, 500*time.Millisecond)
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
