package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/breaker"
	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/kms"
	"github.com/secretfs/secretfs/crypto/rsakey"
	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/dynamodb"
	"github.com/secretfs/secretfs/store/sqlite"
)

// Files of the local backend, inside --data-dir.
const (
	storeFile  = "secrets.db"
	privateKey = "key.pem"
	publicKey  = "key.pub.pem"
)

// backend is an opened store with its keys: what every verb works on.
type backend struct {
	*secrets.Keeper
	store     store.Store
	about     string // where the secrets are, for humans
	canWrite  bool   // there is a key to wrap new document keys with
	writeOnly bool   // the key can wrap but not unwrap
	// prepare makes the backend ready for use, for `secretfs init`: the
	// DynamoDB table. It reports what it did.
	prepare func(ctx context.Context) (string, error)
}

func (b *backend) Close() error { return b.store.Close() }

// opening says how a verb opens the backend.
type opening struct {
	// firstUse: a missing local data dir and key pair are made (mount
	// and init); otherwise they must exist. For DynamoDB it says that a
	// warning about trusting any KMS key is worth showing.
	firstUse bool
	// readOnly: a --read-only mount, which makes nothing even on first
	// use: the local store must exist.
	readOnly bool
	// replacing: a --replace of a live secretfs, which makes nothing
	// either: the store that secretfs serves exists, and a new, empty
	// one would mean a mistyped --data-dir.
	replacing bool
	// notices is where notices of what was made go; warnings go to the
	// log, in --log-format.
	notices io.Writer
	// meter, if not nil (mount --metrics-addr), counts every call of the
	// store and of the key wrappers.
	meter *metrics.Registry
}

// makes reports whether a missing local store is made: the data dir, the
// key pair and the store file.
func (o opening) makes() bool { return o.firstUse && !o.readOnly && !o.replacing }

// open opens the backend c names (c has been validated).
func (c *config) open(ctx context.Context, o opening) (*backend, error) {
	if c.backend == "dynamodb" {
		return c.openDynamoDB(ctx, o)
	}
	return c.openLocal(ctx, o)
}

// meterStore returns st counted by meter as service; without a meter, st.
func meterStore(meter *metrics.Registry, st store.Store, service string) store.Store {
	if meter == nil {
		return st
	}
	return meter.WrapStore(st, service)
}

// meterKeys returns w counted by meter as service; without a meter (or a
// key), w.
func meterKeys(meter *metrics.Registry, w crypto.KeyWrapper, service string) crypto.KeyWrapper {
	if meter == nil || w == nil {
		return w
	}
	return meter.WrapKeys(w, service)
}

// keeper composes the store and the keys, metered already, into a
// Keeper that writes in --format and whose v1 limit meter (if any)
// observes. The store is put behind an outage breaker (package breaker):
// once a call gets no answer, calls fail at once for a second instead of
// each waiting out --timeout. names says what to call the store and the
// keys in an error that says which gave no answer.
func (c *config) keeper(st store.Store, w crypto.KeyWrapper, meter *metrics.Registry, names backendNames) (*secrets.Keeper, error) {
	envelope, err := crypto.NewEnvelope(w, c.writeFormat)
	if err != nil {
		return nil, err
	}
	st = breaker.Store(st, &breaker.Breaker{Name: names.store, Timeout: c.timeout})
	return secrets.NewKeeper(st, envelope, secrets.Options{Timeout: c.timeout, Log: c.log, V1Observer: meter.V1Limit(),
		StoreName: names.store, KeysName: names.keys}), nil
}

// silent returns err, a call's to the backend named from, as the
// secrets.NoAnswer it is if --timeout ran out (and not ctx, the
// caller's), so that the verb says which backend was silent (timedOut).
func (c *config) silent(ctx context.Context, from string, err error) error {
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return &secrets.NoAnswer{From: from, Within: c.timeout, Err: err}
	}
	return err
}

// backendNames name a backend's store and keys in what the user reads.
type backendNames struct{ store, keys string }

var (
	localNames    = backendNames{store: "the local store", keys: "the RSA key"}
	dynamoDBNames = backendNames{store: "DynamoDB", keys: "KMS"}
)

func (c *config) openLocal(ctx context.Context, o opening) (*backend, error) {
	dir := c.dataDir
	dbPath := filepath.Join(dir, storeFile)
	if err := c.checkLocal(o); err != nil {
		return nil, err
	}
	// An existing data dir is only looked at; one that checkLocal let
	// through missing is made.
	if o.firstUse {
		if err := ensurePrivateDir(dir, o.notices, c.log); err != nil {
			return nil, err
		}
	}
	keyPath, err := c.localKey(o)
	if err != nil {
		return nil, err
	}
	wrapper, err := rsakey.Load(keyPath)
	if err != nil {
		return nil, err
	}
	st, err := sqlite.OpenWith(ctx, dbPath, sqlite.Options{Log: c.log})
	if err != nil {
		return nil, notSQLite(err, dbPath)
	}
	checkCtx, cancel := context.WithTimeout(ctx, c.timeout)
	err = refuseForeignKey(checkCtx, st, wrapper.MasterKeyID(), dbPath, keyPath, c.log)
	cancel()
	if err != nil {
		err = c.silent(ctx, localNames.store, err)
		st.Close()
		return nil, err
	}
	k, err := c.keeper(meterStore(o.meter, st, "sqlite"), meterKeys(o.meter, wrapper, "rsa"), o.meter, localNames)
	if err != nil {
		st.Close()
		return nil, err
	}
	about := fmt.Sprintf("local store %s, key %s", dbPath, wrapper.MasterKeyID())
	if !wrapper.CanUnwrap() {
		about += " (public key only: write-only)"
	}
	return &backend{
		Keeper:    k,
		store:     st,
		about:     about,
		canWrite:  true,
		writeOnly: !wrapper.CanUnwrap(),
		prepare:   func(context.Context) (string, error) { return "", nil },
	}, nil
}

// localKey returns the path of the local backend's key: --rsa-key, else
// the data dir's private key, which a first use generates, with its
// public half, if it is missing (checkLocal refused a store without its
// key, and a key pair without its store).
func (c *config) localKey(o opening) (string, error) {
	if c.rsaKey != "" {
		return c.rsaKey, nil
	}
	keyPath := filepath.Join(c.dataDir, privateKey)
	if _, err := os.Stat(keyPath); !o.makes() || !errors.Is(err, fs.ErrNotExist) {
		return keyPath, nil
	}
	pub := filepath.Join(c.dataDir, publicKey)
	if err := rsakey.Generate(keyPath, pub); err != nil {
		return "", err
	}
	fmt.Fprintf(o.notices, "generated an RSA key pair:\n  %s  private: reads and writes; keep it safe, back it up\n  %s  public: give it to hosts that may only write\n", keyPath, pub)
	return keyPath, nil
}

// openDynamoDB opens the table with the AWS SDK's standard configuration
// chain: environment, shared config and profiles, web identity, IMDS, and
// the endpoint variables AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_KMS.
// New writes are wrapped by --kms-key (or an RSA key, --rsa-key); reads of
// KMS items are confined to the keys kmsKeys trusts.
func (c *config) openDynamoDB(ctx context.Context, o opening) (*backend, error) {
	cfg, err := c.awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.awsCredentials(ctx, cfg); err != nil {
		return nil, err
	}
	ddb := awsdynamodb.NewFromConfig(cfg)
	kw, trust, err := c.kmsKeys(ctx, awskms.NewFromConfig(cfg), o.firstUse)
	if err != nil {
		return nil, err
	}
	// KMS behind an outage breaker of its own (the RSA reader beside it
	// is local: it always answers).
	kmsWrapper := breaker.Keys(meterKeys(o.meter, kw, "kms"), &breaker.Breaker{Name: dynamoDBNames.keys, Timeout: c.timeout})

	// KMS owns every key id that is not an RSA one, so the RSA reader
	// goes first.
	var write crypto.KeyWrapper
	readers := []crypto.KeyWrapper{}
	keyDesc := "no key for new writes"
	writeOnly := false
	if c.rsaKey != "" {
		rsa, err := rsakey.Load(c.rsaKey)
		if err != nil {
			return nil, err
		}
		readers = append(readers, meterKeys(o.meter, rsa, "rsa"))
		write, keyDesc = readers[0], "writes with "+rsa.MasterKeyID()
		writeOnly = !rsa.CanUnwrap()
	}
	if c.kmsKey != "" {
		write, keyDesc, writeOnly = kmsWrapper, "writes with KMS key "+c.kmsKey, false
	}
	readers = append(readers, kmsWrapper)

	st := dynamodb.New(ddb, c.table)
	k, err := c.keeper(meterStore(o.meter, st, "dynamodb"), crypto.NewKeyring(write, readers...), o.meter, dynamoDBNames)
	if err != nil {
		return nil, err
	}
	return &backend{
		Keeper:    k,
		store:     st,
		about:     fmt.Sprintf("dynamodb table %s in %s, %s, %s", c.table, cfg.Region, keyDesc, trust),
		canWrite:  write != nil,
		writeOnly: writeOnly,
		prepare: func(ctx context.Context) (string, error) {
			created, err := dynamodb.EnsureTable(ctx, ddb, c.table, c.timeout)
			switch {
			case err != nil:
				return "", err
			case created:
				return fmt.Sprintf("created the DynamoDB table %s (on demand) in %s", c.table, cfg.Region), nil
			default:
				return fmt.Sprintf("the DynamoDB table %s in %s already exists with the right key schema", c.table, cfg.Region), nil
			}
		},
	}, nil
}

// kmsKeys returns the KMS key wrapper: pinned to --kms-key and
// --kms-read-keys when either is given, resolved now (one DescribeKey per
// key, each with --timeout; a key KMS cannot resolve stops the start);
// else trusting any key KMS will decrypt with, which it warns about once
// (at warn level for mount and init, at info level for the admin verbs,
// which run often and log warnings by default). trust says which, for the
// backend's description.
func (c *config) kmsKeys(ctx context.Context, client *awskms.Client, firstUse bool) (w *kms.Wrapper, trust string, err error) {
	if c.kmsKey == "" && len(c.kmsReadKeys) == 0 {
		w = kms.New(client, "")
		level := logrus.InfoLevel
		if firstUse {
			level = logrus.WarnLevel
		}
		c.log.Log(level, w.Warning())
		return w, "reads under any KMS key", nil
	}
	w, err = kms.NewPinned(ctx, client, c.kmsKey, c.kmsReadKeys, c.timeout)
	if err != nil {
		return nil, "", fmt.Errorf("the KMS keys to trust (--kms-key, --kms-read-keys): %w", c.silent(ctx, dynamoDBNames.keys, err))
	}
	c.log.WithField("kms_keys", strings.Join(w.Trusted(), ",")).Info("KMS: reading only items wrapped under these keys; others are refused (EACCES)")
	return w, fmt.Sprintf("reads under %d trusted KMS key(s)", len(w.Trusted())), nil
}

// imdsRegionTimeout bounds the question to the EC2 instance metadata
// service for the region. On EC2 it answers in milliseconds; elsewhere its
// address usually does not answer at all, and the SDK's client would keep
// retrying for seconds before the real problem (no region) could be said.
const imdsRegionTimeout = 2 * time.Second

// awsConfig loads the AWS SDK's standard configuration. The region comes
// from --region, else from the SDK's chain (AWS_REGION, AWS_DEFAULT_REGION,
// the profile), else from the EC2 instance metadata. The metadata service
// is asked only when nothing else named a region, and on its own, by a
// client of the configuration already loaded: loading with it from the
// start makes any failure to reach it fail the whole configuration, which
// hides the advice that matters off EC2.
func (c *config) awsConfig(ctx context.Context) (aws.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithLogger(sdkLog{c.log})}
	if c.region != "" {
		opts = append(opts, awsconfig.WithRegion(c.region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region != "" {
		return cfg, nil
	}
	imdsCtx, cancelIMDS := context.WithTimeout(ctx, imdsRegionTimeout)
	defer cancelIMDS()
	out, err := imds.NewFromConfig(cfg).GetRegion(imdsCtx, nil)
	if err == nil && out.Region == "" {
		err = errors.New("it named no region")
	}
	if err != nil {
		return aws.Config{}, fmt.Errorf("no AWS region: pass --region or set AWS_REGION (asking the EC2 instance metadata failed: %v)", err)
	}
	cfg.Region = out.Region
	return cfg, nil
}

// awsCredentials looks for the AWS credentials now, within --timeout, so
// that a host without any is told so in one line: the first call would
// fail with the SDK's account of every source it tried ("operation error
// DynamoDB: GetItem, get identity: get credentials: failed to refresh
// cached credentials, no EC2 IMDS role found, operation error ec2imds:
// ..."). The clients share cfg's cache of them, so looking costs no call.
func (c *config) awsCredentials(ctx context.Context, cfg aws.Config) error {
	if cfg.Credentials == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := cfg.Credentials.Retrieve(ctx)
	if err == nil {
		return nil
	}
	// Said in one line, with the SDK's error kept beneath: a deadline is
	// then said as --timeout's by the verb (timedOut), as any other.
	return &reworded{msg: fmt.Sprintf("dynamodb: no AWS credentials found (environment, shared config, or instance role): %s", sdkCause(err)), err: err}
}

// sdkCause is what went wrong in err, an AWS SDK error, without the
// SDK's frames around it: the error inside its outermost operation error
// ("access disabled to EC2 IMDS via client option, ..." rather than
// "failed to refresh cached credentials, no EC2 IMDS role found,
// operation error ec2imds: GetMetadata, access disabled ..."), else err.
func sdkCause(err error) error {
	var op *smithy.OperationError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// sdkLog puts the AWS SDK's own log lines ("falling back to IMDSv1: ...")
// in the verb's log, at debug level. The SDK would write them to standard
// error itself, in its own format (breaking --log-format json), about
// retries that the error, if any, then reports anyway.
type sdkLog struct{ log logrus.FieldLogger }

func (l sdkLog) Logf(_ logging.Classification, format string, v ...any) {
	l.log.WithField("from", "aws-sdk").Debugf(format, v...)
}

// ensurePrivateDir makes dir with mode 0700 if it is missing, and warns if
// an existing one can be read by others.
func ensurePrivateDir(dir string, say io.Writer, log logrus.FieldLogger) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		// MkdirAll honours the umask; the data dir must be 0700 whatever it is.
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
		fmt.Fprintf(say, "created the data directory %s (mode 0700)\n", dir)
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("--data-dir %s is not a directory", dir)
	case fi.Mode().Perm()&0o077 != 0:
		log.WithField("path", dir).Warnf("the data directory has mode %#o; 0700 is safer", fi.Mode().Perm())
	}
	return nil
}
