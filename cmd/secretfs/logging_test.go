package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// withReadableKey makes a store whose private key others can read, which
// every verb warns about.
func withReadableKey(t *testing.T) (dataDir []string, keyPath string) {
	t.Helper()
	dataDir = newStore(t)
	keyPath = filepath.Join(dataDir[1], privateKey)
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	return dataDir, keyPath
}

func TestWarningIsOneJSONObjectPerLineWithLogFormatJSON(t *testing.T) {
	dataDir, keyPath := withReadableKey(t)
	_, stderr, err := run(t, nil, append([]string{"ls", "--log-format", "json"}, dataDir...)...)
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, line := range nonEmptyLines(stderr) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", line, err)
		}
		if entry["level"] == "warning" && entry["path"] == keyPath && strings.Contains(entry["msg"].(string), "mode 0644") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no JSON warning about the key's mode in stderr:\n%s", stderr)
	}
}

// logfmtPair is one key=value of logrus's text format; a value with spaces
// or quotes is a Go-quoted string.
var logfmtPair = regexp.MustCompile(`^([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)`)

// parseLogfmt parses a line of logrus's text format, or fails.
func parseLogfmt(t *testing.T, line string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for rest := line; rest != ""; {
		m := logfmtPair.FindStringSubmatch(rest)
		if m == nil {
			t.Fatalf("stderr line %q is not key=value pairs (at %q)", line, rest)
		}
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			var err error
			if v, err = strconv.Unquote(v); err != nil {
				t.Fatalf("stderr line %q: %v", line, err)
			}
		}
		fields[m[1]] = v
		rest = rest[len(m[0]):]
	}
	return fields
}

func TestWarningIsOneKeyValueLineWithLogFormatText(t *testing.T) {
	dataDir, keyPath := withReadableKey(t)
	_, stderr, err := run(t, nil, append([]string{"ls", "--log-format", "text"}, dataDir...)...)
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, line := range nonEmptyLines(stderr) {
		f := parseLogfmt(t, line)
		if _, err := time.Parse(time.RFC3339, f["time"]); err != nil {
			t.Errorf("stderr line %q: time: %v", line, err)
		}
		if f["level"] == "warning" && f["path"] == keyPath && strings.Contains(f["msg"], "mode 0644") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no text warning about the key's mode in stderr:\n%s", stderr)
	}
}

func TestUnknownLogFormatIsRefused(t *testing.T) {
	dataDir := newStore(t)
	if _, _, err := run(t, nil, append([]string{"ls", "--log-format", "xml"}, dataDir...)...); err == nil || err.Error() != `--log-format "xml": want text or json` {
		t.Errorf("--log-format xml: error %v", err)
	}
	t.Setenv("SECRETFS_LOG_FORMAT", "yaml")
	if _, _, err := run(t, nil, append([]string{"ls"}, dataDir...)...); err == nil || err.Error() != `--log-format "yaml": want text or json` {
		t.Errorf("SECRETFS_LOG_FORMAT=yaml: error %v", err)
	}
}

// What mount says on first use shares stderr with its log: with json it
// must be JSON too. (mount itself needs FUSE; this opens the backend as
// mount does.)
func TestFirstUseNoticesOfMountAreJSONWithLogFormatJSON(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	var stderr bytes.Buffer
	c := &config{backend: "local", dataDir: dataDir, format: "v2", timeout: 5 * time.Second, logFormat: "json", log: logrus.New()}
	c.log.SetOutput(&stderr)
	c.log.SetFormatter(&logrus.JSONFormatter{})
	b, err := c.open(context.Background(), true, c.notices(&stderr))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var msgs []string
	for _, line := range nonEmptyLines(stderr.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", line, err)
		}
		msgs = append(msgs, entry["msg"].(string))
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"created the data directory " + dataDir, filepath.Join(dataDir, privateKey) + "  private", filepath.Join(dataDir, publicKey) + "  public"} {
		if !strings.Contains(all, want) {
			t.Errorf("the JSON notices do not say %q:\n%s", want, stderr.String())
		}
	}
}

func TestFirstUseNoticesOfMountArePlainTextWithLogFormatText(t *testing.T) {
	var stderr bytes.Buffer
	c := &config{logFormat: "text", log: logrus.New()}
	c.notices(&stderr).Write([]byte("generated an RSA key pair:\n"))
	if stderr.String() != "generated an RSA key pair:\n" {
		t.Errorf("text notice became %q", stderr.String())
	}
}

func nonEmptyLines(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
