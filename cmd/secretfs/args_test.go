package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every verb counts its arguments with argCount, so that each refusal names
// the verb and its usage, and none repeats what was typed. Walking the
// whole tree catches a verb added later with cobra's counters (or none:
// cobra then takes any arguments).
func TestEveryVerbsArgumentErrorNamesTheVerbAndItsUsage(t *testing.T) {
	const typed = "s3cr3t-value"
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, sub := range cmd.Commands() {
			walk(sub)
			if sub.Args == nil {
				t.Errorf("%s has no Args: cobra would take any arguments, and its errors name no verb", sub.CommandPath())
				continue
			}
			prefix := verbName(sub) + ": expects "
			for n := range 5 {
				args := make([]string, n)
				for i := range args {
					args[i] = typed
				}
				err := sub.Args(sub, args)
				if err == nil {
					continue
				}
				msg := err.Error()
				usage := usageArgs(sub)
				if !strings.HasPrefix(msg, prefix) || usage != "" && !strings.Contains(msg, "("+usage+")") {
					t.Errorf("%s with %d arguments: %q, want it to start %q and give the usage %q", sub.CommandPath(), n, msg, prefix, usage)
				}
				if strings.Contains(msg, typed) {
					t.Errorf("%s with %d arguments: %q repeats an argument", sub.CommandPath(), n, msg)
				}
			}
		}
	}
	walk(newRootCommand())
}

func TestArgumentAndFlagErrorsAsPrinted(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get"}, "get: expects 1 argument (APP/NAME), got 0"},
		{[]string{"put"}, "put: expects 1 or 2 arguments (APP/NAME [FILE]), got 0"},
		{[]string{"rm", "a/b", "c/d"}, "rm: expects 1 argument (APP/NAME), got 2"},
		{[]string{"ls", "a", "b"}, "ls: expects at most 1 argument ([APP]), got 2"},
		{[]string{"init", "extra"}, "init: expects no arguments, got 1"},
		{[]string{"env"}, "env: expects at least 1 argument ([--docker] APP...), got 0"},
		{[]string{"mount"}, "mount: expects 1 argument (MOUNTPOINT), got 0"},
		{[]string{"get", "--bogus", "a/b"}, "get: unknown flag: --bogus"},
		{[]string{"--bogus"}, "unknown flag: --bogus"}, // main's prefix names secretfs
	} {
		_, _, err := run(t, nil, tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("secretfs %s: error %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestExpectedCounts(t *testing.T) {
	for _, tc := range []struct {
		least, most int
		want        string
	}{
		{0, 0, "no arguments"},
		{1, 1, "1 argument"},
		{2, 2, "2 arguments"},
		{0, 1, "at most 1 argument"},
		{1, 2, "1 or 2 arguments"},
		{1, 3, "1 to 3 arguments"},
		{1, anyNumber, "at least 1 argument"},
		{2, anyNumber, "at least 2 arguments"},
	} {
		if got := expected(tc.least, tc.most); got != tc.want {
			t.Errorf("expected(%d, %d) = %q, want %q", tc.least, tc.most, got, tc.want)
		}
	}
}
