// Package dynamodb is the production store: protected items in a DynamoDB
// table, one item per secret, compatible with the tables of the original
// Secret Store so that they mount unchanged. The item (HASH key
// ApplicationName, RANGE key SecretName, the original's four protected
// attributes and secretfs's Format, Version, Size and Modified) is
// documented in docs/FORMAT.md; EnsureTable creates the table.
//
// Like every store it holds only protected items and never sees plaintext.
// It must never:
//   - Scan to list an application: a listing is a Query on the partition
//     key, so IAM can confine a host to its applications
//     (dynamodb:LeadingKeys). Only Apps scans, and says so;
//   - send an item it knows to be over DynamoDB's 400 KB limit: the size
//     is computed before the request, and such a Put fails with
//     fault.TooLarge having changed nothing;
//   - write unconditionally: every PutItem and DeleteItem is conditional on
//     the Revision (Version and InitialisationVector) the caller read, so
//     no concurrent update is lost, not even to an item deleted and
//     created again since it was read.
//
// Retries with backoff (throttling, transient errors) are the SDK's
// standard retryer's, configured on the client. Deadlines are the caller's
// context's: each method makes one request (two when a failed condition
// needs explaining), so that the caller can bound it as one backend call,
// as secrets.Keeper does. That is why Apps returns one page of its Scan
// per call: the Scan of a large table takes many. A retried conditional
// PutItem whose first attempt was stored but whose answer was lost fails
// its own condition; Put recognises its own write by its Revision and
// reports success.
package dynamodb

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"unicode/utf8"

	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// pageSize is the default and the largest page of List.
const pageSize = 1000

// Store is a store.Store on one DynamoDB table. It is safe for concurrent
// use.
type Store struct {
	client *awsdynamodb.Client
	table  string
}

var (
	_ store.Store = (*Store)(nil)
	_ store.Sizer = (*Store)(nil)
)

// New returns the store on table, which must exist (EnsureTable). It sends
// no request: a missing table or missing permissions show in the first
// call's error.
func New(client *awsdynamodb.Client, table string) *Store {
	return &Store{client: client, table: table}
}

// MaxValueSize implements store.Sizer.
func (s *Store) MaxValueSize() int64 { return MaxValueSize }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, k store.Key) (*store.Item, error) {
	const op fault.Op = "dynamodb.Get"
	if k.Validate() != nil {
		return nil, fault.E(op, k.Path(), fault.NotFound) // nothing invalid can have been stored
	}
	out, err := s.client.GetItem(ctx, &awsdynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            key(k),
		ConsistentRead: new(true),
	})
	if err != nil {
		return nil, wrap(op, k.Path(), s.table, err)
	}
	if out.Item == nil {
		return nil, fault.E(op, k.Path(), fault.NotFound)
	}
	it, err := unmarshal(out.Item)
	if err != nil {
		return nil, fault.E(op, k.Path(), fault.Integrity, fmt.Errorf("malformed item: %w", err))
	}
	return it, nil
}

// Put implements store.Store. A failed condition is refused at once,
// without reading the item to say more: the SDK may have resent a PutItem
// whose first attempt was stored and whose answer was lost, so that the
// condition fails against the very write, and whether a write landed is
// decided in one place, by the secrets layer (secrets.Keeper reads the
// item and compares its IV, which is fresh on every write).
func (s *Store) Put(ctx context.Context, item *store.Item, expected store.Revision) error {
	const op fault.Op = "dynamodb.Put"
	if err := store.CheckPut(item, expected); err != nil {
		return fault.E(op, err)
	}
	av := marshal(item)
	if n := itemSize(av); n > MaxItemSize {
		return fault.E(op, item.Path(), fault.TooLarge, fmt.Sprintf(
			"the item would be %d bytes (protected value %d bytes); DynamoDB's limit is %d",
			n, len(item.ProtectedSecretValue), MaxItemSize))
	}
	c := condition(expected)
	_, err := s.client.PutItem(ctx, &awsdynamodb.PutItemInput{
		TableName:                 &s.table,
		Item:                      av,
		ConditionExpression:       &c.expr,
		ExpressionAttributeNames:  c.names,
		ExpressionAttributeValues: c.values,
	})
	var failed *types.ConditionalCheckFailedException
	if !errors.As(err, &failed) {
		return wrap(op, item.Path(), s.table, err)
	}
	if expected.Version == store.Absent {
		return fault.E(op, item.Path(), fault.Exist)
	}
	return fault.E(op, item.Path(), fault.Conflict, "the stored item is not the expected version "+expected.String())
}

// Delete implements store.Store. When the condition fails, the item is
// read to say why. (A retried DeleteItem whose first attempt removed the
// item and whose answer was lost reports fault.NotFound: nothing tells it
// apart from another writer's delete.)
func (s *Store) Delete(ctx context.Context, k store.Key, expected store.Revision) error {
	const op fault.Op = "dynamodb.Delete"
	if err := store.CheckExpected(expected); err != nil {
		return fault.E(op, k.Path(), err)
	}
	if k.Validate() != nil {
		return fault.E(op, k.Path(), fault.NotFound)
	}
	if expected.Version == store.Absent {
		// No stored item has the Version Absent: nothing to delete, and
		// nothing to send but the look-up that says why.
		return s.whyNot(ctx, op, k, expected)
	}
	c := condition(expected)
	_, err := s.client.DeleteItem(ctx, &awsdynamodb.DeleteItemInput{
		TableName:                 &s.table,
		Key:                       key(k),
		ConditionExpression:       &c.expr,
		ExpressionAttributeNames:  c.names,
		ExpressionAttributeValues: c.values,
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return s.whyNot(ctx, op, k, expected)
	}
	return wrap(op, k.Path(), s.table, err)
}

// whyNot explains a Delete whose condition failed: fault.NotFound when the
// item is gone, else fault.Conflict naming the stored Version.
func (s *Store) whyNot(ctx context.Context, op fault.Op, k store.Key, expected store.Revision) error {
	stored, found, err := s.storedRevision(ctx, op, k)
	if err != nil {
		return err
	}
	return store.DeleteRefused(op, k, expected, stored, found)
}

// storedRevision reads the Revision of the item at k, strongly
// consistent, projecting only the attributes it needs; found is false
// when there is no item. A Version or IV of the wrong type is
// fault.Integrity.
func (s *Store) storedRevision(ctx context.Context, op fault.Op, k store.Key) (rev store.Revision, found bool, err error) {
	out, err := s.client.GetItem(ctx, &awsdynamodb.GetItemInput{
		TableName:                &s.table,
		Key:                      key(k),
		ConsistentRead:           new(true),
		ProjectionExpression:     new(phName + ", " + phVersion + ", " + phIV),
		ExpressionAttributeNames: map[string]string{phName: attrName, phVersion: attrVersion, phIV: attrIV},
	})
	if err != nil {
		return rev, false, wrap(op, k.Path(), s.table, err)
	}
	if out.Item == nil {
		return rev, false, nil
	}
	if rev, err = unmarshalRevision(out.Item); err != nil {
		return rev, true, fault.E(op, k.Path(), fault.Integrity, fmt.Errorf("malformed item: %w", err))
	}
	return rev, true, nil
}

// List implements store.Store. It is one Query on the partition key,
// strongly consistent, projecting the key and metadata attributes only
// (the InitialisationVector among them, for conditional writes): never
// the protected ones, and never a Scan.
func (s *Store) List(ctx context.Context, app string, after string, limit int) ([]store.Meta, string, error) {
	const op fault.Op = "dynamodb.List"
	if limit <= 0 || limit > pageSize {
		limit = pageSize
	}
	if store.ValidName(app) != nil {
		return nil, "", nil // nothing invalid can have been stored
	}
	if !utf8.ValidString(after) {
		return nil, "", fault.E(op, fault.Path(app), fault.Invalid, "the name to list after is not valid UTF-8")
	}
	in := &awsdynamodb.QueryInput{
		TableName:              &s.table,
		KeyConditionExpression: new(phApp + " = :app"),
		ProjectionExpression: new(phApp + ", " + phName + ", " + phFormat + ", " + phVersion + ", " +
			phIV + ", " + phSize + ", " + phModified),
		ExpressionAttributeNames: map[string]string{
			phApp: attrApp, phName: attrName, phFormat: attrFormat,
			phVersion: attrVersion, phIV: attrIV, phSize: attrSize, phModified: attrModified,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":app": &types.AttributeValueMemberS{Value: app},
		},
		ConsistentRead: new(true),
		Limit:          new(int32(limit)),
	}
	if after != "" {
		in.ExclusiveStartKey = key(store.Key{App: app, Name: after})
	}
	out, err := s.client.Query(ctx, in)
	if err != nil {
		return nil, "", wrap(op, fault.Path(app), s.table, err)
	}
	page := make([]store.Meta, 0, len(out.Items))
	for _, av := range out.Items {
		m, err := unmarshalMeta(av)
		if err != nil {
			// One malformed item does not fail its page: it is listed
			// as invalid, for the caller to skip (store.Meta.Invalid).
			// Its name is the RANGE key, a string DynamoDB checked.
			name, nerr := getS(av, attrName, true)
			if nerr != nil {
				return nil, "", fault.E(op, fault.Path(app), fault.Integrity, fmt.Errorf("malformed item: %w", nerr))
			}
			m = store.Meta{Key: store.Key{App: app, Name: name}, Invalid: fault.E(op, fault.Integrity, fmt.Errorf("malformed item: %w", err))}
		}
		page = append(page, m)
	}
	next := ""
	if len(out.LastEvaluatedKey) > 0 {
		if next, err = getS(out.LastEvaluatedKey, attrName, true); err != nil || next == "" {
			return nil, "", fault.E(op, fault.Path(app), fault.Other, "Query returned a LastEvaluatedKey without "+attrName)
		}
	}
	return page, next, nil
}

// Apps implements store.Store with one page of a Scan of the whole table,
// projecting ApplicationName: at most limit items (limit <= 0: as many as
// DynamoDB returns, up to 1 MB read), whose applications the page holds
// sorted, once each. A Scan goes in hash order, not in the order of
// names, so the cursor cannot be a name: it is the page's
// LastEvaluatedKey, encoded (appsCursor). Apps reads (and is billed for)
// every item, and needs table-wide read permission (dynamodb:Scan on the
// table): a mount whose IAM policy confines it to some applications
// (dynamodb:LeadingKeys) cannot call it and must be given its
// applications with --apps instead.
func (s *Store) Apps(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	const op fault.Op = "dynamodb.Apps"
	in := &awsdynamodb.ScanInput{
		TableName:                &s.table,
		ProjectionExpression:     new(phApp),
		ExpressionAttributeNames: map[string]string{phApp: attrApp},
		// Strong consistency: an application whose last secret was just
		// deleted is not listed again.
		ConsistentRead: new(true),
	}
	if limit > 0 {
		in.Limit = new(int32(min(limit, math.MaxInt32)))
	}
	if cursor != "" {
		start, err := parseAppsCursor(cursor)
		if err != nil {
			return nil, "", fault.E(op, fault.Invalid, err)
		}
		in.ExclusiveStartKey = start
	}
	out, err := s.client.Scan(ctx, in)
	if err != nil {
		return nil, "", wrap(op, "", s.table, err)
	}
	apps := make([]string, 0, len(out.Items))
	for _, av := range out.Items {
		app, err := getS(av, attrApp, true)
		if err != nil {
			return nil, "", fault.E(op, fault.Other, fmt.Errorf("malformed item: %w", err))
		}
		apps = append(apps, app)
	}
	next, err := appsCursor(out.LastEvaluatedKey)
	if err != nil {
		return nil, "", fault.E(op, fault.Other, err)
	}
	return store.SortApps(apps), next, nil
}

// appsCursor encodes the LastEvaluatedKey of a Scan, the primary key of
// the last item it read, as a cursor of Apps: base64url of the JSON array
// [ApplicationName, SecretName]. No LastEvaluatedKey, the end of the
// table, is "".
func appsCursor(last map[string]types.AttributeValue) (string, error) {
	if len(last) == 0 {
		return "", nil
	}
	app, errApp := getS(last, attrApp, true)
	name, errName := getS(last, attrName, true)
	if errApp != nil || errName != nil || len(last) != 2 {
		return "", fmt.Errorf("Scan returned a LastEvaluatedKey that is not a key of the table: attributes %q",
			slices.Sorted(maps.Keys(last)))
	}
	b, err := json.Marshal([]string{app, name})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// parseAppsCursor is the ExclusiveStartKey of the Scan page that cursor,
// made by appsCursor, begins.
func parseAppsCursor(cursor string) (map[string]types.AttributeValue, error) {
	var k []string
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil {
		err = json.Unmarshal(b, &k)
	}
	if err != nil || len(k) != 2 {
		return nil, errors.New("not a cursor of Apps")
	}
	return key(store.Key{App: k[0], Name: k[1]}), nil
}

// Close implements store.Store. The client holds no resources that need
// releasing.
func (s *Store) Close() error { return nil }

// key is the primary key of k.
func key(k store.Key) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrApp:  &types.AttributeValueMemberS{Value: k.App},
		attrName: &types.AttributeValueMemberS{Value: k.Name},
	}
}

// cond is a ConditionExpression with its placeholders.
type cond struct {
	expr   string
	names  map[string]string
	values map[string]types.AttributeValue // nil when empty: DynamoDB refuses an empty map
}

// condition is the condition of a write expecting the stored item to be
// the Revision expected, which store.CheckExpected has accepted.
func condition(expected store.Revision) cond {
	if expected.Version == store.Absent {
		return cond{
			expr:  "attribute_not_exists(" + phName + ")",
			names: map[string]string{phName: attrName},
		}
	}
	iv := &types.AttributeValueMemberB{Value: expected.IV}
	if expected.Version == store.Unversioned {
		// A legacy item can be overwritten once: the write adds a Version.
		// (A missing item has no IV: the comparison fails.)
		return cond{
			expr:   "attribute_not_exists(" + phVersion + ") AND " + phIV + " = :iv",
			names:  map[string]string{phVersion: attrVersion, phIV: attrIV},
			values: map[string]types.AttributeValue{":iv": iv},
		}
	}
	return cond{
		expr:   phVersion + " = :expected AND " + phIV + " = :iv",
		names:  map[string]string{phVersion: attrVersion, phIV: attrIV},
		values: map[string]types.AttributeValue{":expected": number(int64(expected.Version)), ":iv": iv},
	}
}
