package dynamodb

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/secretfs/secretfs/internal/testserver"
)

// dynalite is the server every test talks to, started once for the
// package; client is an SDK client of it.
var (
	dynalite *testserver.Server
	client   *awsdynamodb.Client
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	dynalite, err = testserver.StartDynalite()
	if err != nil {
		// A missing server fails the run: it must never pass by testing nothing.
		fmt.Fprintln(os.Stderr, "store/dynamodb tests need dynalite:", err)
		return 1
	}
	defer dynalite.Close()
	client, err = newClient(dynalite.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// newClient returns an SDK client of the server at url, configured the way
// secretfs configures its own (the default chain), with static test
// credentials and the test region.
func newClient(url string, opts ...func(*awsdynamodb.Options)) (*awsdynamodb.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(testserver.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDLOCALTEST", "local-test-secret", "")))
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	return awsdynamodb.NewFromConfig(cfg, append([]func(*awsdynamodb.Options){func(o *awsdynamodb.Options) {
		o.BaseEndpoint = aws.String(url)
	}}, opts...)...), nil
}

var tableSeq atomic.Int64

// newTable creates a fresh, empty table with EnsureTable and deletes it
// when the test ends.
func newTable(t *testing.T) string {
	t.Helper()
	table := fmt.Sprintf("secretfs-test-%d", tableSeq.Add(1))
	created, err := EnsureTable(t.Context(), client, table, 10*time.Second)
	if err != nil || !created {
		t.Fatalf("EnsureTable(%s) = %v, %v; want a new table", table, created, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.DeleteTable(ctx, &awsdynamodb.DeleteTableInput{TableName: &table}); err != nil {
			t.Errorf("DeleteTable %s: %v", table, err)
		}
	})
	return table
}

// recorder sees the input and output of every call a client makes, as the
// SDK hands them to the wire and back: what was really sent, not what a
// test assumes.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

type call struct {
	in, out any
}

func (r *recorder) option(o *awsdynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("secretfs-test-recorder",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
				middleware.InitializeOutput, middleware.Metadata, error) {
				sent := snapshot(in.Parameters)
				out, md, err := next.HandleInitialize(ctx, in)
				r.mu.Lock()
				r.calls = append(r.calls, call{in: sent, out: out.Result})
				r.mu.Unlock()
				return out, md, err
			}), middleware.After)
	})
}

// snapshot copies the input struct p points to, as it is when sent: a
// caller may reuse its input for the next call (Apps does, for the next
// page of its Scan), which must not change what was recorded.
func snapshot(p any) any {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return p
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	return c.Interface()
}

func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}
