package dynamodb

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/awserr"
)

// classify gives the fault.Kind of an error from the SDK: DynamoDB's own
// codes first, then what every AWS service shares (awserr: throttling,
// credentials, transport, deadlines, HTTP 5xx and 429).
//
// A missing table (ResourceNotFoundException) is fault.Other, not
// fault.NotFound: it is a configuration problem (EIO), not a missing
// secret (ENOENT); wrap says how to fix it. ConditionalCheckFailedException
// is fault.Other here: what it means depends on the condition, which only
// the caller knows.
func classify(err error) fault.Kind {
	switch code := awserr.Code(err); {
	case code == "ResourceNotFoundException", code == "ConditionalCheckFailedException":
		return fault.Other
	case code == "ValidationException":
		if isItemSizeMessage(err) {
			return fault.TooLarge
		}
		return fault.Other
	}
	if kind, ok := awserr.Kind(err); ok {
		return kind
	}
	return fault.Other
}

// isItemSizeMessage reports whether a ValidationException says the item is
// too large: "Item size has exceeded the maximum allowed size" (PutItem),
// "Item size to update has exceeded ..." (UpdateItem).
func isItemSizeMessage(err error) bool {
	msg := strings.ToLower(awserr.Message(err))
	return strings.Contains(msg, "item size") && strings.Contains(msg, "exceed")
}

// hasCode reports whether err is a DynamoDB error with the given code.
func hasCode(err error, code string) bool {
	return awserr.Code(err) == code
}

// wrap turns an error of the SDK into a *fault.Error of op on path. A
// missing table gets a message that says how to create it, a refusal one
// that names the table and the permission to check: the operator reading
// the log must not have to guess which table of which mount it was.
// Messages come from the SDK and DynamoDB, which do not repeat attribute
// values.
func wrap(op fault.Op, path fault.Path, table string, err error) error {
	if err == nil {
		return nil
	}
	kind := classify(err)
	switch {
	case hasCode(err, "ResourceNotFoundException"):
		err = fmt.Errorf("DynamoDB table %q does not exist in this account and region; "+
			"create it with `secretfs init --backend dynamodb --table %s`: %w", table, table, err)
	case kind == fault.Permission:
		operation := "*"
		var oe *smithy.OperationError
		if errors.As(err, &oe) {
			operation = oe.Operation()
		}
		hint := "and its dynamodb:LeadingKeys condition"
		if operation == "Scan" {
			// Only listing applications scans, which no per-application
			// policy allows.
			hint = "or give a host confined to some applications its --apps"
		}
		err = fmt.Errorf("DynamoDB table %q refused the call (check the credentials, and the IAM policy "+
			"for dynamodb:%s on the table, %s): %w", table, operation, hint, err)
	}
	return fault.E(op, path, kind, err)
}
