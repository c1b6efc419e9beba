package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newInitCommand(c *config) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Prepare the backend: the local data directory, key pair and store file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := c.open(cmd.Context(), true, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintln(cmd.OutOrStdout(), "ready:", b.about)
			return nil
		},
	}
}
