package dynamodb

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/testserver"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return New(client, newTable(t))
	})
}

// freshIV returns a 12-byte nonce, fresh as every write's is.
func freshIV() []byte {
	iv := make([]byte, 12)
	rand.Read(iv)
	return iv
}

// item returns a version-1 item with a value of n bytes and a fresh IV.
func item(app, name string, n int) *store.Item {
	v := bytes.Repeat([]byte{0xa5}, n)
	return &store.Item{
		Meta: store.Meta{
			Key:                  store.Key{App: app, Name: name},
			Format:               "v2",
			Version:              1,
			InitialisationVector: freshIV(),
			Size:                 int64(n),
			Modified:             time.Date(2025, 6, 1, 12, 0, 0, 345_000_000, time.UTC),
		},
		MasterKeyID:          "arn:aws:kms:eu-west-1:111122223333:key/0b6b5f1c-5a3e-4c55-9d8f-1d2f3c4b5a69",
		ProtectedDocumentKey: bytes.Repeat([]byte{0x01}, 184),
		ProtectedSecretValue: v,
	}
}

func rawGet(t *testing.T, table string, k store.Key) map[string]types.AttributeValue {
	t.Helper()
	out, err := client.GetItem(t.Context(), &awsdynamodb.GetItemInput{
		TableName: &table, Key: key(k), ConsistentRead: new(true),
	})
	if err != nil {
		t.Fatalf("raw GetItem %s: %v", k, err)
	}
	if out.Item == nil {
		t.Fatalf("raw GetItem %s: no item", k)
	}
	return out.Item
}

// attrTypes maps each attribute of av to its type letter.
func attrTypes(av map[string]types.AttributeValue) map[string]string {
	m := map[string]string{}
	for name, v := range av {
		m[name] = typeName(v)
	}
	return m
}

func wantKind(t *testing.T, err error, kind fault.Kind, what string) {
	t.Helper()
	if !fault.Is(kind, err) {
		t.Fatalf("%s: error %v (kind %q), want kind %q", what, err, fault.KindOf(err), kind)
	}
}

// The stored item has exactly the attributes of docs/FORMAT.md, each of
// its documented type, and nothing else.
func TestRawItem(t *testing.T) {
	table := newTable(t)
	s := New(client, table)
	it := item("app", "raw", 100)
	if err := s.Put(t.Context(), it, store.NoItem); err != nil {
		t.Fatal(err)
	}
	next := *it
	next.Version, next.Size, next.Modified = 2, 42, time.UnixMilli(1_750_000_000_123)
	next.InitialisationVector = freshIV()
	if err := s.Put(t.Context(), &next, it.Revision()); err != nil {
		t.Fatal(err)
	}
	av := rawGet(t, table, it.Key)
	want := map[string]string{
		"ApplicationName": "S", "SecretName": "S", "MasterKeyId": "S",
		"ProtectedDocumentKey": "B", "InitialisationVector": "B", "ProtectedSecretValue": "B",
		"Format": "S", "Version": "N", "Size": "N", "Modified": "N",
	}
	if got := attrTypes(av); !maps.Equal(got, want) {
		t.Fatalf("stored attributes %v, want %v", got, want)
	}
	for name, want := range map[string]string{
		"ApplicationName": "app", "SecretName": "raw", "MasterKeyId": it.MasterKeyID,
		"Format": "v2", "Version": "2", "Size": "42", "Modified": "1750000000123",
	} {
		var got string
		switch v := av[name].(type) {
		case *types.AttributeValueMemberS:
			got = v.Value
		case *types.AttributeValueMemberN:
			got = v.Value
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if b := av["ProtectedSecretValue"].(*types.AttributeValueMemberB).Value; !bytes.Equal(b, it.ProtectedSecretValue) {
		t.Errorf("ProtectedSecretValue differs")
	}

	// A legacy item, as tests write one to play the original, has the
	// original's six attributes only.
	old := item("app", "legacy", 10)
	old.Format, old.Version, old.Size, old.Modified = "", store.Unversioned, -1, time.Time{}
	if err := s.Put(t.Context(), old, store.NoItem); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{
		"ApplicationName": "S", "SecretName": "S", "MasterKeyId": "S",
		"ProtectedDocumentKey": "B", "InitialisationVector": "B", "ProtectedSecretValue": "B",
	}
	if got := attrTypes(rawGet(t, table, old.Key)); !maps.Equal(got, want) {
		t.Fatalf("stored legacy attributes %v, want %v", got, want)
	}
}

// An item written by the original Secret Store, with its six attributes
// only, reads, lists, and can be overwritten once.
func TestOriginalSecretStoreItem(t *testing.T) {
	table := newTable(t)
	s := New(client, table)
	k := store.Key{App: "legacy-app", Name: "db-password"}
	original := map[string]types.AttributeValue{
		"ApplicationName":      &types.AttributeValueMemberS{Value: k.App},
		"SecretName":           &types.AttributeValueMemberS{Value: k.Name},
		"MasterKeyId":          &types.AttributeValueMemberS{Value: "alias/legacy-app"},
		"ProtectedDocumentKey": &types.AttributeValueMemberB{Value: []byte{1, 2, 3, 0, 255}},
		"InitialisationVector": &types.AttributeValueMemberB{Value: bytes.Repeat([]byte{7}, 16)},
		"ProtectedSecretValue": &types.AttributeValueMemberB{Value: bytes.Repeat([]byte{9}, 32)},
	}
	if _, err := client.PutItem(t.Context(), &awsdynamodb.PutItemInput{TableName: &table, Item: original}); err != nil {
		t.Fatal(err)
	}

	got, err := s.Get(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != k || got.Format != "" || got.Version != store.Unversioned || got.Size != -1 || !got.Modified.IsZero() {
		t.Fatalf("legacy item read as %+v", got.Meta)
	}
	if got.MasterKeyID != "alias/legacy-app" || !bytes.Equal(got.ProtectedDocumentKey, []byte{1, 2, 3, 0, 255}) ||
		!bytes.Equal(got.InitialisationVector, bytes.Repeat([]byte{7}, 16)) ||
		!bytes.Equal(got.ProtectedSecretValue, bytes.Repeat([]byte{9}, 32)) {
		t.Fatalf("legacy item's protected fields differ: %+v", got)
	}

	all, err := store.ListAll(t.Context(), s, k.App)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Key != got.Key || all[0].Format != "" || all[0].Size != -1 || !all[0].Modified.IsZero() ||
		!all[0].Revision().Equal(got.Revision()) {
		t.Fatalf("ListAll = %+v, want [%+v]", all, got.Meta)
	}

	upgraded := item(k.App, k.Name, 20)
	if err := s.Put(t.Context(), upgraded, all[0].Revision()); err != nil {
		t.Fatalf("first overwrite of the legacy item: %v", err)
	}
	if v := rawGet(t, table, k)["Version"]; typeName(v) != "N" || v.(*types.AttributeValueMemberN).Value != "1" {
		t.Fatalf("after the upgrade, Version is %#v, want N 1", v)
	}
	again := item(k.App, k.Name, 30)
	wantKind(t, s.Put(t.Context(), again, all[0].Revision()), fault.Conflict, "second overwrite expecting Unversioned")
	got, err = s.Get(t.Context(), k)
	if err != nil || len(got.ProtectedSecretValue) != 20 || got.Version != 1 {
		t.Fatalf("after the refused overwrite: %+v, %v; want the upgraded item", got, err)
	}
}

// legacySize is the size of a legacy item (no numbers) by DynamoDB's rule,
// computed here independently of itemSize: names plus values, in bytes.
func legacySize(it *store.Item) int {
	return len("ApplicationName") + len(it.App) + len("SecretName") + len(it.Name) +
		len("MasterKeyId") + len(it.MasterKeyID) + len("ProtectedDocumentKey") + len(it.ProtectedDocumentKey) +
		len("InitialisationVector") + len(it.InitialisationVector) +
		len("ProtectedSecretValue") + len(it.ProtectedSecretValue)
}

func TestItemSizeLimit(t *testing.T) {
	table := newTable(t)
	s := New(client, table)

	// An item of exactly 400 KB is stored: the limit is not stricter than
	// DynamoDB's.
	exact := item("app", "exact", 0)
	exact.Format, exact.Version, exact.Size, exact.Modified = "", store.Unversioned, -1, time.Time{}
	exact.ProtectedSecretValue = make([]byte, MaxItemSize-legacySize(exact))
	exact.ProtectedSecretValue[0] = 1
	if n := legacySize(exact); n != 409600 {
		t.Fatalf("test item is %d bytes", n)
	}
	if err := s.Put(t.Context(), exact, store.NoItem); err != nil {
		t.Fatalf("Put of an item of exactly 400 KB: %v", err)
	}

	// One byte more is refused before anything is sent, and the stored
	// item is unharmed.
	over := *exact
	over.Version, over.Format, over.Size, over.Modified = 1, "v2", 1, time.Now()
	over.InitialisationVector = append([]byte("another write "), exact.InitialisationVector...)[:len(exact.InitialisationVector)]
	over.ProtectedSecretValue = make([]byte, len(exact.ProtectedSecretValue)+1)
	overLegacy := *exact
	overLegacy.ProtectedSecretValue = over.ProtectedSecretValue
	dynalite.ResetCalls()
	err := s.Put(t.Context(), &over, exact.Revision())
	wantKind(t, err, fault.TooLarge, "Put of an item over 400 KB")
	if !strings.Contains(err.Error(), "app/exact") {
		t.Errorf("error %q does not name the secret", err)
	}
	wantKind(t, s.Put(t.Context(), &overLegacy, store.NoItem), fault.TooLarge, "Put of a legacy item 1 byte over 400 KB")
	if n := dynalite.Calls("PutItem"); n != 0 {
		t.Fatalf("%d PutItem calls for items over the limit, want 0", n)
	}
	got, err := s.Get(t.Context(), exact.Key)
	if err != nil || !bytes.Equal(got.ProtectedSecretValue, exact.ProtectedSecretValue) || got.Version != store.Unversioned {
		t.Fatalf("after the refused Put: %v; want the previous item intact", err)
	}

	// DynamoDB (dynalite) itself refuses that item: the limit is not
	// laxer than the server's either. Its error classifies as TooLarge.
	_, err = client.PutItem(t.Context(), &awsdynamodb.PutItemInput{TableName: &table, Item: marshal(&overLegacy)})
	if err == nil {
		t.Fatal("dynalite accepted an item over 400 KB")
	}
	if k := classify(err); k != fault.TooLarge {
		t.Fatalf("dynalite's oversize error %v classifies as %q, want TooLarge", err, k)
	}

	// A 350 KB value works.
	big := item("app", "350k", 350*1024)
	big.ProtectedSecretValue[12345] = 0x5a
	if err := s.Put(t.Context(), big, store.NoItem); err != nil {
		t.Fatalf("Put of a 350 KB value: %v", err)
	}
	got, err = s.Get(t.Context(), big.Key)
	if err != nil || !bytes.Equal(got.ProtectedSecretValue, big.ProtectedSecretValue) {
		t.Fatalf("Get of the 350 KB value: %v", err)
	}
}

// A plaintext of MaxValueSize bytes, sealed in either format, with the
// longest names, a 512-byte wrapped key and an 832-byte MasterKeyId, fits.
func TestMaxValueSizeFits(t *testing.T) {
	s := New(client, newTable(t))
	app := strings.Repeat("a", store.MaxNameLen)
	for _, c := range []struct {
		format   string
		iv, seal int // IV or nonce bytes; bytes sealing adds to the plaintext
	}{
		{"v2", 12, 16}, // GCM nonce; tag
		{"v1", 16, 16}, // CBC IV; a full block of padding
	} {
		it := item(app, strings.Repeat("é", 125)+"xx-"+c.format, 0)
		it.Format = c.format
		it.Size = MaxValueSize
		it.Modified = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
		// The room the arithmetic of MaxValueSize leaves for MasterKeyId;
		// a KMS alias ARN needs under 320 bytes.
		it.MasterKeyID = "arn:aws:kms:ap-southeast-2:111122223333:alias/"
		it.MasterKeyID += strings.Repeat("k", 832-len(it.MasterKeyID))
		it.ProtectedDocumentKey = make([]byte, 512)
		it.InitialisationVector = make([]byte, c.iv)
		it.ProtectedSecretValue = make([]byte, MaxValueSize+c.seal)
		if len(it.App) != 255 || len(it.Name) != 255 {
			t.Fatalf("names of %d and %d bytes", len(it.App), len(it.Name))
		}
		if err := s.Put(t.Context(), it, store.NoItem); err != nil {
			t.Fatalf("%s: Put of a sealed value of MaxValueSize: %v", c.format, err)
		}
	}
}

// Listing is a Query on the application: strongly consistent, projecting
// no protected attribute, and never a Scan.
func TestListIsAQueryOfMetadata(t *testing.T) {
	table := newTable(t)
	var rec recorder
	c, err := newClient(dynalite.URL, rec.option)
	if err != nil {
		t.Fatal(err)
	}
	s := New(c, table)
	for _, n := range []string{"a", "b", "c"} {
		if err := s.Put(t.Context(), item("app", n, 64), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(t.Context(), item("other", "x", 64), store.NoItem); err != nil {
		t.Fatal(err)
	}
	rec.take()
	dynalite.ResetCalls()

	page, next, err := s.List(t.Context(), "app", "a", 0)
	if err != nil || len(page) != 2 || page[0].Name != "b" || page[1].Name != "c" || next != "" {
		t.Fatalf("List after a = %+v, %q, %v", page, next, err)
	}
	if _, _, err := s.List(t.Context(), "app", "", 5000); err != nil {
		t.Fatal(err)
	}
	if q, sc := dynalite.Calls("Query"), dynalite.Calls("Scan"); q != 2 || sc != 0 {
		t.Fatalf("listing cost %d Query and %d Scan calls, want 2 and 0", q, sc)
	}

	calls := rec.take()
	if len(calls) != 2 {
		t.Fatalf("%d calls recorded, want 2", len(calls))
	}
	for i, wantStart := range []string{"a", ""} {
		in, ok := calls[i].in.(*awsdynamodb.QueryInput)
		if !ok {
			t.Fatalf("call %d is %T, want a Query", i, calls[i].in)
		}
		if in.ConsistentRead == nil || !*in.ConsistentRead {
			t.Errorf("Query %d is not strongly consistent", i)
		}
		if in.Limit == nil || *in.Limit != 1000 {
			t.Errorf("Query %d has Limit %v, want 1000", i, in.Limit)
		}
		start := ""
		if v, ok := in.ExclusiveStartKey["SecretName"].(*types.AttributeValueMemberS); ok {
			start = v.Value
		}
		if start != wantStart {
			t.Errorf("Query %d starts after %q, want %q", i, start, wantStart)
		}
		if in.ProjectionExpression == nil {
			t.Fatalf("Query %d projects every attribute", i)
		}
		var projected []string
		for _, p := range strings.Split(*in.ProjectionExpression, ",") {
			p = strings.TrimSpace(p)
			if name, ok := in.ExpressionAttributeNames[p]; ok {
				p = name
			} else {
				t.Errorf("Query %d projects %q without a placeholder", i, p)
			}
			projected = append(projected, p)
		}
		slices.Sort(projected)
		want := []string{"ApplicationName", "Format", "InitialisationVector", "Modified", "SecretName", "Size", "Version"}
		if !slices.Equal(projected, want) {
			t.Errorf("Query %d projects %q, want %q", i, projected, want)
		}
		// What came back holds no protected attribute.
		out := calls[i].out.(*awsdynamodb.QueryOutput)
		if len(out.Items) == 0 {
			t.Fatalf("Query %d returned no items", i)
		}
		for _, av := range out.Items {
			for name := range av {
				if !slices.Contains(want, name) {
					t.Errorf("Query %d returned attribute %s", i, name)
				}
			}
		}
	}
}

// The default page is 1000 entries, and next leads to the rest.
func TestListDefaultPage(t *testing.T) {
	table := newTable(t)
	s := New(client, table)
	const n = 1001
	var reqs []types.WriteRequest
	flush := func() {
		if len(reqs) == 0 {
			return
		}
		out, err := client.BatchWriteItem(t.Context(), &awsdynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{table: reqs},
		})
		if err != nil || len(out.UnprocessedItems) != 0 {
			t.Fatalf("BatchWriteItem: %v (%d unprocessed)", err, len(out.UnprocessedItems))
		}
		reqs = nil
	}
	for i := range n {
		av := marshal(item("bulk", fmt.Sprintf("s%05d", i), 8))
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: av}})
		if len(reqs) == 25 {
			flush()
		}
	}
	flush()

	for _, limit := range []int{0, -1, 1000, 1 << 20} {
		page, next, err := s.List(t.Context(), "bulk", "", limit)
		if err != nil || len(page) != 1000 || next != "s00999" {
			t.Fatalf("limit %d: first page of %d entries, next %q, %v; want 1000 and s00999", limit, len(page), next, err)
		}
	}
	page, next, err := s.List(t.Context(), "bulk", "s00999", 0)
	if err != nil || len(page) != 1 || page[0].Name != "s01000" || next != "" {
		t.Fatalf("second page = %d entries, next %q, %v", len(page), next, err)
	}
	all, err := store.ListAll(t.Context(), s, "bulk")
	if err != nil || len(all) != n {
		t.Fatalf("ListAll = %d entries, %v; want %d", len(all), err, n)
	}
}

// Apps follows the Scan's pages: DynamoDB ends a page at 1 MB read.
func TestAppsFollowsScanPages(t *testing.T) {
	s := New(client, newTable(t))
	var want []string
	for i := range 5 {
		app := "app" + strconv.Itoa(4-i)
		want = append(want, app)
		if err := s.Put(t.Context(), item(app, "big", 300*1024), store.NoItem); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(t.Context(), item(app, "small", 1), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	dynalite.ResetCalls()
	apps, err := store.AppsAll(t.Context(), s)
	if err != nil || !slices.Equal(apps, want) {
		t.Fatalf("Apps = %q, %v; want %q", apps, err, want)
	}
	if n := dynalite.Calls("Scan"); n < 2 {
		t.Fatalf("Apps made %d Scan calls over 1.5 MB of items; want a second page", n)
	}
}

// Apps pages by items read (Scan's Limit), in the Scan's hash order; its
// cursor is the encoded LastEvaluatedKey, and a cursor it did not make is
// fault.Invalid, sent nowhere.
func TestAppsCursor(t *testing.T) {
	s := New(client, newTable(t))
	want := []string{"a", "b", "c", "d", "e", "f"}
	for _, app := range want {
		if err := s.Put(t.Context(), item(app, "x", 1), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for cursor := ""; ; {
		page, next, err := s.Apps(t.Context(), cursor, 1)
		if err != nil || len(page) > 1 || len(order) > len(want) {
			t.Fatalf("Apps after %q, limit 1 = %q, %q, %v (after %q)", cursor, page, next, err, order)
		}
		order = append(order, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	t.Logf("Scan order: %q", order)
	if got := store.SortApps(order); !slices.Equal(got, want) {
		t.Fatalf("pages of one item named %q, want %q", got, want)
	}

	dynalite.ResetCalls()
	for _, bad := range []string{"a", "not base64!", "WyJhIl0" /* ["a"] */} {
		_, _, err := s.Apps(t.Context(), bad, 0)
		wantKind(t, err, fault.Invalid, "Apps at the cursor "+strconv.Quote(bad))
	}
	if n := dynalite.Calls("Scan"); n != 0 {
		t.Fatalf("%d Scan calls for cursors Apps did not make", n)
	}
}

func TestMissingTable(t *testing.T) {
	s := New(client, "secretfs-no-such-table")
	k := store.Key{App: "app", Name: "x"}
	_, err := s.Get(t.Context(), k)
	_, _, listErr := s.List(t.Context(), "app", "", 0)
	for what, err := range map[string]error{
		"Get":    err,
		"Put":    s.Put(t.Context(), item("app", "x", 1), store.NoItem),
		"Delete": s.Delete(t.Context(), k, store.Revision{Version: 1, IV: freshIV()}),
		"List":   listErr,
	} {
		if err == nil || !strings.Contains(err.Error(), "secretfs init --backend dynamodb") ||
			!strings.Contains(err.Error(), "secretfs-no-such-table") {
			t.Errorf("%s on a missing table: %v; want an error naming the table and `secretfs init`", what, err)
		}
		if k := fault.KindOf(err); k != fault.Other {
			t.Errorf("%s on a missing table: kind %q, want %q (EIO, not ENOENT)", what, k, fault.Other)
		}
	}
}

// A backend that does not answer gives fault.Unavailable at the caller's
// deadline, never a hang; one that refuses connections gives it after the
// SDK's retries.
func TestDeadBackend(t *testing.T) {
	dead, err := testserver.StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	c, err := newClient(dead.URL)
	if err != nil {
		t.Fatal(err)
	}
	const table = "secretfs-dead"
	if _, err := EnsureTable(t.Context(), c, table, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := New(c, table)
	first := item("app", "x", 1)
	if err := s.Put(t.Context(), first, store.NoItem); err != nil {
		t.Fatal(err)
	}
	dead.Stop() // the proxy stays: requests reach it and find no server

	const deadline = 2 * time.Second
	calls := map[string]func(context.Context) error{
		"Get": func(ctx context.Context) error {
			_, err := s.Get(ctx, store.Key{App: "app", Name: "x"})
			return err
		},
		"Put": func(ctx context.Context) error {
			next := item("app", "x", 2)
			next.Version = 2
			return s.Put(ctx, next, first.Revision())
		},
		"Delete": func(ctx context.Context) error { return s.Delete(ctx, first.Key, first.Revision()) },
		"List": func(ctx context.Context) error {
			_, _, err := s.List(ctx, "app", "", 0)
			return err
		},
		"Apps": func(ctx context.Context) error {
			_, _, err := s.Apps(ctx, "", 0)
			return err
		},
	}
	// All at once: each waits for its own deadline.
	var wg sync.WaitGroup
	for what, f := range calls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			start := time.Now()
			err := f(ctx)
			if elapsed := time.Since(start); elapsed > deadline+2*time.Second {
				t.Errorf("%s took %v with a %v deadline", what, elapsed, deadline)
			}
			if !fault.Is(fault.Unavailable, err) {
				t.Errorf("%s on a dead backend: error %v (kind %q), want %q", what, err, fault.KindOf(err), fault.Unavailable)
			}
		})
	}
	wg.Wait()

	// Once the host is gone altogether, connections are refused: after
	// the SDK's retries, that is Unavailable too, without a deadline.
	dead.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err = s.Get(ctx, store.Key{App: "app", Name: "x"})
	if ctx.Err() != nil {
		t.Fatalf("Get did not return before the one-minute deadline: %v", err)
	}
	wantKind(t, err, fault.Unavailable, "Get with the connection refused")
}

// Delete explains a failed condition: the item gone, or another Version.
func TestDeleteExplainsFailure(t *testing.T) {
	s := New(client, newTable(t))
	it := item("app", "x", 1)
	if err := s.Put(t.Context(), it, store.NoItem); err != nil {
		t.Fatal(err)
	}
	err := s.Delete(t.Context(), it.Key, store.Revision{Version: 5, IV: it.InitialisationVector})
	wantKind(t, err, fault.Conflict, "Delete expecting version 5")
	if !strings.Contains(err.Error(), "stored 1") {
		t.Errorf("Conflict %q does not name the stored version", err)
	}
	err = s.Delete(t.Context(), it.Key, store.Revision{Version: 1, IV: freshIV()})
	wantKind(t, err, fault.Conflict, "Delete expecting version 1 with another IV")
	if !strings.Contains(err.Error(), "stored 1 of another write") {
		t.Errorf("Conflict %q does not say the stored item is another write", err)
	}
	wantKind(t, s.Delete(t.Context(), it.Key, store.NoItem), fault.Conflict, "Delete expecting NoItem of an existing item")
	wantKind(t, s.Delete(t.Context(), store.Key{App: "app", Name: "y"}, store.NoItem), fault.NotFound,
		"Delete expecting NoItem of a missing item")
	if _, err := s.Get(t.Context(), it.Key); err != nil {
		t.Fatalf("item gone after refused Deletes: %v", err)
	}
}

// An item another program stored with a wrong type is an integrity
// failure that names the attribute, not garbage.
func TestMalformedItem(t *testing.T) {
	table := newTable(t)
	s := New(client, table)
	av := marshal(item("app", "bad", 4))
	av["Version"] = &types.AttributeValueMemberS{Value: "1"}
	if _, err := client.PutItem(t.Context(), &awsdynamodb.PutItemInput{TableName: &table, Item: av}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(t.Context(), store.Key{App: "app", Name: "bad"})
	wantKind(t, err, fault.Integrity, "Get of an item whose Version is a string")
	if !strings.Contains(err.Error(), "Version") {
		t.Errorf("error %q does not name the attribute", err)
	}
	// The listing goes on: the item is listed as invalid, for the
	// caller to skip.
	page, _, err := s.List(t.Context(), "app", "", 0)
	if err != nil || len(page) != 1 || page[0].Name != "bad" {
		t.Fatalf("List = %v, %v; want app/bad listed as invalid", page, err)
	}
	wantKind(t, page[0].Invalid, fault.Integrity, "the listed invalid item")
	if !strings.Contains(page[0].Invalid.Error(), "Version") {
		t.Errorf("Invalid %q does not name the attribute", page[0].Invalid)
	}
}
