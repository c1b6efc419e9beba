package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// renderBackends are both backends, each ready for `secretfs put`.
func renderBackends(t *testing.T) []*backend {
	t.Helper()
	local := localBackend(t)
	local.cli(t, nil, "init")
	return []*backend{local, dynamoBackend(t)}
}

// putSecrets stores "app/name" -> value in b.
func putSecrets(t *testing.T, b *backend, values map[string]string) {
	t.Helper()
	for k, v := range values {
		b.cli(t, []byte(v), "put", k)
	}
}

// execCmd is `secretfs exec` against b with flags, then -- and command;
// b's flags go before the --, which ends secretfs's own.
func execCmd(ctx context.Context, b *backend, flags []string, command ...string) *exec.Cmd {
	args := append(append([]string{"exec"}, b.flags...), flags...)
	args = append(append(args, "--"), command...)
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), b.env...)
	return cmd
}

// runExec runs execCmd and returns stdout, stderr and the exit status.
func runExec(t *testing.T, b *backend, flags []string, command ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := execCmd(ctx, b, flags, command...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), status
}

func TestRenderExecEchoesASecretOnBothBackends(t *testing.T) {
	for _, b := range renderBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			putSecrets(t, b, map[string]string{"billing/db-password": "pa ss\"w$rd", "billing/api-token": "tok-1"})
			stdout, stderr, status := runExec(t, b, []string{"--app", "billing"}, "sh", "-c", `echo "$DB_PASSWORD"; echo "$API_TOKEN"`)
			if status != 0 || stdout != "pa ss\"w$rd\ntok-1\n" {
				t.Fatalf("exec: status %d, printed %q\n%s", status, stdout, stderr)
			}
		})
	}
}

// exec reads through the backend, not the mount: it works beside a
// running mount of the same local store, and sees what was written
// through it.
func TestRenderExecWorksBesideARunningMount(t *testing.T) {
	b := localBackend(t)
	m := mount(t, b)
	m.mustSh(`mkdir "$MNT/billing" && printf %s 'written-through-the-mount' > "$MNT/billing/db-password"`)
	stdout, stderr, status := runExec(t, b, []string{"--app", "billing"}, "sh", "-c", `printf %s "$DB_PASSWORD"`)
	if status != 0 || stdout != "written-through-the-mount" {
		t.Fatalf("exec: status %d, printed %q\n%s", status, stdout, stderr)
	}
	if got := m.mustSh(`cat "$MNT/billing/db-password"`); got != "written-through-the-mount" {
		t.Fatalf("the mount reads %q after exec", got)
	}
}

// secretfs exec becomes the command: the same process, so its exit
// status, the signals sent to it and the signal that kills it are the
// command's.
func TestRenderExecExitStatusAndSignalsAreTheCommands(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	putSecrets(t, b, map[string]string{"billing/token": "tok"})
	app := []string{"--app", "billing"}

	t.Run("exit status", func(t *testing.T) {
		if _, stderr, status := runExec(t, b, app, "sh", "-c", "exit 7"); status != 7 {
			t.Fatalf("status %d, want 7\n%s", status, stderr)
		}
	})

	t.Run("killed by a signal", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := execCmd(ctx, b, app, "sh", "-c", "kill -KILL $$").Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("exec: %v, want death by SIGKILL", err)
		}
		ws := exit.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("wait status %v, want killed by SIGKILL", ws)
		}
	})

	t.Run("a signal sent to it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := execCmd(ctx, b, app, "sh", "-c", `trap 'echo "got TERM"; exit 42' TERM; echo "$$ $TOKEN"; while :; do sleep 0.05; done`)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() {
			t.Fatalf("the command said nothing; stderr %q", stderr.String())
		}
		// The command's shell has secretfs's process id: exec replaced it.
		if want := strconv.Itoa(cmd.Process.Pid) + " tok"; lines.Text() != want {
			t.Fatalf("the command said %q, want %q (its pid is secretfs's)", lines.Text(), want)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || lines.Text() != "got TERM" {
			t.Fatalf("the command did not get the TERM sent to secretfs's pid: %q", lines.Text())
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 42 {
			t.Fatalf("exec: %v, want the trap's exit status 42", err)
		}
	})
}

// The command inherits the descriptors secretfs was given, and none that
// secretfs opened (the store file, the KMS and DynamoDB connections).
func TestRenderExecInheritsNoDescriptorOfSecretfs(t *testing.T) {
	// ls lists its own descriptors: those it inherited and the one it
	// reads the directory through, the lowest free one.
	listFDs := []string{"ls", "/proc/self/fd"}
	direct, err := exec.Command(listFDs[0], listFDs[1:]...).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range renderBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			putSecrets(t, b, map[string]string{"billing/token": "tok"})
			stdout, stderr, status := runExec(t, b, []string{"--app", "billing"}, listFDs...)
			if status != 0 || stdout != string(direct) {
				t.Fatalf("the command has descriptors %q, a shell run directly %q (status %d)\n%s", stdout, direct, status, stderr)
			}
		})
	}
}

func TestRenderCollisionIsAnErrorAndRunsNothingOnBothBackends(t *testing.T) {
	for _, b := range renderBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			putSecrets(t, b, map[string]string{"billing/db-password": "VALUE-ONE", "billing/DB_PASSWORD": "VALUE-TWO"})
			want := "billing/DB_PASSWORD and billing/db-password both become the environment variable DB_PASSWORD"
			ran := filepath.Join(t.TempDir(), "ran")
			_, stderr, status := runExec(t, b, []string{"--app", "billing"}, "touch", ran)
			if status != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "VALUE") {
				t.Fatalf("exec: status %d, stderr %q; want 1 and %q, no value", status, stderr, want)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Fatal("exec ran the command")
			}
			stdout, stderr, err := b.run(nil, "env", "billing")
			if err == nil || stdout != "" || !strings.Contains(stderr, want) || strings.Contains(stderr, "VALUE") {
				t.Fatalf("env: %v, printed %q, stderr %q; want an error saying %q, nothing printed", err, stdout, stderr, want)
			}
		})
	}
}

// renderTricky are values a dotenv file must carry byte for byte.
var renderTricky = map[string]string{
	"plain":     "s3cr3t",
	"spaces":    "  two  spaces  ",
	"quotes":    `it's "quoted"`,
	"shell":     "${HOME} $(id) `id` \\ \\n \\$ !x ~ * ? [a] ; & | < > # =",
	"multiline": "-----BEGIN KEY-----\nMIIB\n-----END KEY-----\n",
	"crlf":      "a\r\nb\r",
	"tab":       "\ttab\t",
	"unicode":   "é ✓ 😀",
	"backslash": `\`,
}

// `secretfs env` printed to a file and read back with `set -a; . FILE`
// by sh and bash gives every value byte for byte.
func TestRenderEnvIsReadBackByTheShellOnBothBackends(t *testing.T) {
	values := map[string]string{"billing/empty": ""}
	for name, v := range renderTricky {
		values["billing/"+name] = v
	}
	for _, b := range renderBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			putSecrets(t, b, values)
			file := filepath.Join(t.TempDir(), "billing.env")
			if err := os.WriteFile(file, []byte(b.cli(t, nil, "env", "billing")), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, shell := range []string{"sh", "bash"} {
				for k, want := range values {
					name := strings.ToUpper(strings.TrimPrefix(k, "billing/"))
					cmd := exec.Command(shell, "-c", `set -a; . "$1"; printf '%sx' "$`+name+`"`, shell, file)
					cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
					out, err := cmd.Output()
					if err != nil {
						t.Fatalf("%s reading %s: %v", shell, name, err)
					}
					if got := strings.TrimSuffix(string(out), "x"); got != want {
						t.Errorf("%s read %s as %q, want %q", shell, name, got, want)
					}
				}
			}
		})
	}
}

// systemd's own parser of environment files (the one EnvironmentFile=
// uses, env-file.c) reads back what `secretfs env` prints. It is run
// through systemd's environment.d generator, which parses a file with it
// and prints the result; the generator then expands $VAR, which
// EnvironmentFile= does not, and drops empty values: the values here have
// neither (the unit tests cover them by systemd's rules).
func TestRenderEnvIsReadBackBySystemdsParser(t *testing.T) {
	const generator = "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator"
	b := localBackend(t)
	b.cli(t, nil, "init")
	values := map[string]string{}
	for name, v := range renderTricky {
		if !strings.Contains(v, "$") {
			values["billing/"+name] = v
		}
	}
	values["billing/dollar"] = "a$ $ b$"
	putSecrets(t, b, values)
	config := t.TempDir()
	if err := os.MkdirAll(filepath.Join(config, "environment.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(config, "environment.d", "50-billing.conf"), []byte(b.cli(t, nil, "env", "billing")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(generator)
	cmd.Env = []string{"XDG_CONFIG_HOME=" + config}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s: %v\n%s", generator, err, stderr.String())
	}
	got := parseGeneratorOutput(t, string(out))
	var names []string
	for k, want := range values {
		name := strings.ToUpper(strings.TrimPrefix(k, "billing/"))
		names = append(names, name)
		if got[name] != want {
			t.Errorf("systemd read %s as %q, want %q", name, got[name], want)
		}
	}
	sort.Strings(names)
	t.Logf("systemd read back %s", strings.Join(names, " "))
}

// parseGeneratorOutput reads what the environment.d generator prints:
// NAME=value lines, a value that needs it in double quotes with
// backslash escapes (C escapes for control characters).
func parseGeneratorOutput(t *testing.T, out string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("generator line %q", line)
		}
		if !strings.HasPrefix(value, `"`) {
			env[name] = value
			continue
		}
		if !strings.HasSuffix(value, `"`) || len(value) < 2 {
			t.Fatalf("generator line %q", line)
		}
		var v strings.Builder
		quoted := value[1 : len(value)-1]
		for i := 0; i < len(quoted); i++ {
			c := quoted[i]
			if c == '\\' && i+1 < len(quoted) {
				i++
				switch c = quoted[i]; c {
				case 'n':
					c = '\n'
				case 'r':
					c = '\r'
				case 't':
					c = '\t'
				case '\\', '"', '`', '$':
				default:
					t.Fatalf("generator escape \\%c in %q", c, line)
				}
			}
			v.WriteByte(c)
		}
		env[name] = v.String()
	}
	return env
}
