package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/secretfs/secretfs/secrets"
)

// timedOut returns err, if it is the deadline of --timeout expiring, said
// as what the verb was about, the flag that sets how long it waits, and
// which backend was silent where that is known (secrets.NoAnswer): "get
// billing/db: no answer within --timeout 1ns from DynamoDB". The words of
// the layer that gave up ("gave up waiting for the database: context
// deadline exceeded") name none of them. about are the applications or secrets the verb
// was asked about (none: the verb alone), quoted as ls quotes names. Any
// other error is returned as it is.
//
// Every deadline the verbs set on the backend is --timeout's; one that is
// not (the EC2 metadata's, asked for the region) is not wrapped with %w,
// so that it is not taken for it.
func (c *config) timedOut(err error, cmd *cobra.Command, about ...string) error {
	return c.timedOutIn(verbName(cmd), err, about...)
}

// timedOutIn is timedOut for the verb named verb.
func (c *config) timedOutIn(verb string, err error, about ...string) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	what := verb
	for _, a := range about {
		what += " " + listedName(a)
	}
	msg := fmt.Sprintf("%s: no answer within --timeout %s", what, c.timeout)
	if silent := (*secrets.NoAnswer)(nil); errors.As(err, &silent) {
		msg += " from " + silent.From
	}
	return &reworded{msg: msg, err: err}
}
