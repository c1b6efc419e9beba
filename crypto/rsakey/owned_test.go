package rsakey

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/owned/ownedtest"
)

// Why a key file someone else could change or read matters, as a refusal
// says it.
const (
	privateWhy = "it decrypts every secret"
	publicWhy  = "every secret written is encrypted to it"
)

// keyFiles writes the test key's private (PKCS#8) and public (PKIX) PEM
// files in dir, with mode, and returns their paths.
func keyFiles(t *testing.T, dir string, mode os.FileMode) (private, public string) {
	t.Helper()
	pkcs8, pkix := testKeyDER(t)
	private, public = filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub.pem")
	writeKeyFile(t, private, pem.EncodeToMemory(&pem.Block{Type: pemPKCS8Private, Bytes: pkcs8}), mode)
	writeKeyFile(t, public, pem.EncodeToMemory(&pem.Block{Type: pemPKIXPublic, Bytes: pkix}), mode)
	return private, public
}

// writeKeyFile writes data at p with exactly mode, whatever the umask.
func writeKeyFile(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// mustLoad fails t unless Load reads p, a private key if private.
func mustLoad(t *testing.T, p, what string, private bool) {
	t.Helper()
	w, err := Load(p)
	if err != nil {
		t.Errorf("Load of %s: %v; want it loaded", what, err)
		return
	}
	if w.CanUnwrap() != private {
		t.Errorf("Load of %s: CanUnwrap = %v, want %v", what, w.CanUnwrap(), private)
	}
}

// mustRefuse fails t unless Load refuses p as fault.Invalid with a message
// that names p, says want, and holds nothing of the key.
func mustRefuse(t *testing.T, p, what, want string) {
	t.Helper()
	_, err := Load(p)
	if !fault.Is(fault.Invalid, err) || !strings.Contains(err.Error(), "key file "+p+": ") || !strings.Contains(err.Error(), want) {
		t.Errorf("Load of %s: %v; want it refused as invalid, naming %s: %q", what, err, p, want)
		return
	}
	checkNoKeyMaterial(t, p, err.Error())
}

// A private key file that anyone other than root or this process's user
// may read is refused, as ssh refuses an unprotected private key file:
// every user (0644), the members of its group, whatever the group, or
// those its access control list names. The message names the file, who
// may read it and the fix.
func TestAPrivateKeyOthersMayReadIsRefused(t *testing.T) {
	dir := t.TempDir()
	private, _ := keyFiles(t, dir, 0o644)
	mustRefuse(t, private, "a private key of mode 0644",
		"every user may read it (mode 0644), and "+privateWhy+": chmod go-r it")
	if err := os.Chmod(private, 0o640); err != nil {
		t.Fatal(err)
	}
	gid := ownedtest.InOtherGroup(t, private)
	mustRefuse(t, private, "a private key of mode 0640",
		"members of group "+strconv.Itoa(gid)+" may read it (mode 0640), and "+privateWhy+": chmod g-r it")
	pkcs1 := filepath.Join(dir, "pkcs1.pem")
	writeKeyFile(t, pkcs1, pem.EncodeToMemory(&pem.Block{Type: pemPKCS1Private, Bytes: x509.MarshalPKCS1PrivateKey(testKey())}), 0o604)
	mustRefuse(t, pkcs1, "a PKCS#1 private key of mode 0604", "every user may read it (mode 0604)")
	listed := filepath.Join(dir, "listed.pem")
	data, err := os.ReadFile(private)
	if err != nil {
		t.Fatal(err)
	}
	writeKeyFile(t, listed, data, 0o600)
	ownedtest.LetRead(t, listed, ownedtest.OtherUID)
	mustRefuse(t, listed, "a private key whose access control list lets user 1000 read it",
		"the users and groups its access control list names (getfacl) may read it (mode 0640), and "+privateWhy+": chmod g-r it")
}

// A file that holds a private key after a public one is a private key
// file, though Load uses the public key: whoever may read it holds the
// private key too.
func TestAKeyFileThatAlsoHoldsAPrivateKeyOthersMayReadIsRefused(t *testing.T) {
	dir := t.TempDir()
	private, public := keyFiles(t, dir, 0o600)
	pub, err := os.ReadFile(public)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(private)
	if err != nil {
		t.Fatal(err)
	}
	both := filepath.Join(dir, "both.pem")
	writeKeyFile(t, both, append(pub, priv...), 0o644)
	mustRefuse(t, both, "a public key followed by a private key, mode 0644", "every user may read it (mode 0644), and "+privateWhy)
}

// A private key only its owner may read is loaded: mode 0600, as
// Generate makes it, or 0400.
func TestAPrivateKeyOnlyItsOwnerMayReadIsLoaded(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o400} {
		private, _ := keyFiles(t, t.TempDir(), mode)
		mustLoad(t, private, "a private key of mode "+mode.String(), true)
	}
}

// A public key file every user may read is loaded: 0644 is its intended
// mode, as it is handed to hosts that may only write.
func TestAPublicKeyEveryoneMayReadIsLoaded(t *testing.T) {
	_, public := keyFiles(t, t.TempDir(), 0o644)
	mustLoad(t, public, "a public key of mode 0644", false)
}

// A key file, private or public, that others may write is refused, naming
// who may and the fix: every secret written later would be encrypted to
// a key of their choosing.
func TestAKeyFileOthersMayWriteIsRefused(t *testing.T) {
	private, public := keyFiles(t, t.TempDir(), 0o666)
	mustRefuse(t, private, "a private key of mode 0666", "every user may write it (mode 0666), and "+privateWhy+": chmod o-w it")
	mustRefuse(t, public, "a public key of mode 0666", "every user may write it (mode 0666), and "+publicWhy+": chmod o-w it")
	if err := os.Chmod(public, 0o664); err != nil {
		t.Fatal(err)
	}
	gid := ownedtest.InOtherGroup(t, public)
	mustRefuse(t, public, "a public key of mode 0664",
		"members of group "+strconv.Itoa(gid)+" may write it (mode 0664), and "+publicWhy+": chmod g-w it")
}

// A key file another user owns, or in a directory another user owns
// (sticky or not), or reached through a link in a directory every user
// may write, is refused, naming who could replace it: they could put a
// key of theirs in its place. Once root owns the directory, it is loaded.
func TestAKeyFileAnotherUserCouldReplaceIsRefused(t *testing.T) {
	ownedtest.RequireRoot(t)
	root := t.TempDir()
	theirs := filepath.Join(root, "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	private, public := keyFiles(t, theirs, 0o600)
	if err := os.Chmod(public, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, ownedtest.OtherUID, ownedtest.OtherUID); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o755, 0o755 | os.ModeSticky} {
		if err := os.Chmod(theirs, mode); err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, private, "a private key in another user's directory of mode "+mode.String(),
			"user 1000 may replace it (user 1000 owns "+theirs+"), and "+privateWhy)
		mustRefuse(t, public, "a public key in another user's directory of mode "+mode.String(),
			"user 1000 may replace it (user 1000 owns "+theirs+"), and "+publicWhy)
	}
	if err := os.Chown(theirs, 0, 0); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, private, "a private key in root's directory", true)
	mustLoad(t, public, "a public key in root's directory", false)

	if err := os.Chown(private, ownedtest.OtherUID, ownedtest.OtherUID); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, private, "a private key another user owns", "user 1000 owns it, and "+privateWhy+": only root or the mount's user may")

	open := filepath.Join(root, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(open, "key.pub.pem")
	if err := os.Symlink(public, link); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, link, "a public key through a link in a directory every user may write",
		"every user may replace it ("+open+" may be written by every user and is not sticky), and "+publicWhy)
}
