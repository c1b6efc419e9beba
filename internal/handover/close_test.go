package handover

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Closing the control socket (the process was signalled) while a
// step-down is under way lets the step-down finish and its successor hear
// that it did: a successor that heard nothing would take its mount back
// from beneath a path that is about to show it (handover.Mount.Withdraw),
// and leave the path with no secretfs at all. A connection with no
// request being answered is ended at once, and its next request fails.
func TestCloseDuringAStepDownStillAnswersTheSuccessor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var steppedDown, toldSteppedDown atomic.Int64
	c, err := Listen(SocketPath(dir), Server{Mountpoint: dir, Release: "old", Owner: os.Geteuid(), Log: quietLog(t),
		StepDown: func(func() error) error {
			close(entered)
			<-release
			steppedDown.Add(1)
			return nil
		},
		SteppedDown: func() { toldSteppedDown.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	successor, err := dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer successor.Close()
	if err := successor.ask(OpHello); err != nil {
		t.Fatal(err)
	}
	idle, err := dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := idle.ask(OpStatus); err != nil {
		t.Fatal(err)
	}

	asked := make(chan error, 1)
	go func() { asked <- successor.StepDownWithGap() }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the step-down did not begin")
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	// Close has ended the connections it ends (it holds the lock
	// while it does) before the step-down is let go.
	eventually(t, 30*time.Second, "Close begins", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closed
	})
	if err := idle.ask(OpStatus); !errors.Is(err, ErrNoReply) {
		t.Errorf("a connection with no request being answered, asked after Close: %v; want no reply (ErrNoReply), which a successor settles by looking at the mount point", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a step-down was under way", err)
	default:
	}
	close(release)

	select {
	case err := <-asked:
		if err != nil {
			t.Errorf("the successor, whose predecessor was closed in the middle of stepping down: %v; want to hear that it stepped down", err)
		} else if successor.Hello.Serving {
			t.Errorf("the step-down's reply says the predecessor still serves: %+v", successor.Hello)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the successor heard nothing within 30s")
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return once the step-down was answered")
	}
	if steppedDown.Load() != 1 || toldSteppedDown.Load() != 1 {
		t.Errorf("stepped down %d times, told so %d times; want once each", steppedDown.Load(), toldSteppedDown.Load())
	}
}

// A connection that has asked nothing yet is not being answered: Close
// ends it at once rather than wait until its request would have timed
// out (ioTimeout), which held up the exit of a process signalled while
// some client sat connected, and the client reads the end of it.
func TestCloseEndsAConnectionThatHasNotAskedYet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Listen(SocketPath(dir), Server{Mountpoint: dir, Release: "old", Owner: os.Geteuid(), Log: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	conn, err := dialSocket(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Close must find the connection accepted, or it would end it as
	// the listener's backlog rather than as a connection.
	eventually(t, 30*time.Second, "the connection is accepted", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.conns) == 1
	})

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	// A bound for a hang, far below ioTimeout (30s), which is what Close
	// waited for when it took the connection for one being answered.
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a connection that had asked nothing was open")
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(make([]byte, 64))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("the connection's read after Close: %d bytes, %v; want the end of it (EOF)", n, err)
	}
}
