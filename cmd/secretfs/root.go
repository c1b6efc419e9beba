package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/secrets"
)

// envPrefix: every flag --some-flag can also be set as SECRETFS_SOME_FLAG.
const envPrefix = "SECRETFS_"

// config is what one run of secretfs is told: the flags every verb shares
// and those of mount, each also settable as SECRETFS_* (applyEnv). Before
// any verb runs, validate checks every value, each rule in one place, and
// keeps what it parsed; the verbs then build what they need from it (the
// backend, the catalog, the mount), passing along what those take.
type config struct {
	backend   string
	dataDir   string
	table     string
	region    string
	kmsKey    string
	rsaKey    string
	format    string
	timeout   time.Duration
	logLevel  string
	logFormat string

	// kmsReadKeys, with kmsKey, are the KMS keys whose items may be read;
	// both empty: any key KMS will decrypt with.
	kmsReadKeys []string

	// mount holds mount's own flags. Other verbs leave them at their
	// defaults, which validate accepts.
	mount mountConfig

	// Set by validate from the flags above.
	writeFormat crypto.Format // --format: the format of new writes
	level       logrus.Level  // --log-level, if given
	// log is the log of every verb, set up from --log-level and
	// --log-format before the verb runs.
	log *logrus.Logger
}

// newRootCommand returns the secretfs command, with every verb.
func newRootCommand() *cobra.Command {
	c := &config{log: logrus.New()}
	root := &cobra.Command{
		Use:   "secretfs",
		Short: "Encrypted secrets as files: cat decrypts, echo > file encrypts, ls lists",
		Long: `secretfs mounts a table of encrypted secrets as a directory tree,
/<application>/<secret>, and administers it from the shell.

Out of the box it keeps secrets in a local store file, encrypted under a
generated RSA key pair: no cloud account needed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every verb: the environment, then every value checked, before
		// the verb makes or opens anything.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			if err := c.validate(); err != nil {
				return err
			}
			c.setupLogging(cmd)
			harden(c.log) // every verb may hold plaintext
			return nil
		},
	}
	root.SetFlagErrorFunc(flagError)
	f := root.PersistentFlags()
	f.StringVar(&c.backend, "backend", "local", "where secrets are kept: local (a store file and an RSA key pair) or dynamodb (a DynamoDB table, keys from KMS)")
	f.StringVar(&c.dataDir, "data-dir", defaultDataDir(), "local backend: directory of the store file and the generated key pair")
	f.StringVar(&c.table, "table", "secrets", "dynamodb backend: the table")
	f.StringVar(&c.region, "region", "", "AWS region (default: from the AWS SDK chain: AWS_REGION, profile, IMDS)")
	f.StringVar(&c.kmsKey, "kms-key", "", "KMS key id, alias or ARN that wraps new writes; trusted for reads, as are --kms-read-keys")
	f.StringSliceVar(&c.kmsReadKeys, "kms-read-keys", nil, "KMS keys (ids, aliases or ARNs: k1,k2) whose items may be read, besides --kms-key; with either flag, an item wrapped under any other key is refused (EACCES). Without both, any key KMS will decrypt with is trusted")
	f.StringVar(&c.rsaKey, "rsa-key", "", "PEM key: a private key reads and writes, a public key only writes (default: the data dir's key.pem)")
	f.StringVar(&c.format, "format", "v3", "format of new writes: v3 (AES-256-GCM bound to name and version), v2 (AES-256-GCM bound to name) or v1 (the original Secret Store's AES-128-CBC, unauthenticated)")
	f.DurationVar(&c.timeout, "timeout", secrets.DefaultTimeout, "deadline of each backend call")
	f.StringVar(&c.logLevel, "log-level", "", "debug, info, warn or error (default: info for mount, warn otherwise)")
	f.StringVar(&c.logFormat, "log-format", "text", "text or json")

	root.AddCommand(
		newMountCommand(c),
		newInitCommand(c),
		newPutCommand(c),
		newGetCommand(c),
		newLsCommand(c),
		newRmCommand(c),
		newMigrateCommand(c),
		newExecCommand(c),
		newEnvCommand(c),
		newVersionCommand(),
		newStatusCommand(),
		newSentinelCommand(),
	)
	return root
}

// execute runs the command line args (os.Args[1:]) with root, which
// newRootCommand made; args in the mount(8) form are translated first
// (mountHelperArgs).
func execute(root *cobra.Command, args []string) error {
	translated, ok, err := mountHelperArgs(root, args)
	switch {
	case err != nil:
		return err
	case ok:
		args = translated
	}
	invocation = args
	root.SetArgs(args)
	return root.Execute()
}

// validate checks the values of every flag, each rule once, and keeps
// what it parsed. It refuses what a constructor further on would
// otherwise quietly reinterpret or find out only after making things: a
// refused value leaves nothing made.
func (c *config) validate() error {
	// Zero would not mean "no deadline" but an expired one: every
	// backend call would fail at once.
	if c.timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration, such as 5s", c.timeout)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
	if c.logLevel != "" {
		// logrus also parses trace (nothing logs at it), fatal and panic
		// (which would hide every error line, an integrity failure's
		// included): only the four levels the flag names are taken.
		level, err := logrus.ParseLevel(c.logLevel)
		if err != nil || level < logrus.ErrorLevel || level > logrus.DebugLevel {
			return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
		}
		c.level = level
	}
	if c.backend != "local" && c.backend != "dynamodb" {
		return fmt.Errorf("--backend %q: want local or dynamodb", c.backend)
	}
	// Refused whatever the backend: an empty name is a mistake (a
	// variable left empty, a quoting slip), and DynamoDB would only say
	// so at the first call, in its own words, without naming the flag.
	if c.table == "" {
		return errors.New(`--table "": want the name of a DynamoDB table (default: secrets)`)
	}
	format, err := crypto.ParseFormat(c.format)
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	c.writeFormat = format
	return c.mount.validate()
}

// internalVariables are the SECRETFS_* variables secretfs sets for its
// own children, and the test hooks: no flag has them.
var internalVariables = map[string]bool{
	readyFDEnv: true, listProbeEnv: true, heldNotifySocketEnv: true,
	holdStepDownEnv: true, holdTakeOverEnv: true,
}

// strayVariables returns the SECRETFS_* variables of the environment that
// set no flag of cmd: a misspelling in a unit's environment file
// (SECRETFS_APP for mount's SECRETFS_APPS) would otherwise be ignored
// without a word, and the mount would show what it was meant not to.
func strayVariables(cmd *cobra.Command) []string {
	known := map[string]bool{}
	note := func(f *pflag.Flag) {
		known[envPrefix+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))] = true
	}
	cmd.Flags().VisitAll(note)
	cmd.InheritedFlags().VisitAll(note)
	var stray []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] && !internalVariables[name] {
			stray = append(stray, name)
		}
	}
	slices.Sort(stray)
	return stray
}

// warnOfStrayVariables logs each of stray (see strayVariables).
func warnOfStrayVariables(log logrus.FieldLogger, stray []string) {
	for _, name := range stray {
		log.WithField("variable", name).Warn("this variable names no flag of secretfs mount, and is ignored: is it misspelled? (every flag --some-flag is SECRETFS_SOME_FLAG)")
	}
}

// applyEnv sets every flag not given on the command line from its
// SECRETFS_* variable, if set.
func applyEnv(flags *pflag.FlagSet) error {
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := flags.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}

// setupLogging points the log at the command's standard error, in
// --log-format, at --log-level: by default info for mount, which runs
// long and says what it does, and warn for the other verbs, whose output
// is their answer.
func (c *config) setupLogging(cmd *cobra.Command) {
	c.log.SetOutput(cmd.ErrOrStderr())
	if c.logFormat == "json" {
		c.log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		c.log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	level := c.level
	if c.logLevel == "" {
		level = logrus.WarnLevel
		if cmd.Name() == "mount" {
			level = logrus.InfoLevel
		}
	}
	c.log.SetLevel(level)
}

// notices is where mount says what it made on first use (the data
// directory, a key pair). Those lines share stderr with the log; with
// --log-format json each becomes a log entry of its own, so that every
// line of stderr stays JSON.
func (c *config) notices(stderr io.Writer) io.Writer {
	if c.logFormat == "json" {
		return logLines{log: c.log}
	}
	return stderr
}

// logLines logs each line written to it at info level, and gives it to
// also, if set (a --daemon's parent prints it).
type logLines struct {
	log  logrus.FieldLogger
	also func(line string)
}

func (l logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			l.log.Info(line)
			if l.also != nil {
				l.also(line)
			}
		}
	}
	return len(p), nil
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d + "/secretfs"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return home + "/.local/share/secretfs"
	}
	return ".secretfs"
}

// harden keeps decrypted values out of core dumps and away from ptrace by
// other processes of the same user.
func harden(log *logrus.Logger) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.WithError(err).Warn("could not disable core dumps")
	}
}
