package fs

import (
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// Kernel notifications tell the kernel to forget what it cached. Every
// one returns without waiting on the kernel unless it says so, and none
// may be sent while holding a lock a request handler could need: the
// kernel may wait, before it takes the notification, for a request in
// flight (dropping pages waits for the page locks of reads in progress;
// dropping a name waits for its directory's lock).

// notifyWait bounds how long a request waits for the kernel to take a
// notification before it replies (see notifyEntryBeforeReply). If the
// kernel can only take it once this request ends, the reply goes out
// after this long and the notification follows it.
const notifyWait = 100 * time.Millisecond

// notifyEntry makes the kernel look parent/name up again at its next use.
func notifyEntry(parent *gofs.Inode, name string) { go parent.NotifyEntry(name) }

// notifyEntryBeforeReply is notifyEntry, waiting (boundedly) until the
// kernel took it, so that the caller's next syscall, once the request
// being served returns, looks the name up again.
func notifyEntryBeforeReply(parent *gofs.Inode, name string) {
	beforeReply(func() { parent.NotifyEntry(name) })
}

// notifyAttrBeforeReply makes the kernel drop n's attributes (owner, mode,
// size), keeping its cached pages, waiting (boundedly) until it took it.
// It takes no lock of the kernel's, so it may be sent while a request on
// n is in flight.
func notifyAttrBeforeReply(n *gofs.Inode) {
	// A negative offset asks for the attributes only.
	beforeReply(func() { n.NotifyContent(-1, 0) })
}

// beforeReply sends a notification and waits for the kernel to take it,
// for at most notifyWait.
func beforeReply(notify func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		notify()
	}()
	t := time.NewTimer(notifyWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// notifyContent makes the kernel drop n's attributes and cached pages.
func notifyContent(n *gofs.Inode) { go n.NotifyContent(0, 0) }
