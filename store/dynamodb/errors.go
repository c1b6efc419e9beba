package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/secretfs/secretfs/fault"
)

// Error codes, as DynamoDB and the AWS request signing layer send them.
var (
	// permissionCodes: the caller is not allowed, or not recognised.
	permissionCodes = map[string]bool{
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
	// unavailableCodes: throttling, which the SDK's standard retryer has
	// already retried with backoff before the error reaches us, and the
	// service saying it is unavailable.
	unavailableCodes = map[string]bool{
		"ProvisionedThroughputExceededException": true,
		"ThrottlingException":                    true,
		"Throttling":                             true,
		"RequestLimitExceeded":                   true,
		"ServiceUnavailable":                     true,
	}
)

// classify gives the fault.Kind of an error from the SDK. A missing table
// (ResourceNotFoundException) is fault.Other, not fault.NotFound: it is a
// configuration problem (EIO), not a missing secret (ENOENT); wrap says
// how to fix it. ConditionalCheckFailedException is not classified here:
// what it means depends on the condition, which only the caller knows.
func classify(err error) fault.Kind {
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		switch {
		case permissionCodes[code]:
			return fault.Permission
		case unavailableCodes[code]:
			return fault.Unavailable
		case code == "ValidationException" && isItemSizeMessage(api.ErrorMessage()):
			return fault.TooLarge
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fault.Unavailable
	}
	// A proxy or load balancer in front of a dead backend answers 502,
	// 503 or 504 without a DynamoDB error code.
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) {
		switch resp.HTTPStatusCode() {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return fault.Unavailable
		}
	}
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &send) || errors.As(err, &netErr) {
		return fault.Unavailable
	}
	return fault.Other
}

// isItemSizeMessage reports whether a ValidationException says the item is
// too large: "Item size has exceeded the maximum allowed size" (PutItem),
// "Item size to update has exceeded ..." (UpdateItem).
func isItemSizeMessage(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "item size") && strings.Contains(msg, "exceed")
}

// hasCode reports whether err is a DynamoDB error with the given code.
func hasCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}

// wrap turns an error of the SDK into a *fault.Error of op on path. A
// missing table gets a message that says how to create it. Messages come
// from the SDK and DynamoDB, which do not repeat attribute values.
func wrap(op fault.Op, path fault.Path, table string, err error) error {
	if err == nil {
		return nil
	}
	kind := classify(err)
	if hasCode(err, "ResourceNotFoundException") {
		err = fmt.Errorf("DynamoDB table %q does not exist in this account and region; "+
			"create it with `secretfs init --backend dynamodb --table %s`: %w", table, table, err)
	}
	return fault.E(op, path, kind, err)
}
