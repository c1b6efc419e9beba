package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/secretfs/secretfs/internal/testserver"
)

// servers are dynalite and local-kms, each behind its counting proxy.
type servers struct {
	dynamo, kms *testserver.Server
}

// startServers starts both; close stops them.
func startServers() (*servers, error) {
	dynamo, err := testserver.StartDynalite()
	if err != nil {
		return nil, err
	}
	kms, err := testserver.StartLocalKMS()
	if err != nil {
		dynamo.Close()
		return nil, err
	}
	return &servers{dynamo: dynamo, kms: kms}, nil
}

func (s *servers) close() {
	s.kms.Close()
	s.dynamo.Close()
}

// env is what a client of the servers needs: credentials, region and the
// endpoints, in the AWS SDK's variables.
func (s *servers) env() []string {
	return append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+s.dynamo.URL, "AWS_ENDPOINT_URL_KMS="+s.kms.URL)
}

// newKey creates a KMS key with the alias alias/name and returns the alias.
func (s *servers) newKey(ctx context.Context, name string) (string, error) {
	c := awskms.New(awskms.Options{
		Region:       testserver.Region,
		BaseEndpoint: aws.String(s.kms.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDLOCALTEST", "local-test-secret", ""),
	})
	key, err := c.CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("create a KMS key: %w", err)
	}
	alias := "alias/" + name
	if _, err := c.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: key.KeyMetadata.KeyId}); err != nil {
		return "", fmt.Errorf("create the KMS alias %s: %w", alias, err)
	}
	return alias, nil
}

// peerRun is what `peer.js get` prints.
type peerRun struct {
	Calls     int       `json:"calls"` // getSecret calls made, untimed ones included
	N         int       `json:"n"`
	SamplesNS []float64 `json:"samples_ns"`
}

// runPeer runs internal/bench/peer/peer.js (nodecredstash) against the
// servers and decodes the JSON it prints into out.
func (s *servers) runPeer(ctx context.Context, root string, out any, args ...string) error {
	script := filepath.Join(root, "internal", "bench", "peer", "peer.js")
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "nodecredstash")); err != nil {
		return fmt.Errorf("nodecredstash is not installed (%v): run scripts/install-test-deps", err)
	}
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), s.env()...)
	var stderr []byte
	stdout, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	if err != nil {
		return fmt.Errorf("node peer.js %v: %w\n%s", args, err, stderr)
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		return fmt.Errorf("node peer.js %v printed %q: %w", args, stdout, err)
	}
	return nil
}
