package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

func newKeeper(t *testing.T, s store.Store, opts Options) (*Keeper, *cryptotest.Wrapper) {
	t.Helper()
	return newKeeperWriting(t, s, crypto.DefaultFormat, opts)
}

// newKeeperWriting is newKeeper writing format f, with a fresh test key.
func newKeeperWriting(t *testing.T, s store.Store, f crypto.Format, opts Options) (*Keeper, *cryptotest.Wrapper) {
	t.Helper()
	w := cryptotest.New()
	e, err := crypto.NewEnvelope(w, f)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Log == nil {
		opts.Log, _ = logtest.NewNullLogger()
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
	want := store.Meta{Key: key, Format: "v3", Version: 1, InitialisationVector: meta.InitialisationVector, Size: 7, Modified: now.Truncate(time.Millisecond)}
	if !sameMeta(meta, want) || len(meta.InitialisationVector) != crypto.NonceSizeV2 {
		t.Fatalf("Put returned %+v, want %+v with a %d-byte nonce", meta, want, crypto.NonceSizeV2)
	}
	s, err := k.Get(context.Background(), key)
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
		if _, err := k.Get(ctx, key); err == nil {
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
		_, err := k.Get(context.Background(), store.Key{App: "app", Name: "db"})
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

// hangingKeys is a key service that never answers.
type hangingKeys struct{ crypto.KeyWrapper }

func (hangingKeys) NewDocumentKey(ctx context.Context, size int, ec crypto.EncryptionContext) ([]byte, []byte, string, error) {
	<-ctx.Done()
	return nil, nil, "", ctx.Err()
}

func (hangingKeys) Unwrap(ctx context.Context, masterKeyID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A call that gets no answer says which backend was silent: the store
// for a read of the item, the key service for its decryption or the
// sealing of a write.
func TestADeadlineSaysWhichBackendGaveNoAnswer(t *testing.T) {
	opts := Options{Timeout: 50 * time.Millisecond, StoreName: "DynamoDB", KeysName: "KMS"}
	opts.Log, _ = logtest.NewNullLogger()
	key := store.Key{App: "app", Name: "db"}
	k, _ := newKeeper(t, hangingStore{memory.New()}, opts)
	_, err := k.Get(context.Background(), key)
	wantNoAnswerFrom(t, "Get with the store silent", err, "DynamoDB", "no answer within 50ms from DynamoDB: ")

	st := memory.New()
	writer, _ := newKeeper(t, st, opts)
	if _, err := writer.Put(context.Background(), key, []byte("v"), store.Revision{Version: store.Absent}); err != nil {
		t.Fatal(err)
	}
	e, err := crypto.NewEnvelope(hangingKeys{}, crypto.DefaultFormat)
	if err != nil {
		t.Fatal(err)
	}
	silent := NewKeeper(st, e, opts)
	_, err = silent.Get(context.Background(), key)
	wantNoAnswerFrom(t, "Get with the key service silent", err, "KMS", "no answer within 50ms from KMS: ")
	_, err = silent.Put(context.Background(), key, []byte("w"), store.Revision{Version: 1})
	wantNoAnswerFrom(t, "Put with the key service silent", err, "KMS", "no answer within 50ms from KMS: ")

	unnamed := NewKeeper(hangingStore{memory.New()}, e, Options{Timeout: 50 * time.Millisecond, Log: opts.Log})
	_, err = unnamed.Get(context.Background(), key)
	wantNoAnswerFrom(t, "Get from an unnamed store", err, "the store", "from the store: ")
}

func wantNoAnswerFrom(t *testing.T, what string, err error, from, says string) {
	t.Helper()
	var na *NoAnswer
	if !errors.As(err, &na) || na.From != from || !fault.Is(fault.Unavailable, err) ||
		!errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), says) {
		t.Errorf("%s: %v; want Unavailable, a deadline, and %q", what, err, says)
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

// A decrypted value must have the length the item records: a store writer
// who changes Size (short, to truncate; huge, to make readers allocate)
// gets an integrity failure naming the secret, and no value.
func TestOpenRefusesAValueWhoseLengthIsNotTheRecordedSize(t *testing.T) {
	for _, f := range crypto.WriteFormats {
		k, _ := newKeeperWriting(t, memory.New(), f, Options{})
		item, err := k.Write(context.Background(), store.Key{App: "app", Name: "db"}, []byte("hunter2"), store.NoItem)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int64{0, 3, 6, 8, 1 << 50} {
			c := *item
			c.Size = size
			s, err := k.Open(context.Background(), &c)
			if !fault.Is(fault.Integrity, err) || s.Value != nil {
				t.Fatalf("%s with Size %d: %v; want Integrity and no value", f, size, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "app/db") || !strings.Contains(msg, strconv.FormatInt(size, 10)+" bytes the item's Size records") {
				t.Errorf("%s with Size %d: %q does not name the secret and the Size", f, size, msg)
			}
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, " 7 ") {
				t.Errorf("%s: the message tells the value or its decrypted length: %q", f, msg)
			}
		}
		if s, err := k.Open(context.Background(), item); err != nil || string(s.Value) != "hunter2" {
			t.Fatalf("%s: the item with its own Size: %v", f, err)
		}
	}
}

// v3 binds the Version: an old value relabelled as a newer write (the
// store's Version raised above the current one) fails to decrypt, so a
// store writer cannot roll a secret back by relabelling.
func TestOldCiphertextRelabelledWithAHigherVersionFails(t *testing.T) {
	k, _ := newKeeper(t, memory.New(), Options{})
	ctx := context.Background()
	key := store.Key{App: "app", Name: "db"}
	old, err := k.Write(ctx, key, []byte("old value"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	current, err := k.Write(ctx, key, []byte("new value"), old.Revision())
	if err != nil {
		t.Fatal(err)
	}
	if old.Format != "v3" || current.Version != 2 {
		t.Fatalf("wrote %s, version %d; want v3 and version 2", old.Format, current.Version)
	}
	relabelled := *old
	relabelled.Version = current.Version + 1
	s, err := k.Open(ctx, &relabelled)
	if !fault.Is(fault.Integrity, err) || s.Value != nil {
		t.Fatalf("an old value relabelled as version %d: %v; want Integrity and no value", relabelled.Version, err)
	}
	if s, err := k.Open(ctx, old); err != nil || string(s.Value) != "old value" {
		t.Fatalf("the old item under its own version: %v", err)
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

// pagedStore lists applications in the pages it is given, as DynamoDB's
// Scan does: out of order, a name in more than one page. Each page is one
// backend call, which takes delay(i) for page i, or until its context
// ends; it then fails with the context's error alone, as a network does,
// so that only the Keeper can say how long the call had. answered, if
// set, runs when page i has answered. The cursor of page i is
// strconv.Itoa(i).
type pagedStore struct {
	store.Store
	pages    [][]string
	delay    func(i int) time.Duration
	answered func(i int)

	mu     sync.Mutex
	called []int // the pages asked for, in order
}

func (s *pagedStore) Apps(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	i := 0
	if cursor != "" {
		var err error
		if i, err = strconv.Atoi(cursor); err != nil || i <= 0 || i >= len(s.pages) {
			return nil, "", fault.E(fault.Op("paged.Apps"), fault.Invalid, "not a cursor: "+cursor)
		}
	}
	s.mu.Lock()
	s.called = append(s.called, i)
	s.mu.Unlock()
	select {
	case <-time.After(s.delay(i)):
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	if s.answered != nil {
		s.answered(i)
	}
	next := ""
	if i+1 < len(s.pages) {
		next = strconv.Itoa(i + 1)
	}
	return slices.Clone(s.pages[i]), next, nil
}

func (s *pagedStore) calls() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.called)
}

// scanPages are pages as a Scan returns them: in hash order, and with an
// application whose items span two pages.
var scanPages = [][]string{{"m", "z"}, {"b"}, {"a", "m"}, {"c", "y"}, {"d"}, {"b", "x"}}

const scanApps = "a,b,c,d,m,x,y,z"

// Listing applications takes as many calls as it needs: every page is
// well under the timeout, all of them together are over it, and the
// listing succeeds, sorted, each application once.
func TestAppsOfManyPagesOutlastTheTimeout(t *testing.T) {
	const timeout, delay = 2 * time.Second, 400 * time.Millisecond
	st := &pagedStore{Store: memory.New(), pages: scanPages, delay: func(int) time.Duration { return delay }}
	k, _ := newKeeper(t, st, Options{Timeout: timeout})
	start := time.Now()
	apps, err := k.Apps(context.Background())
	if err != nil || strings.Join(apps, ",") != scanApps {
		t.Fatalf("Apps over %d pages of %v with a %v timeout: %q, %v; want %s",
			len(st.pages), delay, timeout, apps, err, scanApps)
	}
	if got := st.calls(); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("the Keeper asked for pages %v, want each once, in order", got)
	}
	if elapsed := time.Since(start); elapsed <= timeout {
		t.Fatalf("the listing took %v, not more than the timeout %v: the test tested nothing", elapsed, timeout)
	}
}

// A page that never answers fails the listing at that page's deadline,
// which the Keeper set and names: the store itself only gives up when its
// context ends.
func TestAppsPageThatHangsIsUnavailable(t *testing.T) {
	const timeout = 500 * time.Millisecond
	st := &pagedStore{Store: memory.New(), pages: scanPages, delay: func(i int) time.Duration {
		if i == 1 {
			return time.Hour
		}
		return 0
	}}
	k, _ := newKeeper(t, st, Options{Timeout: timeout})
	done := make(chan error, 1)
	go func() {
		_, err := k.Apps(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "secrets.Apps") ||
			!strings.Contains(err.Error(), "no answer within 500ms") {
			t.Fatalf("Apps with a page that hangs: %v; want Unavailable from secrets.Apps naming the timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apps with a page that hangs did not return: the page has no deadline")
	}
	if got := st.calls(); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("the Keeper asked for pages %v, want 0 and 1, which hung", got)
	}
}

// A caller that gives up between two pages gets its error, and no further
// page is asked for.
func TestAppsStopsBetweenPagesWhenTheCallerGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &pagedStore{Store: memory.New(), pages: scanPages,
		delay:    func(int) time.Duration { return 0 },
		answered: func(int) { cancel() },
	}
	k, _ := newKeeper(t, st, Options{})
	_, err := k.Apps(ctx)
	if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "secrets.Apps") {
		t.Fatalf("Apps after the caller gave up: %v; want Unavailable from secrets.Apps", err)
	}
	if got := st.calls(); !slices.Equal(got, []int{0}) {
		t.Fatalf("the Keeper asked for pages %v after the caller gave up during page 0", got)
	}
}

// The Keeper's deadline is its own: a caller's earlier deadline ends a
// call without the Keeper claiming the backend had its timeout.
func TestCallersDeadlineIsNotTheKeepers(t *testing.T) {
	k, _ := newKeeper(t, hangingStore{memory.New()}, Options{Timeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := k.Get(ctx, store.Key{App: "app", Name: "db"})
	if err == nil || strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("Get past the caller's deadline: %v; want its error, not the Keeper's timeout", err)
	}
}

// unsureStore plays a store whose first Put goes out and gets no answer
// in time. What that first copy does meanwhile (first): it never lands
// ("lost"), it landed before its answer was lost ("landed"), it lands
// right after the look that settles it ("after the look"), or once
// everything is over ("late", applied by the test). retried: the first
// Put is answered with a failed condition, as DynamoDB answers an SDK
// retry of a write that already landed. Later Puts (a fence) are the
// inner store's, unless fenceHangs; a Get answers unless getHangs.
type unsureStore struct {
	store.Store
	first                         string
	getHangs, fenceHangs, retried bool
	fenceNotWritten               bool // a fence the store says it did not make (its database locked)
	puts                          int
	sent                          []byte // the IV of the write
	pending                       func() // the first copy, still on its way
}

func (s *unsureStore) Put(ctx context.Context, item *store.Item, expected store.Revision) error {
	s.puts++
	s.sent = item.InitialisationVector
	if s.puts > 1 {
		if s.fenceHangs {
			<-ctx.Done()
			return fault.E(fault.Op("unsure.Put"), item.Path(), ctx.Err())
		}
		if s.fenceNotWritten {
			return fault.E(fault.Op("unsure.Put"), item.Path(), fault.Unavailable, fmt.Errorf("%w: the database stayed locked", store.ErrNotWritten))
		}
		return s.Store.Put(ctx, item, expected)
	}
	switch s.first {
	case "landed":
		if err := s.Store.Put(ctx, item, expected); err != nil {
			return err
		}
	case "after the look", "late":
		s.pending = func() { _ = s.Store.Put(context.Background(), item, expected) } // its condition decides
	}
	if s.retried {
		return fault.E(fault.Op("unsure.Put"), item.Path(), fault.Conflict, "the SDK's retry found the write already there")
	}
	<-ctx.Done()
	return fault.E(fault.Op("unsure.Put"), item.Path(), ctx.Err())
}

func (s *unsureStore) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	if s.getHangs {
		<-ctx.Done()
		return nil, fault.E(fault.Op("unsure.Get"), k.Path(), ctx.Err())
	}
	it, err := s.Store.Get(ctx, k)
	if s.first == "after the look" && s.pending != nil {
		s.arrive()
	}
	return it, err
}

// arrive lands the first copy, if it is still on its way.
func (s *unsureStore) arrive() {
	if s.pending != nil {
		s.pending()
		s.pending = nil
	}
}

// A write whose answer did not come is settled by asking the store, within
// one more deadline, which revision it holds; a store that still holds
// the expected one is sent the write again (a fence), so that a first
// copy still on its way cannot land after a close said it did not. What
// Write says is true once every copy has arrived: committed if and only
// if the store holds the write, exactly once.
func TestAWriteWithoutAnAnswerIsSettledByAskingTheStore(t *testing.T) {
	k := store.Key{App: "app", Name: "s"}
	for _, tc := range []struct {
		name                                   string
		first                                  string
		getHangs, fenceHangs, retried, another bool
		fenceNotWritten                        bool
		want                                   string // "committed", "not committed", "unknown"
		puts                                   int
	}{
		{name: "landed, its answer lost", first: "landed", want: "committed", puts: 1},
		{name: "lost: the fence lands it", first: "lost", want: "committed", puts: 2},
		{name: "lands after the look: the fence is refused", first: "after the look", want: "committed", puts: 2},
		{name: "lands late: the fence lands first", first: "late", want: "committed", puts: 2},
		{name: "another writer won", first: "late", another: true, want: "not committed", puts: 1},
		{name: "no answer to the look", first: "late", getHangs: true, want: "unknown", puts: 1},
		{name: "no answer to the fence", first: "late", fenceHangs: true, want: "unknown", puts: 2},
		{name: "the fence not written: the first may land yet", first: "late", fenceNotWritten: true, want: "unknown", puts: 2},
		{name: "a retry of a landed write", first: "landed", retried: true, want: "committed", puts: 1},
		{name: "refused, and no answer to the look", first: "landed", retried: true, getHangs: true, want: "unknown", puts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := memory.New()
			plain, w := newKeeper(t, inner, Options{})
			before, err := plain.Write(context.Background(), k, []byte("before"), store.NoItem)
			if err != nil {
				t.Fatal(err)
			}
			if tc.another {
				if _, err := plain.Write(context.Background(), k, []byte("another"), before.Revision()); err != nil {
					t.Fatal(err)
				}
			}
			s := &unsureStore{Store: inner, first: tc.first, getHangs: tc.getHangs, fenceHangs: tc.fenceHangs, retried: tc.retried, fenceNotWritten: tc.fenceNotWritten}
			e, err := crypto.NewEnvelope(w, crypto.FormatV2)
			if err != nil {
				t.Fatal(err)
			}
			kp := NewKeeper(s, e, Options{Timeout: 50 * time.Millisecond})
			_, err = kp.Write(context.Background(), k, []byte("after"), before.Revision())
			got := "committed"
			switch {
			case errors.Is(err, ErrOutcomeUnknown):
				got = "unknown"
				if errors.Is(err, store.ErrNotWritten) {
					t.Errorf("Write: %v: of unknown outcome, and says it was not written", err)
				}
			case err != nil:
				got = "not committed"
				if !fault.Is(fault.Unavailable, err) {
					t.Errorf("not committed: %v, want Unavailable", err)
				}
			}
			if got != tc.want {
				t.Fatalf("Write: %v (%v), want %s", got, err, tc.want)
			}
			if s.puts != tc.puts {
				t.Errorf("%d Puts, want %d", s.puts, tc.puts)
			}
			s.arrive() // every copy has arrived: what Write said must hold now
			stored, err := inner.Get(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			ours := bytes.Equal(stored.InitialisationVector, s.sent)
			switch {
			case got == "committed" && (!ours || stored.Version != before.Version+1):
				t.Errorf("settled as committed, but the store holds version %d of another write", stored.Version)
			case got == "not committed" && ours:
				t.Error("settled as not committed, but the write landed")
			}
		})
	}
}

// countingStore counts Gets.
type countingStore struct {
	store.Store
	gets int
}

func (s *countingStore) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	s.gets++
	return s.Store.Get(ctx, k)
}

// A write that the store answered costs no read: only an unanswered one
// is settled by asking.
func TestAnAnsweredWriteReadsNothing(t *testing.T) {
	s := &countingStore{Store: memory.New()}
	kp, _ := newKeeper(t, s, Options{})
	k := store.Key{App: "app", Name: "s"}
	item, err := kp.Write(context.Background(), k, []byte("one"), store.NoItem)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kp.Write(context.Background(), k, []byte("two"), item.Revision()); err != nil {
		t.Fatal(err)
	}
	if s.gets != 0 {
		t.Errorf("two answered writes read the store %d times, want 0", s.gets)
	}
}

// invalidNames is a store whose listings also hold names that no file
// can have, as a store writer could add: names in every page of app's
// listing (and one entry of another application), and applications in
// the listing of applications.
type invalidNames struct {
	store.Store
	names []string // secret names added to every page of a listing
	apps  []string // application names added to the first page of Apps
	app   string   // an application name some entries claim, not the one listed
	// malformed are valid names of entries the store lists as invalid
	// (store.Meta.Invalid: an attribute of the wrong type or range).
	malformed []string
}

func (s *invalidNames) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	page, next, err := s.Store.List(ctx, app, after, limit)
	for _, n := range s.names {
		page = append(page, store.Meta{Key: store.Key{App: app, Name: n}, Size: 1})
	}
	if s.app != "" {
		page = append(page, store.Meta{Key: store.Key{App: s.app, Name: "moved"}, Size: 1})
	}
	for _, n := range s.malformed {
		if after != "" {
			break // listed once, as a store lists a name
		}
		page = append(page, store.Meta{Key: store.Key{App: app, Name: n},
			Invalid: fault.E(fault.Integrity, "malformed item: attribute Size is of type S, want N")})
	}
	return page, next, err
}

func (s *invalidNames) Apps(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	page, next, err := s.Store.Apps(ctx, cursor, limit)
	if cursor == "" {
		page = append(page, s.apps...)
	}
	return page, next, err
}

// Names from the store that cannot be file names are skipped, and
// entries the store lists as invalid (a malformed attribute) kept, marked
// (the catalog refuses them: EIO), each logged once however often it is
// listed, and the rest lists as ever.
func TestListingsSkipInvalidNamesAndLogEachOnce(t *testing.T) {
	badNames := []string{"x/../../y", "..", ".", "", "a\x00b", strings.Repeat("n", store.MaxNameLen+1), "\xff\xfe"}
	badApps := []string{"evil/app", "..", "\x1b[31m/red"}
	st := &invalidNames{Store: memory.New(), names: badNames, apps: badApps, app: "other", malformed: []string{"broken"}}
	logger, hook := logtest.NewNullLogger()
	k, _ := newKeeper(t, st, Options{Log: logger})
	ctx := context.Background()
	var want []string
	for i := range 25 { // several pages of the memory store
		name := fmt.Sprintf("s%02d", i)
		want = append(want, name)
		if _, err := k.Put(ctx, store.Key{App: "app", Name: name}, []byte("v"), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	// names are the valid entries' names; the malformed item must be
	// there once, marked, wherever its page put it.
	names := func(metas []store.Meta) []string {
		var n []string
		malformed := 0
		for _, m := range metas {
			if m.Invalid != nil {
				malformed++
				if m.Name != "broken" {
					t.Errorf("the malformed entry is %q", m.Name)
				}
				continue
			}
			n = append(n, m.Name)
		}
		if malformed != 1 {
			t.Errorf("%d malformed entries listed, want the one, kept so that reading it is EIO", malformed)
		}
		return n
	}
	for round := range 3 {
		all, err := k.ListAll(ctx, "app")
		if err != nil || !slices.Equal(names(all), want) {
			t.Fatalf("round %d: ListAll = %q, %v; want %q", round, names(all), err, want)
		}
		var paged []store.Meta
		for after := ""; ; {
			page, next, err := k.List(ctx, "app", after, 0)
			if err != nil {
				t.Fatal(err)
			}
			paged = append(paged, page...)
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(names(paged), want) {
			t.Fatalf("round %d: List pages = %q; want %q", round, names(paged), want)
		}
		apps, err := k.Apps(ctx)
		if err != nil || !slices.Equal(apps, []string{"app"}) {
			t.Fatalf("round %d: Apps = %q, %v; want [app]", round, apps, err)
		}
	}
	logged := map[string]int{}
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.WarnLevel {
			t.Errorf("a skipped name logged at %v: %s", e.Level, e.Message)
		}
		logged[fmt.Sprint(e.Data["application"], " ", e.Data["name"])]++
		if strings.ContainsAny(fmt.Sprint(e.Data["name"]), "\x00\x1b\xff") {
			t.Errorf("a logged name is not escaped: %q", e.Data["name"])
		}
	}
	wantLogged := map[string]int{}
	for _, n := range badNames {
		wantLogged[fmt.Sprint("app ", strconv.QuoteToASCII(n))] = 1
	}
	wantLogged["app "+strconv.QuoteToASCII("moved")] = 1
	wantLogged["app "+strconv.QuoteToASCII("broken")] = 1
	for _, a := range badApps {
		wantLogged[fmt.Sprint("<nil> ", strconv.QuoteToASCII(a))] = 1
	}
	if !maps.Equal(logged, wantLogged) {
		t.Fatalf("logged %v; want each invalid name once: %v", logged, wantLogged)
	}
}

// A store writer can add any number of invalid names: the Keeper
// remembers only so many as logged, then says once that it stops.
func TestSkippedNamesLoggedAreBounded(t *testing.T) {
	var bad []string
	for i := range maxSkippedNames + 10 {
		bad = append(bad, "bad/"+strconv.Itoa(i))
	}
	st := &invalidNames{Store: memory.New(), names: bad}
	logger, hook := logtest.NewNullLogger()
	k, _ := newKeeper(t, st, Options{Log: logger})
	for range 2 {
		if all, err := k.ListAll(context.Background(), "app"); err != nil || len(all) != 0 {
			t.Fatalf("ListAll = %d entries, %v", len(all), err)
		}
	}
	entries := hook.AllEntries()
	if len(entries) != maxSkippedNames+1 || !strings.Contains(entries[len(entries)-1].Message, "without a log line") {
		t.Fatalf("%d log lines; want %d names and one saying the rest are not logged", len(entries), maxSkippedNames)
	}
	if n := len(k.skipped.logged); n != maxSkippedNames {
		t.Fatalf("the Keeper remembers %d names, want %d", n, maxSkippedNames)
	}
}

// loopingStore's listings never end: List and Apps return the cursor
// cursor(i) after page i. It counts the pages asked for.
type loopingStore struct {
	store.Store
	cursor func(i int) string
	mu     sync.Mutex
	pages  int
}

func (s *loopingStore) page() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pages++
	return s.pages
}

func (s *loopingStore) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	i := s.page()
	return []store.Meta{{Key: store.Key{App: app, Name: "n" + strconv.Itoa(i)}}}, s.cursor(i), nil
}

func (s *loopingStore) Apps(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	i := s.page()
	return []string{"a" + strconv.Itoa(i)}, s.cursor(i), nil
}

// A store whose listing repeats a cursor would page forever: the Keeper's
// listings stop at the repeat with an error saying so.
func TestKeeperListingsStopAtARepeatedCursor(t *testing.T) {
	circle := func(i int) string { return "c" + strconv.Itoa(i%2) }
	st := &loopingStore{Store: memory.New(), cursor: circle}
	k, _ := newKeeper(t, st, Options{})
	if _, err := k.ListAll(context.Background(), "app"); !fault.Is(fault.Other, err) || !strings.Contains(err.Error(), "returned a cursor it had returned before") {
		t.Fatalf("ListAll of a circular listing: %v", err)
	}
	if st.pages != 3 {
		t.Fatalf("ListAll asked for %d pages, want 3 (the third repeats the first's cursor)", st.pages)
	}
	st.pages = 0
	if _, err := k.Apps(context.Background()); !fault.Is(fault.Other, err) || !strings.Contains(err.Error(), "returned a cursor it had returned before") {
		t.Fatalf("Apps of a circular listing: %v", err)
	}
	if st.pages != 3 {
		t.Fatalf("Apps asked for %d pages, want 3", st.pages)
	}
}

// A store whose listing never ends with fresh cursors is stopped at
// store.MaxListPages pages.
func TestKeeperListAllStopsAtThePageLimit(t *testing.T) {
	st := &loopingStore{Store: memory.New(), cursor: func(i int) string { return "c" + strconv.Itoa(i) }}
	k, _ := newKeeper(t, st, Options{})
	_, err := k.ListAll(context.Background(), "app")
	if !fault.Is(fault.Other, err) || !strings.Contains(err.Error(), "did not end after") {
		t.Fatalf("ListAll of an endless listing: %v", err)
	}
	if st.pages != store.MaxListPages {
		t.Fatalf("ListAll asked for %d pages, want %d", st.pages, store.MaxListPages)
	}
}

// ListAll stops between pages when its caller gives up.
func TestListAllStopsBetweenPagesWhenTheCallerGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &loopingStore{Store: memory.New(), cursor: func(i int) string {
		cancel()
		return "c" + strconv.Itoa(i)
	}}
	k, _ := newKeeper(t, st, Options{})
	if _, err := k.ListAll(ctx, "app"); !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "secrets.ListAll") {
		t.Fatalf("ListAll after the caller gave up: %v", err)
	}
	if st.pages != 1 {
		t.Fatalf("asked for %d pages after the caller gave up during the first", st.pages)
	}
}

// refusingStore fails every Put with refusal, and counts the Puts and
// Gets.
type refusingStore struct {
	countingStore
	refusal error
	puts    int
}

func (s *refusingStore) Put(ctx context.Context, item *store.Item, expected store.Revision) error {
	s.puts++
	return s.refusal
}

// writeRefused writes through a Keeper to a store that fails every Put
// with refusal, checks that the Keeper neither looked to settle it nor
// sent it again, nor called its outcome unknown, and returns its error.
func writeRefused(t *testing.T, refusal error) error {
	t.Helper()
	s := &refusingStore{countingStore: countingStore{Store: memory.New()}, refusal: refusal}
	kp, _ := newKeeper(t, s, Options{})
	_, err := kp.Write(context.Background(), store.Key{App: "app", Name: "s"}, []byte("v"), store.NoItem)
	if !errors.Is(err, refusal) || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("Write: %v, want the store's error", err)
	}
	if s.puts != 1 || s.gets != 0 {
		t.Errorf("%d Puts and %d Gets, want the one Put", s.puts, s.gets)
	}
	return err
}

// A write the store refused outright (its file gone from its path) is
// that refusal: no look to settle it, no second copy, and not "the
// outcome is unknown", which it is not; nor an outage.
func TestAWriteRefusedByAStoreWhoseFileIsGoneIsNotSettled(t *testing.T) {
	err := writeRefused(t, fault.E(fault.Op("gone.Put"), fault.Path("app/s"), fault.StoreGone, "the store file was removed while open: writes are refused"))
	if !fault.Answered(err) {
		t.Error("the refusal counts as the store's silence")
	}
}

// A write that failed as an outage, but that the store says it did not
// make (store.ErrNotWritten: its database stayed locked by another
// process), is not settled either: it did not land, and is an outage.
func TestAWriteTheStoreSaysItDidNotMakeIsNotSettled(t *testing.T) {
	err := writeRefused(t, fault.E(fault.Op("locked.Put"), fault.Path("app/s"), fault.Unavailable,
		fmt.Errorf("%w: the database stayed locked by another connection or process", store.ErrNotWritten)))
	if !fault.Is(fault.Unavailable, err) {
		t.Errorf("Write: %v (kind %q), want Unavailable", err, fault.KindOf(err))
	}
}
