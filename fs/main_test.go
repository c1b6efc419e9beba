package fs

import (
	"os"
	"testing"

	"github.com/secretfs/secretfs/internal/mountns"
)

func TestMain(m *testing.M) {
	// The tests' mounts in no other process's mount namespace: a
	// namespace made meanwhile elsewhere (a container booted by a test
	// run beside these) would otherwise copy them, and keep their
	// servers serving after the tests unmount (internal/mountns).
	mountns.Isolate()
	os.Exit(m.Run())
}
