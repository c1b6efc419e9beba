package integration

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// backendCalls is every request DynamoDB and KMS have received so far.
func backendCalls() int64 { return dynalite.Total() + localKMS.Total() }

// write() only fills the writer's private buffer: with DynamoDB and KMS
// frozen, a write in place into a secret whose value the mount has never
// decrypted returns without a single request to either; the close, once
// they thaw, lays the write over the old value and commits it.
func TestWriteDoesNotWaitForAFrozenStoreAndKMSAndTheCloseLaysItOverTheValue(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("abcdef"), "put", "app/s")
	m := mount(t, b, "--timeout", "10s")
	// No O_TRUNC: an edit in place, which needs the old value, at the
	// commit.
	f, err := os.OpenFile(m.path("app/s"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dynalite.Freeze()
	localKMS.Freeze()
	defer dynalite.Thaw()
	defer localKMS.Thaw()
	before := dynalite.Counts()
	kmsBefore := localKMS.Counts()
	calls := backendCalls()
	n, err := f.WriteAt([]byte("XY"), 2)
	if err != nil || n != 2 {
		t.Fatalf("write with the store and KMS frozen: %d, %v", n, err)
	}
	if got := backendCalls(); got != calls {
		t.Errorf("a write made %d backend requests (DynamoDB %v -> %v, KMS %v -> %v), want none",
			got-calls, before, dynalite.Counts(), kmsBefore, localKMS.Counts())
	}
	dynalite.Thaw()
	localKMS.Thaw()
	if err := f.Close(); err != nil {
		t.Fatalf("close once the store and KMS are back: %v", err)
	}
	if got := b.cli(t, nil, "get", "app/s"); got != "abXYef" {
		t.Errorf("the store holds %q, want the write laid over the old value: abXYef", got)
	}
	if got := m.mustSh("cat app/s"); got != "abXYef" {
		t.Errorf("the mount reads %q", got)
	}
}

// A write never waits for a commit in flight: while the close of one
// descriptor commits (KMS frozen under its GenerateDataKey), a write
// through another descriptor of the same open file returns without a
// request; the next close commits it on top.
func TestWriteDoesNotWaitForACommitInFlight(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("old"), "put", "app/s")
	m := mount(t, b, "--timeout", "10s")
	f, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("one"); err != nil {
		t.Fatal(err)
	}
	dup, err := dupFile(f)
	if err != nil {
		t.Fatal(err)
	}
	localKMS.Freeze()
	defer localKMS.Thaw()
	// The counters run across the shard's tests (and this test's own put):
	// wait for a GenerateDataKey after this one, the close's.
	keysBefore := localKMS.Calls("GenerateDataKey")
	closed := make(chan error, 1)
	go func() { closed <- dup.Close() }() // the same process wrote: its close commits
	eventually(t, 10*time.Second, "the close's commit reaches KMS", func() bool { return localKMS.Calls("GenerateDataKey") > keysBefore })
	calls := backendCalls()
	if _, err := f.WriteString("two"); err != nil {
		t.Fatalf("a write during the commit: %v", err)
	}
	if got := backendCalls(); got != calls {
		t.Errorf("a write during a commit made %d backend requests (DynamoDB %v, KMS %v), want none",
			got-calls, dynalite.Counts(), localKMS.Counts())
	}
	select {
	case err := <-closed:
		t.Fatalf("the close returned (%v) before the write: the test proves nothing", err)
	default:
	}
	localKMS.Thaw()
	if err := <-closed; err != nil {
		t.Fatalf("the first close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("the second close: %v", err)
	}
	if got := b.cli(t, nil, "get", "app/s"); got != "onetwo" {
		t.Errorf("the store holds %q, want onetwo", got)
	}
}

// dupFile returns a second descriptor of f's open file.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
