package awserr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/secretfs/secretfs/fault"
)

// sdkError wraps cause the way an SDK client returns a failed call: an
// OperationError around the retryer's MaxAttemptsError around the HTTP
// response error with the given status.
func sdkError(status int, cause error) error {
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	return &smithy.OperationError{ServiceID: "Any", OperationName: "Call", Err: &retry.MaxAttemptsError{Attempt: 3,
		Err: &awshttp.ResponseError{RequestID: "req-1", ResponseError: &smithyhttp.ResponseError{Response: resp, Err: cause}}}}
}

func apiError(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: "message of " + code, Fault: smithy.FaultClient}
}

func TestKind(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, c := range []struct {
		name string
		err  error
		kind fault.Kind
		ok   bool
	}{
		{"AccessDenied", sdkError(400, apiError("AccessDeniedException")), fault.Permission, true},
		{"AccessDenied, query protocol", sdkError(403, apiError("AccessDenied")), fault.Permission, true},
		{"UnrecognizedClient", sdkError(400, apiError("UnrecognizedClientException")), fault.Permission, true},
		{"InvalidSignature", sdkError(400, apiError("InvalidSignatureException")), fault.Permission, true},
		{"ExpiredToken", sdkError(400, apiError("ExpiredTokenException")), fault.Permission, true},
		{"Throttling", sdkError(400, apiError("ThrottlingException")), fault.Unavailable, true},
		{"ProvisionedThroughputExceeded", sdkError(400, apiError("ProvisionedThroughputExceededException")), fault.Unavailable, true},
		{"RequestLimitExceeded", sdkError(400, apiError("RequestLimitExceeded")), fault.Unavailable, true},
		{"RequestTimeout", sdkError(400, apiError("RequestTimeoutException")), fault.Unavailable, true},
		{"retry quota exhausted", errors.Join(sdkError(400, apiError("ThrottlingException")),
			ratelimit.QuotaExceededError{Available: 0, Requested: 5}), fault.Unavailable, true},
		{"ServiceUnavailable", sdkError(503, apiError("ServiceUnavailable")), fault.Unavailable, true},
		{"internal error, status 500", sdkError(500, apiError("InternalServerError")), fault.Unavailable, true},
		{"unknown error, status 502", sdkError(502, apiError("UnknownError")), fault.Unavailable, true},
		{"unknown error, status 504", sdkError(504, apiError("UnknownError")), fault.Unavailable, true},
		{"unknown error, status 429", sdkError(429, apiError("UnknownError")), fault.Unavailable, true},
		{"connection refused", &smithy.OperationError{ServiceID: "Any", OperationName: "Call",
			Err: &retry.MaxAttemptsError{Attempt: 3, Err: &smithyhttp.RequestSendError{Err: refused}}}, fault.Unavailable, true},
		{"bare net error", refused, fault.Unavailable, true},
		{"network timeout", fmt.Errorf("read: %w", &net.DNSError{Err: "timeout", IsTimeout: true}), fault.Unavailable, true},
		{"deadline", &smithy.OperationError{ServiceID: "Any", OperationName: "Call",
			Err: &smithy.CanceledError{Err: context.DeadlineExceeded}}, fault.Unavailable, true},
		{"cancelled", fmt.Errorf("retry: %w", context.Canceled), fault.Unavailable, true},

		// Not shared: the service decides.
		{"Validation", sdkError(400, apiError("ValidationException")), fault.Other, false},
		{"a service's own code", sdkError(400, apiError("ResourceNotFoundException")), fault.Other, false},
		{"unknown code, status 400", sdkError(400, apiError("SomethingNewException")), fault.Other, false},
		{"plain error", errors.New("boom"), fault.Other, false},
		{"nil", nil, fault.Other, false},
	} {
		kind, ok := Kind(c.err)
		if kind != c.kind || ok != c.ok {
			t.Errorf("%s: Kind(%v) = %q, %v; want %q, %v", c.name, c.err, kind, ok, c.kind, c.ok)
		}
	}
}

func TestCode(t *testing.T) {
	if got := Code(sdkError(400, apiError("ResourceNotFoundException"))); got != "ResourceNotFoundException" {
		t.Errorf("Code of a wrapped API error = %q", got)
	}
	if got := Message(sdkError(400, apiError("ResourceNotFoundException"))); got != "message of ResourceNotFoundException" {
		t.Errorf("Message of a wrapped API error = %q", got)
	}
	if got, msg := Code(errors.New("boom")), Message(errors.New("boom")); got != "" || msg != "" {
		t.Errorf("Code, Message of a plain error = %q, %q; want none", got, msg)
	}
}
