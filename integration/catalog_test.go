package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/rsakey"
	"github.com/secretfs/secretfs/internal/testserver"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/sqlite"
)

// What a look costs and what the mount holds: the catalog's answers kept
// for the TTL (the root listing, absent applications), bounded memory, and
// freshness and stale-if-error across outages of the store and of KMS.

// Listing the applications is a Scan on DynamoDB, the costliest call
// there is: it is kept for the TTL like an application's listing.
func TestDynamoTenListingsOfTheRootWithinTheTTLCostOneScanAtMost(t *testing.T) {
	b := dynamoBackend(t)
	for _, app := range []string{"a", "b"} {
		b.cli(t, []byte("value of "+app), "put", app+"/s")
	}
	m := mount(t, b, "--ttl", "1m")
	dynalite.ResetCalls()
	for range 10 {
		if got := m.mustSh("ls"); got != "a\nb\n" {
			t.Fatalf("ls of the root shows %q", got)
		}
	}
	if n := dynalite.Calls("Scan"); n > 1 {
		t.Errorf("10 listings of the root within the TTL cost %d Scans, want at most 1", n)
	}
}

// The applications a listing of the root names need no listing of their
// own while it is fresh: the kernel looks up each name `ls` of the root
// gives (a mount's own start lists the root, to check that it answers),
// and each cost a Query on top of the Scan.
func TestDynamoListingTheRootCostsOneScanAndNoQuery(t *testing.T) {
	b := dynamoBackend(t)
	for _, app := range []string{"a", "b", "c"} {
		b.cli(t, []byte("value of "+app), "put", app+"/s")
	}
	dynalite.ResetCalls()
	m := mount(t, b, "--ttl", "1m")
	if got := m.mustSh("ls -l | wc -l"); got != "4\n" {
		t.Fatalf("ls -l of the root shows %q lines, want a total and 3 applications", got)
	}
	if scans, queries := dynalite.Calls("Scan"), dynalite.Calls("Query"); scans != 1 || queries != 0 {
		t.Errorf("a mount's start and ls -l of its root cost %d Scans and %d Queries, want 1 and 0", scans, queries)
	}
}

// rss returns the resident set size of process pid, in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB$`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// Looking up names that are not applications costs one listing each and
// no lasting memory: absences are kept in a bounded LRU for the TTL, and
// the empty indexes are dropped.
func TestStatsOfTwentyThousandAbsentNamesKeepMemoryBounded(t *testing.T) {
	b := localBackend(t)
	initLocal(t, b)
	b.cli(t, []byte("present"), "put", "app/s")
	m := mountBinaryAt(t, plainBinary(t), b, mountpoint(t))
	pid := m.cmd.Process.Pid
	stat := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := os.Stat(m.path(fmt.Sprintf("absent-%d", i))); !os.IsNotExist(err) {
				t.Fatalf("stat of an absent application: %v", err)
			}
		}
	}
	stat(0, 2000) // the pools and caches a mount grows into under load
	before := rss(t, pid)
	stat(2000, 22000)
	after := rss(t, pid)
	t.Logf("RSS %.1f MB before 20,000 stats of absent names, %.1f MB after", float64(before)/1e6, float64(after)/1e6)
	if grew := after - before; grew > 10<<20 {
		t.Errorf("20,000 stats of absent names grew the mount's RSS by %.1f MB, want less than 10 MB", float64(grew)/1e6)
	}
	if got := m.mustSh("cat app/s"); got != "present" {
		t.Errorf("cat app/s = %q", got)
	}
}

// fillLocal stores n secrets app/s0..s<n-1> in b's local store directly
// (as `secretfs put` would, without a process per secret).
func fillLocal(t *testing.T, b *backend, app string, n int) {
	t.Helper()
	ctx := context.Background()
	w, err := rsakey.Load(filepath.Join(b.dataDir(), "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(b.dataDir(), "secrets.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env, err := crypto.NewEnvelope(w, crypto.DefaultFormat)
	if err != nil {
		t.Fatal(err)
	}
	k := secrets.NewKeeper(st, env, secrets.Options{})
	for i := range n {
		key := store.Key{App: app, Name: fmt.Sprintf("s%d", i)}
		if _, err := k.Put(ctx, key, []byte(fmt.Sprintf("value %d of %s", i, app)), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
}

// Memory held for plaintext goes back to the system once it is wiped:
// after --cache-idle with nothing read, the mount's RSS is back within
// 10 MB of what it was before the reads.
func TestRSSReturnsAfterTheIdleWindow(t *testing.T) {
	b := localBackend(t)
	initLocal(t, b)
	const n = 5000
	start := time.Now()
	fillLocal(t, b, "many", n)
	t.Logf("stored %d secrets in %s", n, time.Since(start).Round(time.Millisecond))
	const idle = 3 * time.Second
	m := mountBinaryAt(t, plainBinary(t), b, mountpoint(t), "--cache-idle", idle.String(), "--ttl", "1s")
	pid := m.cmd.Process.Pid
	if _, err := os.ReadDir(m.path("many")); err != nil {
		t.Fatal(err)
	}
	before := rss(t, pid)
	start = time.Now()
	for i := range n {
		if _, err := os.ReadFile(m.path(fmt.Sprintf("many/s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	read := rss(t, pid)
	t.Logf("read %d secrets in %s", n, time.Since(start).Round(time.Millisecond))
	// The sweeper wipes what nobody read for the idle window; it runs
	// every eighth of it.
	time.Sleep(idle + idle/4 + time.Second)
	after := rss(t, pid)
	t.Logf("RSS %.1f MB before reading %d secrets, %.1f MB after, %.1f MB after --cache-idle %s",
		float64(before)/1e6, n, float64(read)/1e6, float64(after)/1e6, idle)
	if after-before > 10<<20 {
		t.Errorf("after the idle window the mount holds %.1f MB more than before the reads, want less than 10 MB",
			float64(after-before)/1e6)
	}
}

// Freshness after an outage: the mount asks the store again in the
// background while revalidations get no answer, so a change made after
// the store came back is seen within --ttl + 1 s, as at any other time,
// and not served stale to the first read after the outage.
func TestAChangeAfterTheStoreRecoversIsSeenWithinTheTTLPlusOneSecond(t *testing.T) {
	own, err := testserver.StartPersistentDynalite()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	table := fmt.Sprintf("recover-%d-%d", os.Getpid(), tables.Add(1))
	b := &backend{name: "dynamodb", table: table,
		env:   append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+own.URL, "AWS_ENDPOINT_URL_KMS="+localKMS.URL),
		flags: []string{"--backend", "dynamodb", "--table", table, "--kms-key", localKMSKey(t), "--timeout", "1s"}}
	b.cli(t, nil, "init")
	b.cli(t, []byte("before"), "put", "app/s")
	const ttl = 2 * time.Second
	m := mount(t, b, "--ttl", ttl.String(), "--stale-if-error", "1h", "--read-only")
	m.mustSh("cat app/s")
	own.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			own.Thaw()
		}
	}()
	for range 3 { // past the TTL, served stale
		if got := m.mustSh("cat app/s"); got != "before" {
			t.Fatalf("with the store frozen: %q", got)
		}
		time.Sleep(time.Second)
	}
	wantSilent(t, b, "app/s", "get app/s: no answer within --timeout 1s from DynamoDB")
	own.Thaw()
	thawed = true
	time.Sleep(500 * time.Millisecond)
	b.cli(t, []byte("after"), "put", "app/s")
	changed := time.Now()
	time.Sleep(ttl + 500*time.Millisecond)
	if got := m.mustSh("cat app/s"); got != "after" {
		t.Errorf("%s after a change made once the store was back (--ttl %s), the mount reads %q, want the new value",
			time.Since(changed).Round(100*time.Millisecond), ttl, got)
	}
}

// wantSilent checks that `secretfs get` of name fails, while a backend is
// frozen, saying want last, which names the silent backend.
func wantSilent(t *testing.T, b *backend, name, want string) {
	t.Helper()
	_, stderr, err := b.run(nil, "get", name)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if err == nil || lines[len(lines)-1] != "secretfs: "+want {
		t.Errorf("secretfs get %s with a backend frozen: %v, stderr %q; want %q", name, err, stderr, "secretfs: "+want)
	}
}

// ownKMS is a local-kms of the test's own, to freeze, with a key behind
// an alias.
func ownKMS(t *testing.T) (*testserver.Server, string) {
	t.Helper()
	own, err := testserver.StartLocalKMS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	cfg := awsConfig(t)
	client := awskms.NewFromConfig(cfg, func(o *awskms.Options) { o.BaseEndpoint = aws.String(own.URL) })
	ctx := context.Background()
	key, err := client.CreateKey(ctx, &awskms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	alias := fmt.Sprintf("alias/own-%d-%d", os.Getpid(), tables.Add(1))
	if _, err := client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: key.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	return own, alias
}

// Stale-if-error covers KMS: when revalidation finds a newer revision of
// a secret being read but KMS cannot decrypt it (frozen), the last value
// keeps being served, with one warning, and the new one once KMS is back.
func TestKMSFrozenWithANewerRevisionListedServesTheLastValue(t *testing.T) {
	for _, mode := range []string{"read-write", "read-only"} {
		t.Run(mode, func(t *testing.T) {
			kms, alias := ownKMS(t)
			table := fmt.Sprintf("kmsstale-%d-%d", os.Getpid(), tables.Add(1))
			b := &backend{name: "dynamodb", table: table,
				env:   append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+dynalite.URL, "AWS_ENDPOINT_URL_KMS="+kms.URL),
				flags: []string{"--backend", "dynamodb", "--table", table, "--kms-key", alias, "--timeout", "1s"}}
			b.cli(t, nil, "init")
			b.cli(t, []byte("first"), "put", "app/s")
			const ttl = time.Second
			extra := []string{"--ttl", ttl.String(), "--stale-if-error", "1h"}
			if mode == "read-only" {
				extra = append(extra, "--read-only")
			}
			m := mount(t, b, extra...)
			if got := m.mustSh("cat app/s"); got != "first" {
				t.Fatalf("cat = %q", got)
			}
			b.cli(t, []byte("second"), "put", "app/s")
			kms.Freeze()
			thawed := false
			defer func() {
				if !thawed {
					kms.Thaw()
				}
			}()
			time.Sleep(ttl + 200*time.Millisecond)
			for i := range 5 {
				out, errOut, err := m.sh("cat app/s")
				if err != nil || out != "first" {
					t.Fatalf("read %d with KMS frozen and a newer revision listed: %q, %v %s; want the last value", i, out, err, errOut)
				}
			}
			wantSilent(t, b, "app/s", "get app/s: no answer within --timeout 1s from KMS")
			kms.Thaw()
			thawed = true
			eventually(t, 10*time.Second, "the new value is read once KMS is back", func() bool {
				out, _, err := m.sh("cat app/s")
				return err == nil && out == "second"
			})
			warnings := regexp.MustCompile(`"msg":"the store cannot answer: serving the last known value","secret":"app/s"`).FindAllString(m.log(), -1)
			if len(warnings) != 1 {
				t.Errorf("%d warnings of the stale value, want 1 per secret per outage", len(warnings))
			}
			if strings.Contains(m.log(), `"errno":"input/output error"`) {
				t.Errorf("a read failed during the outage:\n%s", m.log())
			}
		})
	}
}
