package vfs

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

func read(t *testing.T, r *Revision) (string, error) {
	t.Helper()
	buf := make([]byte, 64)
	n, err := r.Read(ctx, buf, 0)
	return string(buf[:n]), err
}

// A file that is open keeps reading the revision it opened, whatever
// becomes of the name; its attributes say whether the name still points
// at it (nlink).
func TestAReaderKeepsTheRevisionItOpened(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "first")
	r := f.revision(db)
	_, err := r.Open(ctx, command, syscall.O_RDONLY)
	f.mustNot("open", err)
	h := f.open(db, shell, trunc)
	f.write(h, shell, "second", 0)
	f.mustNot("close", h.Flush(ctx, shell))
	if got, err := read(t, r); got != "first" || err != nil {
		t.Errorf("the reader reads %q, %v; want the revision it opened", got, err)
	}
	if a := r.Attr(); a.Nlink != 0 || a.Size != 5 {
		t.Errorf("the replaced revision's attributes: %+v; want nlink 0, its own size", a)
	}
	if got, err := read(t, f.revision(db)); got != "second" || err != nil {
		t.Errorf("the name reads %q, %v", got, err)
	}
}

// An open of a revision the name no longer points at is sent to look the
// name up again (ESTALE, which the kernel retries once): one replaced
// since the lookup, or one whose listing the store has moved past.
func TestAnOpenOfAReplacedRevisionIsSentToLookTheNameUpAgain(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "first")
	r := f.revision(db)
	f.cat.Store(db, "second")
	f.revision(db) // the catalog learns of it
	_, err := r.Open(ctx, command, syscall.O_RDONLY)
	if !errors.Is(err, ErrLookUpAgain) {
		t.Errorf("open of a revision replaced since its lookup: %v", err)
	}

	f = newFixture(t, Options{})
	f.cat.Store(db, "first")
	l := f.fs.List("app")
	listed, _, _ := l.Next(ctx)
	f.cat.Store(db, "second") // the catalog has not heard
	e, _ := f.fs.LookupListed(ctx, listed)
	_, err = f.fs.NewRevision(db, e.Meta, func() {}, func() {}).Open(ctx, command, syscall.O_RDONLY)
	if !errors.Is(err, ErrLookUpAgain) {
		t.Errorf("open of a listed revision the store replaced: %v", err)
	}
}

// An open for writing of a secret removed elsewhere is sent to look the
// name up again, where O_CREAT makes it again.
func TestAWriterOfASecretRemovedElsewhereIsSentToCreateItAgain(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "v")
	r := f.revision(db)
	f.cat.Remove(db)
	_, err := r.Open(ctx, shell, trunc)
	if !errors.Is(err, ErrLookUpAgain) {
		t.Fatalf("open for writing of a removed secret: %v", err)
	}
	h, e := f.create(db, shell, trunc)
	f.write(h, shell, "again", 0)
	f.mustNot("close", h.Flush(ctx, shell))
	if got := f.value(db); got != "again" || e.Created == nil {
		t.Errorf("the store holds %q", got)
	}
}

// A reader reaching the inode of a secret being created finds nothing
// while nothing is committed, and is sent to look it up again once it is.
func TestAReaderOfASecretBeingCreatedFindsNothingUntilItsCommit(t *testing.T) {
	f := newFixture(t, Options{})
	h, e := f.create(db, shell, trunc)
	_, err := e.Created.Open(ctx, command, syscall.O_RDONLY)
	wantKind(t, "a read before the commit", err, fault.NotFound)
	f.write(h, shell, "v", 0)
	f.mustNot("close", h.Flush(ctx, shell))
	if _, err := e.Created.Open(ctx, command, syscall.O_RDONLY); !errors.Is(err, ErrLookUpAgain) {
		t.Errorf("a read after the commit: %v", err)
	}
	w, err := e.Created.Open(ctx, other, trunc)
	f.mustNot("a second writer through the created inode", err)
	f.write(w, other, "w", 0)
	f.mustNot("its close", w.Flush(ctx, other))
	if got := f.value(db); got != "w" {
		t.Errorf("the store holds %q", got)
	}
}

// A revision listed by `ls -l` and replaced before anything read it: a
// read-only mount has no open to send the reader elsewhere, so the file
// serves the new revision if the kernel cannot tell (it is no longer
// than the size the kernel holds); a longer one fails the read and tells
// whoever caches the name.
func TestARevisionReplacedBeforeItsFirstReadServesTheNewOneOnlyIfNoLonger(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "long value")
	f.cat.Store(db2, "short")
	l := f.fs.List("app")
	first, _, _ := l.Next(ctx)
	second, _, _ := l.Next(ctx)
	f.cat.Store(db, "shorter")
	f.cat.Store(db2, "much longer")

	shrunk := f.fs.NewRevision(db, first, func() {}, func() {})
	if got, err := read(t, shrunk); got != "shorter" || err != nil {
		t.Errorf("a revision replaced by a shorter one reads %q, %v", got, err)
	}
	grown := f.fs.NewRevision(db2, second, func() {}, func() {})
	got, err := read(t, grown)
	wantKind(t, "a revision replaced by a longer one", err, fault.Unavailable)
	if got != "" {
		t.Errorf("it read %q", got)
	}
	if told := f.told(Changed); len(told) != 1 || told[0] != db2 {
		t.Errorf("changed events %v", told)
	}
}

// A revision pins its snapshot at its first use, once however many use
// it at once, and tells the adapter each time it pins anew (the revival
// guard of package fs); Unpin releases it, and its wipes are told until
// then.
func TestARevisionPinsItsSnapshotOnceUntilUnpinned(t *testing.T) {
	f := newFixture(t, Options{})
	meta := f.cat.Store(db, "v")
	pinned, wiped := 0, 0
	r := f.fs.NewRevision(db, meta, func() { pinned++ }, func() { wiped++ })
	if f.cat.Pins() != 0 {
		t.Fatal("a revision nobody used pins its snapshot")
	}
	read(t, r)
	r.Touch()
	read(t, r)
	if f.cat.Pins() != 1 || pinned != 1 {
		t.Fatalf("%d pins, told %d times; want 1", f.cat.Pins(), pinned)
	}
	f.cat.Wipe(db, meta)
	r.Unpin()
	f.cat.Wipe(db, meta)
	if f.cat.Pins() != 0 || wiped != 1 {
		t.Errorf("after Unpin: %d pins, %d wipes told; want 0, and the wipe before it", f.cat.Pins(), wiped)
	}
	r.Touch()
	if f.cat.Pins() != 1 || pinned != 2 {
		t.Errorf("a use after Unpin: %d pins, told %d times; want it pinned anew, and told", f.cat.Pins(), pinned)
	}
	r.Unpin()
}

// A legacy item records no size: a lookup learns it by decrypting once;
// a write-only mount cannot, and shows 0.
func TestTheSizeOfALegacyItemIsLearntOnceByDecrypting(t *testing.T) {
	for _, writeOnly := range []bool{false, true} {
		f := newFixture(t, Options{WriteOnly: writeOnly})
		meta := f.cat.Store(db, "legacy")
		meta.Size = -1
		r := f.fs.NewRevision(db, meta, func() {}, func() {})
		for range 2 {
			if err := r.Verify(ctx); err != nil {
				t.Fatal(err)
			}
		}
		want, decrypts := int64(6), 1
		if writeOnly {
			want, decrypts = 0, 0
		}
		if a := r.Attr(); a.Size != want || f.cat.Calls("Value") != decrypts {
			t.Errorf("write-only %v: size %d after %d decryptions; want %d after %d", writeOnly, a.Size, f.cat.Calls("Value"), want, decrypts)
		}
		r.Unpin()
	}
}

// The kernel never reads a file it was told is empty: a revision that
// lists 0 bytes is decrypted at its first lookup, once, so that an item
// whose Size a store writer set to 0 is EIO rather than an empty file.
// One that lists more is left to its first read.
func TestARevisionListedEmptyIsDecryptedOnceAtItsFirstLookup(t *testing.T) {
	f := newFixture(t, Options{})
	empty := f.cat.Store(db, "")
	r := f.fs.NewRevision(db, empty, func() {}, func() {})
	for range 2 {
		if err := r.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.cat.Calls("ReadAt") + f.cat.Calls("Value"); n != 1 {
		t.Errorf("an empty revision looked up twice was decrypted %d times, want once", n)
	}
	r.Unpin()

	full := f.cat.Store(db2, "value")
	r = f.fs.NewRevision(db2, full, func() {}, func() {})
	if err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.cat.Calls("ReadAt") + f.cat.Calls("Value"); n != 1 {
		t.Errorf("a lookup of a revision of 5 bytes decrypted: %d decryptions in all, want the empty one's only", n-1)
	}
	r.Unpin()
}

// An item listed empty that does not decrypt (a store writer set its
// Size to 0) fails its lookup with the decryption's error, and leaves
// nothing pinned; the next lookup asks again.
func TestARevisionListedEmptyThatDoesNotDecryptFailsItsLookup(t *testing.T) {
	f := newFixture(t, Options{})
	meta := f.cat.Store(db, "")
	f.cat.FailValues(fault.E("test", fault.Integrity, "tampered"))
	r := f.fs.NewRevision(db, meta, func() {}, func() {})
	for range 2 {
		wantKind(t, "verify", r.Verify(ctx), fault.Integrity)
	}
	if f.cat.Pins() != 0 {
		t.Errorf("%d pins after a failed verification, want 0", f.cat.Pins())
	}
	if n := f.cat.Calls("ReadAt"); n != 2 {
		t.Errorf("%d decryptions for two lookups, want 2: a failure is not remembered here (the catalog remembers a tampered item)", n)
	}
}

// A mount that holds only a public key reads nothing.
func TestAWriteOnlyMountReadsNothing(t *testing.T) {
	f := newFixture(t, Options{WriteOnly: true})
	f.cat.Store(db, "v")
	r := f.revision(db)
	_, err := r.Read(ctx, make([]byte, 8), 0)
	wantKind(t, "read", err, fault.Permission)
	if n := f.cat.Calls("ReadAt") + f.cat.Calls("Value"); n != 0 {
		t.Errorf("%d decryptions", n)
	}
}

// Every audited operation is recorded once, from one place, with the
// caller, the secret, the revision and how it ended: the opens (of a
// revision, to read and to write; a creation; an open of a secret being
// created; a view's, to read and to write, which is refused), the commits
// (at a close, an fsync and a release, which is the opener's, and a
// truncation by path), the renames and the unlinks.
func TestEveryAuditedOperationIsRecordedOnceWithItsCaller(t *testing.T) {
	f := viewFixture(t, Options{})
	f.cat.Store(db, "v")
	moved := store.Key{App: "app", Name: "moved"}
	r := f.revision(db)
	thread := command // another thread of the command's process
	thread.Thread = command.Process + 1
	r.Open(ctx, thread, syscall.O_RDONLY)
	h := f.open(db, shell, trunc)
	f.write(h, shell, "w", 0)
	h.Flush(ctx, shell)
	f.write(h, shell, "x", 0)
	h.Fsync(ctx, shell)
	h.Release(ctx)                         // owes nothing: no record
	r.Open(ctx, command, syscall.O_RDONLY) // replaced since: ESTALE
	f.fs.Setattr(ctx, command, db, nil, sizeTo(0))
	created, e := f.create(db2, shell, trunc)
	e.Created.Open(ctx, command, syscall.O_RDONLY) // nothing committed yet: ENOENT
	created.Flush(ctx, shell)                      // the opener's close, without a write: no record
	created.Release(ctx)                           // commits the empty value, as the opener
	f.fs.Rename(ctx, other, db, moved, 0)
	f.fs.Unlink(ctx, other, moved)
	f.fs.Unlink(ctx, other, moved) // gone: ENOENT
	view := f.viewOf(appEnv)
	view.Open(ctx, command, syscall.O_RDONLY)
	view.Open(ctx, command, wronly) // a view is read-only: EROFS
	type rec struct {
		op, app, secret, to string
		version             int64
		errno               syscall.Errno
		pid, tid            uint32
		command             string
	}
	want := []rec{
		{"open", "app", "db", "", 1, 0, command.Process, thread.Thread, "cat"},
		{"open", "app", "db", "", 1, 0, shell.Process, shell.Thread, "sh"},
		{"commit", "app", "db", "", 2, 0, shell.Process, shell.Thread, "sh"},
		{"commit", "app", "db", "", 3, 0, shell.Process, shell.Thread, "sh"},
		{"open", "app", "db", "", 1, syscall.ESTALE, command.Process, command.Thread, "cat"},
		{"commit", "app", "db", "", 4, 0, command.Process, command.Thread, "cat"},
		{"open", "app", "db2", "", 0, 0, shell.Process, shell.Thread, "sh"},
		{"open", "app", "db2", "", 0, syscall.ENOENT, command.Process, command.Thread, "cat"},
		{"commit", "app", "db2", "", 1, 0, shell.Process, shell.Thread, "sh"},
		{"rename", "app", "db", "moved", 1, 0, other.Process, other.Thread, "vi"},
		{"unlink", "app", "moved", "", 1, 0, other.Process, other.Thread, "vi"},
		{"unlink", "app", "moved", "", 0, syscall.ENOENT, other.Process, other.Thread, "vi"},
		{"open", appEnv.App, appEnv.Name, "", 0, 0, command.Process, command.Thread, "cat"},
		{"open", appEnv.App, appEnv.Name, "", 0, syscall.EROFS, command.Process, command.Thread, "cat"},
	}
	got := f.recorded()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if g := (rec{e.Op, e.App, e.Secret, e.To, e.Version, e.Errno, e.PID, e.TID, e.Command}); g != want[i] || e.Time.IsZero() {
			t.Errorf("record %d: %+v, want %+v", i, g, want[i])
		}
	}
}

// A change the catalog learns of from the store is told as Changed, once
// the file system watches.
func TestAChangeTheCatalogLearnsOfIsTold(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Change(db)
	f.fs.Watch()
	f.cat.Change(db2)
	if told := f.told(Changed); len(told) != 1 || told[0] != db2 {
		t.Errorf("changed events %v", told)
	}
}

// A watched application is revalidated a quarter of the TTL apart, at
// most half a second, so that a change made elsewhere is learnt within
// the TTL plus that; under a TTL of a second (0: ask at every open), once
// a second.
func TestAWatchedApplicationIsRevalidatedWithinTheTTL(t *testing.T) {
	for _, tc := range []struct{ ttl, want time.Duration }{
		{0, time.Second},
		{500 * time.Millisecond, time.Second},
		{time.Second, 250 * time.Millisecond},
		{2 * time.Second, 500 * time.Millisecond},
		{time.Hour, 500 * time.Millisecond},
	} {
		if got := newFixture(t, Options{TTL: tc.ttl}).fs.RevalidateEvery(); got != tc.want {
			t.Errorf("with a TTL of %v, every %v, want %v", tc.ttl, got, tc.want)
		}
	}
}

// The kernel retries an open sent to look the name up again only once: a
// retry that meets another replacement reads the revision it reached,
// which was the name's a moment ago, whole, rather than fail.
func TestARetriedOpenOfARevisionReplacedAgainReadsWhatItReached(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "first")
	r := f.revision(db)
	if _, err := r.Open(ctx, command, syscall.O_RDONLY); err != nil { // read once: its value is held
		t.Fatal(err)
	}
	f.cat.Store(db, "second")
	f.revision(db) // the catalog learns of it
	if _, err := r.Open(ctx, command, syscall.O_RDONLY); !errors.Is(err, ErrLookUpAgain) {
		t.Fatalf("the first open after the replacement: %v, want it sent to look the name up again", err)
	}
	again := command
	again.Again = true
	if _, err := r.Open(ctx, again, syscall.O_RDONLY); err != nil {
		t.Fatalf("the retried open: %v", err)
	}
	buf := make([]byte, 16)
	if n, err := r.Read(ctx, buf, 0); err != nil || string(buf[:n]) != "first" {
		t.Errorf("the retried open reads %q, %v; want first", buf[:n], err)
	}
}

// The lookup before the kernel's retry of an open holds the value of the
// revision it found (Hold): the retry then reads it whole, even though
// the secret was replaced again before it opened, the revision's own pin
// was dropped (the kernel forgot the inode between its two lookups), and
// another reader of that revision closed. A revision the catalog learnt
// was replaced while nothing pinned it (its value is then dropped) cannot
// be held, so that the lookup finds the name's newer one.
func TestARevisionHeldForARetriedOpenIsReadAfterItIsReplaced(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "first")
	f.cat.Store(db, "second")
	found := f.revision(db) // what the retry's lookup finds
	release, err := found.Hold(ctx)
	if err != nil {
		t.Fatalf("holding the current revision: %v", err)
	}
	defer release()
	found.Unpin() // the kernel forgot the inode its first lookup found, as it looked the name up again
	readAndClose := func() {
		other := f.revision(db)
		if _, err := other.Read(ctx, make([]byte, 16), 0); err != nil {
			t.Fatal(err)
		}
		other.Unpin()
	}
	readAndClose()
	f.cat.Store(db, "third")
	current := f.revision(db) // the catalog learns of it before the retry opens
	again := command
	again.Again = true
	if _, err := found.Open(ctx, again, syscall.O_RDONLY); err != nil {
		t.Fatalf("the retried open of the held revision: %v", err)
	}
	buf := make([]byte, 16)
	if n, err := found.Read(ctx, buf, 0); err != nil || string(buf[:n]) != "second" {
		t.Errorf("the retried open reads %q, %v; want second", buf[:n], err)
	}

	readAndClose() // "third": only the catalog's holding it for current keeps its value now
	f.cat.Store(db, "fourth")
	f.revision(db) // another lookup learns of "fourth": the catalog drops the value of "third"
	if _, err := current.Hold(ctx); !errors.Is(err, ErrLookUpAgain) {
		t.Errorf("holding a revision replaced after its value was dropped: %v, want ErrLookUpAgain", err)
	}
}
