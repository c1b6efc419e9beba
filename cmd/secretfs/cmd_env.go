package main

import (
	"context"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/store"
)

func newEnvCommand(c *config) *cobra.Command {
	var docker bool
	cmd := &cobra.Command{
		Use:   "env [--docker] APP...",
		Short: "Print the secrets of applications as a dotenv file, for EnvironmentFile= or docker",
		Long: `Print every secret of the applications as an environment file, one
NAME="value" line each, in the order of the names.

A secret's name becomes the variable's name by one rule (the same as
secretfs exec and format: dotenv views): ASCII letters upper case, every
other byte that is not a digit or '_' becomes '_', and a leading digit gets
a '_' before it: db-password is DB_PASSWORD. Secrets that become the
same name are an error naming every one of them, and nothing is printed.

Values are double-quoted, with a backslash before \ " $ and the
backquote only; newlines are kept. A POSIX shell (set -a; . FILE) and
systemd's EnvironmentFile= read that back byte for byte. So does docker
compose's env_file:, except that it keeps the backslash before a
backquote, which a shell needs there: no quoting serves both. A value
holding a NUL byte, or bytes that are not UTF-8, is an error.

docker run --env-file reads values literally, quotes included: give it
--docker, which prints NAME=value lines and refuses, naming the secret, a
value such a line cannot carry (a newline, a carriage return at its end,
bytes that are not UTF-8, a line over 64 KiB, or quotes around the whole
value, which docker releases read differently).`,
		Args: argCount(1, anyNumber),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer func() { err = c.timedOut(err, cmd, args...) }()
			b, err := c.open(cmd.Context(), opening{})
			if err != nil {
				return err
			}
			defer b.Close()
			values, err := appValues(cmd.Context(), b, args)
			defer wipeValues(values)
			if err != nil {
				return err
			}
			vars, err := envVariables(values)
			if err != nil {
				return err
			}
			format := render.Dotenv
			if docker {
				format = render.DockerEnvFile
			}
			file, err := format(vars)
			if err != nil {
				return err
			}
			defer file.Wipe()
			_, err = cmd.OutOrStdout().Write(file)
			return err
		},
	}
	cmd.Flags().BoolVar(&docker, "docker", false, "print NAME=value lines for docker run --env-file, which reads values literally")
	return cmd
}

// maxConcurrentGets bounds the secrets read at once: an application's
// secrets are read in parallel so that a large one does not take N round
// trips in a row, without a burst that a store would throttle.
const maxConcurrentGets = 8

// appValues reads every secret of apps: a listing of each, then each
// secret, decrypted. An application that holds no secret is an error (a
// mistyped name would otherwise run a program without its secrets). A
// secret removed between the listing and its read is left out, as a
// listing made a moment later would. The caller wipes the values, also
// when there is an error.
func appValues(ctx context.Context, b *backend, apps []string) (map[store.Key]crypto.Plaintext, error) {
	values := map[store.Key]crypto.Plaintext{}
	var mu sync.Mutex
	seen := map[string]bool{}
	for _, app := range apps {
		if seen[app] {
			continue
		}
		seen[app] = true
		metas, err := b.ListAll(ctx, app)
		if err != nil {
			return values, err
		}
		if len(metas) == 0 {
			return values, errNoSecrets(app)
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(maxConcurrentGets)
		for _, m := range metas {
			g.Go(func() error {
				s, err := b.Get(gctx, m.Key)
				switch {
				case fault.Is(fault.NotFound, err):
					return nil
				case err != nil:
					return err
				}
				mu.Lock()
				values[m.Key] = s.Value
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return values, err
		}
	}
	return values, nil
}

func wipeValues(values map[store.Key]crypto.Plaintext) {
	for _, v := range values {
		v.Wipe()
	}
}

// envVariables is render.Variables, with the names its error repeats (two
// secrets that become one variable) quoted as ls quotes them: a name may
// hold a control character, which must not reach the terminal.
func envVariables(values map[store.Key]crypto.Plaintext) ([]render.Variable, error) {
	vars, err := render.Variables(values)
	if err != nil {
		names := make([]string, 0, len(values))
		for k := range values {
			names = append(names, k.String())
		}
		return nil, quoteNames(err, names...)
	}
	return vars, nil
}
