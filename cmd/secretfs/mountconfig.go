package main

import (
	"context"

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

// withMountConfig adds what cfg says to the file system's options: the
// owner rules, the views, the watched applications.
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
	if len(cfg.Watch) > 0 {
		o.Watched = cfg.Watched
	}
	return o
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
