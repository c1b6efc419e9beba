package fs_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fs"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
	"github.com/secretfs/secretfs/vfs"
)

// listedSecrets is how many secrets the application of BenchmarkLsL
// holds: as many as scripts/bench lists.
const listedSecrets = 2500

// BenchmarkLsL is `ls -l` of an application of 2,500 secrets, warm: the
// catalog holds the listing (within the TTL) and the kernel the inodes.
// One op reads the directory (READDIRPLUS, answered from the listing)
// and stats every name, as ls -l does, through a mount in this process
// over an in-memory store, so that -cpuprofile shows the file system's
// share beside the kernel's. It needs /dev/fuse, as the tests here do.
func BenchmarkLsL(b *testing.B) {
	envelope, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
	if err != nil {
		b.Fatal(err)
	}
	keeper := secrets.NewKeeper(memory.New(), envelope, secrets.Options{})
	for i := range listedSecrets {
		k := store.Key{App: "many", Name: fmt.Sprintf("s-%04d", i)}
		if _, err := keeper.Put(context.Background(), k, []byte("value"), store.NoItem); err != nil {
			b.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	dir := b.TempDir()
	server, err := fs.Mount(dir, cache.New(keeper, cache.Options{TTL: time.Hour}), fs.Options{Options: vfs.Options{
		Log: log, FileMode: 0o600, DirMode: 0o700, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), TTL: time.Hour}})
	if err != nil {
		b.Fatalf("mount (run as root with /dev/fuse and fuse3): %v", err)
	}
	b.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			b.Errorf("unmount: %v", err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	app := filepath.Join(dir, "many")
	ls := func() {
		d, err := os.Open(app)
		if err != nil {
			b.Fatal(err)
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil || len(names) != listedSecrets {
			b.Fatalf("listed %d names, %v; want %d", len(names), err, listedSecrets)
		}
		var st syscall.Stat_t
		for _, name := range names {
			if err := syscall.Lstat(filepath.Join(app, name), &st); err != nil {
				b.Fatal(err)
			}
		}
	}
	ls() // the catalog's listing, the kernel's inodes
	for b.Loop() {
		ls()
	}
}
