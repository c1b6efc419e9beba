package kms

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/fault"
)

// NewPinned returns a Wrapper that writes with keyID (as New does; ""
// writes nothing) and reads only items wrapped under a key it trusts:
// keyID and readKeys, each a key id, key ARN, alias name or alias ARN.
// Each is resolved now, with one DescribeKey call (an alias to the key it
// points at now), under its own deadline of timeout when timeout is
// positive. A name KMS cannot resolve is an error naming it, so that a
// mistyped key stops the start rather than every read; so is an empty
// list. The host needs kms:DescribeKey on every key named.
func NewPinned(ctx context.Context, client Client, keyID string, readKeys []string, timeout time.Duration) (*Wrapper, error) {
	const op fault.Op = "kms.NewPinned"
	names := readKeys
	if keyID != "" {
		names = append([]string{keyID}, readKeys...)
	}
	if len(names) == 0 {
		return nil, fault.E(op, fault.Invalid, "no KMS key to trust: give --kms-key or --kms-read-keys")
	}
	t := &trustSet{byName: map[string]int{}}
	for _, name := range names {
		switch {
		case name == "" || strings.TrimSpace(name) != name:
			return nil, fault.E(op, fault.Invalid, fmt.Sprintf("the KMS key to trust %s: want a key id, key ARN, alias name or alias ARN, without spaces", crypto.QuoteID(name)))
		case strings.HasPrefix(name, rsaIDPrefix):
			return nil, fault.E(op, fault.Invalid, fmt.Sprintf("%s is an RSA key, not a KMS key: --rsa-key reads the items it wrapped", crypto.QuoteID(name)))
		}
		if _, known := t.byName[name]; known {
			continue
		}
		callCtx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			callCtx, cancel = context.WithTimeout(ctx, timeout)
		}
		out, err := client.DescribeKey(callCtx, &awskms.DescribeKeyInput{KeyId: aws.String(name)})
		cancel()
		if err != nil {
			return nil, callError(op, "KMS DescribeKey of the key to trust "+crypto.QuoteID(name), "DescribeKey", err)
		}
		if out.KeyMetadata == nil || aws.ToString(out.KeyMetadata.Arn) == "" || aws.ToString(out.KeyMetadata.KeyId) == "" {
			return nil, fault.E(op, fmt.Sprintf("KMS DescribeKey of the key to trust %s answered no key ARN and key id", crypto.QuoteID(name)))
		}
		t.add(name, aws.ToString(out.KeyMetadata.Arn), aws.ToString(out.KeyMetadata.KeyId))
	}
	return &Wrapper{client: client, keyID: keyID, trusted: t}, nil
}

// trustedKey is one key a pinned Wrapper trusts.
type trustedKey struct {
	arn, id string   // as DescribeKey answered: the key ARN and key id
	given   []string // the names it was given as
}

// trustSet is the keys a pinned Wrapper trusts, and every name an item's
// MasterKeyId may call them by. It is built once and then only read.
type trustSet struct {
	keys   []trustedKey   // one per key ARN, in the order given
	byName map[string]int // a name of a key -> its index in keys
}

// add records that name resolved to the key arn, id, and indexes the
// names it goes by: name, the key ARN, the key id, and for an alias both
// its name and its ARN. A name already taken keeps its first key.
func (t *trustSet) add(name, arn, id string) {
	i := -1
	for j, k := range t.keys {
		if k.arn == arn {
			i = j
		}
	}
	if i < 0 {
		i = len(t.keys)
		t.keys = append(t.keys, trustedKey{arn: arn, id: id})
	}
	t.keys[i].given = append(t.keys[i].given, name)
	names := []string{name, arn, id}
	switch {
	case strings.HasPrefix(name, aliasPrefix):
		// The alias's ARN is in the account and region of its key.
		if at := strings.LastIndex(arn, ":key/"); at >= 0 {
			names = append(names, arn[:at+1]+name)
		}
	case isAlias(name):
		names = append(names, name[strings.Index(name, ":"+aliasPrefix)+1:])
	}
	for _, n := range names {
		if _, taken := t.byName[n]; !taken {
			t.byName[n] = i
		}
	}
}

// named returns the trusted key that masterKeyID names, if any.
func (t *trustSet) named(masterKeyID string) (trustedKey, bool) {
	i, ok := t.byName[masterKeyID]
	if !ok {
		return trustedKey{}, false
	}
	return t.keys[i], true
}

// except returns the trusted keys other than k, in order.
func (t *trustSet) except(k trustedKey) []trustedKey {
	var others []trustedKey
	for _, o := range t.keys {
		if o.arn != k.arn {
			others = append(others, o)
		}
	}
	return others
}

// has reports whether keyID, as KMS answers a Decrypt (the key ARN; a key
// id is accepted too), is a trusted key. Alias names are not: KMS names
// the key itself.
func (t *trustSet) has(keyID string) bool {
	for _, k := range t.keys {
		if keyID != "" && (keyID == k.arn || keyID == k.id) {
			return true
		}
	}
	return false
}

// arns lists the trusted keys' ARNs, in the order given.
func (t *trustSet) arns() []string {
	out := make([]string, len(t.keys))
	for i, k := range t.keys {
		out[i] = k.arn
	}
	return out
}

// String lists the trusted keys by the names they were given, for
// messages.
func (t *trustSet) String() string {
	var names []string
	for _, k := range t.keys {
		for _, n := range k.given {
			names = append(names, crypto.QuoteID(n))
		}
	}
	return strings.Join(names, ", ")
}

// aliasPrefix starts every alias name; an alias ARN holds ":alias/".
const aliasPrefix = "alias/"

// isAlias reports whether a key name is an alias name or alias ARN: a
// name whose key may change when the alias is re-pointed.
func isAlias(name string) bool {
	return strings.HasPrefix(name, aliasPrefix) || (strings.HasPrefix(name, "arn:") && strings.Contains(name, ":"+aliasPrefix))
}
