package vfs

import (
	"testing"

	"github.com/secretfs/secretfs/store"
)

// lockHeldAtEveryPut has every commit of k check that a lock of another
// owner is still refused while it is made: the lock taken for the write
// must be released only after the commit.
func lockHeldAtEveryPut(f *fixture, k store.Key) {
	f.cat.BeforePut(func(store.Key) {
		if held := f.fs.TestLock(k, whole(2, ReadLock), nil); held.Type == Unlock {
			f.t.Errorf("the lock was released before the commit of what was written under it")
		}
	})
	f.t.Cleanup(func() { f.cat.BeforePut(nil) })
}

// waitForLock has another owner wait for a read lock of k, through a
// reader's open file, and send what is stored once it holds it.
func waitForLock(f *fixture, k store.Key) <-chan string {
	got := make(chan string, 1)
	reader := f.fs.OpenReader()
	f.t.Cleanup(reader.Release)
	go func() {
		if err := f.fs.WaitLock(ctx, k, whole(2, ReadLock), reader); err != nil {
			got <- "lock: " + err.Error()
			return
		}
		got <- f.value(k)
	}()
	return got
}

// A record lock is released at the close of the writer's descriptor it
// was taken through only once that close committed what was written
// under it (Handle.Flush), and a lock whose close owed no commit at the
// release of the open file, after the commit the release makes
// (Handle.Release): the next holder reads the new value. The kernel's
// equivalent is fs's TestTheNextLockHolderReadsWhatTheLastOneCommitted.
func TestTheNextLockHolderReadsWhatTheLastOneCommittedWithoutTheKernel(t *testing.T) {
	k := store.Key{App: "app", Name: "counter"}
	writer := Caller{Thread: 1, Process: 1, Owner: 1}

	t.Run("close", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.cat.Store(k, "1")
		h := f.open(k, writer, wronly)
		f.mustNot("lock", f.fs.SetLock(ctx, k, whole(1, WriteLock), h))
		f.write(h, writer, "2", 0)
		lockHeldAtEveryPut(f, k)
		got := waitForLock(f, k)
		f.mustNot("close", h.Flush(ctx, writer))
		if v := <-got; v != "2" {
			t.Errorf("the next holder of the lock read %q, want 2, what the last one committed", v)
		}
		h.Release(ctx)
	})

	t.Run("release", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.cat.Store(k, "1")
		h := f.open(k, writer, trunc) // `: > f`: the release commits the truncation
		f.mustNot("lock", f.fs.SetLock(ctx, k, whole(1, WriteLock), h))
		lockHeldAtEveryPut(f, k)
		got := waitForLock(f, k)
		f.mustNot("close", h.Flush(ctx, writer))
		if held := f.fs.TestLock(k, whole(2, ReadLock), nil); held.Type == Unlock {
			t.Fatal("a close whose release owes the commit released the lock")
		}
		f.mustNot("release", h.Release(ctx))
		if v := <-got; v != "" {
			t.Errorf("the next holder of the lock read %q, want nothing, what the release committed", v)
		}
	})
}
