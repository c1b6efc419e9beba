package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store"
)

func newExecCommand(c *config) *cobra.Command {
	var apps, views []string
	var configFile string
	cmd := &cobra.Command{
		Use:   "exec [--app APP]... [--view PATH --config FILE]... [--] COMMAND [ARGS]...",
		Short: "Run a command with secrets as environment variables",
		Long: `Run COMMAND with every secret of each --app as an environment variable,
on top of secretfs's own environment. secretfs becomes COMMAND (execve):
its process id, its signals and its exit status are COMMAND's, and nothing
of secretfs stays running. It reads the secrets from the backend, as get
does: a mount need not be running.

Each --view is a view of the mount's configuration file (--config, or
SECRETFS_CONFIG), rendered from the secrets it reads as the mount renders
it, and set as one variable named after the view's name by the same rule
(app.env is APP_ENV).

A secret's name becomes the variable's name by the rule of secretfs env
(db-password is DB_PASSWORD). Secrets that become the same name are an
error naming every one of them, and nothing is run. A secret that sets a
variable the environment already has replaces it, with a warning. COMMAND
is looked up in secretfs's PATH before any secret is read. A COMMAND that
is not found ends secretfs with status 127, one that cannot be executed
with 126, as the shell and env(1) do; secretfs's own errors are status 1.

Flags end at the first argument that is not one: secretfs exec --app
billing env -0 runs env -0.`,
		Args: argCount(1, anyNumber),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer func() { err = c.timedOut(err, cmd, slices.Concat(apps, views)...) }()
			if len(apps) == 0 && len(views) == 0 {
				return errors.New("name the secrets to run COMMAND with: --app APP or --view PATH")
			}
			chosen, cfg, err := viewsNamed(configFile, views)
			if err != nil {
				return err
			}
			// Look COMMAND up first: a typo costs no decryption.
			path, err := exec.LookPath(args[0])
			if err != nil {
				return notRun(err)
			}
			b, err := c.open(cmd.Context(), opening{})
			if err != nil {
				return err
			}
			values, err := appValues(cmd.Context(), b, apps)
			if err == nil {
				err = addViewValues(cmd.Context(), b, cfg, chosen, values)
			}
			b.Close() // COMMAND inherits no descriptor of secretfs's
			defer wipeValues(values)
			if err != nil {
				return err
			}
			env, err := c.environment(values)
			if err != nil {
				return err
			}
			// On success this never returns: the process is COMMAND's,
			// and the memory that held the values is gone with ours.
			err = unix.Exec(path, args, env)
			return notRun(fmt.Errorf("exec %s: %w", path, err))
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.StringSliceVar(&apps, "app", nil, "applications whose every secret becomes a variable (app1,app2, or repeat the flag)")
	f.StringSliceVar(&views, "view", nil, "a view of the mount's config file (APP/NAME) whose rendering becomes a variable (repeat for more)")
	f.StringVar(&configFile, "config", "", "the mount's configuration file, whose views --view names")
	return cmd
}

// maxEnvString is the longest NAME=value string (with its terminating
// NUL) that Linux's execve takes: MAX_ARG_STRLEN, 32 pages. A longer one
// fails the whole exec with E2BIG.
func maxEnvString() int { return 32 * unix.Getpagesize() }

// environment is secretfs's environment with values added as variables
// named by render.EnvName; a value replaces an inherited variable of the
// same name, with a warning.
func (c *config) environment(values map[store.Key]crypto.Plaintext) ([]string, error) {
	vars, err := envVariables(values)
	if err != nil {
		return nil, err
	}
	set := make(map[string]store.Key, len(vars))
	for _, v := range vars {
		if bytes.IndexByte(v.Value, 0) >= 0 {
			return nil, fmt.Errorf("%s: the value holds a NUL byte, which no environment variable can hold", v.From)
		}
		if n := len(v.Name) + 1 + len(v.Value) + 1; n > maxEnvString() {
			return nil, fmt.Errorf("%s: the variable %s would be %d bytes; Linux passes at most %d in one environment variable", v.From, v.Name, n, maxEnvString())
		}
		set[v.Name] = v.From
	}
	env := make([]string, 0, len(os.Environ())+len(vars))
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if from, ok := set[name]; ok {
			c.log.WithFields(logrus.Fields{"variable": name, "secret": from.String()}).
				Warn("a secret replaces a variable of the environment")
			continue
		}
		env = append(env, kv)
	}
	for _, v := range vars {
		// A string is a copy that cannot be wiped; execve ends this
		// process's memory, or, if it fails, the process exits.
		env = append(env, v.Name+"="+string(v.Value))
	}
	return env, nil
}

// Exit statuses of a COMMAND that could not be run, as env(1), nohup(1)
// and the shell give them, so that a caller can tell them from COMMAND's
// own failure (secretfs's other errors are 1).
const (
	exitCannotRun = 126 // found, but not executable
	exitNotFound  = 127 // not found
)

// notRun is err, the failure to find or execute COMMAND, with the exit
// status that says which.
func notRun(err error) error {
	status := exitCannotRun
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, unix.ENOENT) {
		status = exitNotFound
	}
	return &exitStatus{status: status, err: err}
}
