package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/store"
)

// verbs returns a function that runs a verb on the store of dataDir (the
// --data-dir pair newStore returned) with stdin, fails the test if the
// verb fails, and returns what it printed.
func verbs(t *testing.T, dataDir []string) func(stdin string, args ...string) string {
	return func(stdin string, args ...string) string {
		t.Helper()
		stdout, stderr, err := run(t, strings.NewReader(stdin), append(args, dataDir...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr)
		}
		return stdout
	}
}

// binaryValue holds every byte value, NULs and invalid UTF-8 included,
// and ends without a newline.
func binaryValue() []byte {
	v := make([]byte, 0, 3*256)
	for i := range 3 * 256 {
		v = append(v, byte(i*7))
	}
	return append(v, 0, '\n', 0)
}

func TestPutGetLsRmRoundTripByteExactFromStdinAndFromFile(t *testing.T) {
	dataDir := newStore(t)
	value := binaryValue()
	file := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(file, value, 0o600); err != nil {
		t.Fatal(err)
	}
	verb := verbs(t, dataDir)
	verb(string(value), "put", "app/from-stdin")
	verb("", "put", "app/from-file", file)
	verb("", "put", "app/empty")
	for name, want := range map[string][]byte{"from-stdin": value, "from-file": value, "empty": nil} {
		if got := verb("", "get", "app/"+name); got != string(want) {
			t.Errorf("get app/%s: %d bytes, not the %d put", name, len(got), len(want))
		}
	}
	if got := verb("", "ls"); got != "app\n" {
		t.Errorf("ls: %q, want app", got)
	}
	if got := verb("", "ls", "app"); got != "empty\nfrom-file\nfrom-stdin\n" {
		t.Errorf("ls app: %q", got)
	}
	verb("second", "put", "app/from-stdin") // overwrites
	if got := verb("", "get", "app/from-stdin"); got != "second" {
		t.Errorf("get after the second put: %q", got)
	}
	verb("", "rm", "app/from-stdin")
	if got := verb("", "ls", "app"); got != "empty\nfrom-file\n" {
		t.Errorf("ls app after rm: %q", got)
	}
	if _, _, err := run(t, nil, append([]string{"get", "app/from-stdin"}, dataDir...)...); err == nil {
		t.Error("get of a removed secret succeeded")
	}
}

func TestGetOfAMissingSecretFailsSayingNotFound(t *testing.T) {
	dataDir := newStore(t)
	stdout, _, err := run(t, nil, append([]string{"get", "app/missing"}, dataDir...)...)
	if err == nil || !strings.HasSuffix(err.Error(), "app/missing: not found") {
		t.Errorf("get app/missing: error %v, want one ending app/missing: not found", err)
	}
	if stdout != "" {
		t.Errorf("get app/missing wrote %q", stdout)
	}
	if _, _, err := run(t, nil, append([]string{"rm", "app/missing"}, dataDir...)...); err == nil || !strings.HasSuffix(err.Error(), "app/missing: not found") {
		t.Errorf("rm app/missing: error %v, want one ending app/missing: not found", err)
	}
}

func TestPutOfA300ByteNameFailsAsTooLongAndStoresNothing(t *testing.T) {
	dataDir := newStore(t)
	_, _, err := run(t, strings.NewReader("v"), append([]string{"put", "app/" + strings.Repeat("n", 300)}, dataDir...)...)
	if err == nil || !strings.Contains(err.Error(), "name too long: name is 300 bytes; the limit is 255") {
		t.Errorf("put of a 300-byte name: error %v", err)
	}
	if stdout, _, err := run(t, nil, append([]string{"ls"}, dataDir...)...); err != nil || stdout != "" {
		t.Errorf("after the refused put, ls shows %q (%v)", stdout, err)
	}
}

func TestVerbsOtherThanInitNeedAnExistingStore(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "none")
	_, _, err := run(t, nil, "get", "app/s", "--data-dir", dataDir)
	if err == nil || !strings.Contains(err.Error(), "run `secretfs init` first") {
		t.Errorf("get without a store: error %v", err)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("get made the data dir %s", dataDir)
	}
}

// recordingReader hands out its value in small reads and keeps every
// buffer it filled: they are put's buffers, and must be wiped afterwards.
type recordingReader struct {
	value  []byte
	filled [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	if len(r.value) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1000)], r.value)
	r.value = r.value[n:]
	r.filled = append(r.filled, p[:n])
	return n, nil
}

func (r *recordingReader) wiped() bool {
	for _, b := range r.filled {
		if bytes.ContainsFunc(b, func(c rune) bool { return c != 0 }) {
			return false
		}
	}
	return true
}

func TestPutWipesEveryBufferTheValueWasReadInto(t *testing.T) {
	dataDir := newStore(t)
	// Large enough that the buffer grows several times.
	value := bytes.Repeat([]byte("s3cr3t!"), 5000)
	in := &recordingReader{value: value}
	if _, _, err := run(t, in, append([]string{"put", "app/s"}, dataDir...)...); err != nil {
		t.Fatal(err)
	}
	if len(in.filled) < 2 {
		t.Fatalf("the value was read in %d reads", len(in.filled))
	}
	if !in.wiped() {
		t.Error("a buffer put read the value into still holds it")
	}
	if got, _, err := run(t, nil, append([]string{"get", "app/s"}, dataDir...)...); err != nil || got != string(value) {
		t.Errorf("get: %d bytes, %v", len(got), err)
	}

	tooLarge := &recordingReader{value: bytes.Repeat([]byte{1}, int(store.DefaultMaxValueSize)+1)}
	if _, _, err := run(t, tooLarge, append([]string{"put", "app/big"}, dataDir...)...); err == nil || !strings.Contains(err.Error(), "value too large") {
		t.Errorf("put of a value over the limit: error %v", err)
	}
	if !tooLarge.wiped() {
		t.Error("a buffer of the refused value still holds it")
	}
}

func TestFailureExitsWithStatus1AndOneMessageOnStderr(t *testing.T) {
	dataDir := newStore(t)
	stdout, stderr, status := runMain(t, nil, append([]string{"get", "app/missing"}, dataDir...)...)
	if status != 1 {
		t.Errorf("get app/missing exited with %d, want 1", status)
	}
	if len(stdout) != 0 {
		t.Errorf("get app/missing wrote %q to stdout", stdout)
	}
	if s := string(stderr); !strings.HasPrefix(s, "secretfs: ") || !strings.HasSuffix(s, "app/missing: not found\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("stderr is %q, want one line secretfs: ... app/missing: not found", s)
	}
}

func TestGetWritesTheValueToStdoutByteExactAndExits0(t *testing.T) {
	dataDir := newStore(t)
	value := binaryValue()
	if _, stderr, status := runMain(t, value, append([]string{"put", "app/s"}, dataDir...)...); status != 0 {
		t.Fatalf("put exited with %d: %s", status, stderr)
	}
	stdout, stderr, status := runMain(t, nil, append([]string{"get", "app/s"}, dataDir...)...)
	if status != 0 || len(stderr) != 0 {
		t.Errorf("get exited with %d, stderr %q", status, stderr)
	}
	if !bytes.Equal(stdout, value) {
		t.Errorf("get wrote %d bytes, not the %d put", len(stdout), len(value))
	}
}

// An application exists only through its secrets: ls of one that holds
// none fails as env and exec do, with their message, in the short and the
// long form; ls of an empty store lists nothing and succeeds.
func TestLsOfAnApplicationWithoutSecretsFailsAsEnvDoes(t *testing.T) {
	dataDir := newStore(t)
	if stdout, stderr, status := runMain(t, nil, append([]string{"ls"}, dataDir...)...); status != 0 || len(stdout) != 0 || len(stderr) != 0 {
		t.Errorf("ls of an empty store: status %d, stdout %q, stderr %q; want 0 and nothing", status, stdout, stderr)
	}
	if _, stderr, err := run(t, strings.NewReader("v"), append([]string{"put", "app/s"}, dataDir...)...); err != nil {
		t.Fatalf("put: %v\n%s", err, stderr)
	}
	_, envErr, envStatus := runMain(t, nil, append([]string{"env", "nope"}, dataDir...)...)
	if envStatus != 1 || !strings.Contains(string(envErr), "holds no secrets (or does not exist)") {
		t.Fatalf("env nope: status %d, stderr %q", envStatus, envErr)
	}
	for _, ls := range [][]string{{"ls", "nope"}, {"ls", "-l", "nope"}} {
		stdout, stderr, status := runMain(t, nil, append(ls, dataDir...)...)
		if status != 1 || len(stdout) != 0 || string(stderr) != string(envErr) {
			t.Errorf("%s: status %d, stdout %q, stderr %q; want 1, nothing, and env's %q", ls, status, stdout, stderr, envErr)
		}
	}
	rm := append([]string{"rm", "app/s"}, dataDir...)
	if _, stderr, err := run(t, nil, rm...); err != nil {
		t.Fatalf("rm: %v\n%s", err, stderr)
	}
	if _, _, err := run(t, nil, append([]string{"ls", "app"}, dataDir...)...); err == nil || err.Error() != "app: the application holds no secrets (or does not exist)" {
		t.Errorf("ls of an application emptied by rm: error %v", err)
	}
	if stdout, _, err := run(t, nil, append([]string{"ls"}, dataDir...)...); err != nil || stdout != "" {
		t.Errorf("ls of the emptied store: %q, %v", stdout, err)
	}
}

// ls -l prints the version as a plain number, so that version 1 is not
// read as format v1, and ls --help says what each column is.
func TestLsLongPrintsTheVersionAsANumberBesideTheFormat(t *testing.T) {
	dataDir := newStore(t)
	verb := verbs(t, dataDir)
	verb("one", "put", "app/once", "--format", "v1")
	for _, v := range []string{"one", "two", "three"} {
		verb(v, "put", "app/thrice")
	}
	verb("legacy", "put", "app/legacy")
	makeLegacy(t, dataDir[1], "app", "legacy")
	want := map[string][]string{
		// size, version, format
		"once":   {"3", "1", "v1"},
		"thrice": {"5", "3", "v3"},
		"legacy": {"-", "-", "v1-legacy"},
	}
	lines := strings.Split(strings.TrimSuffix(verb("", "ls", "-l", "app"), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("ls -l app: %q", lines)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		var size, version, format, name string
		switch len(f) {
		case 6: // size, date, time, version, format, name
			size, version, format, name = f[0], f[3], f[4], f[5]
		case 5: // a legacy item: no time
			size, version, format, name = f[0], f[2], f[3], f[4]
		}
		if w := want[name]; w == nil || size != w[0] || version != w[1] || format != w[2] {
			t.Errorf("ls -l line %q: size %q, version %q, format %q; want %q", line, size, version, format, w)
		}
	}
	help := verb("", "ls", "--help")
	for _, column := range []string{"SIZE", "MODIFIED", "VERSION   a number each write raises by one", "FORMAT", "NAME"} {
		if !strings.Contains(help, column) {
			t.Errorf("ls --help does not explain %s:\n%s", column, help)
		}
	}
}

// put's FILE "-" is standard input, as leaving FILE out is; a file named
// "-" is reached as ./-.
func TestPutOfDashReadsStandardInput(t *testing.T) {
	dataDir := newStore(t)
	verb := verbs(t, dataDir)
	value := string(binaryValue())
	verb(value, "put", "app/dash", "-")
	if got := verb("", "get", "app/dash"); got != value {
		t.Errorf("get after put - : %d bytes, not the %d on stdin", len(got), len(value))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "-"), []byte("from the file"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	verb("from stdin", "put", "app/file", "./-")
	if got := verb("", "get", "app/file"); got != "from the file" {
		t.Errorf("put ./- stored %q, want the file's bytes", got)
	}
	if help := verb("", "put", "--help"); !strings.Contains(strings.Join(strings.Fields(help), " "), "when FILE is - or not given, of standard input") {
		t.Errorf("put --help does not say that - is standard input:\n%s", help)
	}
}

// status of a path that does not exist says so, not that it found no
// control socket beside it.
func TestStatusOfAMissingPathSaysItDoesNotExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing")
	_, stderr, status := runMain(t, nil, "status", missing)
	if status != 1 || string(stderr) != "secretfs: stat "+missing+": no such file or directory\n" {
		t.Errorf("status %s: exit %d, stderr %q", missing, status, stderr)
	}
}
