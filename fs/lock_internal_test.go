package fs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
)

// slowPuts is a store whose writes take delay.
type slowPuts struct {
	store.Store
	delay time.Duration
}

func (s slowPuts) Put(ctx context.Context, it *store.Item, expected store.Revision) error {
	time.Sleep(s.delay)
	return s.Store.Put(ctx, it, expected)
}

// A record lock is released at the close of the descriptor it was taken
// through only once that close committed what was written under it: the
// next holder reads the new value, however long the store takes. (It was
// released before the commit, and a waiter on a store taking 500 ms read
// the old value.)
func TestTheNextLockHolderReadsWhatTheLastOneCommitted(t *testing.T) {
	m := memoryMount(t, slowPuts{memory.New(), 300 * time.Millisecond}, map[store.Key]string{{App: "app", Name: "counter"}: "1"}, nil)
	p := filepath.Join(mountWith(t, m), "app", "counter")

	writer, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	whole := unix.Flock_t{Type: unix.F_WRLCK} // a process's lock (lockf)
	if err := unix.FcntlFlock(writer.Fd(), unix.F_SETLK, &whole); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.WriteAt([]byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	waiter, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	got := make(chan string)
	go func() {
		read := unix.Flock_t{Type: unix.F_RDLCK} // an open file's lock: another owner than the writer's process
		if err := unix.FcntlFlock(waiter.Fd(), unix.F_OFD_SETLKW, &read); err != nil {
			got <- "lock: " + err.Error()
			return
		}
		b, err := os.ReadFile(p)
		if err != nil {
			got <- "read: " + err.Error()
			return
		}
		got <- string(b)
	}()
	time.Sleep(50 * time.Millisecond) // the waiter waits on the writer's lock
	if err := writer.Close(); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "2" {
		t.Errorf("the next holder of the lock read %q, want 2, what the last one committed", v)
	}
}
