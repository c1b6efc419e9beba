package vfs

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// A view follows the stale-if-error rule of its inputs, which is the
// catalog's (package cache): these tests put the real catalog, on a clock
// of their own, in front of an origin that stops answering.

// downOrigin is a cache.Origin in memory whose items hold their values
// as they are (no keys), and which can stop answering: every call then
// fails as a store that gives no answer does (fault.Unavailable).
type downOrigin struct {
	mu    sync.Mutex
	items map[store.Key]*store.Item
	ivs   uint64
	down  bool
}

func (o *downOrigin) put(k store.Key, value string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ivs++
	version := store.Version(1)
	if old := o.items[k]; old != nil {
		version = old.Version.Next()
	}
	o.items[k] = &store.Item{Meta: store.Meta{Key: k, Version: version, InitialisationVector: []byte{byte(o.ivs >> 8), byte(o.ivs)},
		Size: int64(len(value)), Modified: time.Unix(int64(o.ivs), 0)}, ProtectedSecretValue: []byte(value)}
}

func (o *downOrigin) setDown(down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = down
}

func (o *downOrigin) silent(op string) error {
	if o.down {
		return fault.E(fault.Op(op), fault.Unavailable, "no answer in time")
	}
	return nil
}

func (o *downOrigin) Fetch(ctx context.Context, k store.Key) (*store.Item, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.silent("fetch"); err != nil {
		return nil, err
	}
	it := o.items[k]
	if it == nil {
		return nil, fault.E(k.Path(), fault.NotFound)
	}
	c := *it
	c.ProtectedSecretValue = slices.Clone(it.ProtectedSecretValue)
	return &c, nil
}

func (o *downOrigin) Open(ctx context.Context, it *store.Item) (secrets.Secret, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.silent("open"); err != nil {
		return secrets.Secret{}, err
	}
	return secrets.Secret{Meta: it.Meta, Value: crypto.Plaintext(slices.Clone(it.ProtectedSecretValue))}, nil
}

func (o *downOrigin) Write(ctx context.Context, k store.Key, value []byte, expected store.Revision) (*store.Item, error) {
	return nil, fault.E(k.Path(), fault.ReadOnly, "these tests write nothing through the catalog")
}

func (o *downOrigin) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	return fault.E(k.Path(), fault.ReadOnly, "these tests remove nothing through the catalog")
}

func (o *downOrigin) ListAll(ctx context.Context, app string) ([]store.Meta, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.silent("list"); err != nil {
		return nil, err
	}
	var out []store.Meta
	for k, it := range o.items {
		if k.App == app {
			out = append(out, it.Meta)
		}
	}
	slices.SortFunc(out, func(a, b store.Meta) int { return compareKeys(a.Key, b.Key) })
	return out, nil
}

func (o *downOrigin) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	all, err := o.ListAll(ctx, app)
	if err != nil {
		return nil, "", err
	}
	i, _ := slices.BinarySearchFunc(all, after, func(m store.Meta, name string) int { return strings.Compare(m.Name, name) })
	for i < len(all) && all[i].Name <= after {
		i++
	}
	all = all[i:]
	if len(all) > limit {
		return all[:limit], all[limit-1].Name, nil
	}
	return all, "", nil
}

func (o *downOrigin) Apps(ctx context.Context) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.silent("apps"); err != nil {
		return nil, err
	}
	var apps []string
	for k := range o.items {
		apps = append(apps, k.App)
	}
	slices.Sort(apps)
	return slices.Compact(apps), nil
}

func (o *downOrigin) MaxValueSize() int64 { return 1 << 20 }

// A view whose inputs' store stops answering keeps serving its last
// rendering, at once, for the stale window past the TTL, and is EIO
// after it, as its inputs are.
func TestAViewServesItsLastRenderingWithinTheStaleWindowAndIsEIOAfterIt(t *testing.T) {
	const ttl, staleIfError = time.Minute, time.Hour
	origin := &downOrigin{items: map[store.Key]*store.Item{}}
	origin.put(creds, `{"username": "billing-svc", "password": "pw"}`)
	origin.put(token, "tok-123")
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	cat := cache.New(origin, cache.Options{TTL: ttl, StaleIfError: staleIfError, Now: clock})
	defer cat.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	fs := New(cat, Options{TTL: ttl, FileMode: 0o600, DirMode: 0o700, Log: log, Views: []*render.View{
		mustCompile(t, render.Spec{Path: dbUser.String(), Secret: creds.String(), Field: "username"}),
		mustCompile(t, render.Spec{Path: appEnv.String(), Template: `{{ field "billing/db-credentials" "password" }}/{{ secret "billing/api-token" }}`}),
		mustCompile(t, render.Spec{Path: allJSON.String(), App: "billing", Format: "dotenv"}),
	}})
	defer fs.Close()
	want := map[store.Key]string{dbUser: "billing-svc", appEnv: "pw/tok-123",
		allJSON: "API_TOKEN=\"tok-123\"\nDB_CREDENTIALS=\"{\\\"username\\\": \\\"billing-svc\\\", \\\"password\\\": \\\"pw\\\"}\"\n"}
	views := []store.Key{dbUser, appEnv, allJSON}
	read := func(k store.Key) (*ViewRevision, string, error) {
		t.Helper()
		e, err := fs.Lookup(ctx, k)
		if err != nil {
			return nil, "", err
		}
		r := fs.NewViewRevision(e.View, func() {}, func() {})
		t.Cleanup(r.Unpin)
		buf := make([]byte, 4096)
		n, err := r.Read(ctx, buf, 0)
		return r, string(buf[:n]), err
	}
	first := map[store.Key]*ViewRevision{}
	for _, k := range views {
		r, got, err := read(k)
		if err != nil || got != want[k] {
			t.Fatalf("%v reads %q, %v; want %q", k, got, err, want[k])
		}
		first[k] = r
	}

	origin.setDown(true)
	advance(ttl + staleIfError - time.Minute) // past the TTL, within the stale window
	for _, k := range views {
		r, got, err := read(k)
		if err != nil || got != want[k] {
			t.Errorf("within the stale window, %v reads %q, %v; want its last rendering %q", k, got, err, want[k])
			continue
		}
		if !first[k].Is(k, r.digest) {
			t.Errorf("within the stale window, %v is another rendering", k)
		}
	}

	advance(2 * time.Minute) // past the stale window
	for _, k := range views {
		_, got, err := read(k)
		if err == nil || fault.KindOf(err).Errno() != syscall.EIO {
			t.Errorf("past the stale window, %v reads %q, %v (kind %v); want EIO", k, got, err, fault.KindOf(err))
		}
	}

	origin.setDown(false)
	origin.put(token, "tok-456")
	advance(ttl)
	if _, got, err := read(appEnv); err != nil || got != "pw/tok-456" {
		t.Errorf("once the store answers again, app.env reads %q, %v", got, err)
	}
}
