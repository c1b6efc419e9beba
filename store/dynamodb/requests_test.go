package dynamodb

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// protectedAttrs are the attributes that hold the sealed secret: no
// listing may ask for them.
var protectedAttrs = []string{attrMasterKeyID, attrDocumentKey, attrValue}

// recordingStore returns a store on table whose calls rec sees.
func recordingStore(t *testing.T, table string, rec *recorder) *Store {
	t.Helper()
	c, err := newClient(dynalite.URL, rec.option)
	if err != nil {
		t.Fatal(err)
	}
	return New(c, table)
}

// projected resolves a ProjectionExpression through its placeholders; a
// name that is not a placeholder is an error, as is a placeholder that
// names nothing.
func projected(t *testing.T, what string, expr *string, names map[string]string) []string {
	t.Helper()
	if expr == nil {
		t.Fatalf("%s projects every attribute", what)
	}
	var attrs []string
	for _, p := range strings.Split(*expr, ",") {
		p = strings.TrimSpace(p)
		name, ok := names[p]
		if !ok {
			t.Fatalf("%s projects %q, which is not a placeholder", what, p)
		}
		attrs = append(attrs, name)
	}
	slices.Sort(attrs)
	return attrs
}

// Every GetItem is strongly consistent: Get's, and the reads of the
// stored Revision by which Delete explains a failed condition (Put reads
// nothing: its caller decides, see TestPutIsRefusedWhenItsConditionFails).
// An eventually consistent read could miss the write that made the
// condition fail, or see one since deleted.
func TestGetItemIsStronglyConsistent(t *testing.T) {
	var rec recorder
	s := recordingStore(t, newTable(t), &rec)
	it := item("app", "x", 8)
	if err := s.Put(t.Context(), it, store.NoItem); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), it.Key); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.Put(t.Context(), item("app", "x", 8), store.NoItem), fault.Exist, "Put of an existing item expecting NoItem")
	wantKind(t, s.Delete(t.Context(), it.Key, store.Revision{Version: 7, IV: freshIV()}), fault.Conflict, "Delete expecting another Revision")
	wantKind(t, s.Delete(t.Context(), it.Key, store.NoItem), fault.Conflict, "Delete expecting NoItem")

	var gets, revisionReads int
	for _, c := range rec.take() {
		in, ok := c.in.(*awsdynamodb.GetItemInput)
		if !ok {
			continue
		}
		if in.ConsistentRead == nil || !*in.ConsistentRead {
			t.Errorf("GetItem (projection %v) is not strongly consistent", in.ProjectionExpression)
		}
		if in.ProjectionExpression == nil {
			gets++
		} else {
			revisionReads++
		}
	}
	if gets != 1 || revisionReads != 2 {
		t.Fatalf("%d GetItem calls of Get and %d of Revision reads, want 1 and 2: the test tested less than it says", gets, revisionReads)
	}
}

// Apps is a Scan projecting ApplicationName alone, strongly consistent,
// that starts each page where the last one ended, until DynamoDB says
// there is no more.
func TestAppsScanProjectsApplicationNameAndFollowsPages(t *testing.T) {
	table, want := tablePages(t)
	var rec recorder
	s := recordingStore(t, table, &rec)
	apps, err := store.AppsAll(t.Context(), s)
	if err != nil || !slices.Equal(apps, want) {
		t.Fatalf("Apps = %q, %v; want %q", apps, err, want)
	}

	calls := rec.take()
	if len(calls) < 2 {
		t.Fatalf("Apps made %d calls over 1.5 MB of items; want a Scan of two pages at least", len(calls))
	}
	for i, c := range calls {
		in, ok := c.in.(*awsdynamodb.ScanInput)
		if !ok {
			t.Fatalf("call %d is %T, want a Scan", i, c.in)
		}
		out := c.out.(*awsdynamodb.ScanOutput)
		if got := projected(t, "Scan", in.ProjectionExpression, in.ExpressionAttributeNames); !slices.Equal(got, []string{attrApp}) {
			t.Errorf("Scan %d projects %q, want only %s", i, got, attrApp)
		}
		if len(in.ExpressionAttributeNames) != 1 {
			t.Errorf("Scan %d names %v, want only %s", i, in.ExpressionAttributeNames, attrApp)
		}
		if in.ConsistentRead == nil || !*in.ConsistentRead {
			t.Errorf("Scan %d is not strongly consistent", i)
		}
		if i > 0 {
			prev := calls[i-1].out.(*awsdynamodb.ScanOutput)
			if len(prev.LastEvaluatedKey) == 0 || !reflect.DeepEqual(in.ExclusiveStartKey, prev.LastEvaluatedKey) {
				t.Errorf("Scan %d starts at %v, want the LastEvaluatedKey of page %d, %v", i, in.ExclusiveStartKey, i-1, prev.LastEvaluatedKey)
			}
		} else if len(in.ExclusiveStartKey) != 0 {
			t.Errorf("the first Scan starts at %v", in.ExclusiveStartKey)
		}
		for _, av := range out.Items {
			for name := range av {
				if name != attrApp {
					t.Errorf("Scan %d returned attribute %s", i, name)
				}
			}
		}
	}
	if last := calls[len(calls)-1].out.(*awsdynamodb.ScanOutput); len(last.LastEvaluatedKey) != 0 {
		t.Errorf("Apps stopped at a page with a LastEvaluatedKey, %v", last.LastEvaluatedKey)
	}
}

// List's Query asks for no protected attribute, on the first page as on
// the following ones.
func TestListProjectsNoProtectedAttribute(t *testing.T) {
	var rec recorder
	s := recordingStore(t, newTable(t), &rec)
	for _, n := range []string{"a", "b", "c"} {
		if err := s.Put(t.Context(), item("app", n, 64), store.NoItem); err != nil {
			t.Fatal(err)
		}
	}
	rec.take()
	if _, err := store.ListAll(t.Context(), s, "app"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.List(t.Context(), "app", "a", 1); err != nil {
		t.Fatal(err)
	}
	queries := 0
	for _, c := range rec.take() {
		in, ok := c.in.(*awsdynamodb.QueryInput)
		if !ok {
			t.Fatalf("List made a %T call, want Query only", c.in)
		}
		queries++
		attrs := projected(t, "Query", in.ProjectionExpression, in.ExpressionAttributeNames)
		for _, p := range protectedAttrs {
			if slices.Contains(attrs, p) {
				t.Errorf("Query projects the protected attribute %s (all: %q)", p, attrs)
			}
			for ph, name := range in.ExpressionAttributeNames {
				if name == p {
					t.Errorf("Query names the protected attribute %s (%s)", p, ph)
				}
			}
		}
		for _, av := range c.out.(*awsdynamodb.QueryOutput).Items {
			for _, p := range protectedAttrs {
				if _, ok := av[p]; ok {
					t.Errorf("Query returned the protected attribute %s", p)
				}
			}
		}
	}
	if queries < 2 {
		t.Fatalf("%d Query calls, want 2 at least", queries)
	}
}
