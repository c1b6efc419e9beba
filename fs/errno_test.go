package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/vfs"
)

func quietMount() *mount {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return newMount(nil, Options{Options: vfs.Options{Log: log}})
}

func TestErrnoMapsEveryKind(t *testing.T) {
	m := quietMount()
	want := map[fault.Kind]syscall.Errno{
		fault.Other:        syscall.EIO,
		fault.NotFound:     syscall.ENOENT,
		fault.Exist:        syscall.EEXIST,
		fault.Conflict:     syscall.ESTALE,
		fault.Permission:   syscall.EACCES,
		fault.Invalid:      syscall.EINVAL,
		fault.NameTooLong:  syscall.ENAMETOOLONG,
		fault.TooLarge:     syscall.EFBIG,
		fault.NotEmpty:     syscall.ENOTEMPTY,
		fault.ReadOnly:     syscall.EROFS,
		fault.Integrity:    syscall.EIO,
		fault.Unavailable:  syscall.EIO,
		fault.NotSupported: syscall.ENOTSUP,
		fault.NotPermitted: syscall.EPERM,
		fault.CrossDevice:  syscall.EXDEV,
		fault.NoLocks:      syscall.ENOLCK,
	}
	for kind, errno := range want {
		err := fmt.Errorf("wrapped: %w", fault.E(fault.Op("test"), kind))
		if got := m.errno("test", "", err); got != errno {
			t.Errorf("%v: errno %v, want %v", kind, got, errno)
		}
	}
}

// Only a fatal signal interrupts a request, and then nobody reads the
// answer: a cancelled call is never EINTR.
func TestErrnoOfPlainErrorIsEIOAndNeverEINTR(t *testing.T) {
	m := quietMount()
	if got := m.errno("test", "", errors.New("boom")); got != syscall.EIO {
		t.Errorf("plain error: %v, want EIO", got)
	}
	if got := m.errno("test", "", fault.E(fault.Op("test"), context.Canceled)); got != syscall.EIO {
		t.Errorf("cancelled: %v, want EIO", got)
	}
	if got := m.errno("test", "", nil); got != 0 {
		t.Errorf("nil: %v, want 0", got)
	}
}

// Each failure is one line that names the operation and the path once:
// the path is added only when the error does not name it already. A
// failure reported again (a later close of a failed writer) is logged at
// debug level only.
func TestAFailureIsLoggedOnceNamingOpAndPathOnce(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	m := newMount(nil, Options{Options: vfs.Options{Log: log}})
	named := fault.E(fault.Op("secrets.Put"), fault.Path("app/s"), fault.Unavailable, "no answer")
	m.errno("close", "app/s", fmt.Errorf("wrapped: %w", named))
	m.errno("lookup", "app/t", fault.E(fault.Invalid, "bad"))
	m.errno("close", "app/s", vfs.Repeated{Err: named})
	entries := hook.AllEntries()
	if len(entries) != 3 {
		t.Fatalf("%d lines for 3 failures", len(entries))
	}
	first, second, again := entries[0], entries[1], entries[2]
	if _, ok := first.Data["path"]; ok || first.Data["op"] != "close" || strings.Count(first.Message, "app/s") != 1 || first.Level != logrus.ErrorLevel {
		t.Errorf("a failure whose error names the path: %v %q %v", first.Data, first.Message, first.Level)
	}
	if second.Data["path"] != "app/t" || second.Data["op"] != "lookup" {
		t.Errorf("a failure whose error names no path: %v %q", second.Data, second.Message)
	}
	if again.Level != logrus.DebugLevel {
		t.Errorf("a failure reported again logged at %v, want debug", again.Level)
	}
	if got := m.errno("close", "app/s", vfs.Repeated{Err: named}); got != syscall.EIO {
		t.Errorf("a failure reported again maps to %v, want its own errno", got)
	}
}
