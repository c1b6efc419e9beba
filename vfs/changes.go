package vfs

import (
	"sync"

	"github.com/secretfs/secretfs/fault"
)

// Changes counts the changes to the store in flight: commits (at a
// close, an fsync or a release), truncations by path, renames and
// removals. A process that ends while one is in flight cuts it off
// midway: it may land with nobody told (no log line, no audit record),
// and a commit at a release has no writer waiting to hear of it at all.
// So a stop calls Stop, which refuses every change from then on before
// it reaches the store, and waits for those in flight, each bounded by
// the backend's deadlines. The zero value is ready; a nil *Changes
// counts nothing and refuses nothing.
//
// It also counts the handles open for writing that the kernel has not
// released: close(2) returns before the kernel sends a last close's
// RELEASE, which may owe a commit (`: > file`), and an unmount or a
// detach that releases the file system cancels a RELEASE the mount has
// not read yet, and that commit with it. So a stop, or a step-down, waits
// a moment for WritersReleased before it unmounts.
type Changes struct {
	mu       sync.Mutex
	inFlight int
	stopped  bool
	idle     chan struct{} // made by Stop; closed once stopped with nothing in flight

	writers   int           // handles open for writing, not yet released
	noWriters chan struct{} // closed once writers is 0; made anew as it leaves 0
}

// released is the channel WritersReleased gives while no handle is open
// for writing.
var released = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// opened records a handle open for writing, and returns the function
// that records its release; calls after the first do nothing.
func (c *Changes) opened() (release func()) {
	if c == nil {
		return func() {}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writers == 0 {
		c.noWriters = make(chan struct{})
	}
	c.writers++
	var once sync.Once
	return func() { once.Do(c.writerReleased) }
}

func (c *Changes) writerReleased() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writers--
	if c.writers == 0 {
		close(c.noWriters)
	}
}

// WritersReleased returns a channel that is closed once no handle open
// for writing is left (the kernel released each, and a commit each owed
// at its release has begun, and is counted in flight).
func (c *Changes) WritersReleased() <-chan struct{} {
	if c == nil {
		return released
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writers == 0 {
		return released
	}
	return c.noWriters
}

// begin records a change of p about to reach the store, and returns the
// function that ends it; after Stop it refuses (fault.Unavailable).
func (c *Changes) begin(p fault.Path) (end func(), err error) {
	if c == nil {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, fault.E(p, fault.Unavailable, "the mount is stopping: nothing was changed")
	}
	c.inFlight++
	return c.end, nil
}

func (c *Changes) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if c.stopped && c.inFlight == 0 {
		close(c.idle)
	}
}

// Stop refuses every change from now on, and returns a channel that is
// closed once none is in flight.
func (c *Changes) Stop() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.stopped = true
		c.idle = make(chan struct{})
		if c.inFlight == 0 {
			close(c.idle)
		}
	}
	return c.idle
}
