package dynamodb

import (
	"fmt"
	"strings"
	"testing"
	"time"

	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

func TestEnsureTableCreatesOnce(t *testing.T) {
	table := newTable(t) // created = true, checked there
	desc, err := client.DescribeTable(t.Context(), &awsdynamodb.DescribeTableInput{TableName: &table})
	if err != nil {
		t.Fatal(err)
	}
	if desc.Table.TableStatus != types.TableStatusActive {
		t.Errorf("table status %s after EnsureTable, want ACTIVE", desc.Table.TableStatus)
	}
	if got := formatSchemaOf(desc.Table); got != "HASH ApplicationName (S), RANGE SecretName (S)" {
		t.Errorf("key schema %s", got)
	}
	if b := desc.Table.BillingModeSummary; b == nil || b.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode summary %+v, want PAY_PER_REQUEST", b)
	}

	// Items survive a second EnsureTable, which changes nothing.
	s := New(client, table)
	if err := s.Put(t.Context(), item("app", "kept", 3), store.NoItem); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		created, err := EnsureTable(t.Context(), client, table, 10*time.Second)
		if err != nil || created {
			t.Fatalf("EnsureTable of an existing table = %v, %v; want false, nil", created, err)
		}
	}
	if _, err := s.Get(t.Context(), store.Key{App: "app", Name: "kept"}); err != nil {
		t.Fatalf("after EnsureTable: %v", err)
	}
}

func formatSchemaOf(d *types.TableDescription) string {
	var parts []string
	for _, k := range d.KeySchema {
		typ := types.ScalarAttributeType("?")
		for _, a := range d.AttributeDefinitions {
			if *a.AttributeName == *k.AttributeName {
				typ = a.AttributeType
			}
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", k.KeyType, *k.AttributeName, typ))
	}
	return strings.Join(parts, ", ")
}

func TestEnsureTableRefusesOtherSchemas(t *testing.T) {
	for i, c := range []struct {
		name  string
		keys  []types.KeySchemaElement
		attrs []types.AttributeDefinition
		shown string
	}{
		{
			"hash only",
			[]types.KeySchemaElement{{AttributeName: new("ApplicationName"), KeyType: types.KeyTypeHash}},
			[]types.AttributeDefinition{{AttributeName: new("ApplicationName"), AttributeType: types.ScalarAttributeTypeS}},
			"HASH ApplicationName (S);",
		},
		{
			"other range key",
			[]types.KeySchemaElement{
				{AttributeName: new("ApplicationName"), KeyType: types.KeyTypeHash},
				{AttributeName: new("Name"), KeyType: types.KeyTypeRange},
			},
			[]types.AttributeDefinition{
				{AttributeName: new("ApplicationName"), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: new("Name"), AttributeType: types.ScalarAttributeTypeS},
			},
			"HASH ApplicationName (S), RANGE Name (S);",
		},
		{
			"binary range key",
			[]types.KeySchemaElement{
				{AttributeName: new("ApplicationName"), KeyType: types.KeyTypeHash},
				{AttributeName: new("SecretName"), KeyType: types.KeyTypeRange},
			},
			[]types.AttributeDefinition{
				{AttributeName: new("ApplicationName"), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: new("SecretName"), AttributeType: types.ScalarAttributeTypeB},
			},
			"HASH ApplicationName (S), RANGE SecretName (B);",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			table := fmt.Sprintf("secretfs-foreign-%d", i)
			_, err := client.CreateTable(t.Context(), &awsdynamodb.CreateTableInput{
				TableName: &table, KeySchema: c.keys, AttributeDefinitions: c.attrs,
				BillingMode: types.BillingModePayPerRequest,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer client.DeleteTable(t.Context(), &awsdynamodb.DeleteTableInput{TableName: &table})

			created, err := EnsureTable(t.Context(), client, table, 10*time.Second)
			if created || !fault.Is(fault.Invalid, err) {
				t.Fatalf("EnsureTable of a table with key schema %s = %v, %v; want fault.Invalid", c.shown, created, err)
			}
			for _, want := range []string{table, c.shown, "HASH ApplicationName (S), RANGE SecretName (S)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not show %q", err, want)
				}
			}
		})
	}
}
