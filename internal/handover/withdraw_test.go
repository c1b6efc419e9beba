package handover

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A successor whose predecessor does not step down withdraws its mount
// from beneath the live one: readers by path see no error throughout,
// the old mount is the only one left at the path and serves it, a
// descriptor opened before reads on, and the successor's mount, attached
// nowhere, is released once its root is closed.
func TestAWithdrawnMountLeavesTheLiveOneAloneAtThePath(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")
	held, err := os.Open(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var reads, failures atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := os.ReadFile(filepath.Join(dir, "hello"))
				reads.Add(1)
				if err != nil || (string(got) != "old" && string(got) != "new") {
					failures.Add(1)
					lastErr.Store(fmt.Sprintf("%q, %v", got, err))
				}
			}
		}()
	}
	m, fresh := mountNew(t, "new")
	if err := m.AttachBeneath(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := m.Withdraw(dir, old.dev); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d reads by path failed across the withdrawal; last: %v", n, reads.Load(), lastErr.Load())
	}
	at := mountsAt(t, dir)
	if len(at) != 1 || at[0].Dev != old.dev {
		t.Errorf("after the withdrawal: %+v at %s, want the old mount (%s) alone", at, dir, devString(old.dev))
	}
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "old" {
		t.Errorf("the path after the withdrawal read %q, %v; want the old server's hello", got, err)
	}
	got := make([]byte, 16)
	if n, err := held.ReadAt(got, 0); string(got[:n]) != "old" {
		t.Errorf("the descriptor held across the withdrawal read %q, %v", got[:n], err)
	}
	m.Close()
	waitDone(t, fresh, "the withdrawn server, once its root was closed")
	select {
	case <-old.done:
		t.Error("the old server stopped serving")
	default:
	}
	// The old mount can still be replaced.
	replace(t, dir, "newer")
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "newer" {
		t.Errorf("the path after a later replacement read %q, %v", got, err)
	}
}

// Withdraw touches nothing when the mount above is not the one it was
// attached beneath.
func TestWithdrawLeavesAnotherTopMountAlone(t *testing.T) {
	dir := mountpoint(t)
	old, _ := mountOld(t, dir, "old")
	m, _ := mountNew(t, "new")
	if err := m.AttachBeneath(dir); err != nil {
		t.Fatal(err)
	}
	before := mountsAt(t, dir)
	if err := m.Withdraw(dir, old.dev+1); err == nil {
		t.Error("Withdraw beneath a device that is not on top succeeded")
	}
	if after := mountsAt(t, dir); len(after) != len(before) || after[0] != before[0] || after[1] != before[1] {
		t.Errorf("a refused Withdraw changed the mounts at %s: %+v, was %+v", dir, after, before)
	}
	detachAll(dir)
}
