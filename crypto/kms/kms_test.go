package kms_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/kms"
	"github.com/secretfs/secretfs/crypto/rsakey"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/testserver"
)

// server is the local-kms every test talks to, through its call-counting
// proxy. Tests in this package do not run in parallel, so that the
// counters belong to one test at a time.
var server *testserver.Server

func TestMain(m *testing.M) {
	s, err := testserver.StartLocalKMS()
	if err != nil {
		// Never a skip: a missing local-kms must fail the run.
		fmt.Fprintln(os.Stderr, "crypto/kms tests need local-kms:", err)
		os.Exit(1)
	}
	server = s
	code := m.Run()
	s.Close()
	os.Exit(code)
}

// newClient returns an SDK client for the KMS at url, built the way
// secretfs builds its own: the standard configuration chain, with the
// region, static credentials and the endpoint pinned so that nothing of
// the machine's AWS setup leaks in.
func newClient(t testing.TB, url string, opts ...func(*awskms.Options)) *awskms.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(t.Context(),
		config.WithRegion(testserver.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDLOCALTEST", "local-test-secret", "")),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return awskms.NewFromConfig(cfg, append([]func(*awskms.Options){func(o *awskms.Options) { o.BaseEndpoint = aws.String(url) }}, opts...)...)
}

// key is a KMS key made for one test.
type key struct{ id, arn string }

func createKey(t testing.TB, c *awskms.Client) key {
	t.Helper()
	out, err := c.CreateKey(t.Context(), &awskms.CreateKeyInput{Description: aws.String(t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	return key{id: aws.ToString(out.KeyMetadata.KeyId), arn: aws.ToString(out.KeyMetadata.Arn)}
}

// createAlias points a new alias, unique to this run, at k and returns
// its name ("alias/...").
func createAlias(t testing.TB, c *awskms.Client, k key) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "alias/secretfs-test-" + hex.EncodeToString(b)
	if _, err := c.CreateAlias(t.Context(), &awskms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: aws.String(k.id)}); err != nil {
		t.Fatal(err)
	}
	return name
}

func envelope(t testing.TB, w crypto.KeyWrapper, f crypto.Format) *crypto.Envelope {
	t.Helper()
	e, err := crypto.NewEnvelope(w, f)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func seal(t testing.TB, e *crypto.Envelope, app, name string, value []byte) crypto.Sealed {
	t.Helper()
	s, err := e.Seal(t.Context(), app, name, 1, value)
	if err != nil {
		t.Fatalf("Seal %s/%s: %v", app, name, err)
	}
	return s
}

func open(t testing.TB, e *crypto.Envelope, app, name string, s crypto.Sealed) []byte {
	t.Helper()
	p, err := e.Open(t.Context(), app, name, s)
	if err != nil {
		t.Fatalf("Open %s/%s: %v", app, name, err)
	}
	defer p.Wipe()
	return bytes.Clone(p)
}

// rawDecrypt decrypts a wrapped key with the SDK alone, as an auditor of
// the table would, with ec as the encryption context (none when nil).
func rawDecrypt(ctx context.Context, c *awskms.Client, blob []byte, ec map[string]string) (*awskms.DecryptOutput, error) {
	return c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
}

func wantKind(t testing.TB, what string, err error, kind fault.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, kind)
	}
	if got := fault.KindOf(err); got != kind {
		t.Fatalf("%s: kind %v, want %v (error: %v)", what, got, kind, err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// A v2 value sealed with KMS opens byte-exact, at exactly one
// GenerateDataKey per Seal and one Decrypt per Open, and the document key
// is an AES_256 data key of the configured key.
func TestV2RoundTrip(t *testing.T) {
	c := newClient(t, server.URL)
	k := createKey(t, c)
	e := envelope(t, kms.New(c, k.id), crypto.FormatV2)
	for _, value := range [][]byte{{}, []byte("hunter2"), randomBytes(1000), randomBytes(64 << 10)} {
		server.ResetCalls()
		s := seal(t, e, "app", "db", value)
		if got := server.Calls("GenerateDataKey"); got != 1 {
			t.Errorf("Seal made %d GenerateDataKey calls, want 1", got)
		}
		if got := server.Calls("Decrypt"); got != 0 {
			t.Errorf("Seal made %d Decrypt calls, want 0", got)
		}
		if s.Format != crypto.FormatV2 || s.MasterKeyID != k.id {
			t.Errorf("sealed as %q under %q, want %q under %q", s.Format, s.MasterKeyID, crypto.FormatV2, k.id)
		}
		got := open(t, e, "app", "db", s)
		if !bytes.Equal(got, value) {
			t.Errorf("Open of a %d-byte value returned %d different bytes", len(value), len(got))
		}
		if got := server.Calls("Decrypt"); got != 1 {
			t.Errorf("Open made %d Decrypt calls, want 1", got)
		}
		if got := server.Calls("GenerateDataKey"); got != 1 {
			t.Errorf("Seal and Open made %d GenerateDataKey calls, want 1", got)
		}

		out, err := rawDecrypt(t.Context(), c, s.WrappedKey, crypto.ItemContext("app", "db"))
		if err != nil {
			t.Fatalf("raw Decrypt with the item's context: %v", err)
		}
		if len(out.Plaintext) != crypto.DocumentKeySizeV2 || aws.ToString(out.KeyId) != k.arn {
			t.Errorf("document key is %d bytes under %s, want %d under %s", len(out.Plaintext), aws.ToString(out.KeyId), crypto.DocumentKeySizeV2, k.arn)
		}
	}
}

// The wrapped key of a v2 item is bound by KMS to the item's encryption
// context: it does not decrypt without it or with another item's, and a
// sealed value opened under another name fails as an integrity error.
func TestV2WrappedKeyNeedsItsContext(t *testing.T) {
	c := newClient(t, server.URL)
	w := kms.New(c, createKey(t, c).id)
	e := envelope(t, w, crypto.FormatV2)
	s := seal(t, e, "app", "db", []byte("hunter2"))

	// The control: with its own context the wrapped key decrypts.
	if _, err := rawDecrypt(t.Context(), c, s.WrappedKey, crypto.ItemContext("app", "db")); err != nil {
		t.Fatalf("raw Decrypt with the right context: %v", err)
	}
	for what, ec := range map[string]crypto.EncryptionContext{
		"no context":         nil,
		"another app":        crypto.ItemContext("other", "db"),
		"another name":       crypto.ItemContext("app", "other"),
		"application only":   {crypto.ContextApplicationName: "app"},
		"an additional pair": {crypto.ContextApplicationName: "app", crypto.ContextSecretName: "db", "x": "y"},
	} {
		if _, err := rawDecrypt(t.Context(), c, s.WrappedKey, ec); err == nil {
			t.Errorf("raw Decrypt with %s succeeded", what)
		}
		_, err := w.Unwrap(t.Context(), s.MasterKeyID, s.WrappedKey, ec)
		wantKind(t, "Unwrap with "+what, err, fault.Integrity)
	}
	for _, place := range [][2]string{{"app", "other"}, {"other", "db"}} {
		p, err := e.Open(t.Context(), place[0], place[1], s)
		wantKind(t, "Open under "+place[0]+"/"+place[1], err, fault.Integrity)
		if p != nil {
			t.Errorf("failed Open returned %d bytes", len(p))
		}
	}
}

// v1 writes ask KMS for an AES_128 key with no encryption context, as the
// original did, so that the original (which decrypts without a context)
// can read them.
func TestV1HasNoContext(t *testing.T) {
	c := newClient(t, server.URL)
	k := createKey(t, c)
	e := envelope(t, kms.New(c, k.id), crypto.FormatV1)
	value := []byte("correct horse battery staple")
	server.ResetCalls()
	s := seal(t, e, "app", "db", value)
	if s.Format != crypto.FormatV1 || s.MasterKeyID != k.id {
		t.Errorf("sealed as %q under %q, want %q under %q", s.Format, s.MasterKeyID, crypto.FormatV1, k.id)
	}
	if got := server.Calls("GenerateDataKey"); got != 1 {
		t.Errorf("Seal made %d GenerateDataKey calls, want 1", got)
	}
	out, err := rawDecrypt(t.Context(), c, s.WrappedKey, nil)
	if err != nil {
		t.Fatalf("raw Decrypt of a v1 wrapped key without context: %v", err)
	}
	if len(out.Plaintext) != 16 {
		t.Errorf("v1 document key is %d bytes, want 16 (AES_128)", len(out.Plaintext))
	}
	if _, err := rawDecrypt(t.Context(), c, s.WrappedKey, crypto.ItemContext("app", "db")); err == nil {
		t.Error("a v1 wrapped key decrypted with a context: it was made with one")
	}
	if got := open(t, e, "app", "db", s); !bytes.Equal(got, value) {
		t.Errorf("Open = %q, want %q", got, value)
	}
}

// wire is an HTTP client that keeps the JSON body of every KMS request,
// by operation, before sending it: what KMS really receives.
type wire struct {
	http *awshttp.BuildableClient

	mu     sync.Mutex
	bodies map[string][]map[string]any
}

func (w *wire) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			return nil, fmt.Errorf("a KMS request body is not JSON: %w", err)
		}
		target := r.Header.Get("X-Amz-Target") // "TrentService.GenerateDataKey"
		op := target[strings.LastIndexByte(target, '.')+1:]
		w.mu.Lock()
		w.bodies[op] = append(w.bodies[op], body)
		w.mu.Unlock()
	}
	return w.http.Do(r)
}

// take returns the bodies of the op requests sent since the last take.
func (w *wire) take(op string) []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.bodies[op]
	delete(w.bodies, op)
	return b
}

// What GenerateDataKey and Decrypt send, as KMS receives it: v2 asks for
// KeySpec AES_256 with the item's encryption context, v1 for AES_128 with
// none, as the original did; neither gives NumberOfBytes. Decrypt names
// the key the item records, and carries the context v2 was sealed with.
func TestRequestsOnTheWire(t *testing.T) {
	w := &wire{http: awshttp.NewBuildableClient(), bodies: map[string][]map[string]any{}}
	c := newClient(t, server.URL, func(o *awskms.Options) { o.HTTPClient = w })
	k := createKey(t, c)
	w.take("CreateKey")
	itemContext := map[string]any{crypto.ContextApplicationName: "app", crypto.ContextSecretName: "db"}
	for _, f := range []struct {
		format  crypto.Format
		keySpec string
		context map[string]any // nil: none sent
	}{
		{crypto.FormatV2, "AES_256", itemContext},
		{crypto.FormatV1, "AES_128", nil},
	} {
		e := envelope(t, kms.New(c, k.id), f.format)
		s := seal(t, e, "app", "db", []byte("hunter2"))
		open(t, e, "app", "db", s)

		gen, dec := w.take("GenerateDataKey"), w.take("Decrypt")
		if len(gen) != 1 || len(dec) != 1 {
			t.Fatalf("%s: %d GenerateDataKey and %d Decrypt requests seen, want 1 and 1", f.format, len(gen), len(dec))
		}
		if got := gen[0]["KeySpec"]; got != f.keySpec {
			t.Errorf("%s: GenerateDataKey KeySpec %v, want %s", f.format, got, f.keySpec)
		}
		if n, ok := gen[0]["NumberOfBytes"]; ok {
			t.Errorf("%s: GenerateDataKey sends NumberOfBytes %v; want the KeySpec alone", f.format, n)
		}
		if got := gen[0]["KeyId"]; got != k.id {
			t.Errorf("%s: GenerateDataKey KeyId %v, want %s", f.format, got, k.id)
		}
		if got := dec[0]["KeyId"]; got != k.id {
			t.Errorf("%s: Decrypt names the key %v, want the item's MasterKeyId %s", f.format, got, k.id)
		}
		for op, body := range map[string]map[string]any{"GenerateDataKey": gen[0], "Decrypt": dec[0]} {
			got, sent := body["EncryptionContext"]
			switch {
			case f.context == nil && sent:
				t.Errorf("%s: %s sends the encryption context %v; the original sent none", f.format, op, got)
			case f.context != nil && !reflect.DeepEqual(got, f.context):
				t.Errorf("%s: %s sends the encryption context %v, want %v", f.format, op, got, f.context)
			}
		}
	}
}

// legacySeal makes an item exactly as the original Secret Store does,
// with the SDK and the standard library only: an AES_128 data key from
// KMS without context, AES-128-CBC with PKCS#7 padding under a random
// 16-byte IV, the UTF-8 value, and MasterKeyId = the key name passed.
func legacySeal(t testing.TB, c *awskms.Client, keyName string, value string) crypto.Sealed {
	t.Helper()
	dk, err := c.GenerateDataKey(t.Context(), &awskms.GenerateDataKeyInput{KeyId: aws.String(keyName), KeySpec: types.DataKeySpecAes128})
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(dk.Plaintext)
	if err != nil {
		t.Fatal(err)
	}
	iv := randomBytes(aes.BlockSize)
	pad := aes.BlockSize - len(value)%aes.BlockSize
	buf := append([]byte(value), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	return crypto.Sealed{MasterKeyID: keyName, WrappedKey: dk.CiphertextBlob, IV: iv, Ciphertext: buf}
}

// Items of existing Secret Store tables open byte-exact, by a host that
// could not even write.
func TestLegacyItemOpens(t *testing.T) {
	c := newClient(t, server.URL)
	alias := createAlias(t, c, createKey(t, c))
	e := envelope(t, kms.New(c, ""), crypto.FormatV2)
	for _, value := range []string{"", "Pässwörd ✓ — ünïcode", "0123456789abcdef", strings.Repeat("x", 1000)} {
		s := legacySeal(t, c, alias, value)
		server.ResetCalls()
		if got := open(t, e, "app", "db", s); string(got) != value {
			t.Errorf("Open = %q, want %q", got, value)
		}
		if got := server.Calls("Decrypt"); got != 1 {
			t.Errorf("Open made %d Decrypt calls, want 1", got)
		}
	}
}

// --kms-key may be a key id, key ARN, alias name or alias ARN: each is
// recorded exactly as given, and each writes under the key it names.
func TestKeyForms(t *testing.T) {
	c := newClient(t, server.URL)
	k := createKey(t, c)
	alias := createAlias(t, c, k)
	aliasARN := "arn:aws:kms:" + testserver.Region + ":" + testserver.Account + ":" + alias
	for _, id := range []string{k.id, k.arn, alias, aliasARN} {
		e := envelope(t, kms.New(c, id), crypto.FormatV2)
		s := seal(t, e, "app", "db", []byte("v"))
		if s.MasterKeyID != id {
			t.Errorf("--kms-key %s: MasterKeyId %q", id, s.MasterKeyID)
		}
		out, err := rawDecrypt(t.Context(), c, s.WrappedKey, crypto.ItemContext("app", "db"))
		if err != nil {
			t.Fatalf("--kms-key %s: raw Decrypt: %v", id, err)
		}
		if got := aws.ToString(out.KeyId); got != k.arn {
			t.Errorf("--kms-key %s: wrapped by %s, want %s", id, got, k.arn)
		}
	}
}

// With --kms-key an alias, re-pointing the alias leaves old items
// readable (a Decrypt naming the alias fails for them, and is asked again
// naming no key: the blob names its own) and sends new writes to the new
// key.
func TestAliasRepointed(t *testing.T) {
	c := newClient(t, server.URL)
	k1, k2 := createKey(t, c), createKey(t, c)
	alias := createAlias(t, c, k1)
	w := kms.New(c, alias)
	e := envelope(t, w, crypto.FormatV2)
	keyOf := func(s crypto.Sealed) string {
		t.Helper()
		out, err := rawDecrypt(t.Context(), c, s.WrappedKey, crypto.ItemContext("app", "db"))
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.KeyId)
	}

	old := seal(t, e, "app", "db", []byte("old"))
	oldV1 := seal(t, envelope(t, w, crypto.FormatV1), "app", "db", []byte("old v1"))
	if old.MasterKeyID != alias {
		t.Errorf("MasterKeyId %q, want the alias as given, %q", old.MasterKeyID, alias)
	}
	if got := keyOf(old); got != k1.arn {
		t.Fatalf("old item wrapped by %s, want %s", got, k1.arn)
	}
	if _, err := c.UpdateAlias(t.Context(), &awskms.UpdateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(k2.id)}); err != nil {
		t.Fatal(err)
	}
	if got := open(t, e, "app", "db", old); string(got) != "old" {
		t.Errorf("old item after re-pointing: %q", got)
	}
	if got := open(t, e, "app", "db", oldV1); string(got) != "old v1" {
		t.Errorf("old v1 item after re-pointing: %q", got)
	}
	fresh := seal(t, e, "app", "db", []byte("new"))
	if fresh.MasterKeyID != alias {
		t.Errorf("MasterKeyId %q, want %q", fresh.MasterKeyID, alias)
	}
	if got := keyOf(fresh); got != k2.arn {
		t.Errorf("new item wrapped by %s, want the alias's new key %s", got, k2.arn)
	}
	if got := open(t, e, "app", "db", fresh); string(got) != "new" {
		t.Errorf("new item: %q", got)
	}
}

// A modified wrapped key is an integrity error, whether Open or Unwrap
// meets it.
func TestTamperedWrappedKey(t *testing.T) {
	c := newClient(t, server.URL)
	w := kms.New(c, createKey(t, c).id)
	e := envelope(t, w, crypto.FormatV2)
	s := seal(t, e, "app", "db", []byte("hunter2"))
	// The last bytes of a KMS ciphertext blob are its authenticated
	// ciphertext. (local-kms puts the key ARN in the clear at the front
	// of the blob; a change there names a key that does not exist, which
	// KMS reports as AccessDenied, i.e. fault.Permission.)
	for _, back := range []int{1, 17, 40} {
		bad := s
		bad.WrappedKey = bytes.Clone(s.WrappedKey)
		bad.WrappedKey[len(bad.WrappedKey)-back] ^= 0x01
		p, err := e.Open(t.Context(), "app", "db", bad)
		wantKind(t, fmt.Sprintf("Open with byte -%d of the wrapped key flipped", back), err, fault.Integrity)
		if p != nil {
			t.Errorf("failed Open returned %d bytes", len(p))
		}
		_, err = w.Unwrap(t.Context(), bad.MasterKeyID, bad.WrappedKey, crypto.ItemContext("app", "db"))
		wantKind(t, fmt.Sprintf("Unwrap with byte -%d flipped", back), err, fault.Integrity)
	}
	// The control: the untouched item still opens.
	if got := open(t, e, "app", "db", s); string(got) != "hunter2" {
		t.Errorf("Open = %q", got)
	}
}

// A host without --kms-key reads but does not write, and says why
// without calling KMS.
func TestNoKeyConfigured(t *testing.T) {
	c := newClient(t, server.URL)
	s := seal(t, envelope(t, kms.New(c, createKey(t, c).id), crypto.FormatV2), "app", "db", []byte("hunter2"))
	reader := kms.New(c, "")
	server.ResetCalls()
	key, wrapped, id, err := reader.NewDocumentKey(t.Context(), 32, crypto.ItemContext("app", "db"))
	wantKind(t, "NewDocumentKey without a key", err, fault.Permission)
	if !strings.Contains(err.Error(), "--kms-key") {
		t.Errorf("error does not say to pass --kms-key: %v", err)
	}
	if key != nil || wrapped != nil || id != "" {
		t.Error("failed NewDocumentKey returned a key")
	}
	if got := server.Calls("GenerateDataKey"); got != 0 {
		t.Errorf("%d GenerateDataKey calls without a key", got)
	}
	e := envelope(t, reader, crypto.FormatV2)
	_, err = e.Seal(t.Context(), "app", "db", 1, []byte("x"))
	wantKind(t, "Seal without a key", err, fault.Permission)
	if got := open(t, e, "app", "db", s); string(got) != "hunter2" {
		t.Errorf("Open = %q", got)
	}
}

// A key that does not exist or is disabled is fault.Permission, with a
// message that names the key and holds no key material.
func TestKeyRefused(t *testing.T) {
	c := newClient(t, server.URL)
	missing := "alias/secretfs-test-no-such-key"
	_, _, _, err := kms.New(c, missing).NewDocumentKey(t.Context(), 32, crypto.ItemContext("app", "db"))
	wantKind(t, "NewDocumentKey with a missing key", err, fault.Permission)
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error does not name %s: %v", missing, err)
	}

	k := createKey(t, c)
	alias := createAlias(t, c, k)
	w := kms.New(c, alias)
	ec := crypto.ItemContext("app", "db")
	dk, wrapped, _, err := w.NewDocumentKey(t.Context(), 32, ec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableKey(t.Context(), &awskms.DisableKeyInput{KeyId: aws.String(k.id)}); err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"Unwrap": func() error { _, err := w.Unwrap(t.Context(), alias, wrapped, ec); return err },
		"NewDocumentKey": func() error {
			_, _, _, err := w.NewDocumentKey(t.Context(), 32, ec)
			return err
		},
	} {
		err := call()
		wantKind(t, what+" with a disabled key", err, fault.Permission)
		msg := err.Error()
		if !strings.Contains(msg, alias) {
			t.Errorf("%s: error does not name %s: %v", what, alias, err)
		}
		for _, enc := range []string{string(dk), hex.EncodeToString(dk), base64.StdEncoding.EncodeToString(dk)} {
			if strings.Contains(msg, enc) {
				t.Errorf("%s: error contains the document key: %v", what, err)
			}
		}
	}
}

// KMS's AccessDenied (an IAM or key policy that does not allow the call,
// or a kms:EncryptionContext condition the item fails) is
// fault.Permission (EACCES), with a message naming the key and the
// permission to check, and costs one request: it is not retried.
func TestAccessDenied(t *testing.T) {
	c := newClient(t, server.URL)
	alias := createAlias(t, c, createKey(t, c))
	w := kms.New(c, alias)
	ec := crypto.ItemContext("app", "db")
	_, wrapped, _, err := w.NewDocumentKey(t.Context(), 32, ec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Deny(0) })
	for _, call := range []struct {
		op string
		do func() error
	}{
		{"GenerateDataKey", func() error { _, _, _, err := w.NewDocumentKey(t.Context(), 32, ec); return err }},
		{"Decrypt", func() error { _, err := w.Unwrap(t.Context(), alias, wrapped, ec); return err }},
	} {
		server.ResetCalls()
		server.Deny(1)
		err := call.do()
		wantKind(t, call.op+" refused with AccessDenied", err, fault.Permission)
		for _, want := range []string{strconv.Quote(alias), "kms:" + call.op, "AccessDeniedException"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: the error does not contain %s: %v", call.op, want, err)
			}
		}
		if n := server.Calls(call.op); n != 1 {
			t.Errorf("%s: %d requests, want 1: AccessDenied is not retried", call.op, n)
		}
	}
}

// A dead KMS is fault.Unavailable within the caller's deadline, never a
// hang: both when KMS is a dead host (the proxy of a stopped server
// accepts connections and never answers) and when nothing listens at all
// (connection refused, which the SDK retries).
func TestDeadKMS(t *testing.T) {
	dead, err := testserver.StartLocalKMS()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	dead.Stop()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	const deadline = 2 * time.Second
	for what, url := range map[string]string{"proxy of a stopped local-kms": dead.URL, "closed port": closed} {
		w := kms.New(newClient(t, url), "alias/anything")
		for call, do := range map[string]func(context.Context) error{
			"NewDocumentKey": func(ctx context.Context) error {
				_, _, _, err := w.NewDocumentKey(ctx, 32, crypto.ItemContext("app", "db"))
				return err
			},
			"Unwrap": func(ctx context.Context) error {
				_, err := w.Unwrap(ctx, "alias/anything", randomBytes(100), crypto.ItemContext("app", "db"))
				return err
			},
		} {
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			start := time.Now()
			err := do(ctx)
			elapsed := time.Since(start)
			cancel()
			wantKind(t, call+" against a "+what, err, fault.Unavailable)
			if elapsed > deadline+time.Second {
				t.Errorf("%s against a %s took %v with a %v deadline", call, what, elapsed, deadline)
			}
		}
	}
	if dead.Calls("GenerateDataKey") == 0 || dead.Calls("Decrypt") == 0 {
		t.Error("the calls did not reach the dead KMS's proxy: the test tested nothing")
	}
}

// One Keyring reads a table that mixes KMS and RSA items, each with its
// own wrapper, and writes with KMS.
func TestKeyringWithKMSAndRSA(t *testing.T) {
	c := newClient(t, server.URL)
	kw := kms.New(c, createKey(t, c).id)
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := rsakey.NewPrivate(k)
	if err != nil {
		t.Fatal(err)
	}
	ring := envelope(t, crypto.NewKeyring(kw, rw, kw), crypto.FormatV2)

	byKMS := seal(t, ring, "app", "kms", []byte("from kms"))
	if byKMS.MasterKeyID != kw.KeyID() {
		t.Errorf("Keyring wrote under %q, want the KMS key %q", byKMS.MasterKeyID, kw.KeyID())
	}
	byRSA := seal(t, envelope(t, rw, crypto.FormatV2), "app", "rsa", []byte("from rsa"))
	legacy := legacySeal(t, c, kw.KeyID(), "legacy")

	server.ResetCalls()
	if got := open(t, ring, "app", "rsa", byRSA); string(got) != "from rsa" {
		t.Errorf("RSA item: %q", got)
	}
	if got := server.Calls("Decrypt"); got != 0 {
		t.Errorf("an RSA item cost %d KMS Decrypt calls", got)
	}
	if got := open(t, ring, "app", "kms", byKMS); string(got) != "from kms" {
		t.Errorf("KMS item: %q", got)
	}
	if got := open(t, ring, "app", "legacy", legacy); string(got) != "legacy" {
		t.Errorf("legacy item: %q", got)
	}
	if got := server.Calls("Decrypt"); got != 2 {
		t.Errorf("two KMS items cost %d Decrypt calls, want 2", got)
	}
}

func TestOwns(t *testing.T) {
	w := kms.New(nil, "")
	for id, want := range map[string]bool{
		"1234abcd-12ab-34cd-56ef-1234567890ab":                                        true,
		"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab": true,
		"alias/secrets": true,
		"arn:aws:kms:eu-west-1:111122223333:alias/secrets": true,
		rsakey.KeyIDPrefix + strings.Repeat("ab", 32):      false,
	} {
		if got := w.Owns(id); got != want {
			t.Errorf("Owns(%q) = %v, want %v", id, got, want)
		}
	}
}
