package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/secretfs/secretfs/fault"
)

// activeTimeout bounds the wait for a table to become ACTIVE. On-demand
// tables usually take seconds.
const activeTimeout = 5 * time.Minute

// keySchema is the key of the table, as the original Secret Store made it.
var keySchema = []keyAttr{
	{attrApp, types.KeyTypeHash, types.ScalarAttributeTypeS},
	{attrName, types.KeyTypeRange, types.ScalarAttributeTypeS},
}

type keyAttr struct {
	name    string
	keyType types.KeyType
	typ     types.ScalarAttributeType
}

// EnsureTable makes sure that table exists with secretfs's key schema and
// is ACTIVE, for `secretfs init --backend dynamodb`. It creates a missing
// table (on-demand billing, PAY_PER_REQUEST) and reports created; a table
// that already has the right key schema, such as one of the original
// Secret Store, is left unchanged. A table with another key schema is
// fault.Invalid, with both schemas in the message. Either way it waits,
// up to five minutes, for the table to be ACTIVE.
//
// Every DescribeTable and CreateTable call, the waiter's included, gets
// its own deadline of callTimeout (retries included; <= 0: none but ctx's),
// so that a backend that never answers fails EnsureTable with
// fault.Unavailable after about callTimeout, however long ctx allows. The
// wait for ACTIVE keeps its own overall bound.
func EnsureTable(ctx context.Context, client *awsdynamodb.Client, table string, callTimeout time.Duration) (created bool, err error) {
	const op fault.Op = "dynamodb.EnsureTable"
	bound := perCall(callTimeout)
	desc, err := client.DescribeTable(ctx, &awsdynamodb.DescribeTableInput{TableName: &table}, bound)
	switch {
	case err == nil:
		if err := checkSchema(table, desc.Table); err != nil {
			return false, fault.E(op, fault.Invalid, err)
		}
		if desc.Table.TableStatus == types.TableStatusActive {
			return false, nil
		}
		_, err := waitActive(ctx, op, client, table, bound)
		return false, err
	case !hasCode(err, "ResourceNotFoundException"):
		return false, fault.E(op, classify(err), fmt.Errorf("table %q: %w", table, err))
	}

	in := &awsdynamodb.CreateTableInput{
		TableName:   &table,
		BillingMode: types.BillingModePayPerRequest,
	}
	for _, k := range keySchema {
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: new(k.name), KeyType: k.keyType})
		in.AttributeDefinitions = append(in.AttributeDefinitions,
			types.AttributeDefinition{AttributeName: new(k.name), AttributeType: k.typ})
	}
	_, err = client.CreateTable(ctx, in, bound)
	switch {
	case hasCode(err, "ResourceInUseException"):
		// Created by someone else since we looked: it must still be ours.
		t, err := waitActive(ctx, op, client, table, bound)
		if err != nil {
			return false, err
		}
		if err := checkSchema(table, t); err != nil {
			return false, fault.E(op, fault.Invalid, err)
		}
		return false, nil
	case err != nil:
		return false, fault.E(op, classify(err), fmt.Errorf("create table %q: %w", table, err))
	}
	if _, err := waitActive(ctx, op, client, table, bound); err != nil {
		return false, err
	}
	return true, nil
}

// perCall bounds each call of an operation, the SDK's retries included,
// by d; d <= 0 adds no bound. The deadline is set in the Initialize step,
// the first of the call's middleware stack. A call that runs out of its
// own time (not the caller's) says how long it had: that is the first
// thing an operator needs to know about a dead backend.
func perCall(d time.Duration) func(*awsdynamodb.Options) {
	return func(o *awsdynamodb.Options) {
		if d <= 0 {
			return
		}
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("secretfs-call-timeout",
				func(parent context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
					middleware.InitializeOutput, middleware.Metadata, error) {
					ctx, cancel := context.WithTimeout(parent, d)
					defer cancel()
					out, md, err := next.HandleInitialize(ctx, in)
					if err != nil && parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
						err = fmt.Errorf("no answer within %s: %w", d, err)
					}
					return out, md, err
				}), middleware.Before)
		})
	}
}

// waitActive waits until table is ACTIVE and returns its description.
// bound applies to each of the waiter's DescribeTable calls.
func waitActive(ctx context.Context, op fault.Op, client *awsdynamodb.Client, table string,
	bound func(*awsdynamodb.Options)) (*types.TableDescription, error) {
	w := awsdynamodb.NewTableExistsWaiter(client, func(o *awsdynamodb.TableExistsWaiterOptions) {
		o.MinDelay = time.Second
		o.MaxDelay = 10 * time.Second
		o.ClientOptions = append(o.ClientOptions, bound)
	})
	out, err := w.WaitForOutput(ctx, &awsdynamodb.DescribeTableInput{TableName: &table}, activeTimeout)
	if err == nil {
		return out.Table, nil
	}
	kind := classify(err)
	if kind == fault.Other {
		kind = fault.Unavailable // the waiter gave up
	}
	return nil, fault.E(op, kind, fmt.Errorf("waiting (up to %v) for table %q to become ACTIVE: %w", activeTimeout, table, err))
}

// checkSchema returns an error unless t has exactly secretfs's key schema.
func checkSchema(table string, t *types.TableDescription) error {
	if t == nil {
		return fmt.Errorf("table %q: DescribeTable returned no description", table)
	}
	attrTypes := map[string]types.ScalarAttributeType{}
	for _, d := range t.AttributeDefinitions {
		if d.AttributeName != nil {
			attrTypes[*d.AttributeName] = d.AttributeType
		}
	}
	var found []keyAttr
	for _, k := range t.KeySchema {
		name := ""
		if k.AttributeName != nil {
			name = *k.AttributeName
		}
		found = append(found, keyAttr{name, k.KeyType, attrTypes[name]})
	}
	if formatSchema(found) == formatSchema(keySchema) {
		return nil
	}
	return fmt.Errorf("table %q has the key schema %s; secretfs needs %s (the Secret Store's): choose another --table",
		table, formatSchema(found), formatSchema(keySchema))
}

// formatSchema writes a key schema as "HASH ApplicationName (S), RANGE
// SecretName (S)".
func formatSchema(ks []keyAttr) string {
	if len(ks) == 0 {
		return "(none)"
	}
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s %s (%s)", k.keyType, k.name, k.typ)
	}
	return strings.Join(parts, ", ")
}
