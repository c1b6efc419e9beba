// Command secretfs mounts a table of encrypted secrets as files
// (/<application>/<secret>) and administers it from the shell.
// See README.md for the verbs and flags.
package main

import (
	"fmt"
	"os"
)

func main() {
	invocation = os.Args[1:]
	if args, ok, err := mountHelperArgs(invocation); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "secretfs:", err)
			os.Exit(1)
		}
		invocation = args
	}
	root := newRootCommand()
	root.SetArgs(invocation)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "secretfs:", err)
		os.Exit(1)
	}
}
