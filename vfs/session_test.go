package vfs

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
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
	load := func(context.Context, store.Key, store.Meta) (crypto.Plaintext, error) {
		return crypto.Plaintext(value), nil
	}
	return newSession(testKey, meta, load, false, 100, 0, nil)
}

var ctx0 = context.Background()

const writer, child uint64 = 7, 8

func mustWrite(t *testing.T, s *session, owner uint64, data string, off int64) {
	t.Helper()
	if _, err := s.write(owner, []byte(data), off, limit); err != nil {
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
	if action, _ := s.flush(Caller{Owner: child, Process: 200}); action != flushNothing {
		t.Errorf("a child's close: %v, want nothing", action)
	}
	action, _ := s.flush(Caller{Owner: writer, Process: 100})
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
	if action, _ := s.flush(Caller{Owner: writer, Process: 100}); action != flushNothing {
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
	if action, err := s.flush(Caller{Owner: writer}); action != flushReport || err == nil {
		t.Errorf("a later close: %v, %v; want the failure reported", action, err)
	}
	if need, err := s.fsyncNeeded(); need || err == nil {
		t.Errorf("fsync: %v, %v; want the failure reported, no commit", need, err)
	}
	if s.releaseNeeded() {
		t.Error("the release would commit a failed buffer")
	}
	if _, err := s.write(writer, []byte("more"), 0, limit); err == nil {
		t.Error("a write after the failure succeeded")
	}
	if got := c.all(); len(got) != 0 {
		t.Errorf("committed %q after a failure", got)
	}
}

func TestAKilledWriterCommitsNothing(t *testing.T) {
	s := openSession("old", false)
	mustWrite(t, s, writer, "par", 0)
	action, err := s.flush(Caller{Owner: writer, Process: 100, KilledBy: syscall.SIGKILL})
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
	if action, _ := s.flush(Caller{Owner: writer}); action != flushCommit {
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
	if action, _ := s.flush(Caller{Owner: writer}); action != flushNothing {
		t.Errorf("close of an orphan: %v", action)
	}
	if s.releaseNeeded() {
		t.Error("an orphan owes a commit")
	}
}

func TestAValueOverTheLimitFailsTheSession(t *testing.T) {
	s := openSession("old", false)
	if _, err := s.write(writer, make([]byte, 10), 0, 5); !fault.Is(fault.TooLarge, err) {
		t.Fatalf("write over the limit: %v", err)
	}
	if action, err := s.flush(Caller{Owner: writer}); action != flushReport || !fault.Is(fault.TooLarge, err) {
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
	load := func(context.Context, store.Key, store.Meta) (crypto.Plaintext, error) {
		loads++
		return crypto.Plaintext("old"), nil
	}
	s := newSession(testKey, meta, load, false, 100, 0, nil)
	if err := s.truncate(ctx0, 0, limit); err != nil {
		t.Fatal(err)
	}
	if s.current() != sessionPending {
		t.Fatalf("after O_TRUNC: %v, want pending", s.current())
	}
	const shell, command uint64 = 7, 9
	if action, _ := s.flush(Caller{Owner: shell, Process: 100}); action != flushNothing {
		t.Fatalf("the shell's close of its copy: %v, want nothing committed", action)
	}
	mustWrite(t, s, command, "new", 0)
	if action, _ := s.flush(Caller{Owner: command, Process: 200}); action != flushCommit {
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

// loader is a fake value load that counts its calls, records what it was
// asked for, and can fail or wait.
type loader struct {
	mu      sync.Mutex
	value   string
	err     error
	calls   int
	asked   []store.Key
	hold    chan struct{} // if set, loads wait for it
	entered chan struct{} // if set, told of each load as it begins
}

func (l *loader) load(ctx context.Context, k store.Key, meta store.Meta) (crypto.Plaintext, error) {
	if l.entered != nil {
		l.entered <- struct{}{}
	}
	if l.hold != nil {
		<-l.hold
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	l.asked = append(l.asked, k)
	if l.err != nil {
		return nil, l.err
	}
	return crypto.Plaintext(l.value).Clone(), nil
}

func (l *loader) loads() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// editSession opens a session on a stored value that l loads.
func editSession(l *loader) *session {
	meta := store.Meta{Key: testKey, Version: 1, InitialisationVector: []byte{1}, Size: int64(len(l.value))}
	return newSession(testKey, meta, l.load, false, 100, 0, nil)
}

// commitOnce closes as the writer and commits, returning what was stored.
func commitOnce(t *testing.T, s *session) string {
	t.Helper()
	if action, err := s.flush(Caller{Owner: writer, Process: 100}); action != flushCommit {
		t.Fatalf("the writer's close: %v, %v; want a commit", action, err)
	}
	c := &committed{}
	if _, ok, err := s.commit(ctx0, c.put); !ok || err != nil {
		t.Fatalf("commit: %v, %v", ok, err)
	}
	got := c.all()
	if len(got) != 1 {
		t.Fatalf("committed %q, want one value", got)
	}
	return got[0]
}

// write() only fills the buffer: writes to a value not loaded yet are an
// overlay, and the commit lays them over the value it loads then.
func TestWritesBeforeTheLoadLoadNothingAndTheCommitLaysThemOverTheValue(t *testing.T) {
	for _, c := range []struct {
		name, value string
		writes      []string // data@offset, applied in order
		want        string
	}{
		{"within the value", "abcdef", []string{"XY@2"}, "abXYef"},
		{"the value longer than the writes", "abcdefgh", []string{"12@0"}, "12cdefgh"},
		{"the writes longer than the value", "ab", []string{"WXYZ@1"}, "aWXYZ"},
		{"a hole past the value's end reads zeros", "abcdef", []string{"XY@2", "Z@8"}, "abXYef\x00\x00Z"},
		{"later writes win where they overlap", "abcdef", []string{"XYZ@1", "q@2", "r@3"}, "aXqref"},
		{"touching writes", "abcdef", []string{"1@0", "2@1", "3@5"}, "12cde3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &loader{value: c.value}
			s := editSession(l)
			end := int64(0)
			for _, w := range c.writes {
				data, at, _ := strings.Cut(w, "@")
				off, _ := strconv.ParseInt(at, 10, 64)
				mustWrite(t, s, writer, data, off)
				end = max(end, off+int64(len(data)))
			}
			if l.loads() != 0 {
				t.Fatalf("writes loaded the value %d times, want none", l.loads())
			}
			if got, want := s.metadata().Size, max(int64(len(c.value)), end); got != want {
				t.Errorf("size before the load: %d, want %d (the longer of the value and the writes)", got, want)
			}
			if got := commitOnce(t, s); got != c.want {
				t.Errorf("committed %q, want %q", got, c.want)
			}
			if l.loads() != 1 {
				t.Errorf("the commit loaded the value %d times, want 1", l.loads())
			}
		})
	}
}

// A read through the writer's descriptor needs the whole value: it loads
// it, with the writes so far laid over it; later writes and the commit
// need no other load.
func TestAReadThroughTheWriterLoadsTheValueOnce(t *testing.T) {
	l := &loader{value: "abcdef"}
	s := editSession(l)
	mustWrite(t, s, writer, "XY", 2)
	buf := make([]byte, 16)
	n, err := s.read(ctx0, buf, 0)
	if err != nil || string(buf[:n]) != "abXYef" {
		t.Fatalf("read %q, %v; want abXYef", buf[:n], err)
	}
	mustWrite(t, s, writer, "Q", 0)
	if got := commitOnce(t, s); got != "QbXYef" {
		t.Errorf("committed %q", got)
	}
	if l.loads() != 1 {
		t.Errorf("loaded %d times, want 1", l.loads())
	}
}

// A truncation to 0 (how O_TRUNC arrives) discards the overlay and needs
// no value; one to another size loads the value and cuts it there.
func TestATruncationToZeroNeedsNoValueAndToAnotherSizeLoadsIt(t *testing.T) {
	l := &loader{value: "abcdef"}
	s := editSession(l)
	mustWrite(t, s, writer, "XY", 2)
	if err := s.truncate(ctx0, 0, limit); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, writer, "n", 0)
	if got := commitOnce(t, s); got != "n" || l.loads() != 0 {
		t.Errorf("after a truncation to 0: committed %q after %d loads; want n after none", got, l.loads())
	}

	l = &loader{value: "abcdef"}
	s = editSession(l)
	mustWrite(t, s, writer, "XY", 3)
	if err := s.truncate(ctx0, 4, limit); err != nil {
		t.Fatal(err)
	}
	if l.loads() != 1 {
		t.Fatalf("a truncation to 4 loaded %d times, want 1", l.loads())
	}
	mustWrite(t, s, writer, "Z", 6)
	if got := commitOnce(t, s); got != "abcX\x00\x00Z" {
		t.Errorf("committed %q, want the value with the write, cut at 4, then Z at 6", got)
	}
}

// A value that cannot be loaded (a public key only, a frozen KMS) fails
// the commit that needed it, never the write; and the session, so that
// nothing of it is committed later, and the failure is told as new once.
func TestALoadFailureFailsTheCommitNotTheWrite(t *testing.T) {
	l := &loader{value: "abcdef", err: fault.E(fault.Unavailable, "no answer in time")}
	s := editSession(l)
	if _, err := s.write(writer, []byte("XY"), 2, limit); err != nil {
		t.Fatalf("a write with the value out of reach: %v", err)
	}
	if action, _ := s.flush(Caller{Owner: writer, Process: 100}); action != flushCommit {
		t.Fatalf("close: %v", action)
	}
	c := &committed{}
	_, ok, err := s.commit(ctx0, c.put)
	var again Repeated
	if ok || !fault.Is(fault.Unavailable, err) || errors.As(err, &again) {
		t.Fatalf("commit: %v, %v; want the load's failure, told as new", ok, err)
	}
	if s.current() != sessionFailed {
		t.Errorf("state %v, want failed", s.current())
	}
	l.err = nil
	if action, err := s.flush(Caller{Owner: writer}); action != flushReport || !errors.As(err, &again) {
		t.Errorf("a later close: %v, %v; want the failure reported again", action, err)
	}
	if s.releaseNeeded() {
		t.Error("the release would commit after a failed load")
	}
	if got := c.all(); len(got) != 0 {
		t.Errorf("committed %q", got)
	}
}

// The commit's load runs without the session's lock: a write meanwhile
// returns at once, and is laid over the value with the others.
func TestAWriteDuringTheCommitsLoadDoesNotWaitForIt(t *testing.T) {
	l := &loader{value: "abcdef", hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	thaw := sync.OnceFunc(func() { close(l.hold) })
	t.Cleanup(thaw) // a failure below must not leave the load held
	s := editSession(l)
	mustWrite(t, s, writer, "XY", 2)
	c := &committed{}
	done := make(chan error, 1)
	go func() { _, _, err := s.commit(ctx0, c.put); done <- err }()
	await(t, "the commit's load to begin", l.entered)
	wrote := make(chan error, 1)
	go func() { _, err := s.write(writer, []byte("Q"), 0, limit); wrote <- err }()
	// A write that waited for the load would wait for ever: the load is
	// held until the write returns.
	if err := await(t, "the write during the load to return", wrote); err != nil {
		t.Fatalf("the write during the load: %v", err)
	}
	thaw()
	if err := await(t, "the commit to return", done); err != nil {
		t.Fatal(err)
	}
	if got := c.all(); len(got) != 1 || got[0] != "QbXYef" {
		t.Errorf("committed %q, want QbXYef", got)
	}
}

// The load follows a rename: a session not loaded yet reads the value
// where it lives now.
func TestARenamedSessionLoadsFromItsNewName(t *testing.T) {
	l := &loader{value: "abcdef"}
	s := editSession(l)
	mustWrite(t, s, writer, "XY", 2)
	to := store.Meta{Key: store.Key{App: "app", Name: "t"}, Version: 1, InitialisationVector: []byte{9}, Size: 6}
	s.moved(s.expected, to)
	if got := commitOnce(t, s); got != "abXYef" {
		t.Errorf("committed %q", got)
	}
	if len(l.asked) != 1 || l.asked[0] != to.Key {
		t.Errorf("loaded %v, want the new name %v", l.asked, to.Key)
	}
}

// The commit a release owes makes others wait (busy) while it loads, too.
func TestAReleasesLoadIsWaitedFor(t *testing.T) {
	l := &loader{value: "abcdef", hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	s := editSession(l)
	changes := 0
	s.onChange = func() { changes++ }
	mustWrite(t, s, writer, "XY", 2)
	if !s.releaseNeeded() || !s.busy() {
		t.Fatal("written and never closed by its writer: the release owes a commit, which others wait for")
	}
	done := make(chan error, 1)
	go func() { _, _, err := s.commit(ctx0, (&committed{}).put); done <- err }()
	<-l.entered
	if !s.busy() {
		t.Error("not busy while the release's commit loads the value")
	}
	close(l.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.busy() || changes != 2 {
		t.Errorf("after the release's commit: busy=%v, %d changes told; want not busy, 2", s.busy(), changes)
	}
}

// An appending session is loaded at open (see FS.openWriter): its
// writes go to the end without loading.
func TestAnAppendingSessionWritesAtTheEndOfTheValueLoadedAtOpen(t *testing.T) {
	l := &loader{value: "old"}
	meta := store.Meta{Key: testKey, Version: 1, InitialisationVector: []byte{1}, Size: 3}
	s := newSession(testKey, meta, l.load, true, 100, 0, nil)
	if err := s.ensure(ctx0); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, writer, "+1", 0)
	mustWrite(t, s, writer, "+2", 0)
	if got := commitOnce(t, s); got != "old+1+2" || l.loads() != 1 {
		t.Errorf("committed %q after %d loads; want old+1+2 after 1", got, l.loads())
	}
}

func TestAddSpanMergesWhatOverlapsOrTouches(t *testing.T) {
	var spans []span
	for _, add := range []span{{10, 12}, {0, 2}, {5, 6}, {2, 3}, {11, 15}, {20, 21}, {4, 20}} {
		spans = addSpan(spans, add)
	}
	if want := []span{{0, 3}, {4, 21}}; !slices.Equal(spans, want) {
		t.Errorf("spans %v, want %v", spans, want)
	}
}

func TestResizeWipesWhatItLeavesBehind(t *testing.T) {
	v := crypto.Plaintext("secret")
	backing := v[:cap(v)]
	shrunk := resize(v, 2)
	if string(shrunk) != "se" || string(backing[2:6]) != "\x00\x00\x00\x00" {
		t.Fatalf("shrink: %q, cut bytes %q", shrunk, backing[2:6])
	}
	regrown := resize(shrunk, 4)
	if string(regrown) != "se\x00\x00" {
		t.Fatalf("regrow within capacity reads %q, want zeros after the kept bytes", regrown)
	}
	old := regrown
	grown := resize(regrown, int64(cap(regrown))+10)
	if string(grown[:2]) != "se" {
		t.Fatalf("grow lost the value: %q", grown[:2])
	}
	for _, c := range old[:cap(old)] {
		if c != 0 {
			t.Fatal("growing left the old array unwiped")
		}
	}
}
