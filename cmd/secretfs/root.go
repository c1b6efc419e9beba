package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/secrets"
)

// envPrefix: every flag --some-flag can also be set as SECRETFS_SOME_FLAG.
const envPrefix = "SECRETFS_"

// config holds the flags every verb shares: which backend, which keys,
// how to log.
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

	log *logrus.Logger
	// meter, when set (mount --metrics-addr), counts every backend call
	// through decorators of the store and the key wrappers.
	meter *metrics.Registry
}

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
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			// Zero would not mean "no deadline" but an expired one: every
			// backend call would fail at once.
			if c.timeout <= 0 {
				return fmt.Errorf("--timeout %s: want a positive duration, such as 5s", c.timeout)
			}
			if err := c.setupLogging(cmd); err != nil {
				return err
			}
			harden(c.log) // every verb may hold plaintext
			return nil
		},
	}
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
	)
	return root
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

func (c *config) setupLogging(cmd *cobra.Command) error {
	c.log.SetOutput(cmd.ErrOrStderr())
	switch c.logFormat {
	case "text":
		c.log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		c.log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
	level := c.logLevel
	if level == "" {
		level = "warn"
		if cmd.Name() == "mount" {
			level = "info"
		}
	}
	l, err := logrus.ParseLevel(level)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	c.log.SetLevel(l)
	return nil
}

// notices is where mount says what it made on first use (the data
// directory, a key pair). Those lines share stderr with the log; with
// --log-format json each becomes a log entry of its own, so that every
// line of stderr stays JSON.
func (c *config) notices(stderr io.Writer) io.Writer {
	if c.logFormat == "json" {
		return logLines{c.log}
	}
	return stderr
}

// logLines logs each line written to it at info level.
type logLines struct{ log logrus.FieldLogger }

func (l logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			l.log.Info(line)
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
