package render_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/render"
	"github.com/secretfs/secretfs/store"
)

func TestEnvName(t *testing.T) {
	for name, want := range map[string]string{
		"db-password": "DB_PASSWORD",
		"db.password": "DB_PASSWORD",
		"DB_Password": "DB_PASSWORD",
		"api token":   "API_TOKEN",
		"2fa-seed":    "_2FA_SEED",
		"_private":    "_PRIVATE",
		"clé":         "CL__", // é is two bytes
		"a=b":         "A_B",
		"x9":          "X9",
		"9":           "_9",
	} {
		if got := render.EnvName(name); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", name, got, want)
		}
	}
}

// values makes Variables' input from "app/name" -> value.
func values(t *testing.T, m map[string]string) map[store.Key]crypto.Plaintext {
	return inputs(t, m)
}

func TestVariablesAreSortedByName(t *testing.T) {
	vars, err := render.Variables(values(t, map[string]string{"b/zeta": "1", "a/alpha": "2", "b/Mid": "3"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vars {
		got = append(got, v.Name+"<-"+v.From.String()+"="+string(v.Value))
	}
	want := "ALPHA<-a/alpha=2 MID<-b/Mid=3 ZETA<-b/zeta=1"
	if strings.Join(got, " ") != want {
		t.Fatalf("Variables = %v, want %s", got, want)
	}
}

// Secrets that become one variable are an error naming every one of
// them, in key order, and every such variable, in name order.
func TestVariablesThatCollideAreAnErrorNamingEverySecret(t *testing.T) {
	for _, c := range []struct {
		in   map[string]string
		want string
	}{
		{map[string]string{"billing/db-password": "VALUE-A", "billing/DB_PASSWORD": "VALUE-B"}, "billing/DB_PASSWORD and billing/db-password both become the environment variable DB_PASSWORD"},
		// across applications (secretfs exec --app a --app b)
		{map[string]string{"auth/token": "VALUE-A", "billing/TOKEN": "VALUE-B"}, "auth/token and billing/TOKEN both become the environment variable TOKEN"},
		{map[string]string{"billing/db-password": "VALUE-A", "billing/db_password": "VALUE-B", "billing/DB-PASSWORD": "VALUE-C", "billing/other": "VALUE-D"},
			"billing/DB-PASSWORD, billing/db-password and billing/db_password all become the environment variable DB_PASSWORD"},
		{map[string]string{"b/x-y": "VALUE-A", "a/X_Y": "VALUE-B", "b/a.b": "VALUE-C", "b/A-B": "VALUE-D", "b/a_b": "VALUE-E"},
			"b/A-B, b/a.b and b/a_b all become the environment variable A_B; a/X_Y and b/x-y both become the environment variable X_Y"},
	} {
		_, err := render.Variables(values(t, c.in))
		if err == nil || !strings.HasSuffix(err.Error(), ": "+c.want) || !fault.Is(fault.Invalid, err) {
			t.Fatalf("Variables: %v, want Invalid ending %q", err, c.want)
		}
		if strings.Contains(err.Error(), "VALUE") {
			t.Fatalf("error %q holds a value", err)
		}
	}
}

// A secret never becomes a variable that makes the dynamic loader, a
// shell, an interpreter or a common tool run code of its choosing
// (LD_PRELOAD from a secret named ld-preload, GIT_SSH_COMMAND from
// git-ssh-command, say): whoever may write an application's
// secrets would otherwise choose code that runs in the program that gets
// them. The error names each such secret and its variable, and no value.
func TestVariablesThatWouldRunCodeAreRefusedNamingTheSecret(t *testing.T) {
	for _, name := range []string{"ld-preload", "LD_LIBRARY_PATH", "ld.audit", "path", "bash-env", "ENV", "node-options", "pythonpath", "java-tool-options",
		"pythonwarnings", "lua-init", "lua_init_5_4", "git-config-count", "git_config_key_0", "git-config-global", "git-config-parameters",
		"glibc-tunables", "zdotdir", "pythonhome", "pythonuserbase", "pythonplatlibdir", "pythonpycacheprefix", "perl5db", "gem-home", "gem-path",
		"git-ssh", "git-ssh-command", "git-proxy-command", "git-askpass", "git-exec-path", "git-editor", "git-sequence-editor", "git-pager",
		"git-external-diff", "git-template-dir", "ssh-askpass", "openssl-conf", "openssl-engines", "openssl-modules",
		"editor", "visual", "pager", "lessopen", "lessclose", "git-dir", "git-work-tree", "home", "xdg-config-home",
		"dotnet-startup-hooks", "dotnet-additional-deps", "coreclr-enable-profiling", "coreclr-profiler-path", "coreclr_profiler",
		"phprc", "php-ini-scan-dir", "npm-config-script-shell", "npm_config_node_options", "browser"} {
		in := map[string]string{"app/" + name: "VALUE-A", "app/db-password": "VALUE-B"}
		_, err := render.Variables(values(t, in))
		want := "app/" + name + " would set " + render.EnvName(name) + ", which makes a loader, a shell, an interpreter or a common tool run code"
		if err == nil || !strings.Contains(err.Error(), want) || !fault.Is(fault.Invalid, err) {
			t.Errorf("Variables with %s: %v, want Invalid saying %q", name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "VALUE") {
			t.Errorf("error %q holds a value", err)
		}
	}
	for _, name := range []string{"db-password", "lda", "path-prefix", "environment", "pathname", "git-token", "ssh-key", "openssl-password", "editors",
		"home-page", "npm-token", "php-password"} {
		if _, err := render.Variables(values(t, map[string]string{"app/" + name: "v"})); err != nil {
			t.Errorf("Variables refused %s: %v", name, err)
		}
	}
}

// tricky are values that every quoting must carry byte for byte.
var tricky = map[string]string{
	"t/plain":     "s3cr3t",
	"t/empty":     "",
	"t/space":     "  two  spaces  ",
	"t/quotes":    `it's "quoted"`,
	"t/shell":     "$HOME ${HOME} $(id) `id` \\ \\n \\$ !x ~ * ? [a] ; & | < > # =",
	"t/newlines":  "line1\nline2\n\nline4\n",
	"t/crlf":      "a\r\nb\r",
	"t/tab":       "\ttab\t",
	"t/unicode":   "é ✓ 😀 \u2028",
	"t/backslash": `\`,
	"t/controls":  "\x01\x1b[31m\x7f",
}

// trickyDotenv is the Dotenv file of tricky, and its variables.
func trickyDotenv(t *testing.T) ([]render.Variable, []byte) {
	t.Helper()
	vars, err := render.Variables(values(t, tricky))
	if err != nil {
		t.Fatal(err)
	}
	file, err := render.Dotenv(vars)
	if err != nil {
		t.Fatal(err)
	}
	return vars, file
}

// parseQuotedLines reads the KEY="..." lines Dotenv writes: value reads
// one from rest, just after its opening quote, and returns it and the
// index of its closing quote in rest (-1: none).
func parseQuotedLines(t *testing.T, file []byte, value func(rest string) (string, int)) map[string]string {
	t.Helper()
	out := map[string]string{}
	s := string(file)
	for s != "" {
		key, rest, ok := strings.Cut(s, `="`)
		if !ok || strings.ContainsAny(key, "\n\"") {
			t.Fatalf("not a KEY=\"...\" line: %q", s)
		}
		v, end := value(rest)
		if end < 0 || !strings.HasPrefix(rest[end:], "\"\n") {
			t.Fatalf("unterminated value for %s", key)
		}
		out[key] = v
		s = rest[end+2:]
	}
	return out
}

func TestDotenvIsReadBackByAPOSIXShell(t *testing.T) {
	vars, file := trickyDotenv(t)
	path := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, shell := range []string{"sh", "bash"} {
		for _, v := range vars {
			// printf %s prints the variable byte for byte; the x keeps
			// a trailing newline from being lost to $(...).
			cmd := exec.Command(shell, "-c", `set -a; . "$1"; printf '%sx' "$`+v.Name+`"`, shell, path)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s reading %s: %v", shell, v.Name, err)
			}
			if got := strings.TrimSuffix(string(out), "x"); got != string(v.Value) {
				t.Errorf("%s read %s as %q, want %q", shell, v.Name, got, v.Value)
			}
		}
	}
}

// systemdParse reads an environment file as systemd 252's EnvironmentFile=
// does (src/basic/env-file.c, parse_env_file_internal and
// load_env_file_push), for the lines Dotenv writes: KEY="...". Inside
// double quotes, a backslash before " \ ` $ stands for that character, a
// backslash before a newline joins the lines, a backslash before anything
// else is kept with it, and every other byte (newlines included) is
// itself. The integration test checks the same file with systemd's own
// parser (the environment.d generator).
func systemdParse(t *testing.T, file []byte) map[string]string {
	t.Helper()
	return parseQuotedLines(t, file, func(rest string) (string, int) {
		var value strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case '"', '\\', '`', '$':
				case '\n':
					continue
				default:
					value.WriteByte('\\')
				}
			}
			value.WriteByte(rest[i])
		}
		if i == len(rest) {
			i = -1
		}
		return value.String(), i
	})
}

func TestDotenvIsReadBackBySystemdsRules(t *testing.T) {
	vars, file := trickyDotenv(t)
	got := systemdParse(t, file)
	for _, v := range vars {
		if got[v.Name] != string(v.Value) {
			t.Errorf("systemd's rules read %s as %q, want %q", v.Name, got[v.Name], v.Value)
		}
	}
}

func TestDotenvBytes(t *testing.T) {
	vars, err := render.Variables(values(t, map[string]string{"a/db-password": "p\"$`\\\nx", "a/token": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	file, err := render.Dotenv(vars)
	if err != nil {
		t.Fatal(err)
	}
	if want := "DB_PASSWORD=\"p\\\"\\$\\`\\\\\nx\"\nTOKEN=\"tok\"\n"; string(file) != want {
		t.Fatalf("Dotenv = %q, want %q", file, want)
	}
}

func TestDotenvRefusesWhatNoReaderHolds(t *testing.T) {
	for value, want := range map[string]string{
		"SECRET\x00": "the value holds a NUL byte",
		"SECRET\xff": "the value is not valid UTF-8",
	} {
		vars, err := render.Variables(values(t, map[string]string{"a/x": value}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = render.Dotenv(vars)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "a/x") || strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("Dotenv(%q): %v, want an error naming a/x saying %q without the value", value, err, want)
		}
	}
}

// dockerParse reads an env file as docker run --env-file does: docker/cli
// pkg/kvfile's parseKeyValueFile. Up to docker 28 a value is the rest of
// the line, as it is; later releases (trimQuotes) remove one pair of
// quotes that both starts and ends it. Lines are read with a
// bufio.Scanner (64 KiB at most, a trailing \r dropped); the file must be
// UTF-8; leading white space of a line is dropped; a key may not hold
// white space.
func dockerParse(file []byte, trimQuotes bool) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(file))
	for sc.Scan() {
		line := sc.Bytes()
		if !utf8.Valid(line) {
			return nil, errInvalid("invalid utf8")
		}
		s := strings.TrimLeftFunc(string(line), unicode.IsSpace)
		if s == "" || s[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, errInvalid("bad key")
		}
		if !ok {
			continue
		}
		if trimQuotes && len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out, sc.Err()
}

type errInvalid string

func (e errInvalid) Error() string { return string(e) }

func TestDockerEnvFileIsReadBackByDockersRules(t *testing.T) {
	in := map[string]string{
		"a/plain":   "s3cr3t",
		"a/empty":   "",
		"a/spaces":  "  lead and trail  ",
		"a/quotes":  `it's "quoted" inside`,
		"a/shell":   "$HOME `id` \\ # = ;",
		"a/unicode": "é ✓ 😀",
		"a/cr":      "a\rb",
		"a/one":     `"`,
		"a/hash":    "#not a comment",
	}
	vars, err := render.Variables(values(t, in))
	if err != nil {
		t.Fatal(err)
	}
	file, err := render.DockerEnvFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(file), "CR=a\rb\nEMPTY=\nHASH=#not a comment\n") {
		t.Fatalf("DockerEnvFile = %q", file)
	}
	for _, trim := range []bool{false, true} {
		got, err := dockerParse(file, trim)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vars {
			if got[v.Name] != string(v.Value) {
				t.Errorf("docker (trimQuotes %v) read %s as %q, want %q", trim, v.Name, got[v.Name], v.Value)
			}
		}
	}
}

func TestDockerEnvFileRefusesWhatDockerCannotReadBack(t *testing.T) {
	for value, want := range map[string]string{
		"SECRET\nx":                             "holds a newline",
		"SECRET\r":                              "ends with a carriage return",
		"SECRET\xff":                            "not valid UTF-8",
		"SECRET\x00":                            "NUL",
		`"SECRET"`:                              "starts and ends with the same quote character",
		`'SECRET'`:                              "starts and ends with the same quote character",
		"SECRET" + strings.Repeat("x", 64*1024): "over 65535 bytes",
	} {
		vars, err := render.Variables(values(t, map[string]string{"a/x": value}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = render.DockerEnvFile(vars)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "a/x") || strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("DockerEnvFile(%.20q): %v, want an error naming a/x saying %q without the value", value, err, want)
		}
		// And docker would indeed not read it back (or refuse it).
		line := append([]byte("X="), value...)
		got, perr := dockerParse(append(line, '\n'), true)
		if value != "SECRET\x00" && perr == nil && got["X"] == value {
			t.Fatalf("docker reads %.20q back: the refusal is needless", value)
		}
	}
}

// composeEscape is an escape docker compose (compose-go's dotenv parser,
// since 2022) expands in a double-quoted value: \a \b \c \f \n \r \t \v
// \$ \" \\, or \0 and up to three digits (octal).
var composeEscape = regexp.MustCompile(`\\(?:[abcfnrtv$"\\]|0\d{0,3})`)

// composeParse reads an environment file as docker compose's env_file:
// does (compose-go dotenv/parser.go), for the lines Dotenv writes:
// KEY="...". The value ends at the first " without a backslash before
// it; a backslash before a " is dropped, any other is kept with what
// follows it. Then each composeEscape is expanded (\$ to $$, \0ddd as
// \ddd, the rest as in a Go string; one Go cannot read is kept as it is),
// and $$ is a $ (any other $ would name a variable: Dotenv leaves none).
func composeParse(t *testing.T, file []byte) map[string]string {
	t.Helper()
	return parseQuotedLines(t, file, func(rest string) (string, int) {
		var raw []byte
		end, escaped := -1, false
		for i := 0; i < len(rest) && end < 0; i++ {
			switch c := rest[i]; {
			case c == '"' && !escaped:
				end = i
			case c == '"':
				raw, escaped = append(raw, c), false
			case c == '\\' && !escaped:
				escaped = true
			default:
				if escaped {
					raw, escaped = append(raw, '\\'), false
				}
				raw = append(raw, c)
			}
		}
		value := composeEscape.ReplaceAllStringFunc(string(raw), func(m string) string {
			if m == `\$` {
				return "$$"
			}
			if strings.HasPrefix(m, `\0`) {
				m = `\` + m[2:]
			}
			r, _, _, err := strconv.UnquoteChar(m, '"')
			if err != nil {
				return m
			}
			return string(r)
		})
		var v strings.Builder
		for i := 0; i < len(value); i++ {
			if value[i] == '$' {
				if i+1 == len(value) || value[i+1] != '$' {
					t.Fatalf("compose would expand a variable in %q", value)
				}
				i++
			}
			v.WriteByte(value[i])
		}
		return v.String(), end
	})
}

// docker compose reads every value Dotenv writes back byte for byte, but
// for a backquote: a POSIX shell needs the backslash before it (a bare
// one starts a command), and compose keeps that backslash. No quoting
// serves both; the documentation says so (Dotenv, README, env's help).
func TestDotenvIsReadBackByComposesRulesButABackquoteKeepsItsBackslash(t *testing.T) {
	vars, file := trickyDotenv(t)
	got := composeParse(t, file)
	for _, v := range vars {
		want := strings.ReplaceAll(string(v.Value), "`", "\\`")
		if got[v.Name] != want {
			t.Errorf("compose's rules read %s as %q, want %q", v.Name, got[v.Name], want)
		}
	}
}
