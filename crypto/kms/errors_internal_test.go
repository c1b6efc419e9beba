package kms

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/secretfs/secretfs/fault"
)

// sdkError wraps cause the way the SDK client returns a failed call:
// an OperationError around the HTTP response error around the API
// error, after the retryer gave up.
func sdkError(status int, cause error) error {
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	return &smithy.OperationError{ServiceID: "KMS", OperationName: "Decrypt", Err: &retry.MaxAttemptsError{Attempt: 3,
		Err: &awshttp.ResponseError{RequestID: "req-1", ResponseError: &smithyhttp.ResponseError{Response: resp, Err: cause}}}}
}

func apiError(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: "message of " + code, Fault: smithy.FaultClient}
}

func TestKindOf(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name string
		err  error
		want fault.Kind
	}{
		{"InvalidCiphertext", sdkError(400, apiError("InvalidCiphertextException")), fault.Integrity},
		{"typed InvalidCiphertext", sdkError(400, &types.InvalidCiphertextException{}), fault.Integrity},
		{"IncorrectKey", sdkError(400, apiError("IncorrectKeyException")), fault.Integrity},
		{"AccessDenied", sdkError(400, apiError("AccessDeniedException")), fault.Permission},
		{"NotFound", sdkError(400, &types.NotFoundException{}), fault.Permission},
		{"Disabled", sdkError(400, apiError("DisabledException")), fault.Permission},
		{"KMSInvalidState", sdkError(400, apiError("KMSInvalidStateException")), fault.Permission},
		{"KeyUnavailable, status 500", sdkError(500, apiError("KeyUnavailableException")), fault.Permission},
		{"InvalidKeyUsage", sdkError(400, apiError("InvalidKeyUsageException")), fault.Permission},
		{"UnrecognizedClient", sdkError(400, apiError("UnrecognizedClientException")), fault.Permission},
		{"ExpiredToken", sdkError(400, apiError("ExpiredTokenException")), fault.Permission},
		{"Throttling", sdkError(400, apiError("ThrottlingException")), fault.Unavailable},
		{"RequestTimeout", sdkError(408, apiError("RequestTimeoutException")), fault.Unavailable},
		{"KMSInternal", sdkError(500, &types.KMSInternalException{}), fault.Unavailable},
		{"DependencyTimeout", sdkError(503, apiError("DependencyTimeoutException")), fault.Unavailable},
		{"unknown error, status 502", sdkError(502, apiError("UnknownError")), fault.Unavailable},
		{"unknown error, status 429", sdkError(429, apiError("UnknownError")), fault.Unavailable},
		{"connection refused", &smithy.OperationError{ServiceID: "KMS", OperationName: "Decrypt",
			Err: &retry.MaxAttemptsError{Attempt: 3, Err: &smithyhttp.RequestSendError{Err: refused}}}, fault.Unavailable},
		{"bare net error", refused, fault.Unavailable},
		{"deadline", &smithy.OperationError{ServiceID: "KMS", OperationName: "Decrypt",
			Err: &smithy.CanceledError{Err: context.DeadlineExceeded}}, fault.Unavailable},
		{"cancelled", &smithy.CanceledError{Err: context.Canceled}, fault.Unavailable},
		{"Validation", sdkError(400, apiError("ValidationException")), fault.Other},
		{"unknown code, status 400", sdkError(400, apiError("SomethingNewException")), fault.Other},
		{"plain error", errors.New("boom"), fault.Other},
	}
	for _, c := range cases {
		if got := kindOf(c.err); got != c.want {
			t.Errorf("%s: kindOf = %v, want %v", c.name, got, c.want)
		}
		err := callError("kms.Test", `KMS Decrypt of a document key wrapped by "alias/app"`, "Decrypt", c.err)
		if got := fault.KindOf(err); got != c.want {
			t.Errorf("%s: callError kind %v, want %v", c.name, got, c.want)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%s: callError does not wrap the SDK error", c.name)
		}
		if msg := err.Error(); !strings.Contains(msg, `"alias/app"`) || !strings.HasPrefix(msg, "kms.Test: ") {
			t.Errorf("%s: message does not name the op and key: %s", c.name, msg)
		}
	}
}

// A permission error says where to look.
func TestPermissionMessage(t *testing.T) {
	err := callError("kms.Unwrap", `KMS Decrypt of a document key wrapped by "alias/app"`, "Decrypt", sdkError(400, apiError("AccessDeniedException")))
	for _, want := range []string{"permission denied", `"alias/app"`, "kms:Decrypt", "AccessDeniedException"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
}
