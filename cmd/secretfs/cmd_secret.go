package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// parseKey reads "APP/NAME", neither part empty. Its errors quote arg as
// ls would list it.
func parseKey(arg string) (store.Key, error) {
	app, name, ok := strings.Cut(arg, "/")
	if !ok || app == "" || name == "" {
		quoted := listedName(arg)
		if quoted == "" {
			quoted = "''"
		}
		return store.Key{}, fmt.Errorf("%s: want APPLICATION/SECRET", quoted)
	}
	k := store.Key{App: app, Name: name}
	return k, quoteNames(k.Validate(), arg, app, name)
}

// onSecret runs do with the secret named by arg ("APP/NAME") and the
// opened backend, which it closes afterwards. An error names the secret
// as ls would list it.
func (c *config) onSecret(cmd *cobra.Command, arg string, do func(*backend, store.Key) error) (err error) {
	k, err := parseKey(arg)
	if err != nil {
		return err
	}
	defer func() { err = c.timedOut(err, cmd, arg) }()
	b, err := c.open(cmd.Context(), opening{})
	if err != nil {
		return err
	}
	defer b.Close()
	return quoteNames(do(b, k), arg, k.App, k.Name)
}

func newPutCommand(c *config) *cobra.Command {
	return &cobra.Command{
		Use:   "put APP/NAME [FILE]",
		Short: "Store a secret, read from FILE or standard input, byte for byte",
		Long: `Store a secret: the bytes of FILE or, when FILE is - or not given, of
standard input, byte for byte (no newline is added or taken away). It
replaces the secret's value, on the condition that no one changed it
meanwhile: a concurrent change is reported, never lost. A file named -
is ./-.`,
		Args: argCount(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.onSecret(cmd, args[0], func(b *backend, k store.Key) error {
				return put(cmd, b, k, args[1:])
			})
		},
	}
}

// put stores the value read from the file named in args, or from stdin
// when args names none or "-".
// It overwrites what is there now, on the condition that it is still there
// when the write lands: a concurrent change is reported, never lost.
func put(cmd *cobra.Command, b *backend, k store.Key, args []string) error {
	in := cmd.InOrStdin()
	if len(args) == 1 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return quoteNames(err, args[0])
		}
		defer f.Close()
		in = f
	}
	value, err := readValue(in, b.MaxValueSize())
	if err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	defer value.Wipe()
	expected := store.NoItem
	meta, err := b.Stat(cmd.Context(), k)
	switch {
	case err == nil:
		expected = meta.Revision()
	case !fault.Is(fault.NotFound, err):
		return err
	}
	_, err = b.Put(cmd.Context(), k, value, expected)
	return err
}

// readValue reads all of r, up to limit bytes, into a buffer it wipes as it
// grows, so no stray copy of the value is left for the garbage collector.
func readValue(r io.Reader, limit int64) (crypto.Plaintext, error) {
	buf := make(crypto.Plaintext, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			grown := make(crypto.Plaintext, len(buf), 2*cap(buf))
			copy(grown, buf)
			buf.Wipe()
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			buf.Wipe()
			return nil, fault.E(fault.TooLarge, fmt.Sprintf("the value is over the limit of %d bytes", limit))
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			buf.Wipe()
			return nil, err
		}
	}
}

func newGetCommand(c *config) *cobra.Command {
	return &cobra.Command{
		Use:   "get APP/NAME",
		Short: "Print a secret's value to standard output, byte for byte",
		Args:  argCount(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.onSecret(cmd, args[0], func(b *backend, k store.Key) error {
				s, err := b.Get(cmd.Context(), k)
				if err != nil {
					return err
				}
				defer s.Value.Wipe()
				_, err = cmd.OutOrStdout().Write(s.Value)
				return err
			})
		},
	}
}

func newRmCommand(c *config) *cobra.Command {
	return &cobra.Command{
		Use:   "rm APP/NAME",
		Short: "Delete a secret",
		Args:  argCount(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.onSecret(cmd, args[0], func(b *backend, k store.Key) error {
				meta, err := b.Stat(cmd.Context(), k)
				if err != nil {
					return err
				}
				return b.Delete(cmd.Context(), k, meta.Revision())
			})
		},
	}
}

func newLsCommand(c *config) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:   "ls [APP]",
		Short: "List the applications, or the secrets of one application",
		Long: `List the applications, or the secrets of one application, one name a line.
An application exists only through its secrets: listing one that holds
none (or does not exist) is an error (exit status 1), as for env and exec.
A name holding a control character (a newline, a tab, an escape) or a
Unicode format character (a right-to-left override, a zero-width space) is
printed as one shell word, the way GNU ls quotes it: 'a'$'\n''b',
''$'\u202e''gpj.exe'. Other names print unchanged. A name that is not UTF-8
cannot be a secret's (put refuses it); one the store holds anyway is left
out, with a warning on standard error. Error messages, of ls as of get, put
and rm, quote the names they repeat the same way.

With -l, a secret's line has five columns:

  SIZE      the value's length in bytes
  MODIFIED  the time of its last write, in local time
  VERSION   a number each write raises by one: 1 for a secret written once
  FORMAT    how it is encrypted: v3, v2, v1, or v1-legacy for an item the
            original Secret Store wrote, which records no size, time or
            version (those columns show "-"); malformed for an item the
            store holds as no valid item can be, which reading refuses
  NAME

For example:

        53  2026-12-04 18:03:35      3  v3         db-credentials`,
		Args: argCount(0, 1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer func() { err = c.timedOut(err, cmd, args...) }()
			b, err := c.open(cmd.Context(), opening{})
			if err != nil {
				return err
			}
			defer b.Close()
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				apps, err := b.Apps(cmd.Context())
				for _, a := range apps {
					fmt.Fprintln(out, listedName(a))
				}
				return err
			}
			metas, err := b.ListAll(cmd.Context(), args[0])
			if err == nil && len(metas) == 0 {
				return errNoSecrets(args[0])
			}
			err = quoteNames(err, args[0])
			for _, m := range metas {
				if long {
					m = c.overTheLimit(m, b.MaxValueSize())
					fmt.Fprintln(out, longLine(m))
				} else {
					fmt.Fprintln(out, listedName(m.Name))
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show size, modification time, version and format")
	return cmd
}

// errNoSecrets is the answer about an application that lists no secret:
// an application exists only through its secrets, so one that holds none
// and one that was never made (a mistyped name) are the same to a verb.
func errNoSecrets(app string) error {
	return fmt.Errorf("%s: the application holds no secrets (or does not exist)", listedName(app))
}

// overTheLimit returns m marked malformed (store.Meta.Invalid) when the
// Size it records is over limit, the store's largest value, with a
// warning: no valid item records such a size, and the mount refuses it
// (EIO at its lookup), so ls -l shows nothing it claims.
func (c *config) overTheLimit(m store.Meta, limit int64) store.Meta {
	if m.Invalid != nil || m.Size <= limit {
		return m
	}
	m.Invalid = fmt.Errorf("the store says the value is %d bytes, over the store's limit of %d", m.Size, limit)
	c.log.WithFields(logrus.Fields{"application": m.App, "name": listedName(m.Name), "error": m.Invalid.Error()}).
		Warn("a secret in the store's listing has a malformed item: reading it fails")
	return m
}

// longLine is one line of `ls -l`: size, modification time, version (a
// number), format and name (quoted as listedName quotes it). A legacy item written by the original Secret Store
// records no size, time or version: those columns show "-".
//
// An entry of a malformed item (store.Meta.Invalid, logged on standard
// error) shows "malformed" as its format, and nothing it claims: reading
// it fails.
func longLine(m store.Meta) string {
	if m.Invalid != nil {
		return fmt.Sprintf("%8s  %-19s  %5s  %-9s  %s", "-", "-", "-", "malformed", listedName(m.Name))
	}
	size, modified, version, format := "-", "-", "-", m.Format
	if m.Size >= 0 {
		size = strconv.FormatInt(m.Size, 10)
	}
	if !m.Modified.IsZero() {
		modified = m.Modified.Local().Format("2006-01-02 15:04:05")
	}
	if m.Version != store.Unversioned {
		version = m.Version.String() // a plain number: "v1" would read as a format
	}
	if format == "" {
		format = "v1-legacy"
	}
	return fmt.Sprintf("%8s  %-19s  %5s  %-9s  %s", size, modified, version, format, listedName(m.Name))
}
