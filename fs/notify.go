package fs

import (
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// notifier tells the kernel to forget what it cached. Every call returns
// without waiting on the kernel unless it says so, and none may be made
// while holding a lock a request handler could need: the kernel may wait,
// before it takes the notification, for a request in flight (dropping
// pages waits for the page locks of reads in progress; dropping a name
// waits for its directory's lock).
type notifier interface {
	// entry makes the kernel look parent/name up again at its next use.
	entry(parent *gofs.Inode, name string)
	// entryBeforeReply is entry, waiting (boundedly) until the kernel
	// took it, so that the caller's next syscall, once the request being
	// served returns, looks the name up again.
	entryBeforeReply(parent *gofs.Inode, name string)
	// content makes the kernel drop n's attributes and cached pages.
	content(n *gofs.Inode)
}

// notifyWait bounds how long a request waits for the kernel to take a
// notification before it replies (see entryBeforeReply). If the kernel
// can only take it once this request ends, the reply goes out after this
// long and the notification follows it.
const notifyWait = 100 * time.Millisecond

// inodeNotifier sends notifications through go-fuse.
type inodeNotifier struct{}

func (inodeNotifier) entry(parent *gofs.Inode, name string) { go parent.NotifyEntry(name) }

func (inodeNotifier) entryBeforeReply(parent *gofs.Inode, name string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		parent.NotifyEntry(name)
	}()
	t := time.NewTimer(notifyWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func (inodeNotifier) content(n *gofs.Inode) { go n.NotifyContent(0, 0) }
