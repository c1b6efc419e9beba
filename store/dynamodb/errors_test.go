package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// sdkError wraps cause the way the SDK returns a service error: an
// OperationError around an HTTP response error with the given status.
func sdkError(status int, cause error) error {
	return &smithy.OperationError{
		ServiceID:     "DynamoDB",
		OperationName: "GetItem",
		Err: &awshttp.ResponseError{
			RequestID: "REQ",
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      cause,
			},
		},
	}
}

func generic(code, msg string) error {
	return &smithy.GenericAPIError{Code: code, Message: msg, Fault: smithy.FaultClient}
}

func TestClassify(t *testing.T) {
	throttled := &types.ProvisionedThroughputExceededException{Message: new("The level of configured provisioned throughput for the table was exceeded")}
	for _, c := range []struct {
		name string
		err  error
		want fault.Kind
	}{
		{"table missing", sdkError(400, &types.ResourceNotFoundException{Message: new("Requested resource not found")}), fault.Other},
		{"access denied", sdkError(400, generic("AccessDeniedException", "User: arn:aws:iam::1:user/x is not authorized")), fault.Permission},
		{"unknown key id", sdkError(400, generic("UnrecognizedClientException", "The security token included in the request is invalid.")), fault.Permission},
		{"bad signature", sdkError(400, generic("InvalidSignatureException", "Signature expired")), fault.Permission},
		{"expired token", sdkError(400, generic("ExpiredTokenException", "The security token included in the request is expired")), fault.Permission},
		{"provisioned throughput", sdkError(400, throttled), fault.Unavailable},
		{"throttling", sdkError(400, &types.ThrottlingException{}), fault.Unavailable},
		{"request limit", sdkError(400, &types.RequestLimitExceeded{}), fault.Unavailable},
		{"throttling, generic", sdkError(400, generic("ThrottlingException", "Rate exceeded")), fault.Unavailable},
		{"retries exhausted", &retry.MaxAttemptsError{Attempt: 3, Err: sdkError(400, throttled)}, fault.Unavailable},
		{"retry quota exhausted", errors.Join(sdkError(400, throttled), ratelimit.QuotaExceededError{Available: 0, Requested: 5}), fault.Unavailable},
		{"item too large", sdkError(400, generic("ValidationException", "Item size has exceeded the maximum allowed size")), fault.TooLarge},
		{"update too large", sdkError(400, generic("ValidationException", "Item size to update has exceeded the maximum allowed size")), fault.TooLarge},
		{"other validation", sdkError(400, generic("ValidationException", "One or more parameter values were invalid")), fault.Other},
		{"condition failed", sdkError(400, &types.ConditionalCheckFailedException{}), fault.Other},
		// Any 5xx is the service failing, as for KMS (internal/awserr).
		{"internal error", sdkError(500, &types.InternalServerError{}), fault.Unavailable},
		{"too many requests", sdkError(429, generic("UnknownError", "")), fault.Unavailable},
		{"service unavailable", sdkError(503, generic("ServiceUnavailable", "")), fault.Unavailable},
		{"bad gateway", sdkError(502, generic("UnknownError", "UnknownError")), fault.Unavailable},
		{"gateway timeout", sdkError(504, generic("UnknownError", "UnknownError")), fault.Unavailable},
		{"unknown 400", sdkError(400, generic("SomethingNew", "")), fault.Other},
		{"connection refused", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "Query",
			Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}}, fault.Unavailable},
		{"network timeout", fmt.Errorf("read: %w", &net.DNSError{Err: "timeout", IsTimeout: true}), fault.Unavailable},
		{"deadline", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "GetItem",
			Err: &smithy.CanceledError{Err: context.DeadlineExceeded}}, fault.Unavailable},
		{"cancelled", fmt.Errorf("retry: %w", context.Canceled), fault.Unavailable},
		{"anything else", errors.New("boom"), fault.Other},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("%s: classify(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
		// wrap keeps the classification and names the operation and path.
		w := wrap("dynamodb.Get", "app/name", "secrets", c.err)
		if got := fault.KindOf(w); got != c.want {
			t.Errorf("%s: wrap gives kind %q, want %q", c.name, got, c.want)
		}
		if !strings.HasPrefix(w.Error(), "dynamodb.Get: app/name: ") {
			t.Errorf("%s: wrap gives %q", c.name, w)
		}
	}
}

func TestWrapMissingTable(t *testing.T) {
	err := wrap("dynamodb.List", "app", "prod-secrets",
		sdkError(400, &types.ResourceNotFoundException{Message: new("Requested resource not found")}))
	for _, want := range []string{`"prod-secrets"`, "secretfs init --backend dynamodb --table prod-secrets", "Requested resource not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not contain %q", err, want)
		}
	}
	if k := fault.KindOf(err); k != fault.Other {
		t.Errorf("kind %q, want %q: a missing table is EIO, not ENOENT", k, fault.Other)
	}
	// Only a missing table says so.
	if err := wrap("dynamodb.List", "app", "t", sdkError(400, generic("AccessDeniedException", ""))); strings.Contains(err.Error(), "secretfs init") {
		t.Errorf("AccessDenied wrapped as %q", err)
	}
	if wrap("dynamodb.List", "app", "t", nil) != nil {
		t.Error("wrap(nil) is not nil")
	}
}

// A refusal names the table and the action to check, even when
// DynamoDB's own message does not.
func TestWrapPermissionNamesTable(t *testing.T) {
	err := wrap("dynamodb.Get", "app/x", "prod-secrets", sdkError(400, generic("AccessDeniedException", "")))
	for _, want := range []string{"permission denied", `"prod-secrets"`, "dynamodb:GetItem", "AccessDeniedException"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not contain %q", err, want)
		}
	}
	if k := fault.KindOf(err); k != fault.Permission {
		t.Errorf("kind %q, want %q", k, fault.Permission)
	}
}

// A call DynamoDB refuses with AccessDenied (an IAM policy that does not
// allow it, or a dynamodb:LeadingKeys condition it fails) is
// fault.Permission (EACCES), whichever call it is, and its message names
// the table.
func TestAccessDenied(t *testing.T) {
	table := newTable(t)
	s := New(client, table)
	it := item("app", "x", 8)
	if err := s.Put(t.Context(), it, store.NoItem); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dynalite.Deny(0) })
	for what, call := range map[string]func() error{
		"Get": func() error { _, err := s.Get(t.Context(), it.Key); return err },
		"Put": func() error {
			next := item("app", "x", 9)
			next.Version = 2
			return s.Put(t.Context(), next, it.Revision())
		},
		"Delete": func() error { return s.Delete(t.Context(), it.Key, it.Revision()) },
		"List":   func() error { _, _, err := s.List(t.Context(), "app", "", 0); return err },
		"Apps":   func() error { _, _, err := s.Apps(t.Context(), "", 0); return err },
	} {
		dynalite.ResetCalls()
		dynalite.Deny(1)
		err := call()
		wantKind(t, err, fault.Permission, what+" refused with AccessDenied")
		if !strings.Contains(err.Error(), strconv.Quote(table)) {
			t.Errorf("%s: the error does not name the table %q: %v", what, table, err)
		}
		if n := dynalite.Calls("GetItem") + dynalite.Calls("PutItem") + dynalite.Calls("DeleteItem") +
			dynalite.Calls("Query") + dynalite.Calls("Scan"); n != 1 {
			t.Errorf("%s: %d requests; want 1, the refused one, and no retry", what, n)
		}
	}
	// Nothing refused changed the item.
	if got, err := s.Get(t.Context(), it.Key); err != nil || !got.Revision().Equal(it.Revision()) {
		t.Fatalf("after the refused calls: %+v, %v; want the item as written", got, err)
	}
}
