package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// isolateAWS makes the AWS SDK see no region, no profile and no shared
// files from the machine running the test. With metadata false the EC2
// instance metadata service is disabled too, as it is off EC2 in effect.
func isolateAWS(t *testing.T, metadata bool) {
	t.Helper()
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_DEFAULTS_MODE", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"} {
		unsetenv(t, v)
	}
	dir := t.TempDir()
	for _, v := range []string{"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		empty := filepath.Join(dir, strings.ToLower(v))
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(v, empty)
	}
	if metadata {
		unsetenv(t, "AWS_EC2_METADATA_DISABLED")
	} else {
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	}
}

// unsetenv removes v for the test; t.Setenv restores it afterwards.
func unsetenv(t *testing.T, v string) {
	t.Helper()
	t.Setenv(v, "")
	os.Unsetenv(v)
}

func TestNoRegionAnywhereSaysPassRegionAndWhyMetadataFailed(t *testing.T) {
	isolateAWS(t, false)
	_, _, err := run(t, nil, "ls", "--backend", "dynamodb")
	if err == nil {
		t.Fatal("ls --backend dynamodb without any region succeeded")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "no AWS region: pass --region or set AWS_REGION (") {
		t.Errorf("error %q does not start with the advice to pass --region", msg)
	}
	if !strings.Contains(msg, "ec2imds") || !strings.Contains(msg, "AWS_EC2_METADATA_DISABLED") {
		t.Errorf("error %q does not say why the instance metadata gave no region", msg)
	}
}

func TestRegionFromAWS_REGION(t *testing.T) {
	isolateAWS(t, false)
	t.Setenv("AWS_REGION", "eu-west-3")
	c := &config{timeout: 5 * time.Second}
	cfg, err := c.awsConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-3" {
		t.Errorf("region %q, want AWS_REGION's eu-west-3", cfg.Region)
	}
}

func TestRegionFlagWinsOverAWS_REGION(t *testing.T) {
	isolateAWS(t, false)
	t.Setenv("AWS_REGION", "eu-west-3")
	c := &config{region: "ap-south-1", timeout: 5 * time.Second}
	cfg, err := c.awsConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "ap-south-1" {
		t.Errorf("region %q, want --region's ap-south-1", cfg.Region)
	}
}

// fakeIMDS serves the two requests the SDK makes for the region: a session
// token (IMDSv2), then the instance identity document, which names it. With hang, the region request
// never answers.
func fakeIMDS(t *testing.T, region string, hang bool) {
	t.Helper()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			w.Write([]byte("token"))
		case r.URL.Path == "/latest/dynamic/instance-identity/document" && r.Header.Get("X-Aws-Ec2-Metadata-Token") == "token":
			if hang {
				select {
				case <-stop:
				case <-r.Context().Done():
				}
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"region": %q, "instanceId": "i-0123456789abcdef0"}`, region)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
}

func TestRegionFromInstanceMetadataWhenNothingElseNamesOne(t *testing.T) {
	isolateAWS(t, true)
	fakeIMDS(t, "sa-east-1", false)
	c := &config{timeout: 5 * time.Second}
	cfg, err := c.awsConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "sa-east-1" {
		t.Errorf("region %q, want the instance metadata's sa-east-1", cfg.Region)
	}
}

// A metadata service that never answers is given up on after the IMDS
// bound, however long --timeout allows: this bounds a hang, it does not
// measure speed.
func TestInstanceMetadataThatHangsGivesNoRegionWithinTheIMDSBound(t *testing.T) {
	isolateAWS(t, true)
	fakeIMDS(t, "", true)
	c := &config{timeout: 30 * time.Second}
	start := time.Now()
	done := make(chan error, 1)
	go func() { _, err := c.awsConfig(context.Background()); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.HasPrefix(err.Error(), "no AWS region: pass --region") || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Errorf("error %v, want the advice to pass --region, after the deadline", err)
		}
		if elapsed := time.Since(start); elapsed >= imdsRegionTimeout+time.Second {
			t.Errorf("gave up on a metadata service that does not answer after %v; want about %v (--timeout %v)",
				elapsed, imdsRegionTimeout, c.timeout)
		}
	case <-time.After(c.timeout):
		t.Fatal("asking a metadata service that does not answer did not end before --timeout")
	}
}
