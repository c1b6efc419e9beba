package kms

import (
	"fmt"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/awserr"
)

// Error codes of KMS (the names of its typed exceptions in
// service/kms/types), by what a caller can do about them. Codes are
// compared rather than types so that an error is classified the same
// whether the SDK models it or not. What every AWS service shares
// (throttling, credentials, transport, HTTP status) is awserr's.
var (
	// The wrapped key is not what it claims: modified, moved to another
	// item (wrong encryption context), or wrapped under another key.
	integrityCodes = codes("InvalidCiphertextException", "IncorrectKeyException")
	// The key cannot be used by this host, now or until someone changes
	// a policy or the key's state.
	permissionCodes = codes(
		"NotFoundException", "DisabledException",
		"KMSInvalidStateException", "KeyUnavailableException", "InvalidKeyUsageException",
	)
	// KMS failed or was slow; a later attempt may succeed.
	unavailableCodes = codes("KMSInternalException", "DependencyTimeoutException")
)

func codes(c ...string) map[string]bool {
	m := make(map[string]bool, len(c))
	for _, s := range c {
		m[s] = true
	}
	return m
}

// kindOf classifies an error returned by the KMS client. KMS's own codes
// come before anything else: KeyUnavailableException, for one, comes with
// HTTP status 500 but is about the key, not about KMS being down.
func kindOf(err error) fault.Kind {
	code := awserr.Code(err)
	switch {
	case integrityCodes[code]:
		return fault.Integrity
	case permissionCodes[code]:
		return fault.Permission
	case unavailableCodes[code]:
		return fault.Unavailable
	}
	if kind, ok := awserr.Kind(err); ok {
		return kind
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
		what += " failed: the wrapped key was modified, moved from another item, made for another encryption context, or wrapped under another key than the item names"
	}
	return fault.E(op, kind, fmt.Errorf("%s: %w", what, err))
}
