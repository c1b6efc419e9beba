package testserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// A client that gives up in the middle of a request body, as a cancelled
// SDK call does, must not reach the server: dynalite dies ("Error:
// aborted") when a request it is reading is cut off. The proxy reads each
// request whole before forwarding it, so the server never sees the
// half-sent ones and answers the next requests as before.
func TestHalfSentRequestsNeverReachTheServer(t *testing.T) {
	s := startDynalite(t)

	// Bodies larger than the proxy's write buffers, so that what was sent
	// of them would reach the server if the proxy streamed it.
	for _, size := range []int{8 << 10, 64 << 10, 256 << 10} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		body := `{"TableName":"t","Item":{"k":{"S":"` + strings.Repeat("x", size) + `"}}}`
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\n"+
			"Content-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n\r\n%s",
			conn.RemoteAddr(), len(body), body[:len(body)/2])
		// Stop sending, and wait until the proxy is done with the request:
		// it answers (or closes) once it has given up on the rest.
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
	if got := s.Calls("PutItem"); got != 0 {
		t.Errorf("Calls(PutItem) = %d after only half-sent PutItems; want 0: they never arrived", got)
	}

	// The server is alive and answers through the proxy.
	for i := range 3 {
		if _, err := listTables(t, s); err != nil {
			t.Fatalf("ListTables %d after the half-sent requests: %v", i, err)
		}
	}
	select {
	case <-s.exited:
		t.Fatal("dynalite exited after the half-sent requests")
	default:
	}
	if got := s.Total(); got != 3 {
		t.Errorf("Total() = %d; want 3, the whole requests only", got)
	}
}

// A request whose client gave up while the server was paused is dropped,
// never forwarded, once the server is resumed; the next one goes through.
func TestRequestsGivenUpDuringPauseAreNotForwarded(t *testing.T) {
	s := startDynalite(t)

	s.Pause()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader(
			`{"TableName":"abandoned","KeySchema":[{"AttributeName":"k","KeyType":"HASH"}],`+
				`"AttributeDefinitions":[{"AttributeName":"k","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}`))
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.CreateTable")
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the proxy to take the CreateTable", func() bool { return s.Calls("CreateTable") == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the paused server answered")
	}
	waitFor(t, "the proxy to drop the given-up request", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.givenUp == 1
	})
	s.Resume()

	tables, err := listTables(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(tables, "abandoned") {
		t.Errorf("a request given up during the pause reached the server: it has the tables %q", tables)
	}
}

// listTables asks s's DynamoDB for its tables, through the proxy, as a
// client of the SDK.
func listTables(t *testing.T, s *Server) ([]string, error) {
	t.Helper()
	c := awsdynamodb.NewFromConfig(sdkConfig(t), func(o *awsdynamodb.Options) { o.BaseEndpoint = aws.String(s.URL) })
	out, err := c.ListTables(t.Context(), &awsdynamodb.ListTablesInput{})
	if err != nil {
		return nil, err
	}
	return out.TableNames, nil
}

// waitFor polls cond until it holds, for at most 30s (a hung test, not a
// measurement).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
