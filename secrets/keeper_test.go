package secrets

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

func newKeeper(t *testing.T, s store.Store, opts Options) (*Keeper, *cryptotest.Wrapper) {
	t.Helper()
	w := cryptotest.New()
	e, err := crypto.NewEnvelope(w, crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	return NewKeeper(s, e, opts), w
}

func TestPutThenGetRoundTripsAndRecordsMetadata(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	k, _ := newKeeper(t, memory.New(), Options{Now: func() time.Time { return now }})
	key := store.Key{App: "app", Name: "db"}
	meta, err := k.Put(context.Background(), key, []byte("hunter2"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Meta{Key: key, Format: "v2", Version: 1, InitialisationVector: meta.InitialisationVector, Size: 7, Modified: now.Truncate(time.Millisecond)}
	if !sameMeta(meta, want) || len(meta.InitialisationVector) != crypto.NonceSizeV2 {
		t.Fatalf("Put returned %+v, want %+v with a %d-byte nonce", meta, want, crypto.NonceSizeV2)
	}
	s, err := k.Get(context.Background(), key, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Value) != "hunter2" || !sameMeta(s.Meta, want) {
		t.Fatalf("Get returned %q %+v", s.Value, s.Meta)
	}
}

func sameMeta(a, b store.Meta) bool {
	return a.Key == b.Key && a.Format == b.Format && a.Revision().Equal(b.Revision()) && a.Size == b.Size && a.Modified.Equal(b.Modified)
}

func TestStoredItemHoldsNoPlaintext(t *testing.T) {
	st := memory.New()
	k, _ := newKeeper(t, st, Options{})
	key := store.Key{App: "app", Name: "db"}
	value := []byte("a-distinctive-secret-value")
	item, err := k.Write(context.Background(), key, value, store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range [][]byte{item.ProtectedSecretValue, item.ProtectedDocumentKey, item.InitialisationVector, []byte(item.MasterKeyID)} {
		if bytes.Contains(field, value) {
			t.Fatal("a protected field holds the plaintext")
		}
	}
}

func TestOversizedValueIsRefusedBeforeAnyKeyIsMade(t *testing.T) {
	k, w := newKeeper(t, memory.NewWithLimit(10), Options{})
	_, err := k.Put(context.Background(), store.Key{App: "app", Name: "big"}, make([]byte, 11), store.NoItem)
	if !fault.Is(fault.TooLarge, err) {
		t.Fatalf("Put of 11 bytes over a 10-byte limit: %v, want TooLarge", err)
	}
	if n := w.NewDocumentKeyCalls(); n != 0 {
		t.Errorf("%d document keys made for a value that could not be stored", n)
	}
}

func TestInvalidNamesAreRefusedWithoutBackendCalls(t *testing.T) {
	k, w := newKeeper(t, memory.New(), Options{})
	ctx := context.Background()
	for _, key := range []store.Key{{App: "app", Name: "a/b"}, {App: "..", Name: "x"}, {App: "app", Name: strings.Repeat("n", 256)}} {
		if _, err := k.Put(ctx, key, []byte("v"), store.NoItem); err == nil {
			t.Errorf("Put(%q) succeeded", key)
		}
		if _, err := k.Get(ctx, key, true); err == nil {
			t.Errorf("Get(%q) succeeded", key)
		}
	}
	if n := w.NewDocumentKeyCalls() + w.UnwrapCalls(); n != 0 {
		t.Errorf("%d key operations for invalid names", n)
	}
}

// hangingStore never answers: a dead backend.
type hangingStore struct{ store.Store }

func (hangingStore) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDeadBackendGivesUnavailableWithinTheTimeout(t *testing.T) {
	k, _ := newKeeper(t, hangingStore{memory.New()}, Options{Timeout: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := k.Get(context.Background(), store.Key{App: "app", Name: "db"}, true)
		done <- err
	}()
	select {
	case err := <-done:
		if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "no answer within 50ms") {
			t.Fatalf("Get against a dead store: %v, want Unavailable naming the timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Get against a dead store did not return: the deadline is not applied")
	}
}

func TestTamperedItemIsIntegrityErrorWithoutValue(t *testing.T) {
	st := memory.New()
	k, _ := newKeeper(t, st, Options{})
	ctx := context.Background()
	key := store.Key{App: "app", Name: "db"}
	item, err := k.Write(ctx, key, []byte("hunter2"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	item.ProtectedSecretValue[0] ^= 1
	s, err := k.Open(ctx, item)
	if !fault.Is(fault.Integrity, err) || s.Value != nil {
		t.Fatalf("Open of a tampered item: %q, %v; want no value and Integrity", s.Value, err)
	}
}

func TestOpenReportsTheTrueSizeOfALegacyItem(t *testing.T) {
	k, _ := newKeeper(t, memory.New(), Options{})
	item, err := k.Write(context.Background(), store.Key{App: "app", Name: "old"}, []byte("12345"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	item.Size = -1 // as a legacy item, which records no size
	s, err := k.Open(context.Background(), item)
	if err != nil || s.Size != 5 {
		t.Fatalf("Open: size %d, %v; want 5", s.Size, err)
	}
}

// pagedStore lists applications in pages, as DynamoDB's Scan does: each
// page is one backend call taking pageDelay under a deadline of its own,
// callTimeout, as store/dynamodb with WithCallTimeout bounds its calls.
type pagedStore struct {
	store.Store
	callTimeout, pageDelay time.Duration
	pages                  int
}

func (s pagedStore) CallTimeout() time.Duration { return s.callTimeout }

func (s pagedStore) Apps(ctx context.Context) ([]string, error) {
	var apps []string
	for i := range s.pages {
		if err := s.page(ctx); err != nil {
			return nil, fault.E(fault.Op("paged.Apps"), fault.Unavailable, err)
		}
		apps = append(apps, "app"+strconv.Itoa(i))
	}
	return apps, nil
}

func (s pagedStore) page(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	select {
	case <-time.After(s.pageDelay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// On a store that bounds each call, listing applications takes as many
// calls as it needs: every page is under the timeout, all of them together
// are not, and the listing succeeds.
func TestAppsOfManyPagesOutlastTheTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	st := pagedStore{Store: memory.New(), callTimeout: timeout, pageDelay: timeout / 2, pages: 4}
	k, _ := newKeeper(t, st, Options{Timeout: timeout})
	start := time.Now()
	apps, err := k.Apps(context.Background())
	if err != nil || len(apps) != st.pages {
		t.Fatalf("Apps over %d pages of %v with a %v timeout: %q, %v; want %d applications",
			st.pages, st.pageDelay, timeout, apps, err, st.pages)
	}
	if elapsed := time.Since(start); elapsed <= timeout {
		t.Fatalf("the listing took %v, not more than the timeout %v: the test tested nothing", elapsed, timeout)
	}
}

// A page that never answers fails the listing at that page's deadline.
func TestAppsPageThatHangsIsUnavailable(t *testing.T) {
	const timeout = 50 * time.Millisecond
	st := pagedStore{Store: memory.New(), callTimeout: timeout, pageDelay: time.Hour, pages: 2}
	k, _ := newKeeper(t, st, Options{Timeout: timeout})
	start := time.Now()
	_, err := k.Apps(context.Background())
	if !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Apps with a page that hangs: %v, want Unavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("Apps with a page that hangs took %v with a %v timeout", elapsed, timeout)
	}
}

// hangingApps never answers Apps, and does not bound its own calls.
type hangingApps struct{ store.Store }

func (hangingApps) Apps(ctx context.Context) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// On a store that does not bound its own calls, the Keeper bounds Apps.
func TestAppsOfAStoreWithoutItsOwnDeadlinesHasTheKeepers(t *testing.T) {
	k, _ := newKeeper(t, hangingApps{memory.New()}, Options{Timeout: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := k.Apps(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "no answer within 50ms") {
			t.Fatalf("Apps against a dead store: %v, want Unavailable naming the timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apps against a dead store did not return: no deadline is applied")
	}
}
