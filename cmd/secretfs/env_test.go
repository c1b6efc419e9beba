package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envValue is a valid value for flag f that differs from its default.
// PersistentPreRunE checks some flags' values, so those get real ones.
func envValue(t *testing.T, f *pflag.Flag) string {
	t.Helper()
	switch f.Name {
	case "backend":
		return "dynamodb"
	case "format":
		return "v1"
	case "log-level":
		return "debug"
	case "log-format":
		return "json"
	case "replace":
		return "gap"
	}
	switch f.Value.Type() {
	case "string":
		return "from-env"
	case "bool":
		if f.DefValue == "true" {
			return "false"
		}
		return "true"
	case "duration":
		return "7m"
	case "int", "uint32":
		return "4242"
	case "mode":
		return "0640"
	case "stringSlice":
		return "a,b"
	}
	t.Fatalf("--%s: no test value for flags of type %s", f.Name, f.Value.Type())
	return ""
}

// envName is the variable that sets flag name.
func envName(name string) string {
	return "SECRETFS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// commandFlags calls visit with every verb of root and each flag it takes,
// its own and those it inherits (root itself runs nothing but help). help
// is cobra's and acted on before any hook runs, so no variable could set
// it.
func commandFlags(root *cobra.Command, visit func(cmd *cobra.Command, f *pflag.Flag)) {
	for _, cmd := range root.Commands() {
		cmd.InitDefaultHelpFlag()
		cmd.Flags().AddFlagSet(cmd.InheritedFlags())
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" {
				visit(cmd, f)
			}
		})
	}
}

// preRun parses args for the command at path (e.g. "mount") and runs the
// root's PersistentPreRunE on it, as Execute does before the verb.
func preRun(t *testing.T, path string, args ...string) (*cobra.Command, error) {
	t.Helper()
	root := newRootCommand()
	root.SetErr(&bytes.Buffer{})
	cmd, _, err := root.Find(strings.Fields(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return cmd, root.PersistentPreRunE(cmd, nil)
}

func TestEveryFlagOfEveryCommandIsSetFromItsEnvironmentVariable(t *testing.T) {
	var seen int
	commandFlags(newRootCommand(), func(cmd *cobra.Command, f *pflag.Flag) {
		seen++
		t.Run(cmd.Name()+"/"+f.Name, func(t *testing.T) {
			v := envValue(t, f)
			t.Setenv(envName(f.Name), v)
			// What the flag holds once given v on the command line.
			cli, err := preRun(t, cmd.Name(), "--"+f.Name+"="+v)
			if err != nil {
				t.Fatal(err)
			}
			want := cli.Flags().Lookup(f.Name).Value.String()
			if want == f.DefValue {
				t.Fatalf("test value %q for --%s is its default", v, f.Name)
			}
			fromEnv, err := preRun(t, cmd.Name())
			if err != nil {
				t.Fatal(err)
			}
			if got := fromEnv.Flags().Lookup(f.Name).Value.String(); got != want {
				t.Errorf("%s=%s: --%s is %q, want %q", envName(f.Name), v, f.Name, got, want)
			}
		})
	})
	// Guard against a walk that finds nothing: the shared flags, mount's
	// and ls's own.
	if seen < 10+9+1 {
		t.Errorf("walked only %d command flags", seen)
	}
}

func TestFlagOnTheCommandLineWinsOverTheEnvironment(t *testing.T) {
	t.Setenv("SECRETFS_TABLE", "from-env")
	t.Setenv("SECRETFS_TTL", "1m")
	cmd, err := preRun(t, "mount", "--table", "from-flag", "--ttl", "2m")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"table": "from-flag", "ttl": "2m0s"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s is %q, want the command line's %q", name, got, want)
		}
	}
}

func TestEnvironmentVariableWithABadValueIsRefusedNamingIt(t *testing.T) {
	t.Setenv("SECRETFS_READ_ONLY", "maybe")
	_, err := preRun(t, "mount")
	if err == nil || !strings.HasPrefix(err.Error(), "SECRETFS_READ_ONLY: ") {
		t.Errorf("SECRETFS_READ_ONLY=maybe: error %v, want one naming the variable", err)
	}
}

// The variables reach the verb itself, not just the flag values.
func TestVerbsUseTheStoreNamedBySECRETFS_DATA_DIR(t *testing.T) {
	dataDir := newStore(t)
	t.Setenv("SECRETFS_DATA_DIR", dataDir[1])
	if _, _, err := run(t, strings.NewReader("v"), "put", "app/s"); err != nil {
		t.Fatal(err)
	}
	got, _, err := run(t, nil, "get", "app/s", "--data-dir", dataDir[1])
	if err != nil || got != "v" {
		t.Errorf("get from --data-dir after put with SECRETFS_DATA_DIR: %q, %v", got, err)
	}
}
