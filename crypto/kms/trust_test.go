package kms_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/kms"
	"github.com/secretfs/secretfs/crypto/rsakey"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/testserver"
)

// pinned returns a Wrapper that writes with keyID and trusts keyID and
// readKeys, resolved against local-kms.
func pinned(t testing.TB, c kms.Client, keyID string, readKeys ...string) *kms.Wrapper {
	t.Helper()
	w, err := kms.NewPinned(t.Context(), c, keyID, readKeys, 5*time.Second)
	if err != nil {
		t.Fatalf("NewPinned(%q, %q): %v", keyID, readKeys, err)
	}
	return w
}

func aliasARN(alias string) string {
	return "arn:aws:kms:" + testserver.Region + ":" + testserver.Account + ":" + alias
}

// Decrypt names the key: an unpinned Wrapper the item's MasterKeyId as
// recorded, a pinned one the ARN of the trusted key it names, whatever
// form the item's MasterKeyId has.
func TestDecryptNamesTheKey(t *testing.T) {
	w := &wire{http: awshttp.NewBuildableClient(), bodies: map[string][]map[string]any{}}
	c := newClient(t, server.URL, func(o *awskms.Options) { o.HTTPClient = w })
	k := createKey(t, c)
	alias := createAlias(t, c, k)
	for _, id := range []string{k.id, k.arn, alias, aliasARN(alias)} {
		s := seal(t, envelope(t, kms.New(c, id), crypto.FormatV2), "app", "db", []byte("v"))
		for _, reader := range []struct {
			name string
			w    *kms.Wrapper
			want string
		}{
			{"unpinned", kms.New(c, ""), id},
			{"pinned to " + alias, pinned(t, c, "", alias), k.arn},
		} {
			w.take("Decrypt")
			if got := open(t, envelope(t, reader.w, crypto.FormatV2), "app", "db", s); string(got) != "v" {
				t.Errorf("%s, MasterKeyId %s: Open = %q", reader.name, id, got)
			}
			dec := w.take("Decrypt")
			if len(dec) != 1 {
				t.Fatalf("%s, MasterKeyId %s: %d Decrypt requests, want 1", reader.name, id, len(dec))
			}
			if got := dec[0]["KeyId"]; got != reader.want {
				t.Errorf("%s, MasterKeyId %s: Decrypt names the key %v, want %s", reader.name, id, got, reader.want)
			}
		}
	}
}

// The trusted set is resolved once, at start, with one DescribeKey per
// name: a key id, an alias name, a key ARN and an alias ARN each come to
// their key's ARN, an alias to the key it points at. Items then open by
// any name of a trusted key, at one Decrypt each and no further
// DescribeKey.
func TestPinnedResolvesIDsAliasesAndARNs(t *testing.T) {
	c := newClient(t, server.URL)
	byID, byAlias, byARN, byAliasARN := createKey(t, c), createKey(t, c), createKey(t, c), createKey(t, c)
	alias, otherAlias := createAlias(t, c, byAlias), createAlias(t, c, byAliasARN)
	// Each name of each key that an item may record.
	names := map[key][]string{}
	for _, k := range []key{byID, byAlias, byARN, byAliasARN} {
		names[k] = []string{k.id, k.arn}
	}
	names[byAlias] = append(names[byAlias], alias, aliasARN(alias))
	names[byAliasARN] = append(names[byAliasARN], otherAlias, aliasARN(otherAlias))

	server.ResetCalls()
	w := pinned(t, c, byID.id, alias, byARN.arn, aliasARN(otherAlias), byID.id)
	if got := server.Calls("DescribeKey"); got != 4 {
		t.Errorf("resolving 4 distinct names made %d DescribeKey calls, want 4", got)
	}
	if got, want := w.Trusted(), []string{byID.arn, byAlias.arn, byARN.arn, byAliasARN.arn}; !slices.Equal(got, want) {
		t.Errorf("Trusted() = %q, want %q", got, want)
	}
	if w.KeyID() != byID.id {
		t.Errorf("KeyID() = %q, want the write key as given, %q", w.KeyID(), byID.id)
	}
	e := envelope(t, w, crypto.FormatV2)
	for k, ids := range names {
		for _, id := range ids {
			s := seal(t, envelope(t, kms.New(c, id), crypto.FormatV2), "app", "db", []byte("value under "+id))
			server.ResetCalls()
			if got := open(t, e, "app", "db", s); string(got) != "value under "+id {
				t.Errorf("item under %s (key %s): Open = %q", id, k.arn, got)
			}
			if d, dk := server.Calls("Decrypt"), server.Calls("DescribeKey"); d != 1 || dk != 0 {
				t.Errorf("item under %s: %d Decrypt and %d DescribeKey calls, want 1 and 0", id, d, dk)
			}
		}
	}
	// The pinned Wrapper writes with its --kms-key as given.
	if s := seal(t, e, "app", "db", []byte("x")); s.MasterKeyID != byID.id {
		t.Errorf("a pinned Wrapper wrote under %q, want %q", s.MasterKeyID, byID.id)
	}
}

// An item whose MasterKeyId names a key the mount does not trust is
// refused with fault.Permission before KMS is asked, with a message that
// names that key and what is trusted; the same mount reads its own keys'
// items, and an unpinned one reads both.
func TestPinnedRefusesAnUntrustedKey(t *testing.T) {
	c := newClient(t, server.URL)
	a, b := createKey(t, c), createKey(t, c)
	aliasA, aliasB := createAlias(t, c, a), createAlias(t, c, b)
	underA := seal(t, envelope(t, kms.New(c, aliasA), crypto.FormatV2), "app", "a", []byte("value a"))
	e := envelope(t, pinned(t, c, aliasA, aliasA), crypto.FormatV2)
	for _, id := range []string{b.id, b.arn, aliasB, aliasARN(aliasB)} {
		for _, format := range []crypto.Format{crypto.FormatV2, crypto.FormatV1} {
			s := seal(t, envelope(t, kms.New(c, id), format), "app", "b", []byte("value b"))
			server.ResetCalls()
			p, err := e.Open(t.Context(), "app", "b", s)
			wantKind(t, "Open of a "+string(format)+" item under "+id, err, fault.Permission)
			if p != nil {
				t.Errorf("a refused Open returned %d bytes", len(p))
			}
			for _, want := range []string{crypto.QuoteID(id), crypto.QuoteID(aliasA), "--kms-read-keys"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %s: %v", want, err)
				}
			}
			if n := server.Total(); n != 0 {
				t.Errorf("refusing an item under %s made %d KMS requests, want 0", id, n)
			}
			if got := open(t, envelope(t, kms.New(c, ""), crypto.FormatV2), "app", "b", s); string(got) != "value b" {
				t.Errorf("an unpinned Wrapper reads %q", got)
			}
		}
	}
	if got := open(t, e, "app", "a", underA); string(got) != "value a" {
		t.Errorf("the item under the trusted key: %q", got)
	}
	// An RSA-wrapped item never reaches a KMS Wrapper through a Keyring;
	// called directly, a pinned one refuses it as untrusted too.
	_, err := pinned(t, c, aliasA).Unwrap(t.Context(), rsakey.KeyIDPrefix+strings.Repeat("ab", 32), underA.WrappedKey, nil)
	wantKind(t, "Unwrap of an RSA id", err, fault.Permission)
}

// An item that claims a trusted key in its MasterKeyId but whose wrapped
// key was made under another is refused by KMS (Decrypt names the trusted
// key): an integrity error, never the value, and the foreign key is not
// used.
func TestPinnedItemClaimingATrustedKeyIsRefusedByKMS(t *testing.T) {
	c := newClient(t, server.URL)
	a, b := createKey(t, c), createKey(t, c)
	forged := seal(t, envelope(t, kms.New(c, b.id), crypto.FormatV2), "app", "db", []byte("forged"))
	forged.MasterKeyID = a.arn
	p, err := envelope(t, pinned(t, c, a.arn), crypto.FormatV2).Open(t.Context(), "app", "db", forged)
	wantKind(t, "Open of an item under B that names A", err, fault.Integrity)
	if p != nil {
		t.Errorf("the refused Open returned %d bytes", len(p))
	}
}

// lyingKMS is a KMS client that passes every call to local-kms but
// answers a successful Decrypt with another KeyId than KMS gave: as a
// KMS endpoint that is not what it claims would.
type lyingKMS struct {
	kms.Client
	answer    string
	plaintext []byte // the document key the last Decrypt returned
}

func (l *lyingKMS) Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	out, err := l.Client.Decrypt(ctx, in, opts...)
	if err == nil {
		out.KeyId = aws.String(l.answer)
		l.plaintext = out.Plaintext
	}
	return out, err
}

// A KMS that answers a Decrypt with a key the mount does not trust is not
// believed: fault.Permission naming the key it answered, and the document
// key it sent is zeroed, not returned. An unpinned Wrapper does not check.
func TestPinnedRefusesAnUnexpectedKeyInTheAnswer(t *testing.T) {
	c := newClient(t, server.URL)
	a, b := createKey(t, c), createKey(t, c)
	s := seal(t, envelope(t, kms.New(c, a.arn), crypto.FormatV2), "app", "db", []byte("v"))
	for _, answer := range []string{b.arn, b.id, "", "alias/anything", a.arn + "x"} {
		liar := &lyingKMS{Client: c, answer: answer}
		key, err := pinned(t, liar, a.arn).Unwrap(t.Context(), s.MasterKeyID, s.WrappedKey, crypto.ItemContext("app", "db"))
		wantKind(t, "Unwrap answered by "+answer, err, fault.Permission)
		if key != nil {
			t.Errorf("answered by %q: Unwrap returned a key", answer)
		}
		if !strings.Contains(err.Error(), crypto.QuoteID(answer)) {
			t.Errorf("the refusal does not name the key KMS answered, %q: %v", answer, err)
		}
		if len(liar.plaintext) == 0 || !bytes.Equal(liar.plaintext, make([]byte, len(liar.plaintext))) {
			t.Errorf("answered by %q: the refused document key was not zeroed", answer)
		}
	}
	// The control: the truth, by ARN or by key id, is believed.
	for _, answer := range []string{a.arn, a.id} {
		key, err := pinned(t, &lyingKMS{Client: c, answer: answer}, a.arn).Unwrap(t.Context(), s.MasterKeyID, s.WrappedKey, crypto.ItemContext("app", "db"))
		if err != nil || len(key) != crypto.DocumentKeySizeV2 {
			t.Errorf("answered by the trusted %q: %d-byte key, %v", answer, len(key), err)
		}
		crypto.Zero(key)
	}
	key, err := kms.New(&lyingKMS{Client: c, answer: b.arn}, "").Unwrap(t.Context(), s.MasterKeyID, s.WrappedKey, crypto.ItemContext("app", "db"))
	if err != nil || len(key) != crypto.DocumentKeySizeV2 {
		t.Errorf("an unpinned Wrapper: %d-byte key, %v", len(key), err)
	}
	crypto.Zero(key)
}

// A pinned mount whose alias was re-pointed reads the items written
// before under the old key when that key is trusted too, and only then:
// the Decrypt naming the alias's key fails, and the other trusted keys
// are asked, never an untrusted one.
func TestPinnedAliasRepointed(t *testing.T) {
	c := newClient(t, server.URL)
	k1, k2 := createKey(t, c), createKey(t, c)
	alias := createAlias(t, c, k1)
	old := seal(t, envelope(t, kms.New(c, alias), crypto.FormatV2), "app", "db", []byte("old"))
	if _, err := c.UpdateAlias(t.Context(), &awskms.UpdateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(k2.id)}); err != nil {
		t.Fatal(err)
	}
	fresh := seal(t, envelope(t, kms.New(c, alias), crypto.FormatV2), "app", "db", []byte("new"))

	both := envelope(t, pinned(t, c, alias, k1.arn), crypto.FormatV2)
	if got := open(t, both, "app", "db", old); string(got) != "old" {
		t.Errorf("pinned to the alias and the old key, the old item: %q", got)
	}
	server.ResetCalls()
	if got := open(t, both, "app", "db", fresh); string(got) != "new" {
		t.Errorf("the new item: %q", got)
	}
	if n := server.Calls("Decrypt"); n != 1 {
		t.Errorf("an item under the alias's current key cost %d Decrypt calls, want 1", n)
	}

	aliasOnly := envelope(t, pinned(t, c, alias), crypto.FormatV2)
	if got := open(t, aliasOnly, "app", "db", fresh); string(got) != "new" {
		t.Errorf("pinned to the alias alone, the new item: %q", got)
	}
	server.ResetCalls()
	_, err := aliasOnly.Open(t.Context(), "app", "db", old)
	wantKind(t, "pinned to the alias alone, the item under the old key", err, fault.Integrity)
	if n := server.Calls("Decrypt"); n != 1 {
		t.Errorf("with one trusted key, the old item cost %d Decrypt calls, want 1", n)
	}
}

// Keys that cannot be resolved stop the start with an error naming them;
// nothing to trust, an RSA id, or a name with spaces are refused without
// asking KMS.
func TestNewPinnedRefusesWhatItCannotResolve(t *testing.T) {
	c := newClient(t, server.URL)
	k := createKey(t, c)
	missing := []string{"alias/secretfs-test-no-such-alias", "1234abcd-0000-0000-0000-000000000000",
		"arn:aws:kms:" + testserver.Region + ":" + testserver.Account + ":key/1234abcd-0000-0000-0000-000000000000"}
	for _, name := range missing {
		_, err := kms.NewPinned(t.Context(), c, k.id, []string{name}, 5*time.Second)
		wantKind(t, "NewPinned with "+name, err, fault.Permission)
		for _, want := range []string{crypto.QuoteID(name), "DescribeKey"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("NewPinned with %s: the error does not say %s: %v", name, want, err)
			}
		}
	}
	server.ResetCalls()
	for what, args := range map[string][]string{
		"nothing":      {""},
		"an empty one": {"", ""},
		"an RSA id":    {"", rsakey.KeyIDPrefix + strings.Repeat("ab", 32)},
		"spaces":       {"", " " + k.id},
	} {
		_, err := kms.NewPinned(t.Context(), c, args[0], args[1:], 5*time.Second)
		wantKind(t, "NewPinned with "+what, err, fault.Invalid)
	}
	if n := server.Total(); n != 0 {
		t.Errorf("refusing names made %d KMS requests, want 0", n)
	}
}

// DescribeKey has a deadline: a KMS that does not answer stops the start
// with fault.Unavailable, not a hang.
func TestNewPinnedAgainstADeadKMS(t *testing.T) {
	dead, err := testserver.StartLocalKMS()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	dead.Stop()
	start := time.Now()
	_, err = kms.NewPinned(t.Context(), newClient(t, dead.URL), "alias/anything", nil, time.Second)
	wantKind(t, "NewPinned against a dead KMS", err, fault.Unavailable)
	if dead.Calls("DescribeKey") == 0 {
		t.Error("DescribeKey did not reach the dead KMS's proxy: the test tested nothing")
	}
	t.Logf("NewPinned against a dead KMS failed after %s with a 1s deadline", time.Since(start).Round(time.Millisecond))
}

// An unpinned Wrapper has a warning for the caller to log at start, which
// names the flag to set; a pinned one has none.
func TestUnpinnedWarns(t *testing.T) {
	c := newClient(t, server.URL)
	warning := kms.New(c, "alias/x").Warning()
	for _, want := range []string{"--kms-read-keys", "any key"} {
		if !strings.Contains(warning, want) {
			t.Errorf("the warning %q does not say %q", warning, want)
		}
	}
	if kms.New(c, "").Trusted() != nil {
		t.Error("an unpinned Wrapper lists trusted keys")
	}
	if w := pinned(t, c, createKey(t, c).id).Warning(); w != "" {
		t.Errorf("a pinned Wrapper warns %q", w)
	}
}
