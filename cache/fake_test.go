package cache

import (
	"context"
	"encoding/binary"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/breaker"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// fakeOrigin is an in-memory Origin that counts its calls, can hold calls
// of one method until released, can fail the next call of a method, and
// remembers every plaintext it handed out so tests can check that the
// cache wiped the ones it owned.
type fakeOrigin struct {
	mu      sync.Mutex
	items   map[store.Key]*store.Item
	ivs     uint64
	clock   int64
	calls   map[string]int
	gates   map[string]*gate
	fail    map[string]error
	handed  []crypto.Plaintext
	entered chan string // a held call sends its method's name here
	// stores and keys, when set, stand for the breakers that wrap the
	// store and the keys behind a real origin (package breaker): calls
	// counted are those that reach the backend.
	stores, keys *breaker.Breaker
}

var _ Origin = (*fakeOrigin)(nil)

func newFake() *fakeOrigin {
	return &fakeOrigin{
		items:   make(map[store.Key]*store.Item),
		calls:   make(map[string]int),
		gates:   make(map[string]*gate),
		fail:    make(map[string]error),
		entered: make(chan string, 1000),
	}
}

// seal "encrypts" by flipping bits: enough to keep plaintext and
// ciphertext apart.
func seal(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = c ^ 0xaa
	}
	return out
}

// write stores value at k with the given Version, a fresh IV and a new
// Modified time. f.mu must be held.
func (f *fakeOrigin) write(k store.Key, value []byte, v store.Version) *store.Item {
	f.ivs++
	f.clock++
	iv := binary.BigEndian.AppendUint64(nil, f.ivs)
	item := &store.Item{
		Meta: store.Meta{
			Key: k, Format: "v2", Version: v, InitialisationVector: iv, Size: int64(len(value)),
			Modified: time.UnixMilli(1_700_000_000_000 + f.clock),
		},
		MasterKeyID:          "fake",
		ProtectedDocumentKey: []byte("wrapped"),
		ProtectedSecretValue: seal(value),
	}
	f.items[k] = item
	return item
}

// set plays another host (or the original Secret Store) writing k.
func (f *fakeOrigin) set(k store.Key, value string, v store.Version) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write(k, []byte(value), v)
}

// setLegacy plays the original Secret Store writing k: no Version, Size
// or Modified.
func (f *fakeOrigin) setLegacy(k store.Key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	item := f.write(k, []byte(value), store.Unversioned)
	item.Format, item.Size, item.Modified = "", -1, time.Time{}
}

// setSize plays a store writer changing k's Size, and nothing else.
func (f *fakeOrigin) setSize(k store.Key, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items[k].Size = size
}

// remove plays another host deleting k.
func (f *fakeOrigin) remove(k store.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.items, k)
}

func (f *fakeOrigin) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// counts returns the calls that reach the backend.
func (f *fakeOrigin) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]int{"Fetch": f.calls["Fetch"], "Open": f.calls["Open"], "List": f.calls["List"], "Put": f.calls["Put"]}
}

// handedOut returns the plaintexts handed out so far, oldest first.
func (f *fakeOrigin) handedOut() []crypto.Plaintext {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.handed)
}

// gate holds calls until it is opened.
type gate struct {
	open chan struct{}
}

// hold makes calls of method wait until release is called (or their ctx
// is done). release may be called more than once.
func (f *fakeOrigin) hold(method string) (release func()) {

	f.mu.Lock()
	defer f.mu.Unlock()
	g := &gate{open: make(chan struct{})}
	f.gates[method] = g
	var released sync.Once
	return func() {
		released.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			close(g.open)
			if f.gates[method] == g {
				delete(f.gates, method)
			}
		})
	}
}

// failNext makes the next call of method return err.
func (f *fakeOrigin) failNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

// enter counts a call, holds it if its method is held, and returns the
// error it must fail with. A ctx cancelled while held fails the call, so a
// shared call cancelled with its first caller would be seen.
func (f *fakeOrigin) enter(ctx context.Context, method string) error {
	b := f.stores
	switch method {
	case "Open":
		b = f.keys
	case "Put committed":
		b = nil // the answer of the Put that entered already
	}
	if b == nil {
		return f.reach(ctx, method)
	}
	return b.Do(ctx, fault.Op("fake."+method), func() error { return f.reach(ctx, method) })
}

// reach is a call that reaches the backend.
func (f *fakeOrigin) reach(ctx context.Context, method string) error {
	f.mu.Lock()
	f.calls[method]++
	err := f.fail[method]
	delete(f.fail, method)
	g := f.gates[method]
	f.mu.Unlock()
	if g != nil {
		f.entered <- method
		select {
		case <-g.open:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return fault.E(fault.Op("fake."+method), ctx.Err())
	}
	return err
}

func notFound(op string, k store.Key) error {
	return fault.E(fault.Op(op), k.Path(), fault.NotFound)
}

// Fetch and Get read the store before they are held, as a slow response
// would: a held call returns what was stored when it began.
func (f *fakeOrigin) Fetch(ctx context.Context, k store.Key) (*store.Item, error) {
	item := f.snapshot(k)
	if err := f.enter(ctx, "Fetch"); err != nil {
		return nil, err
	}
	if item == nil {
		return nil, notFound("fake.Fetch", k)
	}
	return item, nil
}

// snapshot returns a copy of k's item, or nil.
func (f *fakeOrigin) snapshot(k store.Key) *store.Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	item := f.items[k]
	if item == nil {
		return nil
	}
	c := *item
	c.InitialisationVector = slices.Clone(item.InitialisationVector)
	c.ProtectedSecretValue = slices.Clone(item.ProtectedSecretValue)
	return &c
}

// open decrypts item into a new slice that the fake remembers.
func (f *fakeOrigin) open(item *store.Item) secrets.Secret {
	value := crypto.Plaintext(seal(item.ProtectedSecretValue))
	f.mu.Lock()
	f.handed = append(f.handed, value)
	f.mu.Unlock()
	s := secrets.Secret{Meta: item.Meta, Value: value}
	s.Size = int64(len(value))
	return s
}

func (f *fakeOrigin) Open(ctx context.Context, item *store.Item) (secrets.Secret, error) {
	if err := f.enter(ctx, "Open"); err != nil {
		return secrets.Secret{}, err
	}
	return f.open(item), nil
}

// The fake compares Versions only: Revisions are the stores' business
// (store/storetest), not the cache's.
func (f *fakeOrigin) Write(ctx context.Context, k store.Key, value []byte, expected store.Revision) (*store.Item, error) {
	const op fault.Op = "fake.Put"
	if err := f.enter(ctx, "Put"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	stored := store.Absent
	if item := f.items[k]; item != nil {
		stored = item.Version
	}
	switch {
	case stored != expected.Version && expected.Version == store.Absent:
		return nil, fault.E(op, k.Path(), fault.Exist)
	case stored != expected.Version:
		return nil, fault.E(op, k.Path(), fault.Conflict)
	}
	item := f.write(k, value, expected.Version.Next())
	f.mu.Unlock()
	// "Put committed" holds the answer of a write that is already stored.
	err := f.enter(ctx, "Put committed")
	f.mu.Lock()
	if err != nil {
		return nil, err
	}
	return item, nil
}

func (f *fakeOrigin) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	const op fault.Op = "fake.Delete"
	if err := f.enter(ctx, "Delete"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	item := f.items[k]
	switch {
	case item == nil:
		return notFound(string(op), k)
	case item.Version != expected.Version:
		return fault.E(op, k.Path(), fault.Conflict)
	}
	delete(f.items, k)
	return nil
}

func (f *fakeOrigin) ListAll(ctx context.Context, app string) ([]store.Meta, error) {
	if err := f.enter(ctx, "List"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []store.Meta
	for k, item := range f.items {
		if k.App == app {
			all = append(all, item.Meta)
		}
	}
	slices.SortFunc(all, func(a, b store.Meta) int { return strings.Compare(a.Name, b.Name) })
	return all, nil
}

func (f *fakeOrigin) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	if err := f.enter(ctx, "ListPage"); err != nil {
		return nil, "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []store.Meta
	for k, item := range f.items {
		if k.App == app && k.Name > after {
			all = append(all, item.Meta)
		}
	}
	slices.SortFunc(all, func(a, b store.Meta) int { return strings.Compare(a.Name, b.Name) })
	if len(all) > limit {
		return all[:limit], all[limit-1].Name, nil
	}
	return all, "", nil
}

func (f *fakeOrigin) Apps(ctx context.Context) ([]string, error) {
	if err := f.enter(ctx, "Apps"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var apps []string
	for k := range f.items {
		apps = append(apps, k.App)
	}
	slices.Sort(apps)
	return slices.Compact(apps), nil
}

func (f *fakeOrigin) MaxValueSize() int64 { return 400 << 10 }

// Test helpers.

func key(name string) store.Key { return store.Key{App: "app", Name: name} }

// wiped reports whether p was overwritten with zeros. Test values never
// contain a zero byte.
func wiped(p crypto.Plaintext) bool {
	if len(p) == 0 {
		return false
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// waitEntered waits for a held call of method to arrive.
func waitEntered(t *testing.T, f *fakeOrigin, method string) {
	t.Helper()
	select {
	case m := <-f.entered:
		if m != method {
			t.Fatalf("held call: got %s, want %s", m, method)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no call of %s arrived at the origin", method)
	}
}

// eventually polls cond until it holds, failing the test after 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// sameCounts fails the test if any backend call happened since before.
func sameCounts(t *testing.T, f *fakeOrigin, before map[string]int, what string) {
	t.Helper()
	if after := f.counts(); !maps.Equal(before, after) {
		t.Errorf("%s reached the origin: calls %v, then %v", what, before, after)
	}
}
