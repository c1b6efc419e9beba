package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// long is a TTL no test outlives, for tests that are not about expiry.
const long = time.Hour

func TestColdGetsShareOneOriginCall(t *testing.T) {
	f := newFake()
	k := key("db-password")
	f.set(k, "s3cret", 1)
	c := New(f, Options{TTL: long})

	release := f.hold("Fetch")
	const readers = 100
	var started, done sync.WaitGroup
	got := make([]string, readers)
	errs := make([]error, readers)
	for i := range readers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			s, err := c.Get(context.Background(), k, false)
			errs[i] = err
			got[i] = string(s.Value)
			// Each reader owns its copy: wiping it must not touch the
			// others' (the race detector sees a shared slice).
			s.Value.Wipe()
		}()
	}
	started.Wait()
	waitEntered(t, f, "Fetch")
	// Let the other readers pile up behind the held call; this only makes
	// the test more sensitive, its outcome does not depend on it.
	time.Sleep(20 * time.Millisecond)
	release()
	done.Wait()

	for i := range readers {
		if errs[i] != nil || got[i] != "s3cret" {
			t.Fatalf("reader %d: got %q, %v", i, got[i], errs[i])
		}
	}
	if n := f.counts(); n["Fetch"] != 1 || n["Open"] != 1 || n["Get"] != 0 {
		t.Errorf("100 cold readers: origin calls %v, want 1 Fetch + 1 Open", n)
	}
}

func TestStatThenGetReadsTheStoreOnce(t *testing.T) {
	f := newFake()
	k := key("token")
	f.set(k, "abc", 3)
	c := New(f, Options{TTL: long})

	meta, err := c.Stat(context.Background(), k, false)
	if err != nil || meta.Version != 3 || meta.Size != 3 {
		t.Fatalf("Stat: %+v, %v", meta, err)
	}
	if v := mustGet(t, c, k, false); v != "abc" {
		t.Fatalf("Get: %q", v)
	}
	if n := f.counts(); n["Fetch"] != 1 || n["Open"] != 1 || n["Get"] != 0 || n["Stat"] != 0 {
		t.Errorf("Stat then Get: origin calls %v, want 1 Fetch + 1 Open", n)
	}
	before := f.counts()
	if _, err := c.Stat(context.Background(), k, false); err != nil {
		t.Fatal(err)
	}
	sameCounts(t, f, before, "a hot Stat")
}

func TestLegacySizeIsLearnedFromOpen(t *testing.T) {
	f := newFake()
	k := key("legacy")
	f.setLegacy(k, "12345")
	c := New(f, Options{TTL: long})
	ctx := context.Background()
	if m, err := c.Stat(ctx, k, false); err != nil || m.Size != -1 {
		t.Fatalf("Stat before Get: %+v, %v; want Size -1 (unknown)", m, err)
	}
	mustGet(t, c, k, false)
	if m, err := c.Stat(ctx, k, false); err != nil || m.Size != 5 {
		t.Errorf("Stat after Get: %+v, %v; want Size 5", m, err)
	}
}

func TestHotGetReturnsACopy(t *testing.T) {
	f := newFake()
	k := key("cert")
	f.set(k, "pem-bytes", 1)
	c := New(f, Options{TTL: long})

	first, err := c.Get(context.Background(), k, false)
	if err != nil {
		t.Fatal(err)
	}
	if &first.Value[0] == &f.handedOut()[0][0] {
		t.Error("Get returned the cache's own slice, not a copy")
	}
	before := f.counts()
	hot, err := c.Get(context.Background(), k, false)
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, f, before, "a hot Get")
	hot.Value[0] = 'X'
	first.Value.Wipe()
	if v := mustGet(t, c, k, false); v != "pem-bytes" {
		t.Errorf("after the caller changed its copy, Get = %q", v)
	}
}

func TestExpiredValueIsWipedAndRefetched(t *testing.T) {
	f := newFake()
	k := key("api-key")
	f.set(k, "expiring", 1)
	c := New(f, Options{TTL: 50 * time.Millisecond})

	if v := mustGet(t, c, k, false); v != "expiring" {
		t.Fatalf("Get: %q", v)
	}
	held := f.handedOut()[0]
	// Contains takes the LRU's lock, under which the expiry wiped the
	// value, so reading held afterwards is not a data race.
	eventually(t, "the entry expires", func() bool { return !c.lru.Contains(k) })
	if !wiped(held) {
		t.Error("the expired value was not wiped")
	}
	if v := mustGet(t, c, k, false); v != "expiring" {
		t.Fatalf("Get after expiry: %q", v)
	}
	if n := f.count("Fetch"); n != 2 {
		t.Errorf("Get after expiry: %d Fetches, want 2", n)
	}
}

func TestSizeBoundEvictsLeastRecentlyUsed(t *testing.T) {
	f := newFake()
	a, b, d := key("a"), key("b"), key("d")
	for _, k := range []store.Key{a, b, d} {
		f.set(k, "value-"+k.Name, 1)
	}
	c := New(f, Options{TTL: long, Size: 2})

	mustGet(t, c, a, false)
	mustGet(t, c, b, false)
	mustGet(t, c, a, false) // a is now more recently used than b
	mustGet(t, c, d, false) // evicts b
	handed := f.handedOut()
	if len(handed) != 3 {
		t.Fatalf("%d values handed out, want 3", len(handed))
	}
	if !wiped(handed[1]) {
		t.Error("the evicted value (b) was not wiped")
	}
	if wiped(handed[0]) || wiped(handed[2]) {
		t.Error("a value still cached was wiped")
	}
	before := f.counts()
	if v := mustGet(t, c, a, false); v != "value-a" {
		t.Errorf("Get a: %q", v)
	}
	sameCounts(t, f, before, "Get of a kept entry")
	if v := mustGet(t, c, b, false); v != "value-b" {
		t.Errorf("Get b: %q", v)
	}
	if n := f.count("Fetch"); n != 4 {
		t.Errorf("Get of the evicted entry: %d Fetches, want 4", n)
	}
}

func TestPutReplacesTheValue(t *testing.T) {
	f := newFake()
	k := key("password")
	f.set(k, "old", 1)
	c := New(f, Options{TTL: long})
	mustGet(t, c, k, false)
	old := f.handedOut()[0]

	value := []byte("new")
	meta, err := c.Put(context.Background(), k, value, rev(1))
	if err != nil || meta.Version != 2 {
		t.Fatalf("Put: %+v, %v", meta, err)
	}
	if !wiped(old) {
		t.Error("the replaced value was not wiped")
	}
	value[0] = 'X' // the caller still owns its slice
	before := f.counts()
	s, err := c.Get(context.Background(), k, false)
	if err != nil || string(s.Value) != "new" || s.Version != 2 {
		t.Errorf("Get after Put: %q, %+v, %v", s.Value, s.Meta, err)
	}
	sameCounts(t, f, before, "Get after Put")
}

// A value the cache wrote itself is recognised by a later fresh read
// (same Version and IV) without decrypting it again: an append after a
// write through the mount costs a store read, not a key unwrap.
func TestFreshGetAfterPutNeedsNoOpen(t *testing.T) {
	f := newFake()
	k := key("written")
	c := New(f, Options{TTL: long})
	if _, err := c.Put(context.Background(), k, []byte("mine"), store.NoItem); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, c, k, true); v != "mine" {
		t.Fatalf("fresh Get after Put: %q", v)
	}
	if n := f.counts(); n["Fetch"] != 1 || n["Open"] != 0 {
		t.Errorf("fresh Get after Put: calls %v, want 1 Fetch and no Open", n)
	}
}

func TestPutFailureThatShowsTheEntryStaleDropsIt(t *testing.T) {
	for _, tc := range []struct {
		kind     fault.Kind
		expected store.Version // compared by the fake; see fakeOrigin.Write
		inject   bool
	}{
		{fault.Conflict, 7, false},
		{fault.Exist, store.Absent, false},
		{fault.NotFound, 1, true},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			f := newFake()
			k := key("s")
			f.set(k, "cached", 1)
			c := New(f, Options{TTL: long})
			mustGet(t, c, k, false)
			if tc.inject {
				f.failNext("Put", fault.E(fault.Op("fake.Put"), k.Path(), tc.kind))
			}
			_, err := c.Put(context.Background(), k, []byte("lost"), rev(tc.expected))
			if !fault.Is(tc.kind, err) {
				t.Fatalf("Put: %v, want %v", err, tc.kind)
			}
			if !wiped(f.handedOut()[0]) {
				t.Error("the dropped value was not wiped")
			}
			if v := mustGet(t, c, k, false); v != "cached" {
				t.Errorf("Get: %q", v)
			}
			if n := f.count("Fetch"); n != 2 {
				t.Errorf("Get after a failed Put: %d Fetches, want 2", n)
			}
		})
	}
}

func TestPutFailureForOtherReasonsKeepsTheEntry(t *testing.T) {
	f := newFake()
	k := key("s")
	f.set(k, "cached", 1)
	c := New(f, Options{TTL: long})
	mustGet(t, c, k, false)
	f.failNext("Put", fault.E(fault.Op("fake.Put"), k.Path(), fault.Unavailable))
	if _, err := c.Put(context.Background(), k, []byte("lost"), rev(1)); !fault.Is(fault.Unavailable, err) {
		t.Fatalf("Put: %v", err)
	}
	before := f.counts()
	if v := mustGet(t, c, k, false); v != "cached" {
		t.Errorf("Get: %q", v)
	}
	sameCounts(t, f, before, "Get after an unavailable Put")
}

// A load that started before a write finished must not file its older
// result over the write's, and whatever it decrypted must be wiped.
func TestLoadOvertakenByAWriteIsNotFiled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		held  string // where the load is when the write happens
		write func(*Plaintext, store.Key) error
		want  string // what Get says afterwards
	}{
		{"put during Open", "Open", put("new"), "new"},
		{"put during Fetch", "Fetch", put("new"), "new"},
		{"delete during Open", "Open", del, ""},
		{"delete during Fetch", "Fetch", del, ""},
		{"invalidate during Open", "Open", invalidate, "changed"},
		{"invalidate during Fetch", "Fetch", invalidate, "changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			k := key("s")
			f.set(k, "old", 1)
			c := New(f, Options{TTL: long})
			if tc.held == "Open" {
				if _, err := c.Stat(context.Background(), k, false); err != nil {
					t.Fatal(err)
				}
			}
			release := f.hold(tc.held)
			type result struct {
				value string
				err   error
			}
			res := make(chan result, 1)
			go func() {
				s, err := c.Get(context.Background(), k, false)
				res <- result{string(s.Value), err}
				s.Value.Wipe()
			}()
			waitEntered(t, f, tc.held)
			if strings.HasPrefix(tc.name, "invalidate") {
				f.set(k, "changed", 1) // another host wrote
			}
			if err := tc.write(c, k); err != nil {
				t.Fatal(err)
			}
			release()
			r := <-res
			// The overtaken Get may answer from before or after the
			// write, but never with a wiped value.
			if r.err == nil && r.value != "old" && r.value != tc.want {
				t.Errorf("overtaken Get: %q", r.value)
			}
			for i, p := range f.handedOut() {
				if string(p) == "old" {
					t.Errorf("plaintext %d from the overtaken load was not wiped", i)
				}
			}
			s, err := c.Get(context.Background(), k, false)
			switch {
			case tc.want == "" && !fault.Is(fault.NotFound, err):
				t.Errorf("Get after delete: %q, %v", s.Value, err)
			case tc.want != "" && (err != nil || string(s.Value) != tc.want):
				t.Errorf("Get after the write: %q, %v; want %q", s.Value, err, tc.want)
			}
		})
	}
}

func put(v string) func(*Plaintext, store.Key) error {
	return func(c *Plaintext, k store.Key) error {
		_, err := c.Put(context.Background(), k, []byte(v), rev(1))
		return err
	}
}

func del(c *Plaintext, k store.Key) error { return c.Delete(context.Background(), k, rev(1)) }

// rev is the Revision a test expects; the fake origin compares Versions.
func rev(v store.Version) store.Revision { return store.Revision{Version: v, IV: []byte{1}} }

func invalidate(c *Plaintext, k store.Key) error { c.Invalidate(k); return nil }

// Two writes whose answers arrive out of order: the older must not be
// filed over the newer.
func TestPutOvertakenByAnotherPutIsNotFiled(t *testing.T) {
	f := newFake()
	k := key("s")
	f.set(k, "one", 1)
	c := New(f, Options{TTL: long})
	mustGet(t, c, k, false)
	ctx := context.Background()

	release := f.holdNext("Put committed")
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, k, []byte("two"), rev(1))
		done <- err
	}()
	waitEntered(t, f, "Put committed") // "two" is stored as Version 2
	if _, err := c.Put(ctx, k, []byte("three"), rev(2)); err != nil {
		t.Fatal(err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s, err := c.Get(ctx, k, false)
	if err != nil || string(s.Value) != "three" || s.Version != 3 {
		t.Errorf("Get after two writes: %q, %+v, %v; want the newer", s.Value, s.Meta, err)
	}
}

func TestGetAfterAWriteDoesNotJoinAnOlderLoad(t *testing.T) {
	f := newFake()
	k := key("s")
	f.set(k, "value", 1)
	c := New(f, Options{TTL: long})

	release := f.hold("Fetch")
	done := make(chan error, 2)
	get := func() {
		s, err := c.Get(context.Background(), k, false)
		if err == nil && string(s.Value) != "value" {
			err = fmt.Errorf("got %q", s.Value)
		}
		s.Value.Wipe()
		done <- err
	}
	go get()
	waitEntered(t, f, "Fetch")
	// A failed conditional write: the cache cannot know what is stored
	// now, so a Get that starts after it must read the store itself.
	if _, err := c.Put(context.Background(), k, []byte("x"), rev(5)); !fault.Is(fault.Conflict, err) {
		t.Fatalf("Put: %v", err)
	}
	go get()
	waitEntered(t, f, "Fetch") // fails if the second Get joined the first's load
	release()
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestCancelledWaiterReturnsPromptly(t *testing.T) {
	f := newFake()
	k := key("s")
	f.set(k, "shared", 1)
	c := New(f, Options{TTL: long})
	release := f.hold("Fetch")
	defer release()

	type result struct {
		value string
		err   error
	}
	get := func(ctx context.Context, out chan<- result) {
		s, err := c.Get(ctx, k, false)
		out <- result{string(s.Value), err}
		s.Value.Wipe()
	}
	// The first caller starts the shared load; cancelling it must not
	// cancel the load for the others.
	firstCtx, cancelFirst := context.WithCancel(context.Background())
	first := make(chan result, 1)
	go get(firstCtx, first)
	waitEntered(t, f, "Fetch")

	laterCtx, cancelLater := context.WithCancel(context.Background())
	later := make(chan result, 1)
	go get(laterCtx, later)
	others := make(chan result, 5)
	for range 5 {
		go get(context.Background(), others)
	}

	for _, w := range []struct {
		cancel context.CancelFunc
		out    chan result
	}{{cancelFirst, first}, {cancelLater, later}} {
		w.cancel()
		select {
		case r := <-w.out:
			if !errors.Is(r.err, context.Canceled) || !fault.Is(fault.Unavailable, r.err) {
				t.Errorf("cancelled waiter: %v, want a context.Canceled fault of kind Unavailable", r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a cancelled waiter did not return while the origin was busy")
		}
	}
	release()
	for range 5 {
		if r := <-others; r.err != nil || r.value != "shared" {
			t.Errorf("waiter: %q, %v", r.value, r.err)
		}
	}
	if n := f.count("Fetch"); n != 1 {
		t.Errorf("%d Fetches, want 1", n)
	}
}

func TestFreshReadKeepsTheValueOfAnUnchangedItem(t *testing.T) {
	f := newFake()
	k := key("legacy")
	// Version 0: a legacy item, written by the original Secret Store.
	f.set(k, "one", store.Unversioned)
	c := New(f, Options{TTL: long})
	ctx := context.Background()

	mustGet(t, c, k, false)
	one := f.handedOut()[0]
	if _, err := c.Stat(ctx, k, true); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, c, k, true); v != "one" {
		t.Fatalf("fresh Get: %q", v)
	}
	if n := f.counts(); n["Fetch"] != 3 || n["Open"] != 1 {
		t.Errorf("fresh Stat + fresh Get of an unchanged item: calls %v, want 3 Fetches and 1 Open", n)
	}
	if wiped(one) {
		t.Error("the kept value was wiped")
	}

	// The original rewrites the legacy item: same Version, new IV.
	f.set(k, "two", store.Unversioned)
	if v := mustGet(t, c, k, true); v != "two" {
		t.Fatalf("fresh Get after a legacy rewrite: %q", v)
	}
	if n := f.count("Open"); n != 2 {
		t.Errorf("fresh Get after a legacy rewrite: %d Opens, want 2", n)
	}
	if !wiped(one) {
		t.Error("the outdated value was not wiped")
	}

	// A fresh Stat that sees a rewrite drops the value too.
	f.set(k, "three", store.Unversioned)
	if _, err := c.Stat(ctx, k, true); err != nil {
		t.Fatal(err)
	}
	if !wiped(f.handedOut()[1]) {
		t.Error("fresh Stat kept a value of another ciphertext")
	}
	if v := mustGet(t, c, k, false); v != "three" {
		t.Fatalf("Get after fresh Stat: %q", v)
	}
	if n := f.counts(); n["Fetch"] != 5 || n["Open"] != 3 {
		t.Errorf("Get after a fresh Stat: calls %v, want 5 Fetches and 3 Opens", n)
	}
}

func TestFreshReadSeesANewVersion(t *testing.T) {
	f := newFake()
	k := key("s")
	f.set(k, "v1", 1)
	c := New(f, Options{TTL: long})
	mustGet(t, c, k, false)
	f.set(k, "v2", 2)
	if v := mustGet(t, c, k, false); v != "v1" {
		t.Fatalf("cached Get: %q", v)
	}
	s, err := c.Get(context.Background(), k, true)
	if err != nil || string(s.Value) != "v2" || s.Version != 2 {
		t.Fatalf("fresh Get: %q, %+v, %v", s.Value, s.Meta, err)
	}
	if !wiped(f.handedOut()[0]) {
		t.Error("the outdated value was not wiped")
	}
}

func TestListDropsChangedEntries(t *testing.T) {
	f := newFake()
	a, b, d, other := key("a"), key("b"), key("d"), store.Key{App: "other", Name: "b"}
	for _, k := range []store.Key{a, b, other} {
		f.set(k, "old-"+k.Name, 1)
	}
	f.setLegacy(d, "old-d") // Version 0, no Modified: like a zero Meta
	c := New(f, Options{TTL: long})
	for _, k := range []store.Key{a, b, d, other} {
		mustGet(t, c, k, false)
	}
	handed := f.handedOut() // a, b, d, other
	f.set(b, "new-b", 2)    // written elsewhere
	f.remove(d)             // deleted elsewhere
	ctx := context.Background()

	// The first page covers only "a": b and d are outside it.
	page, next, err := c.List(ctx, "app", "", 1)
	if err != nil || len(page) != 1 || next != "a" {
		t.Fatalf("List page 1: %v, %q, %v", page, next, err)
	}
	for i, p := range handed {
		if wiped(p) {
			t.Errorf("value %d wiped by a page that does not cover it", i)
		}
	}

	if _, _, err := c.List(ctx, "app", "a", 0); err != nil {
		t.Fatal(err)
	}
	if !wiped(handed[1]) || !wiped(handed[2]) {
		t.Error("the changed or deleted entry was not dropped and wiped")
	}
	if wiped(handed[0]) || wiped(handed[3]) {
		t.Error("an unchanged entry, or one of another application, was dropped")
	}
	before := f.counts()
	mustGet(t, c, a, false)
	mustGet(t, c, other, false)
	sameCounts(t, f, before, "Get of an unchanged entry after List")
	if v := mustGet(t, c, b, false); v != "new-b" {
		t.Errorf("Get b after List: %q", v)
	}
	if _, err := c.Get(ctx, d, false); !fault.Is(fault.NotFound, err) {
		t.Errorf("Get d after List: %v", err)
	}
}

func TestTTLZeroPassesThrough(t *testing.T) {
	f := newFake()
	k := key("s")
	f.set(k, "direct", 1)
	c := New(f, Options{TTL: 0})
	ctx := context.Background()

	for i := range 2 {
		s, err := c.Get(ctx, k, false)
		if err != nil || string(s.Value) != "direct" {
			t.Fatalf("Get: %q, %v", s.Value, err)
		}
		// The caller gets the origin's own slice: nothing was copied,
		// so nothing was kept.
		if &s.Value[0] != &f.handedOut()[i][0] {
			t.Error("pass-through Get copied the value")
		}
		if _, err := c.Stat(ctx, k, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, k, []byte("again"), rev(1)); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Get(ctx, k, false); err != nil || string(s.Value) != "again" {
		t.Errorf("Get after Put: %q, %v", s.Value, err)
	}
	if n := f.counts(); n["Get"] != 3 || n["Stat"] != 2 {
		t.Errorf("pass-through: calls %v, want 3 Gets and 2 Stats", n)
	}
	if c.lru != nil {
		t.Error("TTL 0 made a cache")
	}
	c.Invalidate(k)
	c.Purge()
	for _, p := range f.handedOut() {
		if wiped(p) {
			t.Error("pass-through wiped a value the caller owns")
		}
	}
}

func TestOriginErrorsAreReturnedAndNotCached(t *testing.T) {
	ctx := context.Background()
	t.Run("fetch", func(t *testing.T) {
		f := newFake()
		k := key("s")
		f.set(k, "value", 1)
		c := New(f, Options{TTL: long})
		f.failNext("Fetch", fault.E(fault.Op("fake.Fetch"), k.Path(), fault.Unavailable))
		if _, err := c.Get(ctx, k, false); !fault.Is(fault.Unavailable, err) {
			t.Fatalf("Get: %v, want Unavailable", err)
		}
		f.failNext("Fetch", fault.E(fault.Op("fake.Fetch"), k.Path(), fault.Permission))
		if _, err := c.Stat(ctx, k, false); !fault.Is(fault.Permission, err) {
			t.Fatalf("Stat: %v, want Permission", err)
		}
		if v := mustGet(t, c, k, false); v != "value" {
			t.Errorf("Get after errors: %q", v)
		}
	})
	t.Run("open", func(t *testing.T) {
		f := newFake()
		k := key("s")
		f.set(k, "value", 1)
		c := New(f, Options{TTL: long})
		f.failNext("Open", fault.E(fault.Op("fake.Open"), k.Path(), fault.Integrity))
		if _, err := c.Get(ctx, k, false); !fault.Is(fault.Integrity, err) {
			t.Fatalf("Get: %v, want Integrity", err)
		}
		if v := mustGet(t, c, k, false); v != "value" {
			t.Errorf("Get after an Open error: %q", v)
		}
		if n := f.counts(); n["Open"] != 2 || n["Fetch"] != 1 {
			t.Errorf("calls %v: want the item kept (1 Fetch) and the error not (2 Opens)", n)
		}
	})
	t.Run("not found", func(t *testing.T) {
		f := newFake()
		k := key("s")
		c := New(f, Options{TTL: long})
		if _, err := c.Get(ctx, k, false); !fault.Is(fault.NotFound, err) {
			t.Fatalf("Get: %v, want NotFound", err)
		}
		f.set(k, "created", 1)
		if v := mustGet(t, c, k, false); v != "created" {
			t.Errorf("Get after creation: %q", v)
		}
	})
}

func TestDeleteDropsTheEntry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		expected store.Version // compared by the fake; see fakeOrigin.Write
		kind     fault.Kind
	}{
		{"success", 1, fault.Other},
		{"conflict", 9, fault.Conflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			k := key("s")
			f.set(k, "value", 1)
			c := New(f, Options{TTL: long})
			mustGet(t, c, k, false)
			err := c.Delete(context.Background(), k, rev(tc.expected))
			if fault.KindOf(err) != tc.kind {
				t.Fatalf("Delete: %v", err)
			}
			if !wiped(f.handedOut()[0]) {
				t.Error("the deleted value was not wiped")
			}
			s, err := c.Get(context.Background(), k, false)
			switch {
			case tc.kind == fault.Other && !fault.Is(fault.NotFound, err):
				t.Errorf("Get after Delete: %q, %v; want NotFound", s.Value, err)
			case tc.kind == fault.Conflict && (err != nil || string(s.Value) != "value"):
				t.Errorf("Get after a conflicting Delete: %q, %v", s.Value, err)
			}
			if n := f.count("Fetch"); n != 2 {
				t.Errorf("Get after Delete: %d Fetches, want 2", n)
			}
		})
	}
}

func TestInvalidateAndPurgeWipe(t *testing.T) {
	f := newFake()
	a, b := key("a"), key("b")
	f.set(a, "value-a", 1)
	f.set(b, "value-b", 1)
	c := New(f, Options{TTL: long})
	mustGet(t, c, a, false)
	mustGet(t, c, b, false)

	c.Invalidate(a)
	if h := f.handedOut(); !wiped(h[0]) || wiped(h[1]) {
		t.Error("Invalidate did not wipe exactly its entry")
	}
	mustGet(t, c, a, false)
	if n := f.count("Fetch"); n != 3 {
		t.Errorf("Get after Invalidate: %d Fetches, want 3", n)
	}
	c.Purge()
	for i, p := range f.handedOut() {
		if !wiped(p) {
			t.Errorf("value %d survived Purge", i)
		}
	}
	if c.lru.Len() != 0 {
		t.Error("Purge left entries")
	}
}

// Readers racing with evictions, writes and invalidations get a whole
// value or an error, never a wiped one.
func TestReadersNeverSeeAWipedValue(t *testing.T) {
	f := newFake()
	const keys = 8
	for i := range keys {
		f.set(key(fmt.Sprint(i)), fmt.Sprintf("value-%d-0", i), 1)
	}
	c := New(f, Options{TTL: long, Size: 3})
	ctx := context.Background()
	stop := make(chan struct{})
	var writers, readers sync.WaitGroup
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.IntN(keys)
				k := key(fmt.Sprint(i))
				meta, err := c.Stat(ctx, k, true)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = c.Put(ctx, k, []byte(fmt.Sprintf("value-%d-%d", i, n)), meta.Revision())
				if err != nil && !fault.Is(fault.Conflict, err) {
					t.Error(err)
					return
				}
				if n%5 == 0 {
					c.Invalidate(k)
				}
			}
		}()
	}
	for r := range 8 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			for range 300 {
				i := rng.IntN(keys)
				s, err := c.Get(ctx, key(fmt.Sprint(i)), rng.IntN(4) == 0)
				if err != nil {
					t.Error(err)
					return
				}
				if want := fmt.Sprintf("value-%d-", i); !strings.HasPrefix(string(s.Value), want) {
					t.Errorf("Get %d: got %q", i, s.Value)
					return
				}
				s.Value.Wipe()
			}
		}()
	}
	readers.Wait()
	close(stop)
	writers.Wait()
}

func TestFlightKeysAreUnambiguous(t *testing.T) {
	a := flightKey(getFlight, store.Key{App: "a/b", Name: "c"})
	b := flightKey(getFlight, store.Key{App: "a", Name: "b/c"})
	if a == b {
		t.Errorf("two keys share the flight key %q", a)
	}
}

// A fresh read that finds the secret gone drops what was cached, so the
// next cached read does not resurrect it.
func TestFreshNotFoundDropsTheEntry(t *testing.T) {
	f := newFake()
	k := key("removed-elsewhere")
	f.set(k, "old", 1)
	c := New(f, Options{TTL: long})
	mustGet(t, c, k, false)
	old := f.handedOut()[0]
	f.remove(k)
	if _, err := c.Stat(context.Background(), k, true); !fault.Is(fault.NotFound, err) {
		t.Fatalf("fresh Stat of a removed secret: %v", err)
	}
	if _, err := c.Stat(context.Background(), k, false); !fault.Is(fault.NotFound, err) {
		t.Errorf("cached Stat after a fresh NotFound: %v, want NotFound", err)
	}
	if !wiped(old) {
		t.Error("the dropped value was not wiped")
	}
}

// Remaining tells how long the cache will keep answering for a key
// without the origin: the rest of the TTL of the entry it holds, counted
// from when the store was asked, and nothing for a key it does not hold.
func TestRemainingIsTheRestOfTheEntrysTTL(t *testing.T) {
	f := newFake()
	k := key("cert")
	f.set(k, "pem", 1)
	const ttl = 400 * time.Millisecond
	c := New(f, Options{TTL: ttl})
	if r := c.Remaining(k); r != 0 {
		t.Errorf("before any read, Remaining = %v, want 0", r)
	}
	asked := time.Now()
	if _, err := c.Stat(context.Background(), k, false); err != nil {
		t.Fatal(err)
	}
	if r := c.Remaining(k); r <= 0 || r > ttl || r < ttl-time.Since(asked) {
		t.Errorf("after a read, Remaining = %v, want at most the TTL %v less the time since", r, ttl)
	}
	time.Sleep(ttl / 2)
	mustGet(t, c, k, false) // a hit is not a new answer from the store
	if r := c.Remaining(k); r > ttl-time.Since(asked)+time.Millisecond {
		t.Errorf("a cache hit renewed the entry: Remaining = %v", r)
	}
	eventually(t, "the entry expires", func() bool { return c.Remaining(k) == 0 })
	if _, err := c.Stat(context.Background(), k, false); err != nil || c.Remaining(k) == 0 {
		t.Fatalf("a read after expiry filed no entry: %v", err)
	}
	c.Invalidate(k)
	if r := c.Remaining(k); r != 0 {
		t.Errorf("after Invalidate, Remaining = %v, want 0", r)
	}
	if r := New(f, Options{}).Remaining(k); r != 0 {
		t.Errorf("a cache with TTL 0 says Remaining = %v, want 0", r)
	}
}
