package crypto_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/crypto/rsakey"
	"github.com/secretfs/secretfs/fault"
)

// otherRSAWrapper is a private-key wrapper of the second test key.
func otherRSAWrapper(t testing.TB) *rsakey.Wrapper {
	t.Helper()
	_, k := rsaKeys()
	w, err := rsakey.NewPrivate(k)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func openOK(t testing.TB, e *crypto.Envelope, s crypto.Sealed, want string) {
	t.Helper()
	p, err := e.Open(t.Context(), "app", "db", s)
	if err != nil {
		t.Fatalf("Open of an item under %s: %v", s.MasterKeyID, err)
	}
	defer p.Wipe()
	if !bytes.Equal(p, []byte(want)) {
		t.Fatalf("Open of an item under %s returned other bytes", s.MasterKeyID)
	}
}

// Writes go to the write wrapper; each item is unwrapped by the reader
// that owns its MasterKeyID, and only by it.
func TestKeyringRoutesByID(t *testing.T) {
	ct, rsaW := cryptotest.New(), rsaWrapper(t)
	// cryptotest is no Owner: it owns every id, so it comes last.
	ring := envelope(t, crypto.NewKeyring(ct, rsaW, ct), crypto.FormatV2)

	byRing := sealOK(t, ring, "from the ring")
	if byRing.MasterKeyID != ct.MasterKeyID() || ct.NewDocumentKeyCalls() != 1 {
		t.Fatalf("the Keyring wrote under %q with %d cryptotest calls, want %q and 1", byRing.MasterKeyID, ct.NewDocumentKeyCalls(), ct.MasterKeyID())
	}
	byRSA := sealOK(t, envelope(t, rsaW, crypto.FormatV2), "from rsa")

	openOK(t, ring, byRSA, "from rsa")
	if got := ct.UnwrapCalls(); got != 0 {
		t.Errorf("an RSA item reached the cryptotest wrapper (%d calls)", got)
	}
	openOK(t, ring, byRing, "from the ring")
	if got := ct.UnwrapCalls(); got != 1 {
		t.Errorf("the cryptotest item made %d cryptotest Unwrap calls, want 1", got)
	}

	// The other way round: write with RSA.
	ring = envelope(t, crypto.NewKeyring(rsaW, rsaW, ct), crypto.FormatV1)
	s := sealOK(t, ring, "v1 by rsa")
	if s.MasterKeyID != rsaW.MasterKeyID() {
		t.Errorf("the Keyring wrote under %q, want %q", s.MasterKeyID, rsaW.MasterKeyID())
	}
	openOK(t, ring, s, "v1 by rsa")
	if got := ct.UnwrapCalls(); got != 1 {
		t.Errorf("an RSA item reached the cryptotest wrapper (%d calls in all, want 1)", got)
	}
}

func sealOK(t testing.TB, e *crypto.Envelope, value string) crypto.Sealed {
	t.Helper()
	s, err := e.Seal(t.Context(), "app", "db", 1, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Readers are asked in order: a reader that is no Owner takes every id,
// even one another reader owns.
func TestKeyringReaderOrder(t *testing.T) {
	ct, rsaW := cryptotest.New(), rsaWrapper(t)
	s := sealOK(t, envelope(t, rsaW, crypto.FormatV2), "v")
	_, err := envelope(t, crypto.NewKeyring(nil, ct, rsaW), crypto.FormatV2).Open(t.Context(), "app", "db", s)
	if !fault.Is(fault.Integrity, err) || ct.UnwrapCalls() != 1 {
		t.Fatalf("with cryptotest first, the RSA item gave %v after %d cryptotest calls; want its Integrity error after 1", err, ct.UnwrapCalls())
	}
}

// Without a write wrapper the Keyring refuses to write, says how to fix
// it, and still reads.
func TestKeyringNoWriter(t *testing.T) {
	ct := cryptotest.New()
	s := sealOK(t, envelope(t, ct, crypto.FormatV2), "v")
	ring := crypto.NewKeyring(nil, ct)
	key, wrapped, id, err := ring.NewDocumentKey(t.Context(), 32, crypto.ItemContext("app", "db"))
	if !fault.Is(fault.Permission, err) {
		t.Fatalf("NewDocumentKey without a writer: %v, want Permission", err)
	}
	if key != nil || wrapped != nil || id != "" {
		t.Error("failed NewDocumentKey returned a key")
	}
	for _, flag := range []string{"--kms-key", "--rsa-key"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error does not mention %s: %v", flag, err)
		}
	}
	if ct.NewDocumentKeyCalls() != 1 {
		t.Errorf("a reader was asked for a document key")
	}
	openOK(t, envelope(t, ring, crypto.FormatV2), s, "v")
}

// An id no reader owns is Permission, naming the id: the item may be
// fine, but this host holds no key for it.
func TestKeyringUnknownID(t *testing.T) {
	ct := cryptotest.New()
	legacy := sealOK(t, envelope(t, ct, crypto.FormatV2), "v")
	legacy.MasterKeyID = "alias/legacy-app"
	for name, ring := range map[string]*crypto.Keyring{
		"rsa reader only": crypto.NewKeyring(ct, rsaWrapper(t)),
		"no readers":      crypto.NewKeyring(ct),
	} {
		_, err := envelope(t, ring, crypto.FormatV2).Open(t.Context(), "app", "db", legacy)
		if !fault.Is(fault.Permission, err) {
			t.Fatalf("%s: Open: %v, want Permission", name, err)
		}
		if !strings.Contains(err.Error(), `"alias/legacy-app"`) {
			t.Errorf("%s: error does not name the id: %v", name, err)
		}
	}
	if ct.UnwrapCalls() != 0 {
		t.Error("the write wrapper was asked to unwrap: it is not a reader")
	}
}

// An item of another RSA key reaches the RSA reader, which says whose it
// is and whose key it holds.
func TestKeyringOtherRSAKey(t *testing.T) {
	ct, mine, other := cryptotest.New(), rsaWrapper(t), otherRSAWrapper(t)
	if mine.MasterKeyID() == other.MasterKeyID() {
		t.Fatal("the two test keys are the same")
	}
	s := sealOK(t, envelope(t, other, crypto.FormatV2), "v")
	_, err := envelope(t, crypto.NewKeyring(nil, mine, ct), crypto.FormatV2).Open(t.Context(), "app", "db", s)
	if !fault.Is(fault.Integrity, err) {
		t.Fatalf("Open of another RSA key's item: %v, want Integrity", err)
	}
	for _, id := range []string{mine.MasterKeyID(), other.MasterKeyID()} {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error does not name %s: %v", id, err)
		}
	}
	if ct.UnwrapCalls() != 0 {
		t.Error("an RSA item went past the RSA reader")
	}
}

// The Keyring adds nothing to its wrappers' errors: they come back as
// they were, kind and all.
func TestKeyringPassesErrorsOn(t *testing.T) {
	ct := cryptotest.New()
	s := sealOK(t, envelope(t, ct, crypto.FormatV2), "v")
	cause := fault.E(fault.Unavailable, "kms timeout")
	ct.FailWith(cause)
	ring := crypto.NewKeyring(ct, ct)
	if _, _, _, err := ring.NewDocumentKey(t.Context(), 32, nil); err != cause {
		t.Errorf("NewDocumentKey: %v, want the write wrapper's error unchanged", err)
	}
	if _, err := ring.Unwrap(t.Context(), s.MasterKeyID, s.WrappedKey, crypto.ItemContext("app", "db")); err != cause {
		t.Errorf("Unwrap: %v, want the reader's error unchanged", err)
	}
	_, err := envelope(t, ring, crypto.FormatV2).Open(t.Context(), "app", "db", s)
	if !fault.Is(fault.Unavailable, err) || !errors.Is(err, cause) {
		t.Errorf("Open: %v, want the reader's Unavailable error", err)
	}
}

func TestRSAOwns(t *testing.T) {
	mine, other := rsaWrapper(t), otherRSAWrapper(t)
	for id, want := range map[string]bool{
		mine.MasterKeyID():  true,
		other.MasterKeyID(): true, // not mine, but RSA: rsakey explains the mismatch
		"alias/app":         false,
		"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab": false,
		"test:01234567": false,
		"":              false,
	} {
		if got := mine.Owns(id); got != want {
			t.Errorf("Owns(%q) = %v, want %v", id, got, want)
		}
	}
}

// Real ids are shown whole; an arbitrary stored field is cut short and
// quoted, so it cannot forge a line of a log.
func TestQuoteID(t *testing.T) {
	arn := "arn:aws:kms:ap-southeast-2:111122223333:alias/" + strings.Repeat("k", 100)
	rsaID := rsakey.KeyIDPrefix + strings.Repeat("ab", 32)
	for _, id := range []string{arn, rsaID, "alias/app"} {
		if got := crypto.QuoteID(id); got != `"`+id+`"` {
			t.Errorf("QuoteID(%s) = %s, want it whole", id, got)
		}
	}
	long := strings.Repeat("x", 1000) + "\nforged log line"
	got := crypto.QuoteID(long)
	if len(got) > 170 || !strings.HasSuffix(got, `"...`) || strings.Contains(got, "\n") {
		t.Errorf("QuoteID of a 1000-byte field = %s", got)
	}
	if got := crypto.QuoteID("a\nb"); got != `"a\nb"` {
		t.Errorf("QuoteID of a newline = %s", got)
	}
}
