package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// noAWSCredentials leaves the AWS SDK no credentials to find but the EC2
// instance metadata's (isolateAWS, with metadata), and a region, so that
// the credentials are what is missing. The endpoints refuse connections:
// nothing may reach AWS.
func noAWSCredentials(t *testing.T, metadata bool) {
	t.Helper()
	isolateAWS(t, metadata)
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		unsetenv(t, v)
	}
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1")
}

// instanceWithoutRole is an EC2 instance metadata service that refuses
// IMDSv2 tokens (the SDK then logs that it falls back to IMDSv1) and
// knows no role: a host with no credentials, as some networks answer.
func instanceWithoutRole(t *testing.T) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
}

const noCredentials = "dynamodb: no AWS credentials found (environment, shared config, or instance role): "

func TestNoAWSCredentialsIsOneShortLine(t *testing.T) {
	noAWSCredentials(t, false)
	_, _, err := run(t, nil, "ls", "--backend", "dynamodb", "--timeout", "2s")
	if err == nil {
		t.Fatal("ls --backend dynamodb without credentials succeeded")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, noCredentials) || !strings.Contains(msg, "AWS_EC2_METADATA_DISABLED") {
		t.Errorf("error %q, want it to start %q and say why the instance role was not asked", msg, noCredentials)
	}
	for _, frame := range []string{"operation error", "failed to refresh cached credentials", "\n"} {
		if strings.Contains(msg, frame) {
			t.Errorf("error %q holds the SDK's %q", msg, frame)
		}
	}
}

// The SDK's own log lines go to the log at debug level, never straight to
// standard error: the process's whole standard error is the one line of
// the error.
func TestTheAWSSDKWritesNothingToStandardError(t *testing.T) {
	noAWSCredentials(t, true)
	instanceWithoutRole(t)
	_, stderr, status := runMain(t, nil, "ls", "--backend", "dynamodb", "--timeout", "2s")
	lines := strings.Split(strings.TrimSuffix(string(stderr), "\n"), "\n")
	if status != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "secretfs: "+noCredentials) {
		t.Errorf("exit status %d, standard error:\n%s\nwant status 1 and only the line %q...", status, stderr, "secretfs: "+noCredentials)
	}

	_, debug, _ := run(t, nil, "ls", "--backend", "dynamodb", "--timeout", "2s", "--log-level", "debug")
	if !strings.Contains(debug, "falling back to IMDSv1") || !strings.Contains(debug, "from=aws-sdk") {
		t.Errorf("the log at --log-level debug:\n%s\nwant the SDK's line about IMDSv1 in it", debug)
	}
}
