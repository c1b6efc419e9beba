package integration

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/secretfs/secretfs/internal/testserver"
)

// The test's own SDK clients reach the same servers as the binary, to
// inspect and forge raw items: they never go through secretfs's code.

func awsConfig(t *testing.T) aws.Config {
	t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(),
		awsconfig.WithRegion(testserver.Region),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDLOCALTEST", "local-test-secret", "")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func rawDynamo(t *testing.T) *awsdynamodb.Client {
	return awsdynamodb.NewFromConfig(awsConfig(t), func(o *awsdynamodb.Options) { o.BaseEndpoint = aws.String(dynalite.URL) })
}

func rawKMS(t *testing.T) *awskms.Client {
	return awskms.NewFromConfig(awsConfig(t), func(o *awskms.Options) { o.BaseEndpoint = aws.String(localKMS.URL) })
}

var tables atomic.Int64

// dynamoBackend is a fresh table and a fresh KMS key (behind an alias, as
// the original Secret Store was used), prepared with `secretfs init`.
func dynamoBackend(t *testing.T) *backend {
	t.Helper()
	table := fmt.Sprintf("secrets-%d-%d", os.Getpid(), tables.Add(1))
	_, alias := newKMSKey(t, table)
	b := &backend{
		name:  "dynamodb",
		table: table,
		alias: alias,
		flags: []string{"--backend", "dynamodb", "--table", table, "--kms-key", alias},
		env:   dynamoEnv(),
		stored: func(t *testing.T) [][]byte {
			var all [][]byte
			for _, item := range scanTable(t, table) {
				for _, v := range item {
					all = append(all, attributeBytes(v))
				}
			}
			return all
		},
	}
	out := b.cli(t, nil, "init")
	if !strings.Contains(out, "created the DynamoDB table "+table) {
		t.Fatalf("secretfs init said %q", out)
	}
	return b
}

// newKMSKey makes a KMS key and an alias for it, as the original Secret
// Store was used: one key per application and environment.
func newKMSKey(t *testing.T, name string) (keyID, alias string) {
	t.Helper()
	ctx := context.Background()
	key, err := rawKMS(t).CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	alias = "alias/" + name
	if _, err := rawKMS(t).CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: key.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	return *key.KeyMetadata.KeyId, alias
}

// dynamoEnv points the binary at the local servers through the AWS SDK's
// own endpoint variables.
func dynamoEnv() []string {
	return append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+dynalite.URL, "AWS_ENDPOINT_URL_KMS="+localKMS.URL)
}

func scanTable(t *testing.T, table string) []map[string]types.AttributeValue {
	t.Helper()
	var items []map[string]types.AttributeValue
	p := awsdynamodb.NewScanPaginator(rawDynamo(t), &awsdynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, page.Items...)
	}
	return items
}

func attributeBytes(v types.AttributeValue) []byte {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return []byte(v.Value)
	case *types.AttributeValueMemberB:
		return v.Value
	case *types.AttributeValueMemberN:
		return []byte(v.Value)
	}
	return nil
}

func rawItem(t *testing.T, b *backend, app, name string) map[string]types.AttributeValue {
	t.Helper()
	out, err := rawDynamo(t).GetItem(context.Background(), &awsdynamodb.GetItemInput{
		TableName:      aws.String(b.table),
		Key:            itemKey(app, name),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Item == nil {
		t.Fatalf("no item %s/%s in %s", app, name, b.table)
	}
	return out.Item
}

func itemKey(app, name string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"ApplicationName": &types.AttributeValueMemberS{Value: app},
		"SecretName":      &types.AttributeValueMemberS{Value: name},
	}
}

func bin(item map[string]types.AttributeValue, name string) []byte {
	v, _ := item[name].(*types.AttributeValueMemberB)
	if v == nil {
		return nil
	}
	return v.Value
}

func str(item map[string]types.AttributeValue, name string) string {
	switch v := item[name].(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return v.Value
	}
	return ""
}

var protectedFields = []string{"MasterKeyId", "ProtectedDocumentKey", "InitialisationVector", "ProtectedSecretValue"}

func TestDynamoRawItemHoldsNoPlaintextAndEveryWriteIsFresh(t *testing.T) {
	b := dynamoBackend(t)
	m := mount(t, b)
	value := m.secret(unique("raw"))
	m.mustSh("mkdir app && printf %s '" + value + "' > app/s")
	first := rawItem(t, b, "app", "s")
	m.mustSh("printf %s '" + value + "' > app/s")
	second := rawItem(t, b, "app", "s")

	for _, item := range []map[string]types.AttributeValue{first, second} {
		for name, v := range item {
			if bytes.Contains(attributeBytes(v), []byte(value)) {
				t.Errorf("attribute %s holds the plaintext", name)
			}
		}
	}
	for _, f := range []string{"InitialisationVector", "ProtectedDocumentKey", "ProtectedSecretValue"} {
		if bytes.Equal(bin(first, f), bin(second, f)) {
			t.Errorf("two writes of the same value share their %s", f)
		}
	}
	if got := fmt.Sprint(str(second, "Format"), " ", str(second, "Version"), " ", str(second, "Size"), " ", str(second, "MasterKeyId")); got != "v3 2 "+strconv.Itoa(len(value))+" "+b.alias {
		t.Errorf("Format, Version, Size, MasterKeyId = %s", got)
	}
}

func TestDynamoWrappedKeyDoesNotDecryptWithoutItsEncryptionContext(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("v"), "put", "app/s")
	wrapped := bin(rawItem(t, b, "app", "s"), "ProtectedDocumentKey")
	ctx := context.Background()
	if _, err := rawKMS(t).Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: wrapped}); err == nil {
		t.Error("KMS decrypted a v2 document key without its encryption context")
	}
	out, err := rawKMS(t).Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: wrapped,
		EncryptionContext: map[string]string{"ApplicationName": "app", "SecretName": "s"}})
	if err != nil || len(out.Plaintext) != 32 {
		t.Fatalf("with its context the key should decrypt to 32 bytes: %v", err)
	}
}

func TestDynamoProtectedFieldsCopiedOntoAnotherItemGiveEIO(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("value of a"), "put", "app/a")
	b.cli(t, []byte("value of b"), "put", "app/b")
	a := rawItem(t, b, "app", "a")
	forged := rawItem(t, b, "app", "b")
	for _, f := range protectedFields {
		forged[f] = a[f]
	}
	if _, err := rawDynamo(t).PutItem(context.Background(), &awsdynamodb.PutItemInput{TableName: aws.String(b.table), Item: forged}); err != nil {
		t.Fatal(err)
	}
	m := mount(t, b)
	m.failSh("cat app/b", "Input/output error")
	if got := m.mustSh("cat app/a"); got != "value of a" {
		t.Errorf("the original item reads %q", got)
	}
	if !regexp.MustCompile(`"level":"error".*app/b`).MatchString(m.log()) {
		t.Errorf("no error log line names app/b:\n%s", m.log())
	}
}

// `ls -l` of a large application costs its Query pages: no GetItem, no
// KMS Decrypt, no Scan but the one with which the mount lists its root.
func TestDynamoLsOf2500SecretsCostsQueryPagesOnly(t *testing.T) {
	b := dynamoBackend(t)
	const n = 2500
	b.cli(t, []byte("one real value"), "put", "big/s0000")
	model := rawItem(t, b, "big", "s0000")
	var batch []types.WriteRequest
	flush := func() {
		if len(batch) == 0 {
			return
		}
		out, err := rawDynamo(t).BatchWriteItem(context.Background(), &awsdynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{b.table: batch}})
		if err != nil || len(out.UnprocessedItems) > 0 {
			t.Fatalf("batch write: %v (%d unprocessed)", err, len(out.UnprocessedItems))
		}
		batch = batch[:0]
	}
	for i := 1; i < n; i++ {
		item := map[string]types.AttributeValue{}
		for k, v := range model {
			item[k] = v
		}
		item["SecretName"] = &types.AttributeValueMemberS{Value: fmt.Sprintf("s%04d", i)}
		batch = append(batch, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
		if len(batch) == 25 {
			flush()
		}
	}
	flush()

	// The mount lists its root before it says it is mounted, which finds
	// the application and lists it; ls -l then reads that listing. The
	// calls are counted from before the mount, under a TTL no ls -l
	// outlasts however loaded the machine (a listing that expired half
	// way through would be paid for again, and counted).
	dynalite.ResetCalls()
	localKMS.ResetCalls()
	m := mount(t, b, "--ttl", "10m")
	out := m.mustSh("ls -l big")
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 9 {
			names = append(names, f[8])
		}
	}
	if len(names) != n || !sort.StringsAreSorted(names) || names[0] != "s0000" || names[n-1] != fmt.Sprintf("s%04d", n-1) {
		t.Fatalf("ls -l listed %d names (first %q), want %d", len(names), names[:min(3, len(names))], n)
	}
	queries, gets, scans, decrypts := dynalite.Calls("Query"), dynalite.Calls("GetItem"), dynalite.Calls("Scan"), localKMS.Calls("Decrypt")
	t.Logf("a mount and ls -l of %d secrets: %d Query, %d GetItem, %d Scan, %d Decrypt", n, queries, gets, scans, decrypts)
	if decrypts != 0 || gets != 0 || scans > 1 {
		t.Errorf("a mount and ls -l cost %d Decrypt, %d GetItem, %d Scan; want none but the root's Scan", decrypts, gets, scans)
	}
	// One listing of the application, pages of 1000, which finds the
	// application and lists it: the directory's pages come from it.
	if want := int64((n + 999) / 1000); queries != want {
		t.Errorf("ls -l cost %d Query calls, want the %d pages of one listing", queries, want)
	}
}

func TestDynamoLargeSecretWorksAndOneOverTheItemLimitIsEFBIG(t *testing.T) {
	b := dynamoBackend(t)
	m := mount(t, b)
	big := make([]byte, 350*1024)
	rand.Read(big)
	in := writeTemp(t, big)
	m.mustSh("mkdir app && cp " + in + " app/big && cmp " + in + " app/big")
	before := str(rawItem(t, b, "app", "big"), "Version")

	tooBig := make([]byte, 401*1024)
	rand.Read(tooBig)
	m.failSh("cp "+writeTemp(t, tooBig)+" app/big", "File too large")
	m.mustSh("cmp " + in + " app/big")
	if after := str(rawItem(t, b, "app", "big"), "Version"); after != before {
		t.Errorf("the refused write changed the item's version from %s to %s", before, after)
	}
}

// A cold read costs one GetItem and one Decrypt, however many readers
// arrive at once; a warm read costs nothing.
func TestDynamoConcurrentColdReadersCostOneDecrypt(t *testing.T) {
	b := dynamoBackend(t)
	value := unique("cold")
	b.cli(t, []byte(value), "put", "app/shared")
	b.cli(t, []byte(value), "put", "app/single")
	// --timeout: the readers below wait on a paused KMS for a while.
	m := mount(t, b, "--timeout", "30s")
	m.secret(value)
	m.mustSh("ls app >/dev/null") // the application is known; its secrets are not read

	reset := func() { dynalite.ResetCalls(); localKMS.ResetCalls() }
	costs := func(what string, wantGets, wantDecrypts int64) {
		t.Helper()
		gets, decrypts := dynalite.Calls("GetItem"), localKMS.Calls("Decrypt")
		t.Logf("%s: %d GetItem, %d Decrypt", what, gets, decrypts)
		if gets != wantGets || decrypts != wantDecrypts {
			t.Errorf("%s cost %d GetItem and %d Decrypt, want %d and %d", what, gets, decrypts, wantGets, wantDecrypts)
		}
	}

	reset()
	if got := m.mustSh("cat app/single"); got != value {
		t.Fatalf("cat: %q", got)
	}
	costs("cold read", 1, 1)

	reset()
	m.mustSh("cat app/single")
	costs("warm read", 0, 0)

	// KMS holds the first reader's Decrypt until every reader waits in
	// the mount for it: all of them are cold at once.
	const readers = 32
	reset()
	localKMS.Pause()
	defer localKMS.Resume()
	type read struct {
		out []byte
		err error
	}
	reads := make(chan read, readers)
	pids := make(chan int, readers)
	for range readers {
		go func() {
			cmd := exec.Command("cat", m.path("app/shared"))
			var out bytes.Buffer
			cmd.Stdout = &out
			err := cmd.Start()
			if err == nil {
				pids <- cmd.Process.Pid
				err = cmd.Wait()
			} else {
				pids <- 0
			}
			reads <- read{out.Bytes(), err}
		}()
	}
	var waiting []int
	for range readers {
		waiting = append(waiting, <-pids)
	}
	eventually(t, 20*time.Second, "every reader waits in the mount, and one Decrypt reached KMS", func() bool {
		for _, pid := range waiting {
			if !waitsOnFUSE(pid) {
				return false
			}
		}
		return localKMS.Calls("Decrypt") >= 1
	})
	// Readers that did not share the first unwrap would each be sending
	// their own now: give those time to arrive before counting.
	time.Sleep(200 * time.Millisecond)
	if n := localKMS.Calls("Decrypt"); n != 1 {
		t.Errorf("%d readers waiting in the mount made %d KMS Decrypt calls, want 1", readers, n)
	}
	localKMS.Resume()
	for range readers {
		r := <-reads
		if r.err != nil || string(r.out) != value {
			t.Errorf("a concurrent reader got %d bytes, err %v; want the value", len(r.out), r.err)
		}
	}
	costs(fmt.Sprintf("%d concurrent cold reads", readers), 1, 1)
}

// waitsOnFUSE reports whether process pid is blocked waiting for the
// FUSE daemon to answer a request, or for the page another reader's
// request is filling (its wchan, proc(5)): the kernel itself makes
// concurrent readers of a page wait for one READ.
func waitsOnFUSE(pid int) bool {
	wchan, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	w := string(wchan)
	return err == nil && (strings.Contains(w, "request_wait_answer") || strings.Contains(w, "folio_wait") || strings.Contains(w, "wait_on_page"))
}

// With --apps the root shows exactly those applications and discovers
// nothing: no Scan, which IAM confined to some partition keys would
// refuse. Other applications cannot be reached through the mount.
func TestDynamoAppsFlagShowsOnlyThoseApplicationsWithoutAScan(t *testing.T) {
	b := dynamoBackend(t)
	for _, app := range []string{"a", "b", "c"} {
		b.cli(t, []byte("value of "+app), "put", app+"/s")
	}
	dynalite.ResetCalls()
	m := mount(t, b, "--apps", "a,b")
	if got := m.mustSh("ls"); got != "a\nb\n" {
		t.Errorf("ls of the root with --apps a,b shows %q", got)
	}
	if got := m.mustSh("cat a/s"); got != "value of a" {
		t.Errorf("cat a/s = %q", got)
	}
	m.failSh("ls c", "No such file")
	m.failSh("cat c/s", "No such file")
	if scans := dynalite.Calls("Scan"); scans != 0 {
		t.Errorf("a mount with --apps made %d Scan calls, want none", scans)
	}

	all := mount(t, b)
	if got := all.mustSh("ls"); got != "a\nb\nc\n" {
		t.Errorf("ls of the root without --apps shows %q", got)
	}
	if dynalite.Calls("Scan") == 0 {
		t.Error("a mount without --apps listed the applications without a Scan; the check above proves nothing")
	}
}

// A KMS that stops answering gives EIO within --timeout, for reads and
// for writes, with a log line that says so; nothing hangs, and the mount
// works again when KMS is back.
func TestDynamoUnreachableKMSGivesEIOThenServesAgain(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("v"), "put", "app/s")
	m := mount(t, b, "--ttl", "0", "--timeout", "2s")
	m.mustSh("ls app >/dev/null")
	localKMS.Pause()
	defer localKMS.Resume()
	start := time.Now()
	m.failSh("cat app/s", "Input/output error")
	m.failSh("printf new | dd of=app/s conv=fsync status=none", "Input/output error")
	t.Logf("a read and a write against an unreachable KMS failed after %s (--timeout 2s)", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(m.log(), "no answer within 2s") {
		t.Errorf("the log does not say KMS did not answer in time:\n%s", m.log())
	}
	// fsync reported the failure: nothing of that write is committed
	// later, not by the close nor the release.
	if !strings.Contains(m.log(), "was not committed, and is discarded") {
		t.Errorf("the log does not say the write was not committed:\n%s", m.log())
	}
	localKMS.Resume()
	// Within a second of its last failure KMS is not asked again (so
	// that one syscall costs one deadline); then it serves again.
	eventually(t, 10*time.Second, "once KMS is back, cat returns the value the failed write left alone", func() bool {
		out, _, err := m.sh("cat app/s")
		return err == nil && out == "v"
	})
}

// An item written the way the original Secret Store writes it — a KMS
// AES_128 data key with no encryption context, AES-128-CBC with PKCS#7,
// a random 16-byte IV, MasterKeyId the key name, none of secretfs's
// attributes — mounts and reads byte-exact. The item is built here with
// the SDK and the standard library, independently of secretfs's crypto.
func TestDynamoReadsItemsWrittenByTheOriginalSecretStore(t *testing.T) {
	b := dynamoBackend(t)
	ctx := context.Background()
	value := "Pässwörd ✓ from the original"
	dk, err := rawKMS(t).GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: aws.String(b.alias), KeySpec: kmstypes.DataKeySpecAes128})
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, aes.BlockSize)
	rand.Read(iv)
	block, _ := aes.NewCipher(dk.Plaintext)
	pad := aes.BlockSize - len(value)%aes.BlockSize
	padded := append([]byte(value), bytes.Repeat([]byte{byte(pad)}, pad)...)
	ciphertext := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ciphertext, padded)
	item := itemKey("legacy", "db-password")
	item["MasterKeyId"] = &types.AttributeValueMemberS{Value: b.alias}
	item["ProtectedDocumentKey"] = &types.AttributeValueMemberB{Value: dk.CiphertextBlob}
	item["InitialisationVector"] = &types.AttributeValueMemberB{Value: iv}
	item["ProtectedSecretValue"] = &types.AttributeValueMemberB{Value: ciphertext}
	if _, err := rawDynamo(t).PutItem(ctx, &awsdynamodb.PutItemInput{TableName: aws.String(b.table), Item: item}); err != nil {
		t.Fatal(err)
	}

	m := mount(t, b)
	m.secret(value)
	// The item records no size; stat must still tell the truth, before
	// anything has read the value.
	if got := m.mustSh("ls -l legacy | awk 'NF == 9 { print $5 }'"); strings.TrimSpace(got) != strconv.Itoa(len(value)) {
		t.Errorf("ls -l shows size %q, want %d", got, len(value))
	}
	if got := m.mustSh("cat legacy/db-password"); got != value {
		t.Fatalf("cat of the original's item: %q, want %q", got, value)
	}
	// Rewriting it once moves it to v3 with a version.
	m.mustSh("echo rewritten > legacy/db-password")
	if got := rawItem(t, b, "legacy", "db-password"); str(got, "Format") != "v3" || str(got, "Version") != "1" {
		t.Errorf("after a rewrite: Format %q Version %q, want v3 1", str(got, "Format"), str(got, "Version"))
	}
}

// With --format v1, secretfs writes what the original Secret Store reads:
// decoded here with the SDK and the standard library only.
func TestDynamoFormatV1IsReadableByTheOriginal(t *testing.T) {
	b := dynamoBackend(t)
	value := "for old readers ✓"
	b.cli(t, []byte(value), "put", "app/s", "--format", "v1")
	item := rawItem(t, b, "app", "s")
	if str(item, "Format") != "v1" || str(item, "MasterKeyId") != b.alias {
		t.Errorf("Format %q, MasterKeyId %q", str(item, "Format"), str(item, "MasterKeyId"))
	}
	key, err := rawKMS(t).Decrypt(context.Background(), &awskms.DecryptInput{CiphertextBlob: bin(item, "ProtectedDocumentKey")})
	if err != nil || len(key.Plaintext) != 16 {
		t.Fatalf("the original decrypts the document key without context to 16 bytes: %v", err)
	}
	block, _ := aes.NewCipher(key.Plaintext)
	ct := bin(item, "ProtectedSecretValue")
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, bin(item, "InitialisationVector")).CryptBlocks(plain, ct)
	plain = plain[:len(plain)-int(plain[len(plain)-1])]
	if string(plain) != value {
		t.Errorf("decoded %q (%s), want %q", plain, hex.EncodeToString(plain), value)
	}
}

func TestDynamoInitAndMissingTableErrors(t *testing.T) {
	ctx := context.Background()
	wrong := fmt.Sprintf("wrong-schema-%d-%d", os.Getpid(), tables.Add(1))
	_, err := rawDynamo(t).CreateTable(ctx, &awsdynamodb.CreateTableInput{
		TableName:            aws.String(wrong),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: "dynamodb", env: dynamoEnv(), flags: []string{"--backend", "dynamodb", "--table", wrong}}
	if _, errOut, err := b.run(nil, "init"); err == nil || !strings.Contains(errOut, "ApplicationName") {
		t.Errorf("init on a table with another key schema: err %v, stderr %q; want a failure naming the schema needed", err, errOut)
	}

	good := dynamoBackend(t)
	if out := good.cli(t, nil, "init"); !strings.Contains(out, "already exists") {
		t.Errorf("a second init said %q, want that the table already exists", out)
	}

	missing := &backend{name: "dynamodb", env: dynamoEnv(), flags: []string{"--backend", "dynamodb", "--table", "no-such-table"}}
	if _, errOut, err := missing.run(nil, "get", "app/s"); err == nil || !strings.Contains(errOut, "secretfs init") {
		t.Errorf("get from a missing table: err %v, stderr %q; want an error naming secretfs init", err, errOut)
	}
}

// ownDynamo is a DynamoDB backend on a dynalite of the test's own (which
// the test may pause, freeze or kill without disturbing others), with a
// fresh table, prepared with `secretfs init`, and a KMS key to write with
// (unless readOnly) on the shared local-kms. flags come after the
// backend's.
func ownDynamo(t *testing.T, readOnly bool, flags ...string) (*backend, *testserver.Server) {
	t.Helper()
	own, err := testserver.StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	table := fmt.Sprintf("own-%d-%d", os.Getpid(), tables.Add(1))
	b := &backend{name: "dynamodb", table: table,
		env:   append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+own.URL, "AWS_ENDPOINT_URL_KMS="+localKMS.URL),
		flags: append([]string{"--backend", "dynamodb", "--table", table}, flags...)}
	if !readOnly {
		b.alias = localKMSKey(t)
		b.flags = append(b.flags, "--kms-key", b.alias)
	}
	b.cli(t, nil, "init")
	return b, own
}

// A backend that stops answering gives EIO within the deadline, never a
// hung mount; the mount serves again when the backend is back.
func TestDynamoUnreachableBackendGivesEIOThenServesAgain(t *testing.T) {
	b, own := ownDynamo(t, true, "--timeout", "2s")
	b.cli(t, []byte("v"), "put", "app/s", "--kms-key", localKMSKey(t))
	m := mount(t, b, "--ttl", "0", "--read-only")
	m.mustSh("ls")
	own.Pause()
	start := time.Now()
	m.failSh("cat app/s", "Input/output error")
	t.Logf("cat against an unreachable DynamoDB failed after %s (--timeout 2s)", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(m.log(), "no answer within 2s") {
		t.Errorf("the log does not say the backend did not answer in time:\n%s", m.log())
	}
	own.Resume()
	// Within a second of its last failure the store is not asked again
	// (so that one syscall costs one deadline); then it serves again.
	eventually(t, 10*time.Second, "the mount serves again once the backend is back", func() bool {
		out, _, err := m.sh("cat app/s")
		return err == nil && out == "v"
	})
}

// localKMSKey makes a KMS key for a test that needs one to write with.
func localKMSKey(t *testing.T) string {
	_, alias := newKMSKey(t, fmt.Sprintf("key-%d-%d", os.Getpid(), tables.Add(1)))
	return alias
}

// A backend that refuses the caller (IAM or a key policy: AccessDenied)
// gives EACCES, for reads and writes, with a log line naming what to
// grant; nothing is retried into a hang, and nothing stored is harmed.
func TestDynamoAccessDeniedIsEACCES(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("kept"), "put", "app/s")
	b.cli(t, []byte("kept"), "put", "app/t")
	m := mount(t, b, "--ttl", "0")
	m.mustSh("ls app >/dev/null")

	dynalite.Deny(1000)
	defer dynalite.Deny(0)
	m.failSh("cat app/s", "Permission denied")
	if !regexp.MustCompile(`dynamodb:\w+.*` + regexp.QuoteMeta(b.table)).MatchString(m.log()) {
		t.Errorf("the log does not name the DynamoDB action and table to grant:\n%s", m.log())
	}
	dynalite.Deny(0)

	localKMS.Deny(1000)
	defer localKMS.Deny(0)
	m.failSh("cat app/t", "Permission denied")
	m.failSh("printf new | dd of=app/s conv=fsync status=none", "Permission denied")
	localKMS.Deny(0)
	for _, want := range []string{"KMS Decrypt of a document key wrapped by", "KMS GenerateDataKey with key"} {
		if !strings.Contains(m.log(), want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	for _, name := range []string{"s", "t"} {
		if got := m.mustSh("cat app/" + name); got != "kept" {
			t.Errorf("after the refusals, app/%s is %q", name, got)
		}
	}
}
