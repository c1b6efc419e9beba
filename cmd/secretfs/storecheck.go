package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/store/sqlite"
)

// Start-up checks of the local backend. A service that starts on the
// wrong key or on an emptied store file does harm quietly: reads fail one
// by one, and writes succeed, so the store ends up under two keys or a
// new store grows over the old one. These checks refuse to start instead,
// and say what to do.

// checkStore makes the checks of the backend that need no store to
// answer, before anything is made: for the local backend, checkLocal.
func (c *config) checkStore(o opening) error {
	if c.backend != "local" {
		return nil
	}
	return c.checkLocal(o)
}

// checkLocal refuses, before anything is made, a local store that o may
// not open: a store file that is missing, unless o makes one (the first
// use of mount and init, not a --read-only mount); a store file missing
// beside its key pair, which a new, empty store would hide (every verb);
// one emptied beside its key pair (refuseTruncatedStore); and a store
// whose key is missing, unless --rsa-key names one.
func (c *config) checkLocal(o opening) error {
	dir := c.dataDir
	dbPath := filepath.Join(dir, storeFile)
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		if key := keyBeside(dir); key != "" {
			return fmt.Errorf("the store %s is missing but its key pair is beside it (%s): restore %s from a backup; or, to start a new store, remove the key pair first (a new, empty store here would hide the secrets of the lost one)", dbPath, key, storeFile)
		}
		if !o.makes() {
			var ro string
			switch {
			case o.readOnly:
				ro = "; a --read-only mount makes none"
			case o.replacing:
				ro = "; a --replace makes none: the secretfs it replaces serves a store that exists"
			}
			return fmt.Errorf("no secret store at %s: run `secretfs init` first (or point --data-dir at it)%s", dbPath, ro)
		}
		return nil
	}
	if err := refuseTruncatedStore(dir, dbPath); err != nil {
		return err
	}
	if c.rsaKey != "" {
		return nil
	}
	// The key was moved or lost, and a new one could read nothing stored.
	keyPath := filepath.Join(dir, privateKey)
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the store %s exists but its key %s is missing: restore the key, or pass --rsa-key; a new key pair could not read the secrets already stored", dbPath, keyPath)
	}
	return nil
}

// keyBeside returns the path of the first file of the key pair in dir,
// "" if there is none.
func keyBeside(dir string) string {
	for _, key := range []string{privateKey, publicKey} {
		if path := filepath.Join(dir, key); fileExists(path) {
			return path
		}
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// refuseTruncatedStore refuses a store file of 0 bytes beside a key pair.
// SQLite takes an empty file for a new database, so the mount would serve
// an empty tree and the next write would start a new store over the old
// one. A store that was ever opened holds at least its header page, so 0
// bytes beside the keys that were made with it means the file was cut
// short: a full disk, a copy or restore that stopped, a stray
// `> secrets.db`. A missing file is not this check's business.
func refuseTruncatedStore(dir, dbPath string) error {
	if fi, err := os.Stat(dbPath); err != nil || fi.Size() != 0 {
		return nil
	}
	if keyBeside(dir) == "" {
		return nil
	}
	return fmt.Errorf("the store %s is empty (0 bytes) but its key pair is beside it: the file was probably truncated (a full disk, an interrupted copy or restore); restore it from a backup, or, only if this data directory never held secrets, remove it and run `secretfs init`", dbPath)
}

// notSQLite returns err, an error of opening the store at dbPath, said as
// what it means when SQLite found no database in the file (SQLITE_NOTADB):
// the file is something else (a copy of another file, a restore gone
// wrong, a file encrypted or compressed whole), which only its owner can
// put right. The driver's words ("file is not a database (26)") say
// neither which file nor what to do. Any other error is returned as it is.
func notSQLite(err error, dbPath string) error {
	var e *msqlite.Error
	if !errors.As(err, &e) || e.Code()&0xff != sqlite3.SQLITE_NOTADB { // the primary result code
		return err
	}
	return &reworded{msg: fmt.Sprintf("%s is not a secretfs database (not SQLite): %s; restore it from a backup, or point --data-dir at the directory of the store", dbPath, e), err: err}
}

// refuseForeignKey refuses a key that wrapped none of the items of a
// store that holds some: it could read none of them, and what it wrote
// could not be read with the key of the rest. An empty store, or one with
// at least one item under this key, is fine; one whose items are under
// several keys is logged, since its other items read as EIO.
func refuseForeignKey(ctx context.Context, st *sqlite.Store, keyID, dbPath, keyPath string, log logrus.FieldLogger) error {
	ids, err := st.MasterKeyIDs(ctx)
	switch {
	case err != nil:
		return err
	case len(ids) == 0:
		return nil
	case slices.Contains(ids, keyID):
		if len(ids) > 1 {
			log.WithField("path", dbPath).Warnf("the store holds items wrapped under %d keys: %s; reading those not under %s fails with EIO", len(ids), quoteKeyIDs(ids), keyID)
		}
		return nil
	}
	return fmt.Errorf("the store %s holds secrets wrapped under %s and none under the key %s (%s), which could read none of them: restore the key the store was written with, or pass --rsa-key with it (a key file's fingerprint: openssl pkey -in FILE -pubout -outform DER | sha256sum)", dbPath, quoteKeyIDs(ids), keyPath, keyID)
}

// quoteKeyIDs names up to three stored key ids, quoted: they are data
// read from the store, not text to trust.
func quoteKeyIDs(ids []string) string {
	const most = 3
	quoted := make([]string, 0, most)
	for _, id := range ids[:min(len(ids), most)] {
		quoted = append(quoted, crypto.QuoteID(id))
	}
	s := strings.Join(quoted, ", ")
	if len(ids) > most {
		s += fmt.Sprintf(" and %d more", len(ids)-most)
	}
	return s
}
