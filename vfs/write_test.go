package vfs

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/audit"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// open(2) with O_CREAT makes a secret that exists for this mount before
// anything is stored; the writer's close commits it once, with one
// conditional write that expects nothing there, and tells whoever caches
// the name before it returns.
func TestACreatedSecretIsCommittedOnceByItsWritersClose(t *testing.T) {
	f := newFixture(t, Options{})
	h, e := f.create(db, shell, trunc)
	if e.Created == nil || e.Created.Key() != db {
		t.Fatalf("create: %+v, want the secret being created", e)
	}
	if got, err := f.fs.Lookup(ctx, db); err != nil || got.Created != e.Created {
		t.Errorf("lookup before the commit: %+v, %v; want the secret being created", got, err)
	} else {
		got.Created.Unhold()
	}
	f.write(h, shell, "hunter2", 0)
	if f.puts() != 0 {
		t.Fatal("a write reached the store")
	}
	f.mustNot("close", h.Flush(ctx, shell))
	if got := f.value(db); got != "hunter2" || f.puts() != 1 {
		t.Fatalf("after the close: %q after %d puts", got, f.puts())
	}
	if told := f.told(Committed); len(told) != 1 || told[0] != db {
		t.Errorf("committed events %v, want one of %v", told, db)
	}
	f.mustNot("release", h.Release(ctx))
	if f.puts() != 1 {
		t.Errorf("the release committed again: %d puts", f.puts())
	}
	if got, err := f.fs.Lookup(ctx, db); err != nil || got.Created != nil || got.Meta.Version != 1 {
		t.Errorf("lookup after the commit: %+v, %v; want revision 1", got, err)
	}
}

// O_EXCL of an existing secret is refused; O_CREAT of one the kernel did
// not know opens its stored revision.
func TestCreateOfAnExistingSecretIsExistWithOExclAndOpensItWithout(t *testing.T) {
	f := newFixture(t, Options{})
	stored := f.cat.Store(db, "old")
	_, _, err := f.fs.Create(ctx, shell, db, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY)
	wantKind(t, "O_EXCL", err, fault.Exist)
	h, e := f.create(db, shell, trunc)
	if e.Created != nil || !e.Meta.Revision().Equal(stored.Revision()) || e.Fresh != 0 {
		t.Fatalf("O_CREAT of a stored secret: %+v; want its stored revision, to be looked up again at once", e)
	}
	f.write(h, shell, "new", 0)
	f.mustNot("close", h.Flush(ctx, shell))
	if got := f.value(db); got != "new" || f.cat.Calls("Value") != 0 {
		t.Errorf("committed %q after %d loads; want new, replaced whole without reading the old value", got, f.cat.Calls("Value"))
	}
}

// A creation that another host made first loses: it is a concurrent
// writer that committed first.
func TestACreationRacedByAnotherHostFailsWithAConflict(t *testing.T) {
	f := newFixture(t, Options{})
	h, _ := f.create(db, shell, trunc)
	f.write(h, shell, "mine", 0)
	f.cat.Store(db, "theirs")
	wantKind(t, "close", h.Flush(ctx, shell), fault.Conflict)
	if got := f.value(db); got != "theirs" {
		t.Errorf("the store holds %q, want the first writer's", got)
	}
}

// The shell's `cmd > file`: the shell opens (the kernel sends O_TRUNC as
// a truncation without a descriptor, from the thread that opened), hands
// the descriptor to the command and closes its own copy; the command
// writes and closes. Only the command's close commits, the new value
// whole, and the old value is never read.
func TestTheShellsRedirectionCommitsTheCommandsValueOnce(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "old value")
	r := f.revision(db)
	h, err := r.Open(ctx, shell, wronly)
	f.mustNot("open", err)
	f.mustNot("the O_TRUNC truncation", f.fs.Setattr(ctx, shell, db, nil, sizeTo(0)))
	f.mustNot("the shell's close of its copy", h.Flush(ctx, shell))
	if f.puts() != 0 {
		t.Fatalf("the shell's close committed (%q)", f.value(db))
	}
	f.write(h, command, "new", 0)
	f.mustNot("the command's close", h.Flush(ctx, command))
	f.mustNot("release", h.Release(ctx))
	if got := f.value(db); got != "new" || f.puts() != 1 {
		t.Errorf("the store holds %q after %d puts, want new after 1", got, f.puts())
	}
	if n := f.cat.Calls("Value"); n != 0 {
		t.Errorf("the value replaced whole was read %d times", n)
	}
}

// A descriptor inherited by a child: the child's close (a flush by
// another lock owner) commits nothing; the writer's commits.
func TestAnInheritedDescriptorClosedByAChildCommitsNothing(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "old")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "new", 0)
	f.mustNot("the child's close", h.Flush(ctx, command))
	if got := f.value(db); got != "old" {
		t.Fatalf("the child's close committed %q", got)
	}
	f.mustNot("the writer's close", h.Flush(ctx, shell))
	if got := f.value(db); got != "new" {
		t.Errorf("after the writer's close: %q", got)
	}
}

// A process killed by a signal while it writes commits nothing: not at
// the close the kernel makes for it, not at the release.
func TestAWriterKilledByASignalCommitsNothing(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "whole")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "par", 0)
	killed := shell
	killed.KilledBy = syscall.SIGKILL
	err := h.Flush(ctx, killed)
	if err == nil || !strings.Contains(err.Error(), "killed by signal 9") {
		t.Errorf("the close of the killed writer: %v", err)
	}
	h.Release(ctx)
	if got := f.value(db); got != "whole" || f.puts() != 0 {
		t.Errorf("the store holds %q after %d puts", got, f.puts())
	}
}

// Of two writers that opened the same revision, the second to commit
// fails with a conflict (ESTALE), at that close and every later one, and
// the first value survives.
func TestOfTwoWritersTheSecondToCommitFailsWithAConflict(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "0")
	a, b := f.open(db, shell, trunc), f.open(db, other, trunc)
	f.write(a, shell, "a", 0)
	f.write(b, other, "b", 0)
	f.mustNot("first close", a.Flush(ctx, shell))
	err := b.Flush(ctx, other)
	wantKind(t, "second close", err, fault.Conflict)
	if !strings.Contains(err.Error(), "was not committed, and is discarded") {
		t.Errorf("the error does not say what became of the value: %v", err)
	}
	var again Repeated
	if err := b.Fsync(ctx, other); !fault.Is(fault.Conflict, err) || !errors.As(err, &again) {
		t.Errorf("a later fsync: %v; want the conflict, reported again", err)
	}
	b.Release(ctx)
	if got := f.value(db); got != "a" || f.puts() != 2 {
		t.Errorf("the store holds %q after %d puts", got, f.puts())
	}
	if len(f.outcomes) != 2 || f.outcomes[0] != nil || !fault.Is(fault.Conflict, f.outcomes[1]) {
		t.Errorf("commits told: %v; want one success, one conflict (the repeats are not new commits)", f.outcomes)
	}
}

// A writer of a secret deleted and created again under it fails: the
// Version may match, the revision does not.
func TestAWriterOfASecretDeletedAndCreatedAgainFailsWithAConflict(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "first")
	h := f.open(db, shell, trunc)
	f.cat.Remove(db)
	f.cat.Store(db, "second")
	f.write(h, shell, "mine", 0)
	wantKind(t, "close", h.Flush(ctx, shell), fault.Conflict)
	if got := f.value(db); got != "second" {
		t.Errorf("the store holds %q", got)
	}
}

// fsync commits what is pending, as the writer's close does; a failed
// fsync is reported again by every later fsync and close, and the buffer
// is never committed, not even at the release.
func TestFsyncCommitsAndItsFailureIsReportedByEveryLaterFsyncAndClose(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "0")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "1", 0)
	f.mustNot("fsync", h.Fsync(ctx, shell))
	if got := f.value(db); got != "1" {
		t.Fatalf("after fsync: %q", got)
	}
	f.mustNot("a second fsync with nothing pending", h.Fsync(ctx, shell))
	f.write(h, shell, "2", 0)
	f.cat.FailPuts(func(store.Key) error { return fault.E(fault.Unavailable, "no answer in time") })
	wantKind(t, "failing fsync", h.Fsync(ctx, shell), fault.Unavailable)
	f.cat.FailPuts(nil)
	wantKind(t, "the next fsync", h.Fsync(ctx, shell), fault.Unavailable)
	wantKind(t, "the close", h.Flush(ctx, shell), fault.Unavailable)
	h.Release(ctx)
	if got := f.value(db); got != "1" || f.puts() != 2 {
		t.Errorf("the store holds %q after %d puts; want 1 after 2 (the failed buffer never committed)", got, f.puts())
	}
}

// A commit whose outcome is unknown (the store took the write and did not
// say what it holds) is reported as such, never as lost, and the file
// commits nothing more.
func TestAnUnsureCommitIsReportedAsUnknownAndTheFileCommitsNothingMore(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "old")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "new", 0)
	f.cat.FailPuts(func(k store.Key) error {
		return fault.E(k.Path(), fault.Unavailable, secrets.ErrOutcomeUnknown)
	})
	err := h.Flush(ctx, shell)
	if !errors.Is(err, secrets.ErrOutcomeUnknown) || !strings.Contains(err.Error(), "commits nothing more") || strings.Contains(err.Error(), "discarded") {
		t.Fatalf("close: %v; want the unknown outcome, and no claim that the value is discarded", err)
	}
	f.cat.FailPuts(nil)
	if _, err := h.Write(shell, []byte("newer"), 0); !errors.Is(err, secrets.ErrOutcomeUnknown) {
		t.Errorf("a later write: %v", err)
	}
	if err := h.Flush(ctx, shell); !errors.Is(err, secrets.ErrOutcomeUnknown) {
		t.Errorf("a later close: %v", err)
	}
	h.Release(ctx)
	if f.puts() != 1 {
		t.Errorf("%d puts; want only the unsure one", f.puts())
	}
}

// touch and `: > f`: a creation or truncation nobody wrote after commits
// at the release (the empty value); a failure there can only be
// returned for the log.
func TestACreationNobodyWroteCommitsEmptyAtTheRelease(t *testing.T) {
	f := newFixture(t, Options{})
	h, _ := f.create(db, shell, trunc)
	f.mustNot("the opener's close", h.Flush(ctx, shell))
	if f.puts() != 0 {
		t.Fatal("the opener's close of a creation committed")
	}
	f.mustNot("release", h.Release(ctx))
	if got := f.value(db); got != "" || f.puts() != 1 {
		t.Errorf("after the release: %q after %d puts; want the empty value", got, f.puts())
	}
	if got := commitsBy(f.recorded()); len(got) != 1 || got[0] != shell.Thread {
		t.Errorf("the commit at the release is audited as threads %v, want the opener's %d", got, shell.Thread)
	}

	f.cat.Store(db2, "old")
	h = f.open(db2, shell, trunc)
	f.cat.FailPuts(func(store.Key) error { return fault.E(fault.Permission, "AccessDenied") })
	wantKind(t, "the release of a truncation", h.Release(ctx), fault.Permission)
	if got := f.value(db2); got != "old" {
		t.Errorf("after the failed release: %q", got)
	}
}

// A value over the store's limit fails the write that makes it so
// (EFBIG), and the handle: nothing written through it is committed.
func TestAValueOverTheLimitFailsTheWriteAndCommitsNothing(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Limit = 8
	f.cat.Store(db, "old")
	h := f.open(db, shell, trunc)
	f.write(h, shell, "12345", 0)
	_, err := h.Write(shell, []byte("6789"), 5)
	wantKind(t, "the write past the limit", err, fault.TooLarge)
	wantKind(t, "close", h.Flush(ctx, shell), fault.TooLarge)
	h.Release(ctx)
	wantKind(t, "truncate -s past the limit", f.fs.Setattr(ctx, other, db, nil, sizeTo(9)), fault.TooLarge)
	if got := f.value(db); got != "old" || f.puts() != 0 {
		t.Errorf("the store holds %q after %d puts", got, f.puts())
	}
}

// Appending loads the value at open, so that no write waits for it; each
// write goes to the end.
func TestAnAppendingOpenLoadsTheValueOnceAndWritesAtItsEnd(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "old")
	h := f.open(db, shell, syscall.O_WRONLY|syscall.O_APPEND)
	if n := f.cat.Calls("Value"); n != 1 {
		t.Fatalf("the appending open loaded %d times", n)
	}
	f.write(h, shell, "+1", 0)
	f.write(h, shell, "+2", 0)
	f.mustNot("close", h.Flush(ctx, shell))
	if got := f.value(db); got != "old+1+2" || f.cat.Calls("Value") != 1 {
		t.Errorf("committed %q after %d loads", got, f.cat.Calls("Value"))
	}
}

// A write in place is laid over the value at the commit: nothing loads
// the value before the close (no read through the writer, no truncation),
// and the close's commit loads the revision the writer opened, once, from
// the catalog, and lays the write over it. (How writes are laid over a
// value, session_test's TestWritesBeforeTheLoadLoadNothingAndTheCommitLaysThemOverTheValue
// tells with a loader of its own; a read through the writer, which loads
// the value before the commit, TestAReadThroughTheWriterLoadsTheValueOnce.)
func TestAWriteInPlaceIsLaidOverTheValueAtTheCommit(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "abcdef")
	h := f.open(db, shell, syscall.O_RDWR)
	f.write(h, shell, "XY", 2)
	if m := h.Meta(); m.Size != 6 || h.Attr().Size != 6 {
		t.Errorf("fstat of the writer before the load: %+v, want the value's size", m)
	}
	if n := f.cat.Calls("Value"); n != 0 {
		t.Fatalf("the value was loaded %d times before the close", n)
	}
	f.mustNot("close", h.Flush(ctx, shell))
	if got, n := f.value(db), f.cat.Calls("Value"); got != "abXYef" || n != 1 {
		t.Errorf("committed %q after %d loads; want abXYef after one, the commit's", got, n)
	}
}

// truncate(2) by path has no descriptor to buffer in: it commits at once,
// and tells whoever caches the name.
func TestATruncationByPathCommitsAtOnce(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "abcdef")
	f.mustNot("truncate -s 3", f.fs.Setattr(ctx, other, db, nil, sizeTo(3)))
	if got := f.value(db); got != "abc" {
		t.Errorf("after truncate -s 3: %q", got)
	}
	f.mustNot("truncate -s 5", f.fs.Setattr(ctx, other, db, nil, sizeTo(5)))
	if got := f.value(db); got != "abc\x00\x00" {
		t.Errorf("after truncate -s 5: %q", got)
	}
	if told := f.told(Committed); len(told) != 2 {
		t.Errorf("committed events %v, want 2", told)
	}
	if got := commitsBy(f.recorded()); len(got) != 2 || got[0] != other.Thread || got[1] != other.Thread {
		t.Errorf("the truncations are audited as commits by threads %v, want two by %d", got, other.Thread)
	}
	if len(f.outcomes) != 2 {
		t.Errorf("Options.Committed heard of %d commits, want 2", len(f.outcomes))
	}
}

// commitsBy returns the thread of each commit in the audit log.
func commitsBy(entries []audit.Entry) []uint32 {
	var threads []uint32
	for _, e := range entries {
		if e.Op == "commit" {
			threads = append(threads, e.TID)
		}
	}
	return threads
}

// Owners and modes come from the mount options: a chmod or chown to
// anything else is refused, to what they are accepted.
func TestOwnersAndModesCanOnlyBeSetToWhatTheOptionsSay(t *testing.T) {
	f := newFixture(t, Options{UID: 1000, GID: 1000, FileMode: 0o640, DirMode: 0o750})
	f.cat.Store(db, "v")
	u := func(n uint32) *uint32 { return &n }
	wantKind(t, "chmod 644", f.fs.Setattr(ctx, other, db, nil, Change{Mode: u(0o644)}), fault.NotPermitted)
	wantKind(t, "chown 0", f.fs.Setattr(ctx, other, db, nil, Change{UID: u(0)}), fault.NotPermitted)
	wantKind(t, "chgrp 0 of the application", f.fs.SetattrDir("app", Change{GID: u(0)}), fault.NotPermitted)
	f.mustNot("chmod 640", f.fs.Setattr(ctx, other, db, nil, Change{Mode: u(0o640)}))
	f.mustNot("chown 1000:1000", f.fs.Setattr(ctx, other, db, nil, Change{UID: u(1000), GID: u(1000)}))
	f.mustNot("chmod 750 of the application", f.fs.SetattrDir("app", Change{Mode: u(0o750)}))
	if a := f.revision(db).Attr(); a.Perm != 0o640 || a.UID != 1000 || a.Nlink != 1 || a.Size != 1 {
		t.Errorf("attributes %+v", a)
	}
}

// A read-only mount refuses every change, whatever the kernel lets
// through: each of the file system's requests that may change a name, a
// value or an attribute, even one a read-write mount would accept without
// changing anything (a chmod to the mode shown) or refuse for another
// reason (ln, a special file, a rename of an application, a file at the
// root, a directory in an application).
func TestAReadOnlyMountRefusesEveryChange(t *testing.T) {
	f := newFixture(t, Options{ReadOnly: true})
	f.cat.Store(db, "v")
	mode, dirMode := f.fs.opts.FileMode, f.fs.opts.DirMode
	_, _, err := f.fs.Create(ctx, shell, db2, syscall.O_CREAT|syscall.O_WRONLY)
	wantKind(t, "create", err, fault.ReadOnly)
	_, err = f.revision(db).Open(ctx, shell, wronly)
	wantKind(t, "open for writing", err, fault.ReadOnly)
	wantKind(t, "truncate", f.fs.Setattr(ctx, shell, db, nil, sizeTo(0)), fault.ReadOnly)
	wantKind(t, "chmod to the mode shown", f.fs.Setattr(ctx, shell, db, nil, Change{Mode: &mode}), fault.ReadOnly)
	wantKind(t, "chmod of the application to the mode shown", f.fs.SetattrDir("app", Change{Mode: &dirMode}), fault.ReadOnly)
	wantKind(t, "chmod of the root to the mode shown", f.fs.SetattrDir("", Change{Mode: &dirMode}), fault.ReadOnly)
	wantKind(t, "mknod of a file", f.fs.Mknod(ctx, shell, db2, syscall.S_IFREG|0o600), fault.ReadOnly)
	wantKind(t, "mknod of a fifo", f.fs.Mknod(ctx, shell, db2, syscall.S_IFIFO|0o600), fault.ReadOnly)
	wantKind(t, "ln", f.fs.NotOffered(db2.Path(), "hard links"), fault.ReadOnly)
	wantKind(t, "a write through a descriptor the kernel opened", f.fs.WriteWithoutOpen(db), fault.ReadOnly)
	wantKind(t, "unlink", f.fs.Unlink(ctx, shell, db), fault.ReadOnly)
	wantKind(t, "rename", f.fs.Rename(ctx, shell, db, db2, 0), fault.ReadOnly)
	wantKind(t, "rename of the application", f.fs.RenameApp("app", "other", 0), fault.ReadOnly)
	wantKind(t, "mkdir", f.fs.Mkdir(ctx, "new"), fault.ReadOnly)
	wantKind(t, "rmdir", f.fs.Rmdir(ctx, "app"), fault.ReadOnly)
	wantKind(t, "a file at the root", f.fs.CreateInRoot("file"), fault.ReadOnly)
	wantKind(t, "a directory in the application", f.fs.MkdirInApp("app", "dir"), fault.ReadOnly)
	if got := f.value(db); got != "v" || f.puts()+f.cat.Calls("Delete") != 0 {
		t.Errorf("the store changed: %q", got)
	}
	if _, ok := f.cat.Stored(db2); ok {
		t.Errorf("%v was made", db2)
	}
}

// A mount holding only a public key replaces values but opens none that
// would read one, and refuses at the commit a write in place it cannot
// lay over the value.
func TestAWriteOnlyMountReplacesValuesAndReadsNone(t *testing.T) {
	f := newFixture(t, Options{WriteOnly: true})
	f.cat.Store(db, "abcdef")
	r := f.revision(db)
	for _, flags := range []uint32{syscall.O_RDONLY, syscall.O_RDWR, syscall.O_WRONLY | syscall.O_APPEND} {
		_, err := r.Open(ctx, shell, flags)
		wantKind(t, "open with flags "+strings.TrimSpace(string(rune('0'+flags&3))), err, fault.Permission)
	}
	h := f.open(db, shell, trunc)
	f.write(h, shell, "new", 0)
	f.mustNot("replacing close", h.Flush(ctx, shell))
	h = f.open(db, shell, wronly)
	f.write(h, shell, "XY", 2)
	wantKind(t, "close of a write in place", h.Flush(ctx, shell), fault.Permission)
	if got := f.value(db); got != "new" {
		t.Errorf("the store holds %q", got)
	}
}

// `: > f; echo v > f` in one shell: the second open of a secret being
// created, before the first one's release has committed the empty value,
// waits for that commit and opens what it stored, so that its own
// commit expects it: the value written is stored, never refused as a
// concurrent change. Both through the inode of the creation (an open)
// and by name (a create, as after the kernel dropped the name).
func TestAWriterAfterAnEmptyCreationIsNotItsConflict(t *testing.T) {
	for _, how := range []string{"open", "create"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.waitClosingWritersUpToHangBound()
			first, e := f.create(db, shell, trunc)
			f.mustNot("the first close", first.Flush(ctx, shell))
			opened := make(chan *Handle, 1)
			go func() {
				var h *Handle
				var err error
				if how == "open" {
					h, err = e.Created.Open(ctx, shell, trunc|syscall.O_CREAT)
				} else {
					var e2 Entry
					h, e2, err = f.fs.Create(ctx, shell, db, trunc|syscall.O_CREAT)
					if e2.Created != nil {
						defer e2.Created.Unhold()
					}
				}
				if err != nil {
					t.Errorf("the second open: %v", err)
				}
				opened <- h
			}()
			var second *Handle
			select {
			case second = <-opened: // it did not wait (the fault this shows)
			case <-time.After(200 * time.Millisecond): // waiting: let the release come
			}
			f.mustNot("the first release", first.Release(ctx))
			if second == nil {
				second = <-opened
			}
			if second == nil {
				return
			}
			f.replaceWith(second, shell, "secret\n")
			if got := f.value(db); got != "secret\n" {
				t.Errorf("the store holds %q, want the second write's value", got)
			}
		})
	}
}

// A creation that failed (EFBIG at its close) and was released leaves the
// kernel an inode of nothing: an open of it for writing (the kernel
// sends no O_CREAT to an OPEN) is sent to look the name up again, which
// then creates it, never ENOENT to a program that asked for O_CREAT.
func TestAnOpenOfAFailedCreationIsSentToLookTheNameUpAgain(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Limit = 8
	h, e := f.create(db, shell, trunc)
	if _, err := h.Write(shell, []byte("123456789"), 0); !fault.Is(fault.TooLarge, err) {
		t.Fatalf("write past the limit: %v", err)
	}
	wantKind(t, "close", h.Flush(ctx, shell), fault.TooLarge)
	h.Release(ctx)
	if _, err := e.Created.Open(ctx, shell, trunc); !errors.Is(err, ErrLookUpAgain) {
		t.Errorf("an open for writing of the failed creation: %v, want it sent to look the name up again", err)
	}
	h2, _ := f.create(db, shell, trunc)
	f.replaceWith(h2, shell, "fits")
	if got := f.value(db); got != "fits" {
		t.Errorf("after the retry the store holds %q", got)
	}
}

// mknod(2) of a regular file creates it empty, committed at once, as
// creat(2) and close(2) would; of an existing name, EEXIST; of a special
// file, EOPNOTSUPP, and on a read-only mount EROFS.
func TestMknodOfARegularFileCreatesItEmpty(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustNot("mknod S_IFREG", f.fs.Mknod(ctx, shell, db, syscall.S_IFREG|0o600))
	if got := f.value(db); got != "" || f.puts() != 1 {
		t.Errorf("after mknod: %q after %d puts; want the empty value, stored", got, f.puts())
	}
	wantKind(t, "mknod of an existing name", f.fs.Mknod(ctx, shell, db, syscall.S_IFREG|0o600), fault.Exist)
	wantKind(t, "mknod of a FIFO", f.fs.Mknod(ctx, shell, db2, syscall.S_IFIFO|0o600), fault.NotSupported)
	ro := newFixture(t, Options{ReadOnly: true})
	wantKind(t, "mknod on a read-only mount", ro.fs.Mknod(ctx, shell, db, syscall.S_IFREG|0o600), fault.ReadOnly)
	if f.puts() != 1 {
		t.Errorf("%d puts, want only the first mknod's", f.puts())
	}
}

// An open for writing of a secret another descriptor is creating (touch,
// or `exec 9<>f`, while `cmd > f` runs) commits nothing if nothing is
// written through it: the creator's value is stored. (It committed an
// empty value at its release, and the creator's commit then met it as a
// conflict and was discarded.)
func TestAnOpenThatFindsACreationUnderWayCommitsNothingUnwritten(t *testing.T) {
	f := newFixture(t, Options{})
	creator, e := f.create(db, shell, wronly|syscall.O_CREAT)
	f.write(creator, shell, "real-value\n", 0)
	toucher, err := e.Created.Open(ctx, other, wronly|syscall.O_CREAT)
	if err != nil {
		t.Fatal(err)
	}
	f.mustNot("the toucher's close", toucher.Flush(ctx, other))
	f.mustNot("the toucher's release", toucher.Release(ctx))
	if got := f.value(db); got != "<none>" {
		t.Errorf("after the toucher let go the store holds %q, want nothing yet", got)
	}
	f.mustNot("the creator's close", creator.Flush(ctx, shell))
	creator.Release(ctx)
	if got := f.value(db); got != "real-value\n" {
		t.Errorf("the store holds %q, want the creator's value", got)
	}
}

// A descriptor opened for writing before its opener was granted a lock
// edits what the lock's last holder committed (open, lock, read, write,
// close: the usual read-modify-write), not what was stored at its open,
// which would make its commit a conflict; one that wrote before the lock
// keeps what it wrote over.
func TestAWriterGrantedALockEditsWhatTheLastHolderCommitted(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "1")
	h := f.open(db, shell, syscall.O_RDWR)
	f.replaceWith(f.open(db, other, trunc), other, "2") // the lock's last holder, through the mount
	f.mustNot("locked", h.Locked(ctx))
	buf := make([]byte, 8)
	if n, err := h.Read(ctx, buf, 0); err != nil || string(buf[:n]) != "2" {
		t.Fatalf("read under the lock: %q, %v; want 2", buf[:n], err)
	}
	f.replaceWith(h, shell, "3")
	if got := f.value(db); got != "3" {
		t.Errorf("the store holds %q, want 3", got)
	}

	early := f.open(db, other, syscall.O_RDWR)
	f.write(early, other, "x", 0)
	f.replaceWith(f.open(db, shell, trunc), shell, "4")
	f.mustNot("locked", early.Locked(ctx))
	wantKind(t, "the close of a writer that wrote before the lock, over a value replaced since", early.Flush(ctx, other), fault.Conflict)
	early.Release(ctx)
}

// A writer whose opener closed a descriptor without writing (`cmd > f`
// once the shell closed its copy) is moved by a lock granted to the
// command as any writer that wrote nothing is; an appending writer whose
// new value cannot be loaded keeps the one it had, and can still append;
// and a lock never moves a writer back to a revision older than the one
// it expects (its own commit may land after the catalog was read).
func TestALockMovesWritersOnlyForwardAndKeepsWhatItCannotReplace(t *testing.T) {
	f := newFixture(t, Options{})
	f.cat.Store(db, "1")
	closing := f.open(db, shell, trunc)
	f.mustNot("the O_TRUNC truncation", closing.Truncate(ctx, 0))
	f.mustNot("the shell's close", closing.Flush(ctx, shell))
	f.replaceWith(f.open(db, other, trunc), other, "2")
	f.mustNot("locked", closing.Locked(ctx))
	f.write(closing, command, "3", 0)
	f.mustNot("the command's close", closing.Flush(ctx, command))
	closing.Release(ctx)
	if got := f.value(db); got != "3" {
		t.Errorf("the store holds %q after the closing writer's commit, want 3", got)
	}

	appender := f.open(db, shell, syscall.O_WRONLY|syscall.O_APPEND)
	f.replaceWith(f.open(db, other, trunc), other, "4")
	f.cat.FailValues(fault.E(db.Path(), fault.Unavailable, "keys down"))
	if err := appender.Locked(ctx); err == nil {
		t.Error("locked with the new value unreadable: no error")
	}
	f.cat.FailValues(nil)
	if _, err := appender.Write(shell, []byte("+"), 0); err != nil {
		t.Errorf("an append after a failed reload: %v", err)
	}
	appender.Release(ctx)

	h := f.open(db, shell, syscall.O_RDWR)
	f.write(h, shell, "5", 0)
	f.mustNot("fsync", h.Fsync(ctx, shell))
	before, _ := f.cat.Stored(db)
	stale := before
	stale.Version--
	if h.ss.rebase(stale, f.fs.load, nil) {
		t.Error("rebase took a value it was not given")
	}
	if !h.ss.expected.Equal(before.Revision()) {
		t.Errorf("a lock moved the writer back to version %d from %d", h.ss.expected.Version, before.Version)
	}
	h.Release(ctx)
}

// touch of a secret whose creator then goes without committing (killed)
// leaves the empty file touch meant, not nothing.
func TestATouchOfACreationWhoseCreatorGoesCreatesItEmpty(t *testing.T) {
	f := newFixture(t, Options{})
	creator, e := f.create(db, shell, wronly|syscall.O_CREAT)
	toucher, err := e.Created.Open(ctx, other, wronly|syscall.O_CREAT)
	if err != nil {
		t.Fatal(err)
	}
	creator.Discard() // killed: nothing committed
	f.mustNot("the toucher's close", toucher.Flush(ctx, other))
	f.mustNot("the toucher's release", toucher.Release(ctx))
	if got := f.value(db); got != "" {
		t.Errorf("the store holds %q, want the empty value touch made", got)
	}
}
