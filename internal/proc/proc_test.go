package proc

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
	f := Describe(pid, WantProcess|WantExit|WantGroups|WantCommand)
	if f.Process != pid || f.KilledBy != 0 {
		t.Errorf("Describe of this process: process %d, killed by %v; want %d, 0", f.Process, f.KilledBy, pid)
	}
	if f.Command == "" || strings.ContainsAny(f.Command, "\n") {
		t.Errorf("Describe of this process: command %q", f.Command)
	}
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	got := f.Groups
	if got == nil || len(got) != len(want) {
		t.Fatalf("Describe of this process: groups %v; want %v", got, want)
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

// Describe reads only what it is asked for: a thread's process and
// command need no groups, and nothing asked reads nothing; a thread /proc
// does not show is its own best-guess process, with nothing else known.
func TestDescribeReadsWhatItIsAskedFor(t *testing.T) {
	pid := uint32(os.Getpid())
	if f := Describe(pid, 0); f.Process != 0 || f.Groups != nil || f.Command != "" {
		t.Errorf("Describe(pid, 0) = %+v, want nothing", f)
	}
	if f := Describe(pid, WantCommand); f.Process != pid || f.Command == "" || f.Groups != nil {
		t.Errorf("Describe(pid, WantCommand) = %+v, want the process and command, no groups", f)
	}
	if f := Describe(pid, WantGroups); f.Process != 0 || f.Groups == nil {
		t.Errorf("Describe(pid, WantGroups) = %+v, want the groups alone", f)
	}
	const gone = 1<<22 + 7 // above pid_max's ceiling: no such thread
	if f := Describe(gone, WantProcess|WantExit|WantGroups|WantCommand); f.Process != gone || f.Groups != nil || f.Command != "" || f.KilledBy != 0 {
		t.Errorf("Describe of a thread /proc does not show = %+v, want process %d and nothing known", f, gone)
	}
}

// killedChild starts a child, kills it with SIGKILL and leaves it
// unreaped until t ends: a zombie, whose status shows no memory map (the
// exiting thread Describe looks for) and whose stat holds the signal.
func killedChild(t *testing.T) uint32 {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatalf("no child to kill: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	for tries := 0; ; tries++ {
		if status, err := read(pid, "status"); err == nil && strings.Contains(string(status), "State:\tZ") {
			return pid
		}
		if tries == 10000 {
			t.Fatalf("the killed child %d never became a zombie", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// WantExit is read "with WantProcess": a thread found exiting is asked
// which signal kills it. A request that wants only the command (and so
// the process) did not ask, and its stat is not read.
func TestDescribeTellsTheSignalOfAnExitingThreadOnlyWithWantProcess(t *testing.T) {
	pid := killedChild(t)
	if f := Describe(pid, WantProcess|WantExit); f.Process != pid || f.KilledBy != syscall.SIGKILL {
		t.Errorf("Describe(WantProcess|WantExit) of a child killed by SIGKILL = %+v, want process %d killed by SIGKILL", f, pid)
	}
	if f := Describe(pid, WantProcess); f.KilledBy != 0 {
		t.Errorf("Describe(WantProcess) of a killed child = %+v, want no signal: it was not asked for", f)
	}
	if f := Describe(pid, WantCommand|WantExit); f.Process != pid || f.KilledBy != 0 {
		t.Errorf("Describe(WantCommand|WantExit) of a killed child = %+v, want process %d and no signal: WantExit counts only with WantProcess", f, pid)
	}
}
