package fs

import (
	"context"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// Access is one operation on a secret that the audit log records: what,
// on which secret and revision, how it ended, and who asked. It never
// holds a value.
type Access struct {
	Time    time.Time
	Op      string        // "open", "commit", "unlink", "rename"
	Secret  store.Key     //
	To      store.Key     // rename: the new name
	Version store.Version // the revision opened, committed, removed, or written by a rename; 0 when none
	Errno   syscall.Errno // 0: done
	UID     uint32
	GID     uint32
	PID     uint32 // the calling thread's id, as the kernel sends it
	Command string // the caller's command name (/proc/PID/comm) at that moment; "" if gone
}

// audit tells Options.Audit of one operation by the caller of ctx.
// ENOSYS (an open on a read-only mount without auditing) is no access.
func (m *mount) audit(ctx context.Context, op string, k, to store.Key, version store.Version, errno syscall.Errno) {
	if m.opts.Audit == nil || errno == syscall.ENOSYS {
		return
	}
	a := Access{Time: time.Now(), Op: op, Secret: k, To: to, Version: max(version, 0), Errno: errno}
	if fc, ok := ctx.(*fuse.Context); ok {
		a.UID, a.GID, a.PID = fc.Caller.Uid, fc.Caller.Gid, fc.Caller.Pid
		if comm, err := m.proc.read(a.PID, "comm"); err == nil {
			a.Command = strings.TrimSpace(string(comm))
		}
	}
	m.opts.Audit(a)
}

// errnoOf is the errno err maps to, without logging it (errno does).
func (m *mount) errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := kindErrno[fault.KindOf(err)]; ok {
		return e
	}
	return syscall.EIO
}
