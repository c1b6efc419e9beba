package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

// Names no metric may ever show: each is distinctive enough that finding
// it anywhere in a scrape means it leaked.
const (
	leakApp    = "zebraAppQ7f3"
	leakSecret = "quokkaSecretX9w2"
	leakValue  = "platypusValueK4z8"
)

var leakKey = store.Key{App: leakApp, Name: leakSecret}

// scrape fetches /metrics from h and parses it with Prometheus's own text
// parser.
func scrape(t *testing.T, h http.Handler) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return body, fams
}

// find returns the metric of family name whose labels are exactly labels.
func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
next:
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

// value is the value of a counter or gauge, or the count of a histogram.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(t, fams, name, labels)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatalf("%s%v has no value", name, labels)
	return 0
}

type want struct {
	name   string
	labels map[string]string
	value  float64
}

func check(t *testing.T, fams map[string]*dto.MetricFamily, wants []want) {
	t.Helper()
	for _, w := range wants {
		if got := value(t, fams, w.name, w.labels); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
}

func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// backend labels a backend request.
func backend(service, operation, result string) map[string]string {
	return lbl("service", service, "operation", operation, "result", result)
}

// item is a protected item at k as a writer would seal it with keys.
func item(t *testing.T, keys crypto.KeyWrapper, k store.Key) *store.Item {
	t.Helper()
	key, wrapped, id, err := keys.NewDocumentKey(context.Background(), 32, crypto.ItemContext(k.App, k.Name))
	if err != nil {
		t.Fatal(err)
	}
	clear(key)
	return &store.Item{
		Meta: store.Meta{
			Key: k, Format: "v2", Version: 1, Size: int64(len(leakValue)),
			InitialisationVector: []byte(leakValue + "-iv"),
			Modified:             time.Now(),
		},
		MasterKeyID:          id,
		ProtectedDocumentKey: wrapped,
		ProtectedSecretValue: []byte(leakValue),
	}
}

// TestScrape drives every decorator once or more and reads the counts
// back from /metrics as Prometheus would.
func TestScrape(t *testing.T) {
	ctx := context.Background()
	r := metrics.New("1.2.3-test", metrics.Options{})
	st := r.WrapStore(memory.New(), "dynamodb")
	keys := r.WrapKeys(cryptotest.New(), "kms")

	it := item(t, keys, leakKey) // GenerateDataKey ok
	if err := st.Put(ctx, it, store.NoItem); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, it, store.NoItem); !fault.Is(fault.Exist, err) {
		t.Fatalf("second create: %v, want Exist", err)
	}
	got, err := st.Get(ctx, leakKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, store.Key{App: leakApp, Name: leakSecret + "2"}); !fault.Is(fault.NotFound, err) {
		t.Fatalf("Get missing: %v, want NotFound", err)
	}
	key, err := keys.Unwrap(ctx, got.MasterKeyID, got.ProtectedDocumentKey, crypto.ItemContext(leakApp, leakSecret))
	if err != nil {
		t.Fatal(err)
	}
	clear(key)
	if _, err := keys.Unwrap(ctx, got.MasterKeyID, got.ProtectedDocumentKey, crypto.ItemContext(leakApp, "moved")); !fault.Is(fault.Integrity, err) {
		t.Fatalf("Unwrap for another item: %v, want Integrity", err)
	}
	if _, _, err := st.List(ctx, leakApp, "", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Apps(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, leakKey, got.Revision()); err != nil {
		t.Fatal(err)
	}

	local := r.WrapStore(memory.New(), "sqlite")
	if _, err := local.Get(ctx, leakKey); !fault.Is(fault.NotFound, err) {
		t.Fatalf("Get: %v, want NotFound", err)
	}
	rsa := r.WrapKeys(cryptotest.New(), "rsa")
	key, _, _, err = rsa.NewDocumentKey(ctx, 32, crypto.ItemContext(leakApp, leakSecret))
	if err != nil {
		t.Fatal(err)
	}
	clear(key)

	r.Served("LOOKUP", 0, 30*time.Microsecond)
	r.Served("LOOKUP", syscall.ENOENT, 40*time.Microsecond)
	r.Served("READ", syscall.EIO, 5*time.Second)
	r.Served("OPEN", syscall.Errno(4000), time.Millisecond)

	obs := r.Observer()
	obs.Looked(true)
	obs.Looked(true)
	obs.Looked(false)
	obs.Revalidated(leakApp, 3)
	obs.Revalidated(leakApp, 0)
	obs.Stale(leakKey, fault.E(fault.Unavailable, fault.Path(leakKey.String()), "no answer"), true)
	obs.Stale(leakKey, fault.E(fault.Unavailable, fault.Path(leakKey.String()), "no answer"), false)
	obs.Recovered(leakKey)
	obs.Crowded(1024)
	r.Decrypted(func() int { return 4 })

	r.Committed(nil)
	r.Committed(fault.E(fault.Conflict, fault.Path(leakKey.String())))
	r.Committed(fault.E(fault.Exist, fault.Path(leakKey.String())))
	r.Committed(errors.New("disk on fire"))
	r.SetServing(true)

	body, fams := scrape(t, r.Handler())
	check(t, fams, []want{
		{"secretfs_build_info", lbl("version", "1.2.3-test", "goversion", runtime.Version()), 1},

		{"secretfs_fuse_requests_total", lbl("op", "LOOKUP", "errno", "OK"), 1},
		{"secretfs_fuse_requests_total", lbl("op", "LOOKUP", "errno", "ENOENT"), 1},
		{"secretfs_fuse_requests_total", lbl("op", "READ", "errno", "EIO"), 1},
		{"secretfs_fuse_requests_total", lbl("op", "OPEN", "errno", "errno_4000"), 1},
		{"secretfs_fuse_request_duration_seconds", lbl("op", "LOOKUP"), 2},
		{"secretfs_fuse_request_duration_seconds", lbl("op", "READ"), 1},

		{"secretfs_cache_lookups_total", lbl("result", "hit"), 2},
		{"secretfs_cache_lookups_total", lbl("result", "miss"), 1},
		{"secretfs_cache_revalidations_total", nil, 2},
		{"secretfs_cache_revalidation_changes_total", nil, 3},
		{"secretfs_stale_answers_total", nil, 2},
		{"secretfs_cache_crowded_total", nil, 1},
		{"secretfs_secrets_decrypted", nil, 4},

		{"secretfs_backend_requests_total", backend("dynamodb", "PutItem", "ok"), 1},
		{"secretfs_backend_requests_total", backend("dynamodb", "PutItem", "exist"), 1},
		{"secretfs_backend_requests_total", backend("dynamodb", "GetItem", "ok"), 1},
		{"secretfs_backend_requests_total", backend("dynamodb", "GetItem", "not_found"), 1},
		{"secretfs_backend_requests_total", backend("dynamodb", "Query", "ok"), 1},
		{"secretfs_backend_requests_total", backend("dynamodb", "Scan", "ok"), 1},
		{"secretfs_backend_requests_total", backend("dynamodb", "DeleteItem", "ok"), 1},
		{"secretfs_backend_requests_total", backend("kms", "GenerateDataKey", "ok"), 1},
		{"secretfs_backend_requests_total", backend("kms", "Decrypt", "ok"), 1},
		{"secretfs_backend_requests_total", backend("kms", "Decrypt", "integrity"), 1},
		{"secretfs_backend_requests_total", backend("sqlite", "Get", "not_found"), 1},
		{"secretfs_backend_requests_total", backend("sqlite", "Put", "ok"), 0},
		{"secretfs_backend_requests_total", backend("rsa", "NewDocumentKey", "ok"), 1},
		{"secretfs_backend_requests_total", backend("rsa", "Unwrap", "ok"), 0},
		{"secretfs_backend_request_duration_seconds", lbl("service", "dynamodb", "operation", "GetItem"), 2},
		{"secretfs_backend_request_duration_seconds", lbl("service", "kms", "operation", "Decrypt"), 2},
		{"secretfs_backend_request_duration_seconds", lbl("service", "dynamodb", "operation", "Scan"), 1},

		{"secretfs_commits_total", lbl("result", "ok"), 1},
		{"secretfs_commits_total", lbl("result", "conflict"), 2},
		{"secretfs_commits_total", lbl("result", "failed"), 1},
		{"secretfs_healthy", nil, 1},
	})
	for _, name := range []string{"go_goroutines", "go_info", "process_cpu_seconds_total", "process_open_fds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s: the standard collectors are missing", name)
		}
	}
	for name, fam := range fams {
		if strings.HasPrefix(name, "secretfs_") && fam.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
	noLeaks(t, body, fams)
	if testing.Verbose() {
		for _, line := range strings.Split(body, "\n") {
			if strings.Contains(line, "secretfs_") && !strings.Contains(line, "_bucket{") {
				t.Log(line)
			}
		}
	}
}

// noLeaks fails if any name or value the test used appears anywhere in a
// scrape: in a label, a help text or anywhere else.
func noLeaks(t *testing.T, body string, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for _, s := range []string{leakApp, leakSecret, leakValue} {
		if strings.Contains(body, s) {
			t.Errorf("/metrics shows %q", s)
		}
	}
	allowed := map[string]bool{"op": true, "errno": true, "result": true, "service": true, "operation": true}
	for name, fam := range fams {
		if !strings.HasPrefix(name, "secretfs_") || name == "secretfs_build_info" {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !allowed[lp.GetName()] && lp.GetName() != "le" {
					t.Errorf("%s has label %s: only %v may be labels", name, lp.GetName(), allowed)
				}
			}
		}
	}
}

// clock is a settable clock for the health tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// healthz asks h for /healthz.
func healthz(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	return rec.Code, rec.Body.String()
}

func wantHealth(t *testing.T, h http.Handler, code int, body string) {
	t.Helper()
	gotCode, gotBody := healthz(t, h)
	if gotCode != code || !strings.Contains(gotBody, body) || strings.Count(gotBody, "\n") != 1 {
		t.Fatalf("/healthz = %d %q, want %d and one line holding %q", gotCode, gotBody, code, body)
	}
	for _, s := range []string{leakApp, leakSecret, leakValue} {
		if strings.Contains(gotBody, s) {
			t.Fatalf("/healthz shows %q", s)
		}
	}
}

// failing is a store whose Get fails with err while err is set.
type failing struct {
	store.Store
	mu  sync.Mutex
	err error
}

func (f *failing) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *failing) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, k)
}

func TestHealth(t *testing.T) {
	const threshold = 5 * time.Second
	ctx := context.Background()
	clk := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := metrics.New("test", metrics.Options{FailingFor: threshold, Now: clk.Now})
	h := r.Handler()
	fake := cryptotest.New()
	keys := r.WrapKeys(fake, "kms")
	back := &failing{Store: memory.New()}
	st := r.WrapStore(back, "dynamodb")
	down := fault.E(fault.Unavailable, fault.Path(leakKey.String()), "no answer from "+leakApp)

	wantHealth(t, h, http.StatusServiceUnavailable, "not mounted")
	r.SetServing(true)
	wantHealth(t, h, http.StatusOK, "ok")

	// Failing, but not yet for longer than the threshold.
	fake.FailWith(down)
	if _, err := keys.Unwrap(ctx, "k", []byte("w"), nil); err == nil {
		t.Fatal("Unwrap succeeded while failing")
	}
	clk.Advance(threshold)
	back.set(down)
	if _, err := st.Get(ctx, leakKey); err == nil {
		t.Fatal("Get succeeded while failing")
	}
	wantHealth(t, h, http.StatusOK, "ok")

	// Past it: the failure started with the first call, not the last.
	clk.Advance(time.Millisecond)
	wantHealth(t, h, http.StatusServiceUnavailable, "backend calls failing since 2030-01-02T03:04:05Z")
	_, fams := scrape(t, h)
	check(t, fams, []want{
		{"secretfs_healthy", nil, 0},
		{"secretfs_backend_requests_total", backend("kms", "Decrypt", "unavailable"), 1},
		{"secretfs_backend_requests_total", backend("dynamodb", "GetItem", "unavailable"), 1},
	})

	// One answer, even NotFound, and it is healthy at once.
	back.set(nil)
	if _, err := st.Get(ctx, leakKey); !fault.Is(fault.NotFound, err) {
		t.Fatalf("Get: %v, want NotFound", err)
	}
	wantHealth(t, h, http.StatusOK, "ok")

	// An unclassified error fails too; a success clears it.
	back.set(errors.New("connection reset"))
	if _, err := st.Get(ctx, leakKey); err == nil {
		t.Fatal("Get succeeded while failing")
	}
	clk.Advance(threshold + time.Second)
	wantHealth(t, h, http.StatusServiceUnavailable, "with no success since")
	fake.FailWith(nil)
	key, _, _, err := keys.NewDocumentKey(ctx, 32, nil)
	if err != nil {
		t.Fatal(err)
	}
	clear(key)
	wantHealth(t, h, http.StatusOK, "ok")

	// Permission and Conflict are answers, not failures.
	for _, kind := range []fault.Kind{fault.Permission, fault.Conflict, fault.Integrity} {
		back.set(down)
		_, _ = st.Get(ctx, leakKey)
		clk.Advance(threshold + time.Second)
		wantHealth(t, h, http.StatusServiceUnavailable, "failing since")
		back.set(fault.E(kind, "refused"))
		_, _ = st.Get(ctx, leakKey)
		wantHealth(t, h, http.StatusOK, "ok")
	}

	// A call its caller cancelled says nothing of the backend.
	back.set(nil)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.Get(cancelled, leakKey); err == nil {
		t.Fatal("Get succeeded on a cancelled context")
	}
	clk.Advance(time.Hour)
	wantHealth(t, h, http.StatusOK, "ok")
	_, fams = scrape(t, h)
	check(t, fams, []want{{"secretfs_backend_requests_total", backend("dynamodb", "GetItem", "canceled"), 1}})

	// A deadline that expired is the backend not answering.
	expired, cancelExpired := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancelExpired()
	if _, err := st.Get(expired, leakKey); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Get past its deadline: %v, want Unavailable", err)
	}
	clk.Advance(threshold + time.Second)
	wantHealth(t, h, http.StatusServiceUnavailable, "failing since")

	r.SetServing(false)
	wantHealth(t, h, http.StatusServiceUnavailable, "not mounted")

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d, want 405", rec.Code)
	}
}

func TestServe(t *testing.T) {
	r := metrics.New("test", metrics.Options{})
	r.SetServing(true)
	srv, err := r.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for path, code := range map[string]int{"/healthz": http.StatusOK, "/metrics": http.StatusOK, "/": http.StatusNotFound} {
		resp, err := http.Get("http://" + srv.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s: %d %s, want %d", path, resp.StatusCode, body, code)
		}
	}
	// The address is taken: a second server learns it at once.
	if again, err := r.Serve(srv.Addr().String()); err == nil {
		again.Close()
		t.Error("Serve on an address in use succeeded")
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := http.Get("http://" + srv.Addr().String() + "/healthz"); err == nil {
		t.Error("still serving after Close")
	}
	if _, err := r.Serve("127.0.0.1:notaport"); err == nil {
		t.Error("Serve on a bad address succeeded")
	}
}
