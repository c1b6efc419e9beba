package integration

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// A commit whose PutItem is held in the network past its deadline, and
// reaches the store only after the mount has looked at what it holds
// (the revision the write expects), lands exactly once, and close says
// so: the mount sends the write again on the same condition (a fence),
// which lands, and the late first copy then fails its condition. Were
// close to conclude "not committed" from the look, the late copy would
// land a write that close had said was discarded.
func TestACommitHeldPastItsDeadlineLandsOnceAndCloseSaysSo(t *testing.T) {
	b, own := ownDynamo(t, false, "--timeout", "1s")
	b.cli(t, []byte("before"), "put", "app/s")
	m := mount(t, b)
	w, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	value := m.secret(unique("fenced"))
	if _, err := w.WriteString(value); err != nil {
		t.Fatal(err)
	}
	puts := own.Calls("PutItem")
	own.Delay("PutItem")
	defer own.Deliver()
	closeErr := w.Close()
	own.Deliver() // the first copy reaches the store now, after the look and the fence
	if closeErr != nil {
		t.Fatalf("close: %v; want success: the fence landed the write", closeErr)
	}
	if got := own.Calls("PutItem") - puts; got != 2 {
		t.Errorf("%d PutItem requests, want 2: the held first copy and the fence", got)
	}
	raw := awsdynamodb.NewFromConfig(awsConfig(t), func(o *awsdynamodb.Options) { o.BaseEndpoint = aws.String(own.URL) })
	item, err := raw.GetItem(context.Background(), &awsdynamodb.GetItemInput{TableName: aws.String(b.table), Key: itemKey("app", "s"), ConsistentRead: aws.Bool(true)})
	if err != nil || item.Item == nil {
		t.Fatalf("reading app/s from the store: %v", err)
	}
	if v, _ := strconv.Atoi(item.Item["Version"].(*types.AttributeValueMemberN).Value); v != 2 {
		t.Errorf("the store holds Version %d, want 2: one write landed, once", v)
	}
	if got := b.cli(t, nil, "get", "app/s"); got != value {
		t.Errorf("the store holds %q", got)
	}
	if got := m.mustSh("cat app/s"); got != value {
		t.Errorf("the mount reads %q", got)
	}
	if n := strings.Count(m.log(), `"msg":"secret written"`); n != 1 {
		t.Errorf("the log says %d times that the secret was written, want 1:\n%s", n, m.log())
	}
}
