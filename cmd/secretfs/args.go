package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Argument errors. cobra's own ("accepts 1 arg(s), received 0", "unknown
// flag: --tabel") name no verb, so a mistake in a script that runs several
// says nothing of which one. Every verb's positional arguments are counted
// by argCount, and every flag error goes through flagError: both name the
// verb. argCount repeats no argument, which may be a secret's value put
// on the command line by mistake. flagError keeps pflag's message, which
// quotes a flag's value that does not parse (`invalid argument "x" for
// "--timeout" flag`): no flag takes a secret's value.

// anyNumber is argCount's most for a verb that takes any number of
// arguments.
const anyNumber = -1

// argCount is a verb's Args: between least and most positional arguments
// (most anyNumber: no limit). Its error names the verb and its arguments as
// the usage line gives them: "get: expects 1 argument (APP/NAME), got 0".
func argCount(least, most int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		n := len(args)
		if n >= least && (most == anyNumber || n <= most) {
			return nil
		}
		want := expected(least, most)
		if usage := usageArgs(cmd); usage != "" {
			want += " (" + usage + ")"
		}
		return fmt.Errorf("%s: expects %s, got %d", verbName(cmd), want, n)
	}
}

// expected says how many arguments argCount(least, most) accepts.
func expected(least, most int) string {
	switch {
	case most == anyNumber:
		return "at least " + arguments(least)
	case least == most && least == 0:
		return "no arguments"
	case least == most:
		return arguments(least)
	case least == 0:
		return "at most " + arguments(most)
	case most == least+1:
		return fmt.Sprintf("%d or %s", least, arguments(most))
	}
	return fmt.Sprintf("%d to %s", least, arguments(most))
}

// arguments is "1 argument", "2 arguments".
func arguments(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}

// usageArgs is what cmd's usage line says its arguments are: the line
// after the verb's name ("APP/NAME [FILE]" of put).
func usageArgs(cmd *cobra.Command) string {
	return strings.TrimSpace(strings.TrimPrefix(cmd.Use, cmd.Name()))
}

// verbName is cmd's path below the root ("get", "completion bash"), which
// main's "secretfs: " prefix completes.
func verbName(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return cmd.Name()
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// flagError is the root's FlagErrorFunc, which every verb inherits: the
// error of a flag that does not parse, named by the verb it was given to.
func flagError(cmd *cobra.Command, err error) error {
	if !cmd.HasParent() {
		return err // main's prefix names it
	}
	return fmt.Errorf("%s: %w", verbName(cmd), err)
}
