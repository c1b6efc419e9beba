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

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/testserver"
	"github.com/secretfs/secretfs/store"
)

// A Put sent again with the Revision it expected the first time finds its
// own write stored: that is success. (That is what the SDK's retryer does
// when the answer to a stored PutItem is lost.) Another write with that
// Revision is still refused.
func TestPutRecognisesItsOwnWrite(t *testing.T) {
	table := newTable(t)
	var rec recorder
	c, err := newClient(dynalite.URL, rec.option)
	if err != nil {
		t.Fatal(err)
	}
	s := New(c, table)

	first := item("app", "x", 8)
	for range 2 {
		if err := s.Put(t.Context(), first, store.NoItem); err != nil {
			t.Fatalf("Put of the very item stored, expecting NoItem: %v", err)
		}
	}
	other := item("app", "x", 9) // another write: a fresh IV
	wantKind(t, s.Put(t.Context(), other, store.NoItem), fault.Exist, "Put of another item expecting NoItem")

	second := item("app", "x", 10)
	second.Version = 2
	for range 2 {
		if err := s.Put(t.Context(), second, first.Revision()); err != nil {
			t.Fatalf("Put of the very item stored, expecting its predecessor: %v", err)
		}
	}
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
// resent request fails its condition against the write of the first.
// Put must report that write's success, not Exist or Conflict.
func TestPutAnswerLost(t *testing.T) {
	table := newTable(t)
	net := &lossy{http: awshttp.NewBuildableClient(), op: "PutItem"}
	c, err := newClient(dynalite.URL, func(o *awsdynamodb.Options) { o.HTTPClient = net })
	if err != nil {
		t.Fatal(err)
	}
	s := New(c, table)

	first := item("app", "x", 8)
	second := item("app", "x", 10)
	second.Version = 2
	for _, w := range []struct {
		what     string
		it       *store.Item
		expected store.Revision
	}{
		{"create", first, store.NoItem},
		{"update", second, first.Revision()},
	} {
		dynalite.ResetCalls()
		net.armed.Store(true)
		if err := s.Put(t.Context(), w.it, w.expected); err != nil {
			t.Fatalf("%s whose first answer was lost: %v", w.what, err)
		}
		if net.armed.Load() {
			t.Fatalf("%s: no answer was lost", w.what)
		}
		if n := dynalite.Calls("PutItem"); n != 2 {
			t.Fatalf("%s: %d PutItem requests, want 2 (the first, and the SDK's retry)", w.what, n)
		}
		got, err := s.Get(t.Context(), w.it.Key)
		if err != nil || !got.Revision().Equal(w.it.Revision()) {
			t.Fatalf("%s: stored %+v, %v; want the write", w.what, got, err)
		}
	}

	// Losing an answer does not make a stale write succeed.
	stale := item("app", "x", 11)
	stale.Version = 2
	net.armed.Store(true)
	wantKind(t, s.Put(t.Context(), stale, first.Revision()), fault.Conflict, "stale Put whose answer was lost")
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
