package fs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/cache"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store/memory"
	"github.com/secretfs/secretfs/vfs"
)

// A commit that fails is one log line, however many closes and fsyncs
// report it afterwards: it says the value was not committed, names the
// request, and names the secret once (the error does, so no field adds
// it again).
func TestAFailedCommitIsLoggedOnce(t *testing.T) {
	envelope, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	keeper := secrets.NewKeeper(memory.New(), envelope, secrets.Options{})
	log, hook := logtest.NewNullLogger()
	m := newMount(cache.New(keeper, cache.Options{TTL: time.Minute}), Options{Options: vfs.Options{
		Log: log, TTL: time.Minute,
		FileMode: 0o600, DirMode: 0o700, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
	}})
	b := staleWriter(t, mountWith(t, m))
	hook.Reset()
	for i, report := range []func() error{b.Sync, b.Sync, b.Close} {
		if err := report(); !errors.Is(err, syscall.ESTALE) {
			t.Fatalf("report %d of the stale writer's failure: %v, want ESTALE", i, err)
		}
	}
	lines := atInfoOrAbove(hook)
	if len(lines) != 1 {
		for _, e := range lines {
			t.Logf("%v %v %s", e.Level, e.Data, e.Message)
		}
		t.Fatalf("%d lines for one failed commit reported three times, want 1", len(lines))
	}
	e := lines[0]
	if e.Level != logrus.WarnLevel || e.Data["op"] != "fsync" || e.Data["errno"] != syscall.ESTALE.Error() {
		t.Errorf("the line: %v %v", e.Level, e.Data)
	}
	if _, ok := e.Data["path"]; ok {
		t.Errorf("the line adds the path its error names: %v", e.Data)
	}
	if !strings.Contains(e.Message, "was not committed") || !strings.Contains(e.Message, "app/s") {
		t.Errorf("the line says %q", e.Message)
	}
}

// atInfoOrAbove returns the lines logged at info level or louder.
func atInfoOrAbove(hook *logtest.Hook) []*logrus.Entry {
	var lines []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.InfoLevel {
			lines = append(lines, e)
		}
	}
	return lines
}

// staleWriter writes app/s in dir, then opens it twice, writes through
// both and closes the first: it returns the second, whose commit will
// meet the first's.
func staleWriter(t *testing.T, dir string) *os.File {
	t.Helper()
	p := filepath.Join(dir, "app", "s")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	var files [2]*os.File
	for i := range files {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		f.WriteString(string(rune('a' + i)))
		files[i] = f
	}
	if err := files[0].Close(); err != nil {
		t.Fatal(err)
	}
	return files[1]
}
