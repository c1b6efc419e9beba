package render

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// EnvName is the environment variable a secret (or a view) named name
// becomes, in `secretfs env` and `secretfs exec`, and the key it has in
// every format of an application view (json, dotenv, yaml, properties):
// ASCII letters are made upper case, every other byte that is not an
// ASCII digit or '_' becomes '_' (so "db-password" and "db.password"
// both become DB_PASSWORD, and "clé" becomes CL__: é is two bytes), and a
// name that starts with a digit gets a leading '_' ("2fa" becomes _2FA).
// The result is a name POSIX, sh, systemd and docker all accept:
// [A-Z_][A-Z0-9_]*. The application is not part of the name.
func EnvName(name string) string {
	b := make([]byte, 0, len(name)+1)
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		b = append(b, '_')
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// Variable is one environment variable made from a secret or a view.
type Variable struct {
	Name  string           // EnvName of From's name
	From  store.Key        // the secret (or view) it was made from
	Value crypto.Plaintext // not owned: the caller's, who wipes it
}

// Variables names each entry of values by EnvName and returns them in
// the order of their names. Entries that become the same name are an
// error naming every one of them, in key order, for each such name, in
// name order: a variable is never silently overwritten, and one fix to
// the names clears the error. The values are not copied.
func Variables(values map[store.Key]crypto.Plaintext) ([]Variable, error) {
	const op fault.Op = "render.Variables"
	vars, err := variables(values)
	if err == nil {
		err = refuseCodeVariables(vars)
	}
	if err != nil {
		return nil, fault.E(op, fault.Invalid, err.Error())
	}
	return vars, nil
}

// refuseCodeVariables refuses variables that would run code (runsCode),
// naming each secret: for an environment (Variables, a dotenv view), not
// for the keys of a JSON, YAML or properties file.
func refuseCodeVariables(vars []Variable) error {
	var refused []string
	for _, v := range vars {
		if runsCode(v.Name) {
			refused = append(refused, v.From.String()+" would set "+v.Name+", which makes a loader, a shell, an interpreter or a common tool run code of its choosing: refused (rename the secret)")
		}
	}
	if refused != nil {
		return errors.New(strings.Join(refused, "; "))
	}
	return nil
}

func variables(values map[store.Key]crypto.Plaintext) ([]Variable, error) {
	keys := make([]store.Key, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sortKeys(keys)
	vars := make([]Variable, 0, len(keys))
	byName := make(map[string][]store.Key, len(keys)) // each in key order
	for _, k := range keys {
		name := EnvName(k.Name)
		byName[name] = append(byName[name], k)
		vars = append(vars, Variable{Name: name, From: k, Value: values[k]})
	}
	var collisions []string
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		if from := byName[name]; len(from) > 1 {
			collisions = append(collisions, collision(from, name))
		}
	}
	if collisions != nil {
		return nil, errors.New(strings.Join(collisions, "; "))
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	return vars, nil
}

// codeVariables are the variables, besides the families of codePrefixes
// (every LD_* one, the dynamic loader's), that make glibc, a shell, a
// common interpreter or tool load or run code from where they say:
// glibc's list of those it ignores in setuid programs, the shells'
// startup files and PATH; Python's, Perl's, Ruby's, Node's and Java's
// own; the programs git and ssh run to reach a remote or ask for a
// password, those git runs to edit, page or compare, and the templates
// whose hooks a clone runs; the configuration and modules OpenSSL loads
// (a configuration loads engines and providers); and the editor and
// pager that programs in general start, with less's input filters. A
// secret never becomes one: whoever may write an application's secrets
// (a host holding only the RSA public key, say) would otherwise choose
// code that runs in the program secretfs exec starts, or that reads a
// dotenv view. A list, not a guarantee: docs/SECURITY.md.
var codeVariables = map[string]bool{
	"GCONV_PATH": true, "GETCONF_DIR": true, "GLIBC_TUNABLES": true, "HOSTALIASES": true, "LOCALDOMAIN": true,
	"LOCPATH": true, "MALLOC_TRACE": true, "NIS_PATH": true, "NLSPATH": true, "RESOLV_HOST_CONF": true,
	"RES_OPTIONS": true, "TMPDIR": true, "TZDIR": true,
	"PATH": true, "IFS": true, "ENV": true, "BASH_ENV": true, "SHELLOPTS": true, "BASHOPTS": true, "PS4": true,
	"PROMPT_COMMAND": true, "ZDOTDIR": true,
	"PYTHONPATH": true, "PYTHONHOME": true, "PYTHONSTARTUP": true, "PYTHONINSPECT": true, "PYTHONUSERBASE": true,
	"PYTHONPLATLIBDIR": true, "PYTHONPYCACHEPREFIX": true,
	"PYTHONWARNINGS": true, "PYTHONBREAKPOINT": true, // each imports a module it names
	"PERL5LIB": true, "PERLLIB": true, "PERL5OPT": true, "PERL5DB": true,
	"RUBYLIB": true, "RUBYOPT": true, "GEM_HOME": true, "GEM_PATH": true,
	"NODE_OPTIONS": true, "NODE_PATH": true,
	"JAVA_TOOL_OPTIONS": true, "_JAVA_OPTIONS": true, "JDK_JAVA_OPTIONS": true, "CLASSPATH": true,
	"GIT_SSH": true, "GIT_SSH_COMMAND": true, "GIT_PROXY_COMMAND": true, "GIT_ASKPASS": true, "GIT_EXEC_PATH": true,
	"GIT_EDITOR": true, "GIT_SEQUENCE_EDITOR": true, "GIT_PAGER": true, "GIT_EXTERNAL_DIFF": true,
	"GIT_TEMPLATE_DIR": true, "SSH_ASKPASS": true,
	"OPENSSL_CONF": true, "OPENSSL_ENGINES": true, "OPENSSL_MODULES": true,
	"EDITOR": true, "VISUAL": true, "PAGER": true, "LESSOPEN": true, "LESSCLOSE": true,
	"GIT_DIR": true, "GIT_WORK_TREE": true, // a repository of their choosing: its hooks and fsmonitor run
	"HOME": true, "XDG_CONFIG_HOME": true, // where git, ssh and shells read configuration that runs commands
	"DOTNET_STARTUP_HOOKS": true, "DOTNET_ADDITIONAL_DEPS": true, "CORECLR_ENABLE_PROFILING": true, // .NET loads what they name
	"PHPRC": true, "PHP_INI_SCAN_DIR": true, // php.ini's auto_prepend_file runs a script
	"BROWSER": true,
}

// runsCode reports whether a variable name is one of codeVariables, or
// of a family codePrefixes names.
func runsCode(name string) bool {
	for _, p := range codePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return codeVariables[name]
}

// codePrefixes name families of such variables: the dynamic loader's
// (LD_PRELOAD, LD_AUDIT...), Lua's LUA_INIT (and LUA_INIT_5_4...), which
// Lua runs, git's GIT_CONFIG* (GIT_CONFIG_KEY_0..., GIT_CONFIG_GLOBAL,
// GIT_CONFIG_PARAMETERS: any setting, such as core.sshCommand, or a
// file of them), .NET's CORECLR_PROFILER* (the profiler it loads), and
// npm's NPM_CONFIG_* (script-shell, node-options...).
var codePrefixes = []string{"LD_", "LUA_INIT", "GIT_CONFIG", "CORECLR_PROFILER", "NPM_CONFIG_"}

// collision says that the secrets from become the variable name.
func collision(from []store.Key, name string) string {
	names := make([]string, len(from))
	for i, k := range from {
		names[i] = k.String()
	}
	if len(names) == 2 {
		return names[0] + " and " + names[1] + " both become the environment variable " + name
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " all become the environment variable " + name
}

// sortKeys sorts keys by application, then name.
func sortKeys(keys []store.Key) {
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].App != keys[j].App {
			return keys[i].App < keys[j].App
		}
		return keys[i].Name < keys[j].Name
	})
}

// Dotenv renders vars as one NAME="value" line each, every value quoted
// as appendQuoted says. The result is read back byte for byte by a POSIX
// shell (set -a; . FILE) and by systemd's EnvironmentFile=. docker
// compose's env_file: reads it back too, but for a backquote: compose
// keeps the backslash that a shell needs before it (a bare backquote
// starts a command there), so no quoting serves both, and the shell wins.
// Other languages' dotenv readers differ in their escapes; the json
// format of a view suits them. docker run --env-file takes the rest of
// the line literally, quotes included; DockerEnvFile is its form.
//
// A value holding a NUL byte or bytes that are not UTF-8 is an error
// naming its secret: no environment variable holds a NUL, and systemd
// drops an assignment that is not UTF-8.
func Dotenv(vars []Variable) (crypto.Plaintext, error) {
	const op fault.Op = "render.Dotenv"
	var w buffer
	for _, v := range vars {
		_, _ = w.WriteString(v.Name)
		_ = w.WriteByte('=')
		if err := appendQuoted(&w, alias(v.Value)); err != nil {
			w.wipe()
			return nil, fault.E(op, v.From.Path(), fault.Invalid, err.Error())
		}
		_ = w.WriteByte('\n')
	}
	return w.bytes(), nil
}

// appendQuoted writes value double-quoted for a dotenv file: a backslash
// before each of \ " $ and `, every other byte as it is, newlines
// included. That is the one quoting a POSIX shell and systemd's
// EnvironmentFile= both read back as the same bytes: inside double
// quotes, both give a backslash its meaning before exactly those four
// characters (and before a newline, which never follows an unescaped
// backslash here), and both keep newlines as they are. A value holding a
// NUL byte or bytes that are not UTF-8 is an error.
func appendQuoted(w *buffer, value string) error {
	if err := envValueOK(value); err != nil {
		return err
	}
	if !utf8.ValidString(value) {
		return errors.New("the value is not valid UTF-8, which systemd's EnvironmentFile= does not accept")
	}
	w.grow(len(value) + 2)
	_ = w.WriteByte('"')
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch c {
		case '\\', '"', '$', '`':
			_ = w.WriteByte('\\')
		}
		_ = w.WriteByte(c)
	}
	_ = w.WriteByte('"')
	return nil
}

// envValueOK refuses what no environment variable can hold.
func envValueOK(value string) error {
	if strings.IndexByte(value, 0) >= 0 {
		return errors.New("the value holds a NUL byte, which no environment variable can hold")
	}
	return nil
}

// maxDockerLine is the longest line docker's env-file reader takes: it
// reads lines with a bufio.Scanner of the default size, which fails on a
// line (with its newline) over bufio.MaxScanTokenSize, 64 KiB.
const maxDockerLine = 64*1024 - 1

// DockerEnvFile renders vars for `docker run --env-file`, whose reader
// (docker/cli pkg/kvfile) takes each line as NAME=VALUE with the value
// literally: no quotes, no escapes. So it writes NAME=value lines, and
// refuses, naming the secret, a value that line cannot carry as it is: a
// NUL byte, a newline, a carriage return at its end (the reader drops
// it), bytes that are not UTF-8 (the reader refuses the file), a line
// over 64 KiB (the reader's limit), or a value that starts and ends with
// the same quote character (' or "): docker 28 keeps such quotes and
// later releases remove them, so its meaning depends on the docker.
func DockerEnvFile(vars []Variable) (crypto.Plaintext, error) {
	const op fault.Op = "render.DockerEnvFile"
	var w buffer
	for _, v := range vars {
		if err := dockerValueOK(v.Name, v.Value); err != nil {
			w.wipe()
			return nil, fault.E(op, v.From.Path(), fault.Invalid, err.Error())
		}
		_, _ = w.WriteString(v.Name)
		_ = w.WriteByte('=')
		_, _ = w.Write(v.Value)
		_ = w.WriteByte('\n')
	}
	return w.bytes(), nil
}

func dockerValueOK(name string, value []byte) error {
	const why = ", which docker run --env-file cannot read back: use the dotenv form (without --docker) with docker compose's env_file, or secretfs exec"
	if err := envValueOK(alias(value)); err != nil {
		return err
	}
	switch n := len(value); {
	case bytes.IndexByte(value, '\n') >= 0:
		return errors.New("the value holds a newline" + why)
	case n > 0 && value[n-1] == '\r':
		return errors.New("the value ends with a carriage return" + why)
	case !utf8.Valid(value):
		return errors.New("the value is not valid UTF-8" + why)
	case len(name)+1+n > maxDockerLine:
		return errors.New("the line would be over " + strconv.Itoa(maxDockerLine) + " bytes" + why)
	case n >= 2 && (value[0] == '"' || value[0] == '\'') && value[n-1] == value[0]:
		return errors.New("the value starts and ends with the same quote character" + why)
	}
	return nil
}
