package mountns

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	Isolate()
	os.Exit(m.Run())
}

// As root, the test binary runs in a mount namespace other than go
// test's, and the marker of the second execution is gone from its
// environment.
func TestTheTestBinaryRunsInAMountNamespaceOfItsOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs the tests as root: only root can make a mount namespace")
		}
		t.Skip("only root can make a mount namespace")
	}
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err != nil {
		t.Fatal(err)
	}
	if own == parent {
		t.Errorf("the test binary shares go test's mount namespace %s", own)
	}
	if v, ok := os.LookupEnv(isolatedEnv); ok {
		t.Errorf("%s=%s is left in the environment the tests' processes inherit", isolatedEnv, v)
	}
	if len(os.Args) < 2 {
		t.Errorf("the arguments were lost: %q", os.Args)
	}
}
