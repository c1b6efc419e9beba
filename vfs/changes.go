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
type Changes struct {
	mu       sync.Mutex
	inFlight int
	stopped  bool
	idle     chan struct{} // made by Stop; closed once stopped with nothing in flight
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
