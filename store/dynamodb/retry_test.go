package dynamodb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/testserver"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// A Put whose condition fails is refused, even when the stored item is
// the very write (as when the SDK resends a PutItem whose answer was
// lost): whether a write landed is the secrets layer's to decide
// (TestAPutWhoseAnswerWasLostIsConfirmedByTheKeeper). Another write with
// that Revision is refused too, and nothing refused changes what is
// stored.
func TestPutIsRefusedWhenItsConditionFails(t *testing.T) {
	table := newTable(t)
	var rec recorder
	c, err := newClient(dynalite.URL, rec.option)
	if err != nil {
		t.Fatal(err)
	}
	s := New(c, table)

	first := item("app", "x", 8)
	if err := s.Put(t.Context(), first, store.NoItem); err != nil {
		t.Fatalf("Put expecting NoItem: %v", err)
	}
	wantKind(t, s.Put(t.Context(), first, store.NoItem), fault.Exist, "the same Put again, expecting NoItem")
	other := item("app", "x", 9) // another write: a fresh IV
	wantKind(t, s.Put(t.Context(), other, store.NoItem), fault.Exist, "Put of another item expecting NoItem")

	second := item("app", "x", 10)
	second.Version = 2
	if err := s.Put(t.Context(), second, first.Revision()); err != nil {
		t.Fatalf("Put expecting its predecessor: %v", err)
	}
	wantKind(t, s.Put(t.Context(), second, first.Revision()), fault.Conflict, "the same Put again, expecting its predecessor")
	stale := item("app", "x", 11)
	stale.Version = 2
	wantKind(t, s.Put(t.Context(), stale, first.Revision()), fault.Conflict, "Put of another item expecting a stale Revision")
	got, err := s.Get(t.Context(), second.Key)
	if err != nil || !got.Revision().Equal(second.Revision()) || len(got.ProtectedSecretValue) != 10 {
		t.Fatalf("after the refused Puts: %+v, %v; want the second write", got, err)
	}

	// The condition names the IV as well as the Version.
	for _, call := range rec.take() {
		in, ok := call.in.(*awsdynamodb.PutItemInput)
		if !ok {
			continue
		}
		cond := *in.ConditionExpression
		if strings.Contains(cond, "attribute_not_exists") {
			continue // a create
		}
		var names []string
		for ph, name := range in.ExpressionAttributeNames {
			if strings.Contains(cond, ph) {
				names = append(names, name)
			}
		}
		if !strings.Contains(strings.Join(names, ","), "Version") || !strings.Contains(strings.Join(names, ","), "InitialisationVector") {
			t.Errorf("PutItem condition %q names %q; want Version and InitialisationVector", cond, names)
		}
	}
}

// lossy is an HTTP client that, once armed, loses the answer to the next
// request of operation op after the server has handled it, as a
// connection reset after DynamoDB has written does. The SDK's retryer
// then sends the request again.
type lossy struct {
	http  *awshttp.BuildableClient
	op    string
	armed atomic.Bool
}

func (l *lossy) Do(r *http.Request) (*http.Response, error) {
	resp, err := l.http.Do(r)
	if err != nil || !strings.HasSuffix(r.Header.Get("X-Amz-Target"), "."+l.op) || !l.armed.CompareAndSwap(true, false) {
		return resp, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
}

// The SDK resends a conditional PutItem whose answer was lost; the
// resent request fails its condition against the write of the first. The
// store says so (Exist or Conflict); the Keeper in front of it reads the
// item once, finds its own write, and reports success: one PutItem
// answered, one GetItem. A stale write whose answer was lost is still a
// Conflict.
func TestAPutWhoseAnswerWasLostIsConfirmedByTheKeeper(t *testing.T) {
	table := newTable(t)
	net := &lossy{http: awshttp.NewBuildableClient(), op: "PutItem"}
	c, err := newClient(dynalite.URL, func(o *awsdynamodb.Options) { o.HTTPClient = net })
	if err != nil {
		t.Fatal(err)
	}
	s := New(c, table)
	env, err := crypto.NewEnvelope(cryptotest.New(), crypto.DefaultFormat)
	if err != nil {
		t.Fatal(err)
	}
	k := secrets.NewKeeper(s, env, secrets.Options{})
	key := store.Key{App: "app", Name: "x"}
	expected := store.NoItem
	for _, what := range []string{"create", "update"} {
		dynalite.ResetCalls()
		net.armed.Store(true)
		meta, err := k.Put(t.Context(), key, []byte("value of "+what), expected)
		if err != nil {
			t.Fatalf("%s whose first answer was lost: %v", what, err)
		}
		if net.armed.Load() {
			t.Fatalf("%s: no answer was lost", what)
		}
		if n, g := dynalite.Calls("PutItem"), dynalite.Calls("GetItem"); n != 2 || g != 1 {
			t.Fatalf("%s: %d PutItem and %d GetItem requests, want 2 (the first, and the SDK's retry) and 1 (the Keeper's look)", what, n, g)
		}
		got, err := s.Get(t.Context(), key)
		if err != nil || !got.Revision().Equal(meta.Revision()) {
			t.Fatalf("%s: stored %+v, %v; want the write", what, got, err)
		}
		expected = meta.Revision()
	}

	// Losing an answer does not make a stale write succeed.
	net.armed.Store(true)
	_, err = k.Put(t.Context(), key, []byte("stale"), store.Revision{Version: 1, IV: make([]byte, crypto.NonceSizeV3)})
	wantKind(t, err, fault.Conflict, "stale Put whose answer was lost")
}

// EnsureTable against a backend that takes requests and never answers
// gives fault.Unavailable once its per-call deadline passes, however long
// the caller's context allows.
func TestEnsureTableUnanswered(t *testing.T) {
	silent, err := testserver.StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := newClient(silent.URL)
	if err != nil {
		t.Fatal(err)
	}
	silent.Pause()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	created, err := EnsureTable(ctx, c, "secretfs-unanswered", time.Second)
	if ctx.Err() != nil {
		t.Fatalf("EnsureTable ran until the test's own deadline: %v", err)
	}
	if created || !fault.Is(fault.Unavailable, err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EnsureTable of a backend that never answers = %v, %v (kind %q); want Unavailable at the call's deadline",
			created, err, fault.KindOf(err))
	}
	if n := silent.Calls("DescribeTable"); n == 0 {
		t.Fatal("no DescribeTable reached the server")
	}
}
