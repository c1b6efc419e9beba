package testserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// startDynalite starts a dynalite of the test's own, closed when the test
// ends.
func startDynalite(t *testing.T) *Server {
	t.Helper()
	s, err := StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dynamo returns a client of s and a table in it.
func dynamo(t *testing.T, s *Server) (*awsdynamodb.Client, string) {
	t.Helper()
	c := awsdynamodb.NewFromConfig(sdkConfig(t), func(o *awsdynamodb.Options) { o.BaseEndpoint = aws.String(s.URL) })
	table := "faults"
	_, err := c.CreateTable(t.Context(), &awsdynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := awsdynamodb.NewTableExistsWaiter(c)
	if err := w.Wait(t.Context(), &awsdynamodb.DescribeTableInput{TableName: aws.String(table)}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return c, table
}

func put(ctx context.Context, c *awsdynamodb.Client, table, k string) error {
	_, err := c.PutItem(ctx, &awsdynamodb.PutItemInput{TableName: aws.String(table),
		Item: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: k}}})
	return err
}

func has(t *testing.T, c *awsdynamodb.Client, table, k string) bool {
	t.Helper()
	out, err := c.GetItem(t.Context(), &awsdynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: k}}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item != nil
}

// A muted operation lands but its answer never reaches a client that
// gives up first: the write is stored, the client saw a deadline.
func TestMuteLandsTheRequestAndWithholdsTheAnswer(t *testing.T) {
	s := startDynalite(t)
	c, table := dynamo(t, s)
	s.Mute("PutItem")
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := put(ctx, c, table, "landed"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a muted PutItem: %v, want the client's deadline", err)
	}
	if !has(t, c, table, "landed") {
		t.Error("the muted PutItem did not land")
	}
	s.Unmute()
	if err := put(t.Context(), c, table, "answered"); err != nil {
		t.Errorf("after Unmute: %v", err)
	}
}

// A delayed request arrives whole once delivered, though its client
// gave up long before and closed its connection: it lands, and the server
// (dynalite dies of a request cut off mid-way) answers the next ones.
func TestADelayedRequestLandsWholeAfterItsClientLeft(t *testing.T) {
	s := startDynalite(t)
	c, table := dynamo(t, s)
	for i := range 5 {
		k := fmt.Sprintf("late-%d", i)
		s.Delay("PutItem")
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := put(ctx, c, table, k)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a delayed PutItem: %v, want the client's deadline", err)
		}
		time.Sleep(100 * time.Millisecond) // the client's connection is closed by now
		s.Deliver()
		if !has(t, c, table, k) {
			t.Fatalf("delivery %d: the delayed PutItem did not land", i)
		}
	}
	select {
	case <-s.exited:
		t.Fatal("dynalite exited")
	default:
	}
}

// A frozen server answers nothing until thawed; a killed persistent one
// fails at once, and comes back with its tables after Restart.
func TestFreezeKillAndRestart(t *testing.T) {
	s, err := StartPersistentDynalite()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, table := dynamo(t, s)
	if err := put(t.Context(), c, table, "kept"); err != nil {
		t.Fatal(err)
	}
	s.Freeze()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	err = put(ctx, c, table, "frozen")
	cancel()
	s.Thaw()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request to a frozen server: %v, want the client's deadline", err)
	}
	s.Kill()
	start := time.Now()
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	err = put(ctx, c, table, "dead")
	cancel()
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request to a killed server: %v after %s, want a prompt failure", err, time.Since(start))
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if !has(t, c, table, "kept") {
		t.Error("a persistent server lost its table's items across Kill and Restart")
	}
}
