package proc

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// statLine builds a /proc/<tid>/stat line for a command name and an exit
// code, with the fields in between as a live kernel prints them.
func statLine(comm string, exitCode int) []byte {
	fields := make([]string, 52-3) // fields 3 to 51
	for i := range fields {
		fields[i] = "0"
	}
	fields[0] = "D"
	return []byte("4242 (" + comm + ") " + strings.Join(fields, " ") + " " + strconv.Itoa(exitCode) + "\n")
}

func TestExitSignalReadsTheSignalFromTheExitCode(t *testing.T) {
	for _, tc := range []struct {
		what string
		stat []byte
		want syscall.Signal
	}{
		{"killed by SIGKILL", statLine("sh", 9), syscall.SIGKILL},
		{"killed by SIGTERM", statLine("sh", 15), syscall.SIGTERM},
		{"dumped core on SIGSEGV", statLine("prog", 0x80|11), syscall.SIGSEGV},
		{"exited with status 1", statLine("sh", 1<<8), 0},
		{"exited with status 0", statLine("sh", 0), 0},
		{"a name with spaces and parentheses", statLine("a) (b c", 9), syscall.SIGKILL},
		{"a line cut short", []byte("4242 (sh) D 1 2 3"), 0},
		{"no parentheses", []byte("garbage"), 0},
	} {
		if got := exitSignal(tc.stat); got != tc.want {
			t.Errorf("%s: exitSignal = %v, want %v", tc.what, got, tc.want)
		}
	}
}

func TestParseStatusFindsTheProcessAndWhetherItIsExiting(t *testing.T) {
	live := "Name:\tcat\nState:\tS (sleeping)\nTgid:\t100\nPid:\t101\nVmPeak:\t 1000 kB\nVmSize:\t 900 kB\n"
	exiting := "Name:\tsh\nState:\tD (disk sleep)\nTgid:\t200\nPid:\t200\nThreads:\t1\n"
	if p, ex := parseStatus([]byte(live), 101); p != 100 || ex {
		t.Errorf("a live thread: process %d, exiting %v; want 100, false", p, ex)
	}
	if p, ex := parseStatus([]byte(exiting), 200); p != 200 || !ex {
		t.Errorf("an exiting thread: process %d, exiting %v; want 200, true", p, ex)
	}
	if p, _ := parseStatus([]byte("Name:\tx\nVmSize:\t1 kB\n"), 7); p != 7 {
		t.Errorf("without a Tgid line the process is %d, want the thread id 7", p)
	}
}

// The parsers agree with this kernel about this very process: alive, its
// own thread group, no exit signal.
func TestParsersReadThisProcess(t *testing.T) {
	pid := uint32(os.Getpid())
	status, err := read(pid, "status")
	if err != nil {
		t.Fatal(err)
	}
	if p, ex := parseStatus(status, 0); p != pid || ex {
		t.Errorf("this process: %d, exiting %v; want %d, false", p, ex, pid)
	}
	stat, err := read(pid, "stat")
	if err != nil {
		t.Fatal(err)
	}
	if sig := exitSignal(stat); sig != 0 {
		t.Errorf("this live process has exit signal %v", sig)
	}
	if p, ex, err := Status(pid); err != nil || p != pid || ex {
		t.Errorf("Status of this process: %d, exiting %v, %v; want %d, false, nil", p, ex, err, pid)
	}
	if comm, err := Command(pid); err != nil || comm == "" || strings.ContainsAny(comm, "\n") {
		t.Errorf("Command of this process: %q, %v", comm, err)
	}
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Groups(pid)
	if err != nil || got == nil || len(got) != len(want) {
		t.Fatalf("Groups of this process: %v, %v; want %v", got, err, want)
	}
	for _, g := range want {
		if !slices.Contains(got, uint32(g)) {
			t.Errorf("Groups of this process: %v, want %v", got, want)
		}
	}
}

func TestParseGroupsReadsTheSupplementaryGroups(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   []uint32
	}{
		{"Name:\tsh\nGid:\t1000\t1000\t1000\t1000\nGroups:\t27 50 1000 \nVmSize:\t1 kB\n", []uint32{27, 50, 1000}},
		{"Name:\tsh\nGroups:\t\n", []uint32{}},
		{"Name:\tsh\n", []uint32{}},
	} {
		if got := parseGroups([]byte(tc.status)); got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseGroups(%q) = %v, want %v", tc.status, got, tc.want)
		}
	}
}
