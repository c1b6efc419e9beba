package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/rsakey"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/sqlite"
)

// Files of the local backend, inside --data-dir.
const (
	storeFile  = "secrets.db"
	privateKey = "key.pem"
	publicKey  = "key.pub.pem"
)

// backend is an opened store with its keys: what every verb works on.
type backend struct {
	*secrets.Keeper
	store     store.Store
	about     string // where the secrets are, for humans
	writeOnly bool   // the key can wrap but not unwrap
}

func (b *backend) Close() error { return b.store.Close() }

// open opens the configured backend. With create, a missing local data dir
// and key pair are made (mount and init); otherwise they must exist.
// Notices about what was created go to say.
func (c *config) open(ctx context.Context, create bool, say io.Writer) (*backend, error) {
	format, err := crypto.ParseFormat(c.format)
	if err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	switch c.backend {
	case "local":
		return c.openLocal(ctx, create, format, say)
	default:
		return nil, fmt.Errorf("--backend %q: want local", c.backend)
	}
}

func (c *config) openLocal(ctx context.Context, create bool, format crypto.Format, say io.Writer) (*backend, error) {
	dir := c.dataDir
	dbPath := filepath.Join(dir, storeFile)
	if create {
		if err := ensurePrivateDir(dir, say); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no secret store at %s: run `secretfs init` first (or point --data-dir at it)", dbPath)
	}
	keyPath := c.rsaKey
	if keyPath == "" {
		keyPath = filepath.Join(dir, privateKey)
		if _, err := os.Stat(keyPath); create && errors.Is(err, fs.ErrNotExist) {
			pub := filepath.Join(dir, publicKey)
			if err := rsakey.Generate(keyPath, pub); err != nil {
				return nil, err
			}
			fmt.Fprintf(say, "generated an RSA key pair:\n  %s  private: reads and writes; keep it safe, back it up\n  %s  public: give it to hosts that may only write\n", keyPath, pub)
		}
	}
	wrapper, err := rsakey.Load(keyPath)
	if err != nil {
		return nil, err
	}
	envelope, err := crypto.NewEnvelope(wrapper, format)
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return nil, err
	}
	about := fmt.Sprintf("local store %s, key %s", dbPath, wrapper.MasterKeyID())
	if !wrapper.CanUnwrap() {
		about += " (public key only: write-only)"
	}
	return &backend{
		Keeper:    secrets.NewKeeper(st, envelope, secrets.Options{Timeout: c.timeout}),
		store:     st,
		about:     about,
		writeOnly: !wrapper.CanUnwrap(),
	}, nil
}

// ensurePrivateDir makes dir with mode 0700 if it is missing, and warns if
// an existing one can be read by others.
func ensurePrivateDir(dir string, say io.Writer) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		// MkdirAll honours the umask; the data dir must be 0700 whatever it is.
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
		fmt.Fprintf(say, "created the data directory %s (mode 0700)\n", dir)
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("--data-dir %s is not a directory", dir)
	case fi.Mode().Perm()&0o077 != 0:
		fmt.Fprintf(say, "warning: the data directory %s has mode %#o; 0700 is safer\n", dir, fi.Mode().Perm())
	}
	return nil
}
