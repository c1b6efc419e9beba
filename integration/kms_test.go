package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// unpinnedWarning starts the line a mount without --kms-key and
// --kms-read-keys logs once at start.
const unpinnedWarning = "KMS: any key KMS will decrypt with is trusted"

// twoKeyTable is a fresh table with two KMS keys, A and B (behind their
// aliases), and no key in its flags: each command names its own.
func twoKeyTable(t *testing.T) (b *backend, aliasA, aliasB string) {
	t.Helper()
	table := fmt.Sprintf("kms-%d-%d", os.Getpid(), tables.Add(1))
	_, aliasA = newKMSKey(t, table+"-a")
	_, aliasB = newKMSKey(t, table+"-b")
	b = &backend{name: "dynamodb", table: table, env: dynamoEnv(),
		flags: []string{"--backend", "dynamodb", "--table", table}}
	b.cli(t, nil, "init")
	return b, aliasA, aliasB
}

// A mount pinned to key A (--kms-key A --kms-read-keys A) reads the
// secrets wrapped under A and refuses the one wrapped under B with EACCES
// and a log line naming B, without asking KMS to decrypt it; a mount that
// trusts A and B reads both; the same holds for the admin verbs, with the
// flag given as SECRETFS_KMS_READ_KEYS.
func TestKMSPinnedMountRefusesAnItemUnderAnotherKey(t *testing.T) {
	b, aliasA, aliasB := twoKeyTable(t)
	b.cli(t, []byte("value under a"), "put", "app/a", "--kms-key", aliasA)
	b.cli(t, []byte("value under b"), "put", "app/b", "--kms-key", aliasB)

	m := mount(t, b, "--kms-key", aliasA, "--kms-read-keys", aliasA, "--ttl", "0")
	m.secret("value under a")
	m.secret("value under b")
	if got := m.mustSh("cat app/a"); got != "value under a" {
		t.Errorf("cat app/a = %q", got)
	}
	if got := m.mustSh("ls app"); got != "a\nb\n" {
		t.Errorf("ls app = %q: the refused secret is still listed", got)
	}
	localKMS.ResetCalls()
	m.failSh("cat app/b", "Permission denied")
	if n := localKMS.Calls("Decrypt"); n != 0 {
		t.Errorf("refusing the item under B made %d KMS Decrypt calls, want 0", n)
	}
	if !logHasLine(m.log(), `"level":"warning"`, aliasB, "is not trusted here") {
		t.Errorf("no warning line names the key %s of the refused item:\n%s", aliasB, m.log())
	}
	if strings.Contains(m.log(), unpinnedWarning) {
		t.Error("the pinned mount warns that any key is trusted")
	}
	// Its own writes are read back, under A.
	m.mustSh("printf 'new under a' > app/c")
	m.secret("new under a")
	if got := b.cli(t, nil, "get", "app/c", "--kms-read-keys", aliasA); got != "new under a" {
		t.Errorf("get app/c = %q", got)
	}

	both := mount(t, b, "--kms-read-keys", aliasA+","+aliasB)
	for name, want := range map[string]string{"a": "value under a", "b": "value under b"} {
		if got := both.mustSh("cat app/" + name); got != want {
			t.Errorf("trusting A and B, cat app/%s = %q", name, got)
		}
	}

	pinnedA := &backend{name: b.name, table: b.table, flags: b.flags, env: append(b.env[:len(b.env):len(b.env)], "SECRETFS_KMS_READ_KEYS="+aliasA)}
	if got := pinnedA.cli(t, nil, "get", "app/a"); got != "value under a" {
		t.Errorf("SECRETFS_KMS_READ_KEYS=A: get app/a = %q", got)
	}
	_, errOut, err := pinnedA.run(nil, "get", "app/b")
	if err == nil || !strings.Contains(errOut, "permission denied") || !strings.Contains(errOut, aliasB) {
		t.Errorf("SECRETFS_KMS_READ_KEYS=A: get app/b: %v, stderr %q; want a refusal naming %s", err, errOut, aliasB)
	}
	if got := pinnedA.cli(t, nil, "get", "app/b", "--kms-read-keys", aliasA+","+aliasB); got != "value under b" {
		t.Errorf("--kms-read-keys A,B over SECRETFS_KMS_READ_KEYS=A: get app/b = %q", got)
	}
}

// An item under B whose MasterKeyId a store writer changed to name A is
// not read by a mount pinned to A: Decrypt names A, which KMS refuses for
// B's wrapped key (EIO, as any tampered item). A mount that trusts any key
// reads it, as the original would: what pinning is for.
func TestKMSPinnedMountRefusesAnItemRelabelledWithATrustedKey(t *testing.T) {
	b, aliasA, aliasB := twoKeyTable(t)
	b.cli(t, []byte("value under b"), "put", "app/b", "--kms-key", aliasB)
	_, err := rawDynamo(t).UpdateItem(context.Background(), &awsdynamodb.UpdateItemInput{
		TableName: aws.String(b.table),
		Key: map[string]types.AttributeValue{
			"ApplicationName": &types.AttributeValueMemberS{Value: "app"},
			"SecretName":      &types.AttributeValueMemberS{Value: "b"},
		},
		UpdateExpression:          aws.String("SET MasterKeyId = :a"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":a": &types.AttributeValueMemberS{Value: aliasA}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := mount(t, b, "--kms-read-keys", aliasA)
	m.secret("value under b")
	m.failSh("cat app/b", "Input/output error")

	anyKey := mount(t, b)
	if got := anyKey.mustSh("cat app/b"); got != "value under b" {
		t.Errorf("a mount trusting any key reads %q", got)
	}
}

// Without --kms-key and --kms-read-keys a mount reads items under any key
// and says once, at start, that it trusts any key and which flag to set.
func TestKMSUnpinnedMountWarnsOnce(t *testing.T) {
	b, aliasA, aliasB := twoKeyTable(t)
	b.cli(t, []byte("value under a"), "put", "app/a", "--kms-key", aliasA)
	b.cli(t, []byte("value under b"), "put", "app/b", "--kms-key", aliasB)
	m := mount(t, b, "--ttl", "0")
	if got := m.mustSh("cat app/a app/b"); got != "value under avalue under b" {
		t.Errorf("cat app/a app/b = %q", got)
	}
	if n := strings.Count(m.log(), unpinnedWarning); n != 1 {
		t.Errorf("the mount warned %d times that any key is trusted, want once:\n%s", n, m.log())
	}
	if !logHasLine(m.log(), `"level":"warning"`, unpinnedWarning, "--kms-read-keys") {
		t.Errorf("the warning is not a warning naming --kms-read-keys:\n%s", m.log())
	}
}

// A key to trust that KMS cannot resolve stops the mount at start, with
// an error naming it; nothing is mounted.
func TestKMSUnresolvableKeyStopsTheMount(t *testing.T) {
	b, aliasA, _ := twoKeyTable(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if isMounted(dir) {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	const missing = "alias/secretfs-test-no-such-key"
	_, errOut, err := b.run(nil, "mount", dir, "--kms-key", aliasA, "--kms-read-keys", missing)
	if err == nil {
		t.Fatal("the mount with a key KMS cannot resolve started")
	}
	for _, want := range []string{"--kms-read-keys", missing, "DescribeKey"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error does not say %q: %s", want, errOut)
		}
	}
	if isMounted(dir) {
		t.Errorf("%s is mounted", dir)
	}
}

// logHasLine reports whether one line of log holds every one of parts.
func logHasLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
