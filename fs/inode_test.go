package fs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/audit"
	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/internal/inonum"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
	"github.com/secretfs/secretfs/vfs"
)

// mountWith mounts m (made by newMount, and changed by the test) in this
// process over a fresh directory, unmounted when the test ends.
func mountWith(t *testing.T, m *mount) string {
	t.Helper()
	dir := t.TempDir()
	server, err := m.serve(dir)
	if err != nil {
		t.Fatalf("mount (run as root with /dev/fuse and fuse3): %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// memoryMount makes a mount (not yet mounted: see mountWith) over st,
// which it first fills with values, written through a keeper (the v2
// format, a test key); audit, if not nil, hears the audit records.
func memoryMount(t *testing.T, st store.Store, values map[store.Key]string, audit func(audit.Entry)) *mount {
	t.Helper()
	envelope, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	keeper := secrets.NewKeeper(st, envelope, secrets.Options{})
	for k, v := range values {
		if _, err := keeper.Put(context.Background(), k, []byte(v), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	return newMount(cache.New(keeper, cache.Options{TTL: time.Minute}), Options{Options: vfs.Options{
		Log: quietMount().log, Audit: audit, TTL: time.Minute,
		FileMode: 0o600, DirMode: 0o700, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
	}})
}

// audits collects what the mount tells Options.Audit.
type audits struct {
	mu  sync.Mutex
	all []audit.Entry
}

func (a *audits) record(x audit.Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, x)
}

// opens counts the successful opens recorded of k.
func (a *audits) opens(k store.Key) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, x := range a.all {
		if x.Op == "open" && x.App == k.App && x.Secret == k.Name && x.Errno == 0 {
			n++
		}
	}
	return n
}

func inoOf(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A forged item whose revision hashes to the inode number of another
// secret the kernel holds (forced here: the mount's hash gives every
// revision the same first number) gets an inode of its own, and serves
// its own value, never the other's; the audit log names what was opened.
// The first secret keeps its inode.
func TestARevisionWhoseInodeNumberIsTakenGetsItsOwnInode(t *testing.T) {
	db, config := store.Key{App: "app", Name: "db"}, store.Key{App: "app", Name: "config"}
	var seen audits
	m := memoryMount(t, memory.New(), map[store.Key]string{db: "value of db", config: "value of config"}, seen.record)
	const taken = 4242
	var hashed sync.Map // attempts asked for, per secret
	m.ino = inonum.WithVersionHash(func(k store.Key, rev store.Revision, attempt int) uint64 {
		hashed.Store(k.Name+"#"+string(rune('0'+attempt)), true)
		if attempt == 0 {
			return taken
		}
		return taken + uint64(len(k.Name))<<8 + uint64(attempt)
	})
	dir := mountWith(t, m)

	read := func(k store.Key) string {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dir, k.App, k.Name))
		if err != nil {
			return "error: " + err.Error()
		}
		return string(got)
	}
	if got := read(db); got != "value of db" {
		t.Fatalf("app/db reads %q", got)
	}
	if ino := inoOf(t, filepath.Join(dir, "app/db")); ino != taken {
		t.Fatalf("app/db has inode %d, want %d (the first number its hash gives)", ino, taken)
	}
	// The kernel holds app/db's inode now; app/config's first number is
	// the same.
	if got := read(config); got != "value of config" {
		t.Errorf("app/config, whose first inode number is app/db's, reads %q, want its own value", got)
	}
	if ino := inoOf(t, filepath.Join(dir, "app/config")); ino == taken {
		t.Errorf("app/config shares app/db's inode %d", ino)
	}
	if _, ok := hashed.Load("config#1"); !ok {
		t.Error("app/config was not given its next number")
	}
	if got := read(db); got != "value of db" {
		t.Errorf("app/db then reads %q", got)
	}
	if ino := inoOf(t, filepath.Join(dir, "app/db")); ino != taken {
		t.Errorf("app/db moved to inode %d; its own inode is reused", ino)
	}
	if n := seen.opens(config); n != 1 {
		t.Errorf("the audit log records %d opens of app/config, want 1", n)
	}
	if n := seen.opens(db); n != 2 {
		t.Errorf("the audit log records %d opens of app/db, want 2 (the read of app/config is not one)", n)
	}
}

// A listing gives each secret and each application the inode number stat
// gives it (getdents' d_ino, which Python's os.scandir and fts read), not
// FUSE's "unknown" (4294967295, which every entry had): both for secrets
// the kernel has not looked up yet (the first listing, whose READDIRPLUS
// looks each up only after it lists it) and for those it holds.
func TestAListingGivesTheInodeNumbersStatGives(t *testing.T) {
	values := map[store.Key]string{}
	for _, name := range []string{"db", "config", "token"} {
		values[store.Key{App: "app", Name: name}] = "value of " + name
	}
	m := memoryMount(t, memory.New(), values, nil)
	dir := mountWith(t, m)
	app := filepath.Join(dir, "app")
	for _, d := range []string{app, dir, app, dir} { // the second time, the kernel holds every inode
		listed := dirInodes(t, d)
		if len(listed) == 0 {
			t.Fatalf("%s lists nothing", d)
		}
		for name, ino := range listed {
			if want := inoOf(t, filepath.Join(d, name)); ino != want {
				t.Errorf("%s: listed with inode number %d, stat gives %d", filepath.Join(d, name), ino, want)
			}
		}
	}
}

// dirInodes lists dir with getdents64 and returns each entry's d_ino by
// name, "." and ".." left out.
func dirInodes(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inos := map[string]uint64{}
	buf := make([]byte, 8192)
	for {
		n, err := syscall.ReadDirent(int(f.Fd()), buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return inos
		}
		// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16,
		// d_type u8, then the name, NUL-terminated (little-endian here).
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.LittleEndian.Uint16(b[16:18]))
			name, _, _ := bytes.Cut(b[19:reclen], []byte{0})
			if s := string(name); s != "." && s != ".." {
				inos[s] = binary.LittleEndian.Uint64(b[0:8])
			}
			b = b[reclen:]
		}
	}
}

// seekdir(3) to a position telldir(3) gave in an application's directory
// goes on with the entry after it (lseek to an entry's d_off, as glibc's
// seekdir does), not EOPNOTSUPP, which every position but the start got.
func TestSeekdirGoesOnAfterTheEntryItWasGiven(t *testing.T) {
	envelope, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	keeper := secrets.NewKeeper(memory.New(), envelope, secrets.Options{})
	for i := range 40 {
		k := store.Key{App: "app", Name: fmt.Sprintf("s%02d", i)}
		if _, err := keeper.Put(context.Background(), k, []byte("v"), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	m := newMount(cache.New(keeper, cache.Options{TTL: time.Minute}), Options{Options: vfs.Options{
		Log: quietMount().log, TTL: time.Minute,
		FileMode: 0o600, DirMode: 0o700, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
	}})
	dir := filepath.Join(mountWith(t, m), "app")
	all := dirEntries(t, dir, 0, 1<<16) // names and d_off, from the start
	if len(all) < 20 {
		t.Fatalf("%d entries listed", len(all))
	}
	for _, at := range []int{0, 1, 2, 10, len(all) - 2} {
		got := dirEntries(t, dir, all[at].off, 1<<16)
		if len(got) == 0 || got[0].name != all[at+1].name {
			t.Errorf("after a seek to the d_off of entry %d (%s), the listing goes on with %v, want %s", at, all[at].name, got[:min(1, len(got))], all[at+1].name)
		}
	}
}

type dirEntry struct {
	name string
	off  int64
}

// dirEntries opens dir, seeks to off (0: the start) and lists the rest
// with getdents64 into buffers of size bytes.
func dirEntries(t *testing.T, dir string, off int64, size int) []dirEntry {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off != 0 {
		if _, err := syscall.Seek(int(f.Fd()), off, 0); err != nil {
			t.Fatalf("seek to %d: %v", off, err)
		}
	}
	var out []dirEntry
	buf := make([]byte, size)
	for {
		n, err := syscall.ReadDirent(int(f.Fd()), buf)
		if err != nil {
			t.Fatalf("getdents after a seek to %d: %v", off, err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.LittleEndian.Uint16(b[16:18]))
			name, _, _ := bytes.Cut(b[19:reclen], []byte{0})
			out = append(out, dirEntry{name: string(name), off: int64(binary.LittleEndian.Uint64(b[8:16]))})
			b = b[reclen:]
		}
	}
}

// A seek on one descriptor to a position it gave goes on after the name
// given there, though a name before it was removed since: a seek that
// counted entries from the start skipped one. (The listing spans many
// replies, so that the seek reaches the mount rather than go-fuse's
// replay of its last reply.)
func TestSeekdirAfterAnEarlierNameWasRemovedGoesOnAfterTheSameName(t *testing.T) {
	envelope, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	keeper := secrets.NewKeeper(memory.New(), envelope, secrets.Options{})
	name := func(i int) string { return fmt.Sprintf("s%03d-%s", i, strings.Repeat("x", 120)) }
	for i := range 300 {
		if _, err := keeper.Put(context.Background(), store.Key{App: "app", Name: name(i)}, []byte("v"), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	m := newMount(cache.New(keeper, cache.Options{TTL: time.Minute}), Options{Options: vfs.Options{
		Log: quietMount().log, TTL: time.Minute,
		FileMode: 0o600, DirMode: 0o700, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
	}})
	dir := filepath.Join(mountWith(t, m), "app")
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var at int64 // the d_off of entry 8
	for {
		n, err := syscall.ReadDirent(int(f.Fd()), buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.LittleEndian.Uint16(b[16:18]))
			if got, _, _ := bytes.Cut(b[19:reclen], []byte{0}); string(got) == name(8) {
				at = int64(binary.LittleEndian.Uint64(b[8:16]))
			}
			b = b[reclen:]
		}
	}
	if at == 0 {
		t.Fatal("entry 8 not listed")
	}
	if err := os.Remove(filepath.Join(dir, name(0))); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Seek(int(f.Fd()), at, 0); err != nil {
		t.Fatal(err)
	}
	n, err := syscall.ReadDirent(int(f.Fd()), buf)
	if err != nil || n == 0 {
		t.Fatalf("getdents after the seek: %d, %v", n, err)
	}
	reclen := int(binary.LittleEndian.Uint16(buf[16:18]))
	if got, _, _ := bytes.Cut(buf[19:reclen], []byte{0}); string(got) != name(9) {
		t.Errorf("after a seek to entry 8's position the listing goes on with %.4s..., want %.4s...", got, name(9))
	}
}

// A lookup racing the kernel's FORGET of the same inode can hand the
// node back to the kernel after OnForget dropped it from the table
// (go-fuse's bridge registers it again once OnForget was called). The
// next lookup of that revision must find the node the kernel holds, not
// make a second node of the same number, which the bridge would never
// register (it keeps the one it holds), and which would stay in the table
// in its place, pinned for ever. The race is made here by calling
// OnForget while the kernel holds the inode.
func TestALookupAfterAForgetRacedByALookupFindsTheInodeTheKernelHolds(t *testing.T) {
	m := memoryMount(t, memory.New(), map[store.Key]string{{App: "app", Name: "db"}: "value of db"}, nil)
	dir := mountWith(t, m)
	p := filepath.Join(dir, "app/db")
	f, err := os.Open(p) // the kernel holds the inode while it is open
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ino := inoOf(t, p)
	held := m.table.Get(ino)
	if held == nil || held.Inode.Forgotten() {
		t.Fatalf("the table holds %v for inode %d, want the node the kernel holds", held, ino)
	}
	held.OnForget() // as when it ran before the racing lookup's registration
	// The kernel forgets its entry (not the inode, which f holds), so the
	// next stat looks the name up.
	_, parent := held.Inode.Parent()
	if errno := parent.NotifyEntry("db"); errno != 0 {
		t.Fatalf("invalidating the entry: %v", errno)
	}
	if got := inoOf(t, p); got != ino {
		t.Fatalf("app/db's inode moved from %d to %d", ino, got)
	}
	switch now := m.table.Get(ino); {
	case now == nil:
		t.Errorf("after the lookup, the table holds no node for inode %d", ino)
	case now != held:
		t.Errorf("after the lookup, the table holds another node for inode %d (forgotten by the kernel: %v), not the one the kernel holds", ino, now.Inode.Forgotten())
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "value of db" {
		t.Errorf("app/db then reads %q, %v", got, err)
	}
}
