// Command secretfs mounts a table of encrypted secrets as files
// (/<application>/<secret>) and administers it from the shell.
// See README.md for the verbs and flags.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "secretfs:", err)
		os.Exit(1)
	}
}
