package dynamodb

import (
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/secretfs/secretfs/store"
)

// The attribute names are part of the public format (docs/FORMAT.md): the
// first six are the original Secret Store's, the rest secretfs's additions.
const (
	attrApp         = "ApplicationName"      // S, HASH key
	attrName        = "SecretName"           // S, RANGE key
	attrMasterKeyID = "MasterKeyId"          // S
	attrDocumentKey = "ProtectedDocumentKey" // B
	attrIV          = "InitialisationVector" // B
	attrValue       = "ProtectedSecretValue" // B
	attrFormat      = "Format"               // S; absent on legacy items
	attrVersion     = "Version"              // N; absent on legacy items
	attrSize        = "Size"                 // N; absent when unknown
	attrModified    = "Modified"             // N, unix milliseconds; absent when unknown
)

// Expressions name attributes only through these placeholders: Size, and
// any attribute added later, may be a DynamoDB reserved word.
const (
	phApp      = "#app"
	phName     = "#name"
	phFormat   = "#format"
	phVersion  = "#version"
	phIV       = "#iv"
	phSize     = "#size"
	phModified = "#modified"
)

// MaxItemSize is DynamoDB's limit on the size of an item: 400 KB, counted
// as the UTF-8 bytes of every attribute name plus the size of every value.
const MaxItemSize = 400 * 1024

// MaxValueSize is the largest plaintext value, in bytes, that is certain to
// fit in one item once sealed: the item limit less 2 KiB for everything
// else. The worst case of everything else is
//
//	attribute names, all ten                     121
//	ApplicationName and SecretName, 255 bytes each 510
//	ProtectedDocumentKey (RSA-4096 OAEP; KMS ~184)   512
//	InitialisationVector (v1 IV; the v2 nonce is 12)  16
//	Format ("v1", "v2" or "v3")                        2
//	Version, Size, Modified (19 digits each, 13 bytes
//	  each by numberSize)                             39
//	sealing overhead (v2 GCM tag; v1 padding <= 16)   16
//	                                                ----
//	                                                1216
//
// which leaves 832 bytes for MasterKeyId: a KMS alias ARN, the longest key
// name, is under 320 bytes, an RSA fingerprint 75.
//
// A ProtectedSecretValue more than store.ValueOverhead bytes over
// MaxValueSize can never fit (see the assertion below), so Put refuses it
// with fault.TooLarge, as store.Sizer requires.
const MaxValueSize = MaxItemSize - 2*1024 // 407,552

// This fails to compile unless a ProtectedSecretValue of MaxValueSize +
// store.ValueOverhead + 1 bytes makes an item over MaxItemSize by itself.
const _ = uint(MaxValueSize + store.ValueOverhead + 1 + len(attrValue) - MaxItemSize - 1)

// marshal maps item to its DynamoDB attributes, by hand, so that the stored
// types are exactly those of docs/FORMAT.md. What a legacy item lacks is
// omitted, not stored as a zero.
func marshal(item *store.Item) map[string]types.AttributeValue {
	av := map[string]types.AttributeValue{
		attrApp:         &types.AttributeValueMemberS{Value: item.App},
		attrName:        &types.AttributeValueMemberS{Value: item.Name},
		attrMasterKeyID: &types.AttributeValueMemberS{Value: item.MasterKeyID},
		attrDocumentKey: &types.AttributeValueMemberB{Value: item.ProtectedDocumentKey},
		attrIV:          &types.AttributeValueMemberB{Value: item.InitialisationVector},
		attrValue:       &types.AttributeValueMemberB{Value: item.ProtectedSecretValue},
	}
	if item.Format != "" {
		av[attrFormat] = &types.AttributeValueMemberS{Value: item.Format}
	}
	if item.Version != store.Unversioned {
		av[attrVersion] = number(int64(item.Version))
	}
	if item.Size >= 0 {
		av[attrSize] = number(item.Size)
	}
	if !item.Modified.IsZero() {
		av[attrModified] = number(item.Modified.UnixMilli())
	}
	return av
}

// unmarshal reads an item returned by GetItem. Attributes it does not know
// are ignored: later versions may add metadata.
func unmarshal(av map[string]types.AttributeValue) (*store.Item, error) {
	var it store.Item
	var err error
	if it.Meta, err = unmarshalMeta(av); err != nil {
		return nil, err
	}
	if it.MasterKeyID, err = getS(av, attrMasterKeyID, true); err != nil {
		return nil, err
	}
	if it.ProtectedDocumentKey, err = getB(av, attrDocumentKey); err != nil {
		return nil, err
	}
	if it.ProtectedSecretValue, err = getB(av, attrValue); err != nil {
		return nil, err
	}
	// DynamoDB bounds an item at 400 KB, but the one rule of every store
	// holds here too.
	if err := store.CheckStored(&it, MaxValueSize); err != nil {
		return nil, err
	}
	return &it, nil
}

// unmarshalMeta reads the key and metadata attributes: those of a whole
// item, or of a List projection.
func unmarshalMeta(av map[string]types.AttributeValue) (store.Meta, error) {
	m := store.Meta{Version: store.Unversioned, Size: -1}
	var err error
	if m.App, err = getS(av, attrApp, true); err != nil {
		return m, err
	}
	if m.Name, err = getS(av, attrName, true); err != nil {
		return m, err
	}
	if m.Format, err = getS(av, attrFormat, false); err != nil {
		return m, err
	}
	rev, err := unmarshalRevision(av)
	if err != nil {
		return m, err
	}
	m.Version, m.InitialisationVector = rev.Version, rev.IV
	if n, ok, err := getN(av, attrSize); err != nil {
		return m, err
	} else if ok {
		if m.Size, err = store.StoredSize(n); err != nil {
			return m, err
		}
	}
	if ms, ok, err := getN(av, attrModified); err != nil {
		return m, err
	} else if ok {
		if m.Modified, err = store.StoredModified(ms); err != nil {
			return m, err
		}
	}
	return m, store.CheckStored(&store.Item{Meta: m}, MaxValueSize)
}

// unmarshalRevision reads the Version (absent on legacy items) and the
// InitialisationVector (always present).
func unmarshalRevision(av map[string]types.AttributeValue) (store.Revision, error) {
	rev := store.Revision{Version: store.Unversioned}
	if v, ok, err := getN(av, attrVersion); err != nil {
		return rev, err
	} else if ok {
		var err error
		if rev.Version, err = store.StoredVersion(v); err != nil {
			return rev, err
		}
	}
	var err error
	rev.IV, err = getB(av, attrIV)
	return rev, err
}

// getB reads a required binary attribute. The SDK decoded the bytes into
// a fresh slice: the caller owns it.
func getB(av map[string]types.AttributeValue, name string) ([]byte, error) {
	b, ok := av[name].(*types.AttributeValueMemberB)
	if !ok {
		return nil, malformed(name, "B", av[name])
	}
	return b.Value, nil
}

// getS reads a string attribute; an absent one that is not required
// reads as "".
func getS(av map[string]types.AttributeValue, name string, required bool) (string, error) {
	v, present := av[name]
	if !present && !required {
		return "", nil
	}
	s, ok := v.(*types.AttributeValueMemberS)
	if !ok {
		return "", malformed(name, "S", v)
	}
	return s.Value, nil
}

// getN reads an optional number attribute holding an int64.
func getN(av map[string]types.AttributeValue, name string) (int64, bool, error) {
	v, present := av[name]
	if !present {
		return 0, false, nil
	}
	n, ok := v.(*types.AttributeValueMemberN)
	if !ok {
		return 0, false, malformed(name, "N", v)
	}
	i, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("attribute %s is not an integer: %q", name, n.Value)
	}
	return i, true, nil
}

// malformed describes an attribute that is missing or of the wrong type,
// without its value.
func malformed(name, want string, got types.AttributeValue) error {
	if got == nil {
		return fmt.Errorf("attribute %s is missing", name)
	}
	return fmt.Errorf("attribute %s is of type %s, want %s", name, typeName(got), want)
}

// typeName is the DynamoDB type letter of v, for messages.
func typeName(v types.AttributeValue) string {
	switch v.(type) {
	case *types.AttributeValueMemberS:
		return "S"
	case *types.AttributeValueMemberN:
		return "N"
	case *types.AttributeValueMemberB:
		return "B"
	case *types.AttributeValueMemberBOOL:
		return "BOOL"
	case *types.AttributeValueMemberNULL:
		return "NULL"
	case *types.AttributeValueMemberM:
		return "M"
	case *types.AttributeValueMemberL:
		return "L"
	case *types.AttributeValueMemberSS:
		return "SS"
	case *types.AttributeValueMemberNS:
		return "NS"
	case *types.AttributeValueMemberBS:
		return "BS"
	}
	return fmt.Sprintf("%T", v)
}

func number(i int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(i, 10)}
}

// itemSize is the size DynamoDB counts for av against MaxItemSize: for each
// attribute, the UTF-8 bytes of its name plus the size of its value.
// Strings count their UTF-8 bytes and binaries their bytes, exactly;
// numbers are counted conservatively (numberSize). av holds only what
// marshal produces.
func itemSize(av map[string]types.AttributeValue) int {
	n := 0
	for name, v := range av {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += numberSize(v.Value)
		default:
			panic("dynamodb.itemSize: unexpected attribute type " + typeName(v))
		}
	}
	return n
}

// numberSize bounds the size of the number written as s (decimal, as
// strconv formats integers). DynamoDB documents about one byte per two
// significant digits plus one; this counts every digit as significant and
// adds one byte more, and one for a sign.
func numberSize(s string) int {
	digits := 0
	sign := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '-':
			sign = 1
		}
	}
	return (digits+1)/2 + 2 + sign
}
