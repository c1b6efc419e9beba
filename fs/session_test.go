package fs

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// The write session is a plain state machine: these tests drive it
// without FUSE, a store or a kernel.

var testKey = store.Key{App: "app", Name: "s"}

const limit = 1 << 20

// committed is what a fake commit function stored.
type committed struct {
	mu      sync.Mutex
	values  []string
	version store.Version
	err     error         // returned instead of committing
	hold    chan struct{} // if set, commits wait for it
	entered chan struct{}
}

func (c *committed) put(ctx context.Context, k store.Key, value []byte, expected store.Revision) (store.Meta, error) {
	if c.entered != nil {
		c.entered <- struct{}{}
	}
	if c.hold != nil {
		<-c.hold
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return store.Meta{}, c.err
	}
	c.values = append(c.values, string(value))
	c.version = expected.Version.Next()
	return store.Meta{Key: k, Version: c.version, InitialisationVector: []byte{byte(c.version)}, Size: int64(len(value))}, nil
}

func (c *committed) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.values...)
}

// openSession opens a session on a stored value (or, creating, on
// none), whose value is loaded on demand.
func openSession(value string, creating bool) *session {
	if creating {
		meta := store.Meta{Key: testKey, Version: store.Absent}
		return newSession(testKey, meta, nil, false, 100, 0, nil)
	}
	meta := store.Meta{Key: testKey, Version: 1, InitialisationVector: []byte{1}, Size: int64(len(value))}
	load := func(context.Context) (crypto.Plaintext, error) { return crypto.Plaintext(value), nil }
	return newSession(testKey, meta, load, false, 100, 0, nil)
}

var ctx0 = context.Background()

const writer, child uint64 = 7, 8

func mustWrite(t *testing.T, s *session, owner uint64, data string, off int64) {
	t.Helper()
	if _, err := s.write(ctx0, owner, []byte(data), off, limit); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestAWriterCommitsAtItsCloseAndAChildsCloseCommitsNothing(t *testing.T) {
	s := openSession("old", false)
	c := &committed{}
	mustWrite(t, s, writer, "new", 0)
	if s.current() != sessionDirty {
		t.Fatalf("after a write: %v, want dirty", s.current())
	}
	if action, _ := s.flush(closer{owner: child, process: 200}); action != flushNothing {
		t.Errorf("a child's close: %v, want nothing", action)
	}
	action, _ := s.flush(closer{owner: writer, process: 100})
	if action != flushCommit {
		t.Fatalf("the writer's close: %v, want commit", action)
	}
	if _, ok, err := s.commit(context.Background(), c.put); !ok || err != nil {
		t.Fatalf("commit: %v, %v", ok, err)
	}
	if got := c.all(); len(got) != 1 || got[0] != "new" {
		t.Errorf("committed %q", got)
	}
	if s.current() != sessionClean {
		t.Errorf("after the commit: %v, want clean", s.current())
	}
	if s.releaseNeeded() {
		t.Error("a clean session owes a commit at release")
	}
}

func TestACreationNobodyWroteCommitsEmptyAtReleaseAndOthersWaitMeanwhile(t *testing.T) {
	s := openSession("", true)
	changes := 0
	s.onChange = func() { changes++ }
	if action, _ := s.flush(closer{owner: writer, process: 100}); action != flushNothing {
		t.Fatalf("the opener's close of a creation: %v, want nothing yet", action)
	}
	if s.current() != sessionClosing || !s.busy() {
		t.Fatalf("after the opener's close: %v, want closing (busy)", s.current())
	}
	if !s.releaseNeeded() {
		t.Fatal("a creation owes a commit at release")
	}
	c := &committed{}
	if _, ok, err := s.commit(context.Background(), c.put); !ok || err != nil {
		t.Fatalf("commit: %v, %v", ok, err)
	}
	if got := c.all(); len(got) != 1 || got[0] != "" {
		t.Errorf("committed %q, want one empty value", got)
	}
	if s.busy() || changes != 2 {
		t.Errorf("after the release's commit: busy=%v, %d changes told; want not busy, 2 (into and out of waiting)", s.busy(), changes)
	}
}

func TestACommitOnCloseIsNotWaitedForButOneAtReleaseIs(t *testing.T) {
	c := &committed{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	s := openSession("old", false)
	mustWrite(t, s, writer, "new", 0)
	go s.commit(context.Background(), c.put)
	<-c.entered
	if s.busy() {
		t.Error("a commit by a close still in progress makes others wait")
	}
	// Meanwhile the buffer answers at once: nothing waits for the network.
	if m := s.metadata(); m.Size != 3 {
		t.Errorf("metadata during the commit: %+v", m)
	}
	close(c.hold)
	s2 := openSession("", true)
	c2 := &committed{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	if !s2.releaseNeeded() {
		t.Fatal("no commit owed")
	}
	go s2.commit(context.Background(), c2.put)
	<-c2.entered
	if !s2.busy() {
		t.Error("a release's commit does not make others wait")
	}
	close(c2.hold)
}

// What close() said is true: once a commit failed, the buffer is never
// committed, not at the next close, an fsync or the release.
func TestAFailedCommitNeverCommitsLater(t *testing.T) {
	s := openSession("old", false)
	c := &committed{err: fault.E(fault.Unavailable, "no answer in time")}
	mustWrite(t, s, writer, "new", 0)
	if _, ok, err := s.commit(context.Background(), c.put); ok || err == nil {
		t.Fatalf("commit: %v, %v; want the failure", ok, err)
	}
	c.err = nil
	if action, err := s.flush(closer{owner: writer}); action != flushReport || err == nil {
		t.Errorf("a later close: %v, %v; want the failure reported", action, err)
	}
	if need, err := s.fsyncNeeded(); need || err == nil {
		t.Errorf("fsync: %v, %v; want the failure reported, no commit", need, err)
	}
	if s.releaseNeeded() {
		t.Error("the release would commit a failed buffer")
	}
	if _, err := s.write(ctx0, writer, []byte("more"), 0, limit); err == nil {
		t.Error("a write after the failure succeeded")
	}
	if got := c.all(); len(got) != 0 {
		t.Errorf("committed %q after a failure", got)
	}
}

func TestAKilledWriterCommitsNothing(t *testing.T) {
	s := openSession("old", false)
	mustWrite(t, s, writer, "par", 0)
	action, err := s.flush(closer{owner: writer, process: 100, killedBy: syscall.SIGKILL})
	if action != flushReport || err == nil {
		t.Fatalf("close by a killed writer: %v, %v", action, err)
	}
	if s.current() != sessionFailed || s.releaseNeeded() {
		t.Errorf("state %v; the release would commit", s.current())
	}
}

func TestWritesDuringACommitAreCommittedByTheNextClose(t *testing.T) {
	c := &committed{hold: make(chan struct{}), entered: make(chan struct{}, 2)}
	s := openSession("", false)
	mustWrite(t, s, writer, "one", 0)
	done := make(chan struct{})
	go func() { s.commit(context.Background(), c.put); close(done) }()
	<-c.entered
	mustWrite(t, s, writer, "two", 3)
	close(c.hold)
	<-done
	if s.current() != sessionDirty {
		t.Fatalf("after a commit overtaken by a write: %v, want dirty", s.current())
	}
	if action, _ := s.flush(closer{owner: writer}); action != flushCommit {
		t.Fatalf("the next close: %v", action)
	}
	if _, ok, err := s.commit(context.Background(), c.put); !ok || err != nil {
		t.Fatal(err)
	}
	if got := c.all(); len(got) != 2 || got[1] != "onetwo" {
		t.Errorf("committed %q", got)
	}
}

func TestAnOrphanedSessionAcceptsWritesAndCommitsNothing(t *testing.T) {
	s := openSession("old", false)
	s.orphan()
	mustWrite(t, s, writer, "gone", 0)
	if action, _ := s.flush(closer{owner: writer}); action != flushNothing {
		t.Errorf("close of an orphan: %v", action)
	}
	if s.releaseNeeded() {
		t.Error("an orphan owes a commit")
	}
}

func TestAValueOverTheLimitFailsTheSession(t *testing.T) {
	s := openSession("old", false)
	if _, err := s.write(ctx0, writer, make([]byte, 10), 0, 5); !fault.Is(fault.TooLarge, err) {
		t.Fatalf("write over the limit: %v", err)
	}
	if action, err := s.flush(closer{owner: writer}); action != flushReport || !fault.Is(fault.TooLarge, err) {
		t.Errorf("close: %v, %v", action, err)
	}
	if s.buf != nil {
		t.Error("the failed buffer was kept")
	}
}

func TestARenameMovesASessionThatExpectedTheRenamedRevisionOnly(t *testing.T) {
	s := openSession("v", false)
	old := s.expected
	to := store.Meta{Key: store.Key{App: "app", Name: "t"}, Version: 1, InitialisationVector: []byte{9}}
	s.moved(old, to)
	if s.key != to.Key || !s.expected.Equal(to.Revision()) {
		t.Errorf("after a rename of its revision: key %v expects %v", s.key, s.expected)
	}
	stale := openSession("v", false)
	stale.moved(store.Revision{Version: 5, IV: []byte{5}}, to)
	if stale.current() != sessionFailed || !fault.Is(fault.Conflict, stale.failure) {
		t.Errorf("a stale writer after a rename: %v, %v; want failed with a conflict", stale.current(), stale.failure)
	}
}

func TestSessionStatesHaveNames(t *testing.T) {
	for st := sessionClean; st <= sessionReleased; st++ {
		if st.String() == "" {
			t.Errorf("state %d has no name", st)
		}
	}
}

// The release's commit outcome unknown: the error says so and nothing
// more is committed.
func TestAnUnknownOutcomeIsReportedAsSuch(t *testing.T) {
	s := openSession("", true)
	c := &committed{err: fault.E(fault.Unavailable, secrets.ErrOutcomeUnknown)}
	s.releaseNeeded()
	_, _, err := s.commit(context.Background(), c.put)
	if !errors.Is(err, secrets.ErrOutcomeUnknown) {
		t.Errorf("commit: %v", err)
	}
	if s.current() != sessionFailed {
		t.Errorf("state %v", s.current())
	}
}

// The shell's redirection: it opens with O_TRUNC (which reaches the
// session as a truncation), closes its own copy, and the command writes
// and closes. Nothing is committed at the shell's close; the command's
// close commits the new value; the old value is never loaded.
func TestATruncationIsNotCommittedByTheTruncatersCloseAndNeedsNoValue(t *testing.T) {
	meta := store.Meta{Key: testKey, Version: 1, InitialisationVector: []byte{1}, Size: 3}
	loads := 0
	load := func(context.Context) (crypto.Plaintext, error) { loads++; return crypto.Plaintext("old"), nil }
	s := newSession(testKey, meta, load, false, 100, 0, nil)
	if err := s.truncate(ctx0, 0, limit); err != nil {
		t.Fatal(err)
	}
	if s.current() != sessionPending {
		t.Fatalf("after O_TRUNC: %v, want pending", s.current())
	}
	const shell, command uint64 = 7, 9
	if action, _ := s.flush(closer{owner: shell, process: 100}); action != flushNothing {
		t.Fatalf("the shell's close of its copy: %v, want nothing committed", action)
	}
	mustWrite(t, s, command, "new", 0)
	if action, _ := s.flush(closer{owner: command, process: 200}); action != flushCommit {
		t.Fatalf("the command's close: %v, want commit", action)
	}
	c := &committed{}
	if _, ok, err := s.commit(ctx0, c.put); !ok || err != nil {
		t.Fatal(err)
	}
	if got := c.all(); len(got) != 1 || got[0] != "new" {
		t.Errorf("committed %q", got)
	}
	if loads != 0 {
		t.Errorf("a value replaced whole was loaded %d times", loads)
	}
}

// An append needs the value: it is loaded once, at the first write.
func TestAnAppendLoadsTheValueOnce(t *testing.T) {
	meta := store.Meta{Key: testKey, Version: 1, InitialisationVector: []byte{1}, Size: 3}
	loads := 0
	load := func(context.Context) (crypto.Plaintext, error) { loads++; return crypto.Plaintext("old"), nil }
	s := newSession(testKey, meta, load, true, 100, 0, nil)
	mustWrite(t, s, writer, "+1", 0)
	mustWrite(t, s, writer, "+2", 0)
	buf := make([]byte, 16)
	n, _ := s.read(ctx0, buf, 0)
	if string(buf[:n]) != "old+1+2" || loads != 1 {
		t.Errorf("buffer %q after %d loads; want old+1+2 after 1", buf[:n], loads)
	}
}

// A value that cannot be loaded (a public key only) fails the write that
// needed it, not the session.
func TestALoadFailureFailsOnlyTheWriteThatNeededIt(t *testing.T) {
	meta := store.Meta{Key: testKey, Version: 1, InitialisationVector: []byte{1}, Size: 3}
	denied := fault.E(fault.Permission, "public key only")
	s := newSession(testKey, meta, func(context.Context) (crypto.Plaintext, error) { return nil, denied }, false, 100, 0, nil)
	if _, err := s.write(ctx0, writer, []byte("x"), 1, limit); !fault.Is(fault.Permission, err) {
		t.Errorf("a write in place without the value: %v", err)
	}
	if err := s.truncate(ctx0, 0, limit); err != nil {
		t.Errorf("truncating to nothing needs no value: %v", err)
	}
	mustWrite(t, s, writer, "new", 0)
}
