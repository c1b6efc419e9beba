package kms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/secretfs/secretfs/fault"
)

// Error codes of KMS (the names of its typed exceptions in
// service/kms/types), by what a caller can do about them. Codes are
// compared rather than types so that an error is classified the same
// whether the SDK models it or not.
var (
	// The wrapped key is not what it claims: modified, moved to another
	// item (wrong encryption context), or wrapped under another key.
	integrityCodes = codes("InvalidCiphertextException", "IncorrectKeyException")
	// The key cannot be used by this host, now or until someone changes
	// a policy, the key's state or the credentials.
	permissionCodes = codes(
		"AccessDeniedException", "NotFoundException", "DisabledException",
		"KMSInvalidStateException", "KeyUnavailableException", "InvalidKeyUsageException",
		"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
	)
	// KMS failed or was slow; a later attempt may succeed. Throttling
	// codes come from the SDK's own list (retry.DefaultThrottleErrorCodes).
	unavailableCodes = codes("KMSInternalException", "DependencyTimeoutException",
		"RequestTimeout", "RequestTimeoutException")
)

func codes(c ...string) map[string]bool {
	m := make(map[string]bool, len(c))
	for _, s := range c {
		m[s] = true
	}
	return m
}

// kindOf classifies an error returned by the KMS client. An API error is
// classified by its code before anything else: KeyUnavailableException,
// for one, comes with HTTP status 500 but is about the key, not about
// KMS being down.
func kindOf(err error) fault.Kind {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		switch {
		case integrityCodes[code]:
			return fault.Integrity
		case permissionCodes[code]:
			return fault.Permission
		case unavailableCodes[code]:
			return fault.Unavailable
		}
		if _, ok := retry.DefaultThrottleErrorCodes[code]; ok {
			return fault.Unavailable
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fault.Unavailable
	}
	var sendErr *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &sendErr) || errors.As(err, &netErr) {
		return fault.Unavailable // no answer: connection refused or reset, DNS, timeout
	}
	// An answer that is no KMS error, such as a proxy's 502 in front of
	// a dead KMS.
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		if c := status.HTTPStatusCode(); c >= 500 || c == http.StatusTooManyRequests {
			return fault.Unavailable
		}
	}
	return fault.Other
}

// callError turns the error of a KMS call into a *fault.Error whose
// message starts with what, which names the call and the key. The SDK's message names
// the operation, the HTTP status, the request id and KMS's own message;
// none of them holds key material (requests and responses are never
// quoted), so it is kept, and wrapped so that errors.As still finds the
// SDK's error types.
func callError(op fault.Op, what, call string, err error) error {
	kind := kindOf(err)
	switch kind {
	case fault.Permission:
		what += " refused (check the key's state, the key policy and IAM permissions for kms:" + call + ")"
	case fault.Integrity:
		what += " failed: the wrapped key was modified, moved from another item, or made for another encryption context"
	}
	return fault.E(op, kind, fmt.Errorf("%s: %w", what, err))
}
