package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newInitCommand(c *config) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Prepare the backend: local data directory, key pair and store file; or the DynamoDB table",
		Args:  argCount(0, 0),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer func() { err = c.timedOut(err, cmd) }()
			b, err := c.open(cmd.Context(), opening{firstUse: true, notices: cmd.OutOrStdout()})
			if err != nil {
				return err
			}
			defer b.Close()
			did, err := b.prepare(cmd.Context())
			if err != nil {
				return err
			}
			if did != "" {
				fmt.Fprintln(cmd.OutOrStdout(), did)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready:", b.about)
			return nil
		},
	}
}
