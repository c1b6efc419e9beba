package integration

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/secretfs/secretfs/internal/testserver"
)

// docs/SEMANTICS.md's "Deadlines" table says how many backend calls each
// syscall makes, each under its own --timeout: that is how long a
// syscall can take when a backend is silent. This test makes each
// syscall of the table once on DynamoDB and KMS, with the names already
// known (a TTL no step outlasts), and checks the calls against the table:
// the kinds it names, never more than its "at most".
func TestEachSyscallMakesTheBackendCallsTheDeadlinesTableGives(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("first value"), "put", "app/s")
	m := mount(t, b, "--ttl", "10m")
	m.secret("first value")
	p := m.path("app/s")
	if _, err := os.Stat(p); err != nil { // the application is listed, the name known
		t.Fatal(err)
	}

	type step struct {
		what   string
		do     func() error
		atMost int64
		want   map[string]int64 // exact counts of these operations; any other counts toward atMost only
	}
	var f *os.File
	steps := []step{
		{"stat of a known secret", func() error { _, err := os.Stat(p); return err }, 0, nil},
		{"open for reading", func() error {
			g, err := os.Open(p)
			if err == nil {
				err = g.Close()
			}
			return err
		}, 2, nil},
		{"open for writing with O_TRUNC", func() (err error) {
			f, err = os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
			return err
		}, 2, map[string]int64{"GetItem": 1}},
		{"write", func() error { _, err := f.Write([]byte("second value")); return err }, 0, nil},
		{"close that commits", func() error { return f.Close() }, 6,
			map[string]int64{"GenerateDataKey": 1, "PutItem": 1}},
		{"stat after the commit", func() error { _, err := os.Stat(p); return err }, 0, nil},
		{"truncate by path to a size > 0", func() error { return os.Truncate(p, 6) }, 5,
			map[string]int64{"GetItem": 1, "GenerateDataKey": 1, "PutItem": 1}},
		{"rename to a new name", func() error { return os.Rename(p, m.path("app/t")) }, 7,
			map[string]int64{"GenerateDataKey": 1, "PutItem": 1, "DeleteItem": 1}},
		{"unlink", func() error { return os.Remove(m.path("app/t")) }, 2,
			map[string]int64{"GetItem": 1, "DeleteItem": 1}},
		// A new application: its lookup and the mkdir each cost at most
		// its listing's pages (one here).
		{"mkdir of a new application", func() error { return syscall.Mkdir(m.path("fresh"), 0o700) }, 2, nil},
		{"rmdir of an empty application", func() error { return syscall.Rmdir(m.path("fresh")) }, 1, nil},
	}
	for _, s := range steps {
		dynalite.ResetCalls()
		localKMS.ResetCalls()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		calls := callsOf(dynalite, localKMS)
		var total int64
		for _, n := range calls {
			total += n
		}
		t.Logf("%s: %d calls %s", s.what, total, describeCalls(calls))
		if total > s.atMost {
			t.Errorf("%s made %d backend calls %s; the table gives at most %d", s.what, total, describeCalls(calls), s.atMost)
		}
		for op, n := range s.want {
			if calls[op] != n {
				t.Errorf("%s made %d %s; the table gives %d", s.what, calls[op], op, n)
			}
		}
	}
	if _, err := os.Stat(m.path("app/t")); !os.IsNotExist(err) {
		t.Errorf("app/t after its unlink: %v", err)
	}
}

// callsOf adds up the operations the servers received since their last
// ResetCalls, by name.
func callsOf(servers ...*testserver.Server) map[string]int64 {
	calls := map[string]int64{}
	for _, s := range servers {
		for op, n := range s.Counts() {
			calls[op] += n
		}
	}
	return calls
}

// describeCalls is calls as "(1 GetItem, 2 PutItem)", sorted by name.
func describeCalls(calls map[string]int64) string {
	var parts []string
	for op, n := range calls {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, op))
		}
	}
	sort.Strings(parts)
	return "(" + strings.Join(parts, ", ") + ")"
}
