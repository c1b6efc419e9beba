package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/mountconfig"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// The mount's configuration file (--config FILE, SECRETFS_CONFIG, fstab's
// config=): owners and modes per path, views and watched applications,
// read and checked by package mountconfig. Flags keep working alone: with
// no file, there is nothing of it.

// loadMountConfig reads the configuration file, if one is given: nil for
// none. What is wrong with it is an error naming the file and the line.
func loadMountConfig(file string) (*mountconfig.Config, error) {
	if file == "" {
		return nil, nil
	}
	return mountconfig.Load(file)
}

// checkViewsAgainstStore refuses a view whose path names a secret k
// holds: reading the path would give the view, never the secret.
func checkViewsAgainstStore(ctx context.Context, cfg *mountconfig.Config, k *secrets.Keeper) error {
	if cfg == nil {
		return nil
	}
	return cfg.CheckStore(ctx, func(ctx context.Context, key store.Key) (bool, error) {
		_, err := k.Stat(ctx, key)
		switch {
		case err == nil:
			return true, nil
		case fault.Is(fault.NotFound, err):
			return false, nil
		}
		return false, err
	})
}

// warnOfEmptyAppViews logs, at warn level, each application view whose
// application holds no secret as the mount starts (as holds says): it
// renders as an empty document ("{}" in JSON), which is also what a
// mistyped app: gives. A listing that fails is not this check's
// business: the view reads as EIO then, with its own log line.
func warnOfEmptyAppViews(ctx context.Context, cfg *mountconfig.Config, holds func(ctx context.Context, app string) (bool, error), log logrus.FieldLogger) {
	if cfg == nil {
		return
	}
	for _, v := range cfg.Views {
		app := v.View.Inputs().App
		if app == "" {
			continue
		}
		if some, err := holds(ctx, app); err == nil && !some {
			log.Warnf("%s:%d: the view %s renders every secret of the application %s, which holds none: it reads as an empty document until one is stored (is the name right?)",
				cfg.File, v.Line, v.View.Path(), app)
		}
	}
}

// appHoldsSecrets says whether the store holds a secret of app, from
// one listing of one entry.
func appHoldsSecrets(k *secrets.Keeper) func(ctx context.Context, app string) (bool, error) {
	return func(ctx context.Context, app string) (bool, error) {
		page, _, err := k.List(ctx, app, "", 1)
		return len(page) > 0, err
	}
}

// withMountConfig adds what cfg says to the file system's options: the
// owner rules, the views, the watched applications (to those of --watch).
func withMountConfig(o fs.Options, cfg *mountconfig.Config) fs.Options {
	if cfg == nil {
		return o
	}
	o.OwnerOf = func(p string) vfs.Owner {
		rule, ok := cfg.OwnerOf(p)
		if !ok {
			return vfs.Owner{}
		}
		return vfs.Owner{UID: rule.UID, GID: rule.GID, Mode: rule.Mode}
	}
	for _, v := range cfg.Views {
		o.Views = append(o.Views, v.View)
	}
	warnOfLikelyMistakes(o.Log, cfg)
	warnOfReaders(o, cfg)
	if flags := o.Watched; len(cfg.Watch) > 0 {
		o.Watched = func(app string) bool { return cfg.Watched(app) || flags != nil && flags(app) }
	}
	return o
}

// warnOfLikelyMistakes logs, at warn level, what the file says that its
// writer likely did not mean, whoever may enter the mount: an owner rule
// that an earlier pattern takes paths from (mountconfig.ShadowedOwners),
// so that what it was written for may not get its owner and mode; a view
// path written as a pattern (mountconfig.ViewPathsLikePatterns), which
// makes one file of that very name.
func warnOfLikelyMistakes(log logrus.FieldLogger, cfg *mountconfig.Config) {
	if log == nil {
		return
	}
	for _, w := range slices.Concat(cfg.ShadowedOwners(), cfg.ViewPathsLikePatterns()) {
		log.Warn(w)
	}
}

// warnOfReaders logs, at warn level, each user or group an owner rule
// names who cannot enter the mount (mountconfig.UnreachableOwners), and
// each view that a user may read while it may not read one of its inputs
// (mountconfig.WiderViews). Only a mount with --allow-other lets other
// users in: without it, the user who mounts is the only one the owner
// rules can apply to, and no view is read by anyone else.
func warnOfReaders(o fs.Options, cfg *mountconfig.Config) {
	if o.Log == nil {
		return
	}
	d := mountconfig.Defaults{UID: o.UID, GID: o.GID, FileMode: o.FileMode, DirMode: o.DirMode}
	warnings := cfg.UnreachableOwners(d, o.AllowOther, uint32(os.Geteuid()), groupsOf)
	if o.AllowOther {
		warnings = append(warnings, cfg.WiderViews(d, groupsOf)...)
	}
	for _, w := range warnings {
		o.Log.Warn(w)
	}
}

// groupsOf returns the groups of the user uid, as the host's user
// database has them; none when it does not know the user.
func groupsOf(uid uint32) []uint32 {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil
	}
	var out []uint32
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			out = append(out, uint32(g))
		}
	}
	return out
}

// viewOf returns the compiled view at path ("application/name") in cfg,
// for secretfs exec --view.
func viewOf(cfg *mountconfig.Config, path string) (*render.View, bool) {
	for _, v := range cfg.Views {
		if v.View.Path().String() == path {
			return v.View, true
		}
	}
	return nil, false
}

// viewsNamed returns the views of the configuration file that paths
// name, for secretfs exec --view, and the file (nil if paths is empty).
func viewsNamed(file string, paths []string) ([]*render.View, *mountconfig.Config, error) {
	if len(paths) == 0 {
		return nil, nil, nil
	}
	if file == "" {
		return nil, nil, errors.New("--view names a view of the mount's configuration file: give it with --config FILE")
	}
	cfg, err := mountconfig.Load(file)
	if err != nil {
		return nil, nil, err
	}
	var out []*render.View
	for _, p := range paths {
		v, ok := viewOf(cfg, p)
		if !ok {
			return nil, nil, fmt.Errorf("--view %s: %s has no view at that path", p, file)
		}
		out = append(out, v)
	}
	return out, cfg, nil
}

// addViewValues renders each view from its inputs, read through b as
// `secretfs get` reads (one revision of each), and adds the rendering to
// values under the view's path: its variable is named after the view's
// name, as a secret's is. cfg is the file the views are of: a secret
// stored at the path of one of its views is hidden by it, as on a mount.
func addViewValues(ctx context.Context, b *backend, cfg *mountconfig.Config, views []*render.View, values map[store.Key]crypto.Plaintext) error {
	for _, v := range views {
		in, err := viewInputs(ctx, b, cfg, v)
		if err == nil {
			var out crypto.Plaintext
			out, err = v.Render(in)
			if err == nil {
				values[v.Path()] = out
			}
		}
		wipeValues(in)
		if err != nil {
			return err
		}
	}
	return nil
}

// viewInputs reads what v renders from: the secrets it names, and every
// secret of the application it renders whole but those a view of cfg
// hides (as the mount's listing shows the application).
func viewInputs(ctx context.Context, b *backend, cfg *mountconfig.Config, v *render.View) (map[store.Key]crypto.Plaintext, error) {
	in := map[store.Key]crypto.Plaintext{}
	keys := v.Inputs().Secrets
	if app := v.Inputs().App; app != "" {
		metas, err := b.ListAll(ctx, app)
		if err != nil {
			return in, err
		}
		for _, m := range metas {
			if _, hidden := cfg.ViewAt(m.Key); !hidden {
				keys = append(keys, m.Key)
			}
		}
	}
	for _, k := range keys {
		if _, done := in[k]; done {
			continue
		}
		s, err := b.Get(ctx, k)
		switch {
		case fault.Is(fault.NotFound, err) && v.Inputs().App == k.App:
			continue // removed since it was listed
		case err != nil:
			return in, fmt.Errorf("--view %s: %w", v.Path(), err)
		}
		in[k] = s.Value
	}
	return in, nil
}
