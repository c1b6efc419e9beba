package testserver

import (
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

// Both servers start, answer through the proxy, and have their calls
// counted by operation.
func TestServersStartAndCountCalls(t *testing.T) {
	for name, start := range map[string]func() (*Server, error){"dynalite": StartDynalite, "local-kms": StartLocalKMS} {
		t.Run(name, func(t *testing.T) {
			s, err := start()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			req, _ := http.NewRequest("POST", s.URL, strings.NewReader("{}"))
			req.Header.Set("X-Amz-Target", "Service.SomeOperation")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := s.Calls("SomeOperation"); got != 1 {
				t.Errorf("Calls(SomeOperation) = %d, want 1", got)
			}
			if got := s.Counts(); !maps.Equal(got, map[string]int64{"SomeOperation": 1}) {
				t.Errorf("Counts() = %v, want SomeOperation: 1", got)
			}
			if got := s.Total(); got != 1 {
				t.Errorf("Total() = %d, want 1", got)
			}
			s.ResetCalls()
			if got, counts, total := s.Calls("SomeOperation"), s.Counts(), s.Total(); got != 0 || len(counts) != 0 || total != 0 {
				t.Errorf("after ResetCalls: Calls %d, Counts %v, Total %d", got, counts, total)
			}
		})
	}
}

// Deny answers the next n requests as the service itself answers a
// principal without permission: HTTP 400, the service's JSON error with
// the AccessDeniedException code, and a message naming the action and
// the table or key. The SDK reads it as AccessDeniedException, and the
// request after them reaches the server.
func TestDeny(t *testing.T) {
	for _, c := range []struct {
		name        string
		start       func() (*Server, error)
		target      string
		body        string
		contentType string
		typ         string
		messageKey  string
		names       string
		crc32       bool // DynamoDB sends, and its SDK checks, X-Amz-Crc32
		sdkCall     func(ctx context.Context, url string) error
	}{
		{
			name: "dynalite", start: StartDynalite,
			target: "DynamoDB_20120810.GetItem", body: `{"TableName":"secrets"}`,
			contentType: "application/x-amz-json-1.0",
			typ:         "com.amazonaws.dynamodb.v20120810#AccessDeniedException", messageKey: "Message",
			names: "dynamodb:GetItem on resource: arn:aws:dynamodb:" + Region + ":" + Account + ":table/secrets",
			crc32: true,
			sdkCall: func(ctx context.Context, url string) error {
				c := awsdynamodb.NewFromConfig(sdkConfig(t), func(o *awsdynamodb.Options) { o.BaseEndpoint = aws.String(url) })
				_, err := c.DescribeTable(ctx, &awsdynamodb.DescribeTableInput{TableName: aws.String("secrets")})
				return err
			},
		},
		{
			name: "local-kms", start: StartLocalKMS,
			target: "TrentService.GenerateDataKey", body: `{"KeyId":"alias/billing","KeySpec":"AES_256"}`,
			contentType: "application/x-amz-json-1.1",
			typ:         "AccessDeniedException", messageKey: "message",
			names: "kms:GenerateDataKey on resource: arn:aws:kms:" + Region + ":" + Account + ":alias/billing",
			sdkCall: func(ctx context.Context, url string) error {
				c := awskms.NewFromConfig(sdkConfig(t), func(o *awskms.Options) { o.BaseEndpoint = aws.String(url) })
				_, err := c.ListKeys(ctx, &awskms.ListKeysInput{})
				return err
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := c.start()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			s.Deny(2)
			for i := range 2 {
				req, _ := http.NewRequest("POST", s.URL, strings.NewReader(c.body))
				req.Header.Set("X-Amz-Target", c.target)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				var body map[string]string
				if err := json.Unmarshal(raw, &body); err != nil {
					t.Fatalf("request %d: the body is not a JSON error: %v", i, err)
				}
				if sum := strconv.FormatUint(uint64(crc32.ChecksumIEEE(raw)), 10); c.crc32 && resp.Header.Get("X-Amz-Crc32") != sum {
					t.Errorf("request %d: X-Amz-Crc32 %q, want %s", i, resp.Header.Get("X-Amz-Crc32"), sum)
				}
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != c.contentType {
					t.Errorf("request %d: status %d, Content-Type %q; want 400 and %q", i, resp.StatusCode, resp.Header.Get("Content-Type"), c.contentType)
				}
				if body["__type"] != c.typ || !strings.Contains(body[c.messageKey], "is not authorized to perform: "+c.names) {
					t.Errorf("request %d: %v; want __type %q and a %q naming %q", i, body, c.typ, c.messageKey, c.names)
				}
			}

			// The SDK sees the code AWS sends; the next request gets through.
			s.Deny(1)
			var api smithy.APIError
			if err := c.sdkCall(t.Context(), s.URL); !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" ||
				!strings.Contains(api.ErrorMessage(), "is not authorized to perform") {
				t.Fatalf("SDK call after Deny(1): %v; want AccessDeniedException with its message", err)
			}
			err = c.sdkCall(t.Context(), s.URL)
			if errors.As(err, &api) && api.ErrorCode() == "AccessDeniedException" {
				t.Fatalf("the request after the denied ones was denied too: %v", err)
			}
		})
	}
}

// sdkConfig is an SDK configuration for the local servers: static
// credentials and the test region, nothing of the machine's AWS setup.
func sdkConfig(t *testing.T) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(t.Context(),
		config.WithRegion(Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDLOCALTEST", "local-test-secret", "")),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
