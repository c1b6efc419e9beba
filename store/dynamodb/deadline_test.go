package dynamodb

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// never is a stall that outlasts every deadline: a backend that does not
// answer.
const never = time.Duration(math.MaxInt64)

// stalling is an HTTP client that holds each request for stall(op, n)
// before sending it (op is the operation, n counts its requests from 1),
// or until the request's context ends: a slow or dead network.
type stalling struct {
	http  *awshttp.BuildableClient
	stall func(op string, n int) time.Duration

	mu     sync.Mutex
	counts map[string]int
}

func newStalling(stall func(op string, n int) time.Duration) *stalling {
	return &stalling{http: awshttp.NewBuildableClient(), stall: stall, counts: map[string]int{}}
}

func (s *stalling) Do(r *http.Request) (*http.Response, error) {
	target := r.Header.Get("X-Amz-Target")
	op := target[strings.LastIndexByte(target, '.')+1:]
	s.mu.Lock()
	s.counts[op]++
	n := s.counts[op]
	s.mu.Unlock()
	if d := s.stall(op, n); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return s.http.Do(r)
}

func (s *stalling) calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// stallingStore returns a store on table whose client's network is net.
func stallingStore(t *testing.T, table string, net *stalling) *Store {
	t.Helper()
	c, err := newClient(dynalite.URL, func(o *awsdynamodb.Options) { o.HTTPClient = net })
	if err != nil {
		t.Fatal(err)
	}
	return New(c, table)
}

// keeper composes s with a fake key wrapper, as the mount does with KMS,
// each backend call bounded by timeout (--timeout).
func keeper(t *testing.T, s *Store, timeout time.Duration) *secrets.Keeper {
	t.Helper()
	e, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	return secrets.NewKeeper(s, e, secrets.Options{Timeout: timeout})
}

// tablePages fills a fresh table with about 1.5 MB of items, which a
// Scan returns in two pages at least (DynamoDB ends a page at 1 MB), and
// returns it with the applications it holds.
func tablePages(t *testing.T) (table string, apps []string) {
	t.Helper()
	table = newTable(t)
	s := New(client, table)
	for i := range 5 {
		app := "app" + strconv.Itoa(i)
		apps = append(apps, app)
		if err := s.Put(t.Context(), item(app, "big", 300*1024), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	return table, apps
}

// Composed as the mount composes it, every call to a DynamoDB that never
// answers has a deadline, whatever the caller's context allows, and says
// how long it had.
func TestEveryCallHasADeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	k := keeper(t, stallingStore(t, newTable(t), newStalling(func(string, int) time.Duration { return never })), timeout)
	key := store.Key{App: "app", Name: "x"}
	rev := store.Revision{Version: 1, IV: freshIV()}
	for what, call := range map[string]func(context.Context) error{
		"Fetch": func(ctx context.Context) error { _, err := k.Fetch(ctx, key); return err },
		"Put":   func(ctx context.Context) error { _, err := k.Put(ctx, key, []byte("v"), store.NoItem); return err },
		"Delete": func(ctx context.Context) error {
			return k.Delete(ctx, key, rev)
		},
		"List": func(ctx context.Context) error { _, _, err := k.List(ctx, "app", "", 0); return err },
		"Apps": func(ctx context.Context) error { _, err := k.Apps(ctx); return err },
	} {
		start := time.Now()
		err := call(context.Background()) // no deadline but the Keeper's
		if elapsed := time.Since(start); elapsed > timeout+5*time.Second {
			t.Errorf("%s against a backend that never answers took %v with a %v timeout", what, elapsed, timeout)
		}
		if !fault.Is(fault.Unavailable, err) || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), "secrets."+what) || !strings.Contains(err.Error(), "no answer within "+timeout.String()) {
			t.Errorf("%s against a backend that never answers: %v (kind %q); want Unavailable naming the op and the timeout",
				what, err, fault.KindOf(err))
		}
	}
}

// The root listing of a large table is a Scan of many pages: each page is
// under the timeout (with seconds to spare, for dynalite under -race), all
// of them together are over it, and the listing succeeds.
func TestAppsPagesEachHaveTheirOwnDeadline(t *testing.T) {
	const timeout, stall = 5 * time.Second, 3 * time.Second
	table, want := tablePages(t)
	net := newStalling(func(op string, _ int) time.Duration {
		if op == "Scan" {
			return stall
		}
		return 0
	})
	k := keeper(t, stallingStore(t, table, net), timeout)
	start := time.Now()
	apps, err := k.Apps(t.Context())
	elapsed := time.Since(start)
	if err != nil || strings.Join(apps, ",") != strings.Join(want, ",") {
		t.Fatalf("Apps of slow pages: %q, %v; want %q", apps, err, want)
	}
	if n := net.calls("Scan"); n < 2 || elapsed <= timeout {
		t.Fatalf("Apps made %d Scan calls in %v with a %v timeout; want several pages taking longer than one timeout: the test tested nothing",
			n, elapsed, timeout)
	}
}

// A page of the Scan that never answers fails the listing with
// fault.Unavailable at that page's deadline, not at the caller's. The
// first page, 1 MB, has the whole timeout to answer.
func TestAppsPageThatHangs(t *testing.T) {
	const timeout = 5 * time.Second
	table, _ := tablePages(t)
	net := newStalling(func(op string, n int) time.Duration {
		if op == "Scan" && n == 2 {
			return never
		}
		return 0
	})
	k := keeper(t, stallingStore(t, table, net), timeout)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := k.Apps(ctx)
	elapsed := time.Since(start)
	if !fault.Is(fault.Unavailable, err) || !strings.Contains(err.Error(), "secrets.Apps") ||
		!strings.Contains(err.Error(), "no answer within "+timeout.String()) {
		t.Fatalf("Apps with a page that hangs: %v (kind %q); want Unavailable from secrets.Apps naming the timeout", err, fault.KindOf(err))
	}
	if ctx.Err() != nil || elapsed > 2*timeout+5*time.Second {
		t.Fatalf("Apps with a page that hangs took %v with a %v timeout", elapsed, timeout)
	}
	if n := net.calls("Scan"); n != 2 {
		t.Fatalf("%d Scan calls, want 2: the first page answered, the second hung", n)
	}
}
