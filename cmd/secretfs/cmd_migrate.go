package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

func newMigrateCommand(c *config) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "migrate [APP...]",
		Short: "Rewrite v1 (legacy) secrets in the current format",
		Long: `Rewrite every v1 secret of the given applications (of every application
when none is given) in the format of new writes (--format, v3 by default).
v1 is the original Secret Store's format: readable, but not authenticated
(docs/SECURITY.md says what that exposes). Legacy items, which record no
format, are v1.

Each secret is read, decrypted and written back with one conditional write
that expects the revision read: a secret changed meanwhile is left alone and
reported, never overwritten. The value stays the same; its version goes up
by one. With --dry-run nothing is read or written: the v1 secrets are listed.
The exit status is 1 if any secret could not be migrated.`,
		Args: argCount(0, anyNumber),
		RunE: func(cmd *cobra.Command, apps []string) (err error) {
			defer func() { err = c.timedOut(err, cmd, apps...) }()
			for _, app := range apps {
				if err := store.ValidName(app); err != nil {
					return fmt.Errorf("%s: %w", listedName(app), err)
				}
			}
			to := c.writeFormat
			if to.Legacy() {
				return fmt.Errorf("--format %s: migrate rewrites v1 secrets in the format of new writes, and that is v1", to)
			}
			b, err := c.open(cmd.Context(), opening{})
			if err != nil {
				return err
			}
			defer b.Close()
			if !dryRun && (!b.canWrite || b.writeOnly) {
				return fmt.Errorf("migrate reads and writes every v1 secret: it needs a key that can do both (%s)", b.about)
			}
			return migrate(cmd.Context(), b, apps, migration{to: to, dryRun: dryRun}, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list the v1 secrets that would be rewritten, and change nothing")
	return cmd
}

// migrator is what migrate asks of a backend; *secrets.Keeper is one.
type migrator interface {
	Apps(ctx context.Context) ([]string, error)
	ListAll(ctx context.Context, app string) ([]store.Meta, error)
	Fetch(ctx context.Context, k store.Key) (*store.Item, error)
	Open(ctx context.Context, item *store.Item) (secrets.Secret, error)
	Write(ctx context.Context, k store.Key, value []byte, expected store.Revision) (*store.Item, error)
}

var _ migrator = (*secrets.Keeper)(nil)

// migration says what migrate does.
type migration struct {
	to     crypto.Format // the format of new writes
	dryRun bool
}

// migrate rewrites the v1 secrets of apps (every application if none) in
// m.to, one conditional write each, and says on out what it did to each:
// migrated, left alone (changed since listed or read), or failed. It
// fails if any failed, after trying every one.
func migrate(ctx context.Context, src migrator, apps []string, m migration, out io.Writer) error {
	listed, err := namedListings(ctx, src, apps)
	if err != nil {
		return err
	}
	if len(apps) == 0 {
		if apps, err = src.Apps(ctx); err != nil {
			return err
		}
	}
	var t migrationTally
	for _, app := range apps {
		metas, ok := listed[app]
		var err error
		if !ok {
			metas, err = src.ListAll(ctx, app)
		}
		if err != nil {
			fmt.Fprintf(out, "failed: %s\n", naming(err, app))
			t.failed++
			continue
		}
		for _, meta := range metas {
			t.migrateListed(ctx, src, meta, m, out)
		}
	}
	if m.dryRun {
		fmt.Fprintf(out, "%d v1 %s would be migrated to %s\n", t.found, plural(t.found, "secret"), m.to)
		return nil
	}
	fmt.Fprintf(out, "migrated %d of %d v1 %s to %s; %d changed meanwhile and %s left alone (run migrate again to check them); %d failed\n",
		t.migrated, t.found, plural(t.found, "secret"), m.to, t.changed, plural(t.changed, "was"), t.failed)
	if t.failed > 0 {
		return fmt.Errorf("%d %s could not be migrated: see above", t.failed, plural(t.failed, "secret"))
	}
	return nil
}

// namedListings lists each named application, and refuses one that holds
// no secret (a mistyped name) before anything is done, as ls, env and
// exec refuse it. The listings serve the migration; an application whose
// listing failed is listed again there, and fails there.
func namedListings(ctx context.Context, src migrator, apps []string) (map[string][]store.Meta, error) {
	listed := make(map[string][]store.Meta, len(apps))
	for _, app := range apps {
		if metas, err := src.ListAll(ctx, app); err == nil {
			if len(metas) == 0 {
				return nil, errNoSecrets(app)
			}
			listed[app] = metas
		}
	}
	return listed, nil
}

// migrationTally counts what migrate did.
type migrationTally struct{ found, migrated, changed, failed int }

// migrateListed migrates the listed item meta if it is a v1 item (with
// m.dryRun, says it would), and says on out what it did.
func (t *migrationTally) migrateListed(ctx context.Context, src migrator, meta store.Meta, m migration, out io.Writer) {
	if meta.Invalid != nil {
		// Whatever it is, it is no v1 item to authenticate.
		fmt.Fprintf(out, "left alone %s: %v\n", listedName(meta.Key.String()), meta.Invalid)
		return
	}
	from := crypto.Format(meta.Format)
	if !from.Legacy() {
		return
	}
	t.found++
	name := listedName(meta.Key.String())
	if m.dryRun {
		fmt.Fprintf(out, "would migrate %s (%s -> %s)\n", name, formatName(from), m.to)
		return
	}
	switch err := migrateOne(ctx, src, meta.Key); {
	case err == nil:
		t.migrated++
		fmt.Fprintf(out, "migrated %s (%s -> %s)\n", name, formatName(from), m.to)
	case isChanged(err):
		t.changed++
		fmt.Fprintf(out, "left alone %s: %v\n", name, err)
	default:
		t.failed++
		fmt.Fprintf(out, "failed: %s\n", naming(err, meta.Key.String()))
	}
}

// errChanged is migrateOne's error for a secret that is not the v1 item
// the listing showed any more, or changed between its read and its write.
type errChanged struct{ why string }

func (e errChanged) Error() string { return e.why }

func isChanged(err error) bool {
	_, ok := err.(errChanged)
	return ok
}

// migrateOne reads k, and if it is still v1 writes its value back in the
// format of new writes, on the condition that the stored item is still
// the revision read.
func migrateOne(ctx context.Context, src migrator, k store.Key) error {
	item, err := src.Fetch(ctx, k)
	switch {
	case fault.Is(fault.NotFound, err):
		return errChanged{"it was removed since it was listed"}
	case err != nil:
		return err
	case !crypto.Format(item.Format).Legacy():
		return errChanged{"it was rewritten in " + item.Format + " since it was listed"}
	}
	secret, err := src.Open(ctx, item)
	if err != nil {
		return err
	}
	defer secret.Value.Wipe()
	_, err = src.Write(ctx, k, secret.Value, item.Revision())
	if fault.ConditionFailed(err) {
		return errChanged{"it changed since it was read (at version " + item.Version.String() + ")"}
	}
	return err
}

// naming is err's message, starting with path unless it names path
// already: a message says a path once.
func naming(err error, path string) string {
	if msg := err.Error(); strings.Contains(msg, path) {
		return msg
	}
	return path + ": " + err.Error()
}

// formatName names a stored format: "legacy v1" for an item that
// records none.
func formatName(f crypto.Format) string {
	if f == "" {
		return "legacy v1"
	}
	return string(f)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	switch word {
	case "was":
		return "were"
	}
	return word + "s"
}
