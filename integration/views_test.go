package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Views: read-only files rendered from secrets, at the paths of the
// mount's configuration file.

// viewsConfig holds the three views, and a view in an
// application that holds nothing else.
const viewsConfig = `views:
  - path: billing/db-user
    secret: billing/db-credentials
    field: username
  - path: billing/app.env
    template: |
      DB_USER={{ field "billing/db-credentials" "username" }}
      DB_PASSWORD={{ field "billing/db-credentials" "password" | quote }}
      API_TOKEN={{ secret "billing/api-token" | quote }}
  - path: billing/all.json
    app: billing
    format: json
  - path: reports/billing-user
    secret: billing/db-credentials
    field: username
`

// putViewInputs stores the inputs of viewsConfig, with password as the
// database password, and returns the token.
func putViewInputs(t *testing.T, b *backend, password string) string {
	t.Helper()
	token := unique("tok")
	b.cli(t, []byte(`{"username": "billing-svc", "password": "`+password+`"}`), "put", "billing/db-credentials")
	b.cli(t, []byte(token), "put", "billing/api-token")
	return token
}

func TestFieldTemplateAndFormatViewsReadByteExact(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		password := unique("pw")
		token := putViewInputs(t, b, password)
		m := mount(t, b, "--config", writeConfig(t, viewsConfig))
		m.secret(password)
		m.secret(token)
		creds := `{"username": "billing-svc", "password": "` + password + `"}`
		for path, want := range map[string]string{
			"billing/db-user":      "billing-svc",
			"billing/app.env":      "DB_USER=billing-svc\nDB_PASSWORD=\"" + password + "\"\nAPI_TOKEN=\"" + token + "\"\n",
			"billing/all.json":     "{\n  \"API_TOKEN\": \"" + token + "\",\n  \"DB_CREDENTIALS\": " + jsonString(creds) + "\n}\n",
			"reports/billing-user": "billing-svc",
		} {
			got, err := os.ReadFile(m.path(path))
			if err != nil || string(got) != want {
				t.Errorf("%s reads %q, %v; want %q", path, got, err, want)
			}
		}
		if got := m.mustSh("ls billing; ls reports; ls"); got != "all.json\napi-token\napp.env\ndb-credentials\ndb-user\nbilling-user\nbilling\nreports\n" {
			t.Errorf("ls shows %q", got)
		}
		if got := m.mustSh("stat -c '%n %s %a' billing/app.env billing/db-user"); got != fmt.Sprintf("billing/app.env %d 400\nbilling/db-user 11 400\n", 48+len(password)+len(token)) {
			t.Errorf("stat shows %q", got)
		}
	})
}

// jsonString is s as the json format writes a string: quoted, with
// backslashes before quotes.
func jsonString(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

// An input changed elsewhere (secretfs put) changes the view within
// --ttl + 1 s, for a reader that keeps reading it.
func TestAViewChangesWithinTheTTLOfAPutOfItsInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		token := putViewInputs(t, b, "pw")
		const ttl = 2 * time.Second
		m := mount(t, b, "--ttl", ttl.String(), "--read-only", "--config", writeConfig(t, viewsConfig))
		m.secret(token)
		for range 20 {
			if got, err := os.ReadFile(m.path("billing/app.env")); err != nil || !strings.Contains(string(got), token) {
				t.Fatalf("app.env reads %q, %v", got, err)
			}
		}
		fresh := m.secret(unique("tok"))
		b.cli(t, []byte(fresh), "put", "billing/api-token")
		start := time.Now()
		eventually(t, ttl+time.Second, "the view shows the new token", func() bool {
			got, err := os.ReadFile(m.path("billing/app.env"))
			if err != nil {
				t.Fatalf("app.env: %v", err)
			}
			return strings.Contains(string(got), fresh)
		})
		t.Logf("the view changed %s after the put", time.Since(start).Round(10*time.Millisecond))
	})
}

// twice is a view that renders its input twice: a read mixing two
// renderings would show two different halves.
const twiceConfig = `views:
  - path: app/twice
    template: "{{ secret \"app/big\" }}|{{ secret \"app/big\" }}"
`

// A 64 KiB input rotated ten times while readers loop: every rendering
// read is whole and made from one revision; a file kept open keeps
// reading the rendering it opened.
func TestAViewOfA64KiBInputRotatedTenTimesIsAlwaysReadWhole(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		rotateAViewsInputWhileReadersLoop(t, b)
	})
}

// rotateAViewsInputWhileReadersLoop is the test above on backend b,
// ready to write.
func rotateAViewsInputWhileReadersLoop(t *testing.T, b *backend) {
	b.cli(t, version64K(0), "put", "app/big")
	m := mount(t, b, "--ttl", "1s", "--config", writeConfig(t, twiceConfig))
	rendering := func(i int) []byte { return bytes.Join([][]byte{version64K(i), version64K(i)}, []byte("|")) }
	which := func(got []byte) int {
		for i := 0; i <= 10; i++ {
			if bytes.Equal(got, rendering(i)) {
				return i
			}
		}
		return -1
	}
	held, err := os.Open(m.path("app/twice"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	first := make([]byte, 2*64<<10+1)
	if _, err := held.ReadAt(first, 0); err != nil || which(first) != 0 {
		t.Fatalf("the held file reads rendering %d, %v", which(first), err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int]int{}
	var bad []string
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := os.ReadFile(m.path("app/twice"))
				mu.Lock()
				if i := which(got); err != nil || i < 0 {
					bad = append(bad, fmt.Sprintf("%d bytes, %v", len(got), err))
				} else {
					seen[i]++
				}
				mu.Unlock()
			}
		})
	}
	for i := 1; i <= 10; i++ {
		b.cli(t, version64K(i), "put", "app/big")
		time.Sleep(300 * time.Millisecond)
	}
	eventually(t, 3*time.Second, "the readers read the last rendering", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[10] > 0
	})
	close(stop)
	wg.Wait()
	t.Logf("renderings read: %v", seen)
	if len(bad) > 0 {
		t.Errorf("%d reads were not one whole rendering: %v", len(bad), bad[:min(5, len(bad))])
	}
	if _, err := held.ReadAt(first, 0); err != nil || which(first) != 0 {
		t.Errorf("the held file now reads rendering %d, %v; want the one it opened", which(first), err)
	}
}

// A view that cannot be rendered is EIO, with a log line naming the view
// and the cause, never a value, and never a partial file; it comes back
// once its input is fixed.
func TestAViewThatCannotBeRenderedIsEIOWithALogLineAndNoValue(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	notJSON := unique("notjson")
	b.cli(t, []byte(notJSON), "put", "billing/db-credentials")
	token := unique("tok")
	b.cli(t, []byte(token), "put", "billing/api-token")
	m := mount(t, b, "--ttl", "1s", "--config", writeConfig(t, viewsConfig))
	m.secret(notJSON)
	m.secret(token)
	for _, view := range []string{"billing/db-user", "billing/app.env"} {
		m.failSh("cat "+view, "Input/output error")
	}
	if got := m.mustSh("cat billing/all.json"); !strings.Contains(got, token) {
		t.Errorf("the view of the whole application, which needs no JSON, reads %q", got)
	}
	logged := func(view, cause string) bool {
		for _, line := range strings.Split(m.log(), "\n") {
			if strings.Contains(line, `"level":"error"`) && strings.Contains(line, view) && strings.Contains(line, cause) {
				return true
			}
		}
		return false
	}
	if !logged("billing/db-user", "billing/db-credentials: the value is not JSON") {
		t.Errorf("no error line names billing/db-user and why:\n%s", m.log())
	}
	b.cli(t, nil, "rm", "billing/api-token")
	eventually(t, 3*time.Second, "a view whose input is gone is EIO", func() bool {
		_, _, err := m.sh("cat billing/all.json >/dev/null && cat billing/app.env")
		return err != nil
	})
	b.cli(t, []byte(`{"username": "fixed", "password": "p"}`), "put", "billing/db-credentials")
	eventually(t, 3*time.Second, "the fixed view reads", func() bool {
		got, err := os.ReadFile(m.path("billing/db-user"))
		return err == nil && string(got) == "fixed"
	})
	m.failSh("cat billing/app.env", "Input/output error")
	if !logged("billing/app.env", "billing/api-token: the input is missing") {
		t.Errorf("no error line names billing/app.env and its missing input:\n%s", m.log())
	}
	// The harness checks, at cleanup, that no value reached the log.
}

// A view is read-only (EROFS), and no secret may take its path (EEXIST).
func TestAViewIsReadOnlyAndKeepsItsPath(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	putViewInputs(t, b, "pw")
	m := mount(t, b, "--config", writeConfig(t, viewsConfig))
	if got := m.mustSh("stat -c %A billing/db-user"); got != "-r--------\n" {
		t.Errorf("the view shows mode %q, want -r-------- (--file-mode 0600 without write bits)", got)
	}
	for _, c := range []struct{ script, want string }{
		{"echo x > billing/db-user", "Read-only file system"},
		{"/bin/echo x >> billing/db-user", "Read-only file system"},
		{"truncate -s 0 billing/db-user", "Read-only file system"},
		{"rm billing/db-user", "Read-only file system"},
		{"mv billing/db-user billing/other", "Read-only file system"},
		{"chmod 644 billing/db-user", "Operation not permitted"},
		{"echo x > billing/s && mv billing/s billing/db-user", "File exists"},
		{"set -C; echo x > billing/db-user", "File exists"},
		{"rmdir reports", "Directory not empty"},
	} {
		m.failSh(c.script, c.want)
	}
	if got := m.mustSh("cat billing/db-user"); got != "billing-svc" {
		t.Errorf("after the refusals the view reads %q", got)
	}
	if out, _, err := b.run(nil, "get", "billing/db-user"); err == nil {
		t.Errorf("a secret was stored at the view's path: %q", out)
	}
}

// A configuration file is refused at start, with the file, the line and
// the reason: an unknown key, a bad pattern, a view over a stored
// secret, an owner rule given twice, a second YAML document.
// Nothing is mounted.
func TestAConfigFileIsRefusedAtStartWithItsLine(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		b.cli(t, []byte("stored"), "put", "billing/db-user")
		for _, c := range []struct{ name, text, want string }{
			{"unknown key", "owners:\n  - match: billing\n    mode: \"0500\"\n    user: 1001\n", `:4: unknown key "user" in an owner rule`},
			{"bad pattern", "owners:\n  - match: \"billing/[\"\n    uid: 1\n", `:2: match "billing/[": not a pattern`},
			{"mode not octal", "owners:\n  - match: billing\n    mode: \"0900\"\n", `:3: mode "0900": want permission bits in octal`},
			{"a view over a stored secret", viewsConfig, ":2: the view billing/db-user names a secret the store holds"},
			{"two views at one path", "views:\n  - path: a/v\n    app: a\n    format: json\n  - path: a/v\n    app: b\n    format: json\n", ":5: the view a/v is already defined at line 2"},
			{"an owner rule that never applies", "owners:\n  - match: billing/*\n    mode: \"0400\"\n  - match: billing/*\n    uid: 0\n", `:4: the owner rule for "billing/*" never applies: the rule at line 2 has the same match`},
			{"a second document", "views: []\n---\nbogus: 1\n", `:3: a second YAML document (after "---"): the file must hold one`},
		} {
			t.Run(c.name, func(t *testing.T) {
				file := writeConfig(t, c.text)
				dir := mountpoint(t)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, binary, append([]string{"mount", dir, "--config", file}, b.flags...)...)
				cmd.Env = append(os.Environ(), b.env...)
				out, err := cmd.CombinedOutput()
				if isMounted(dir) {
					syscall.Unmount(dir, syscall.MNT_DETACH)
					t.Fatal("a refused configuration was mounted")
				}
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), file+c.want) {
					t.Fatalf("mount: %v\n%s\nwant exit status 1 and %q", err, out, file+c.want)
				}
			})
		}
	})
}

// Hot reads of a view ask a read-only mount nothing, as those of a
// secret: the kernel serves them from its page cache.
func TestHotReadsOfAViewAskTheReadOnlyMountNothing(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	putViewInputs(t, b, "pw")
	addr := metricsAddr(t)
	m := mount(t, b, "--read-only", "--metrics-addr", addr, "--config", writeConfig(t, viewsConfig))
	for range 3 {
		if _, err := os.ReadFile(m.path("billing/app.env")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	before := fuseRequests(t, addr)
	buf := make([]byte, 4096)
	for range 1000 {
		f, err := os.Open(m.path("billing/app.env"))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := f.Read(buf); n == 0 || err != nil {
			t.Fatalf("read %d bytes, %v", n, err)
		}
		f.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if got := delta(before, fuseRequests(t, addr)); len(got) != 0 {
		t.Errorf("1000 hot reads of a view asked the read-only mount %v, want nothing", got)
	}
}

// A view's plaintext obeys --cache-idle: its rendering is wiped from the
// mount's memory once nobody read it for that long, as a secret's is.
func TestAViewsRenderingIsGoneFromMemoryAfterTheIdleWindow(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	marker := unique("marker")
	b.cli(t, []byte(marker), "put", "app/s")
	// Long enough that the scan right after the reads, under CI's load,
	// finds the rendering in use: with 3 s, once, it was already wiped.
	const idle = 8 * time.Second
	m := mount(t, b, "--cache-idle", idle.String(), "--config", writeConfig(t, "views:\n  - path: app/env\n    app: app\n    format: dotenv\n"))
	m.secret(marker)
	rendered := []byte(`S="` + marker + `"`) // only the rendering holds this
	if got := m.mustSh("cat app/env app/env"); got != string(rendered)+"\n"+string(rendered)+"\n" {
		t.Fatalf("app/env reads %q", got)
	}
	pid := m.cmd.Process.Pid
	if copiesInMemory(t, pid, rendered) == 0 {
		t.Fatal("the rendering is not in the mount's memory even while in use: the scan proves nothing")
	}
	time.Sleep(idle + idle/2)
	if n := copiesInMemory(t, pid, rendered); n != 0 {
		t.Errorf("%d copies of the view's rendering outlived --cache-idle in the mount's memory", n)
	}
	if got := m.mustSh("cat app/env"); got != string(rendered)+"\n" {
		t.Errorf("read again after the wipe: %q", got)
	}
}

// A rotation tells watchers of the views whose bytes changed, and of no
// other: rotating the password of billing/db-credentials is one event of
// it and of the template view that shows the password, none of the
// field view of the unchanged username, which keeps its inode (and the
// kernel its pages).
func TestARotationTellsNothingOfAViewWhoseBytesDidNotChange(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	putViewInputs(t, b, "pw")
	m := mount(t, b, "--read-only", "--ttl", "1s", "--config", writeConfig(t, watchAll+viewsConfig))
	if got := m.mustSh("cat billing/db-user billing/app.env >/dev/null; cat billing/db-user"); got != "billing-svc" {
		t.Fatalf("cat billing/db-user: %q", got)
	}
	ino := m.mustSh("stat -c %i billing/db-user")
	w := watch(t, "", m.path("billing"))
	b.cli(t, []byte(`{"username": "billing-svc", "password": "rotated"}`), "put", "billing/db-credentials")
	eventually(t, 2*time.Second, "the rotation is heard", func() bool {
		return w.count(m.path("billing/db-credentials"), "MODIFY") > 0 && w.count(m.path("billing/app.env"), "MODIFY") > 0
	})
	time.Sleep(1500 * time.Millisecond) // more than the TTL: the kernel looks the view up again
	if n := w.count(m.path("billing/db-user"), "MODIFY"); n != 0 {
		t.Errorf("a rotation that left billing/db-user alone gave it %d MODIFY events:\n%s", n, transcript(w.seen()))
	}
	for _, p := range []string{"billing/db-credentials", "billing/app.env"} {
		if n := w.count(m.path(p), "MODIFY"); n != 1 {
			t.Errorf("one rotation gave %s %d MODIFY events, want 1:\n%s", p, n, transcript(w.seen()))
		}
	}
	if got := m.mustSh("stat -c %i billing/db-user"); got != ino {
		t.Errorf("billing/db-user, unchanged, is another inode: %s, was %s", got, ino)
	}
	if got := m.mustSh("cat billing/db-user"); got != "billing-svc" {
		t.Errorf("cat billing/db-user: %q", got)
	}
	if got := m.mustSh("cat billing/app.env"); !strings.Contains(got, `DB_PASSWORD="rotated"`) {
		t.Errorf("cat billing/app.env: %q", got)
	}
}

// A view that cannot be rendered any more, on a mount that watches its
// application, logs nothing at error level until a reader asks for it:
// the mount's own change signal, which looks at the view's name, is not
// a reader (it logged "the view cannot be rendered ... op=lookup" at
// error level for every change, which no reader had caused).
func TestAViewBrokenElsewhereLogsNoErrorUntilAReaderAsks(t *testing.T) {
	b, m := watchedViews(t)
	b.cli(t, []byte(unique("notjson")), "put", "billing/db-credentials")
	eventually(t, 10*time.Second, "the change signal looks at the broken view", func() bool {
		return strings.Contains(m.log(), "the change signal's look at a name failed")
	})
	for _, line := range strings.Split(m.log(), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			t.Errorf("an error was logged with no reader asking: %s", line)
		}
	}
	m.failSh("cat billing/db-user", "Input/output error")
	if !strings.Contains(m.log(), `"level":"error"`) {
		t.Errorf("the reader's failed read logged no error:\n%s", m.log())
	}
}

// watchedViews mounts viewsConfig read-only, watching billing, with its
// inputs stored, and reads billing/db-user once (the kernel holds it).
func watchedViews(t *testing.T) (*backend, *mounted) {
	t.Helper()
	b := localBackend(t)
	b.cli(t, nil, "init")
	putViewInputs(t, b, unique("pw"))
	m := mount(t, b, "--read-only", "--ttl", "1s", "--config", writeConfig(t, viewsConfig+"watch:\n  - billing\n"))
	if got := m.mustSh("cat billing/db-user"); got != "billing-svc" {
		t.Fatalf("cat billing/db-user: %q", got)
	}
	return b, m
}
