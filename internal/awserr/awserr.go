// Package awserr classifies the errors of AWS SDK clients by what a caller
// can do about them, for every AWS service secretfs calls (DynamoDB, KMS):
// the backend did not answer or kept throttling (fault.Unavailable), or
// refused the caller's credentials (fault.Permission). It knows only what
// every AWS service means the same way: the transport, the standard
// retryer's throttling codes, HTTP status, and the request-signing layer's
// codes.
//
// What a service's own codes mean (a missing DynamoDB table, a KMS key
// that is disabled) is for that service's package to decide, before it
// asks Kind: KMS answers KeyUnavailableException with HTTP 500, which is
// about the key, not about KMS being down. This package must never learn
// such codes, and never put request or response data into an error.
package awserr

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/secretfs/secretfs/fault"
)

// permissionCodes are the codes of the AWS request-signing and
// authorisation layers, shared by every service: the caller is not
// allowed, or not recognised. The Exception-less spellings are those of
// the query protocols.
var permissionCodes = map[string]bool{
	"AccessDeniedException":               true,
	"AccessDenied":                        true,
	"UnrecognizedClientException":         true,
	"InvalidSignatureException":           true,
	"SignatureDoesNotMatch":               true,
	"IncompleteSignatureException":        true,
	"IncompleteSignature":                 true,
	"MissingAuthenticationTokenException": true,
	"MissingAuthenticationToken":          true,
	"ExpiredTokenException":               true,
	"ExpiredToken":                        true,
	"InvalidClientTokenId":                true,
	"NotAuthorized":                       true,
}

// unavailableCodes are codes, beyond the standard retryer's throttling
// and retryable ones, by which any service says it is unavailable.
var unavailableCodes = map[string]bool{
	"ServiceUnavailable": true,
}

// Kind classifies err, an error returned by an AWS SDK client, when it is
// one of the cases every service shares; ok is false when it is not, and
// the caller decides (usually fault.Other).
//
//   - No answer: the context's deadline or cancellation, a request that
//     could not be sent (connection refused or reset, DNS, a network
//     timeout): fault.Unavailable.
//   - Throttling (retry.DefaultThrottleErrorCodes, which the SDK's
//     standard retryer has already retried with backoff), the retryer's
//     retryable codes (retry.DefaultRetryableErrorCodes) and
//     ServiceUnavailable: fault.Unavailable.
//   - The caller's credentials or signature refused, or no permission
//     (AccessDenied, UnrecognizedClient, InvalidSignature, ExpiredToken
//     and their relatives): fault.Permission.
//   - Any other answer with HTTP status 5xx or 429, such as a proxy's 502
//     in front of a dead backend, or a service's internal error:
//     fault.Unavailable.
//
// A service's own codes must be classified before Kind is asked: Kind
// would call a service-specific 5xx Unavailable.
func Kind(err error) (kind fault.Kind, ok bool) {
	if err == nil {
		return fault.Other, false
	}
	if code := Code(err); code != "" {
		switch {
		case permissionCodes[code]:
			return fault.Permission, true
		case unavailableCodes[code]:
			return fault.Unavailable, true
		}
		if _, throttled := retry.DefaultThrottleErrorCodes[code]; throttled {
			return fault.Unavailable, true
		}
		if _, retryable := retry.DefaultRetryableErrorCodes[code]; retryable {
			return fault.Unavailable, true
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fault.Unavailable, true
	}
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &send) || errors.As(err, &netErr) {
		return fault.Unavailable, true
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		if c := status.HTTPStatusCode(); c >= 500 || c == http.StatusTooManyRequests {
			return fault.Unavailable, true
		}
	}
	return fault.Other, false
}

// Code is the API error code of err ("ThrottlingException",
// "ResourceNotFoundException"), or "" when err carries none.
func Code(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// Message is the service's message of the API error in err, or "" when
// err carries none.
func Message(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorMessage()
	}
	return ""
}
