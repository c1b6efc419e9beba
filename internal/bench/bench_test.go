package main

import (
	"maps"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/internal/testserver"
)

// The peer really runs against dynalite and local-kms as the bench starts
// them: it stores a secret and reads it back, and each getSecret costs
// what credstash's design says, one Query (the latest version) and one
// KMS Decrypt, counted by the proxies. Counts only: times are the bench's.
func TestPeerReadsFromTheTestServers(t *testing.T) {
	srv, err := startServers()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	root, err := testserver.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	alias, err := srv.newKey(t.Context(), "peer-test")
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--table", "credential-store-test", "--name", "peer-test", "--size", "1024"}
	var setup map[string]any
	if err := srv.runPeer(t.Context(), root, &setup, append([]string{"setup", "--kms-key", alias}, common...)...); err != nil {
		t.Fatal(err)
	}
	if got := srv.kms.Calls("GenerateDataKey"); got != 1 {
		t.Errorf("setup made %d GenerateDataKey calls, want 1", got)
	}
	if got := srv.dynamo.Calls("PutItem"); got != 1 {
		t.Errorf("setup made %d PutItem calls, want 1", got)
	}

	srv.dynamo.ResetCalls()
	srv.kms.ResetCalls()
	var run peerRun
	if err := srv.runPeer(t.Context(), root, &run, append([]string{"get", "--n", "3", "--warmup", "1"}, common...)...); err != nil {
		t.Fatal(err)
	}
	if run.Calls != 4 || run.N != 3 || len(run.SamplesNS) != 3 {
		t.Errorf("peer.js get printed calls %d, n %d, %d samples; want 4, 3, 3", run.Calls, run.N, len(run.SamplesNS))
	}
	if got := srv.dynamo.Counts(); !maps.Equal(got, map[string]int64{"Query": 4}) {
		t.Errorf("4 getSecret calls made these DynamoDB calls: %v; want 4 Query", got)
	}
	if got := srv.kms.Counts(); !maps.Equal(got, map[string]int64{"Decrypt": 4}) {
		t.Errorf("4 getSecret calls made these KMS calls: %v; want 4 Decrypt", got)
	}
}

// Daemon requests are read from the Prometheus text the mount serves:
// the counter's samples summed by op (whatever their errno), nothing of
// other metrics, even those whose names begin the same.
func TestParseRequests(t *testing.T) {
	text := `# HELP secretfs_fuse_requests_total Requests from the kernel, by operation.
# TYPE secretfs_fuse_requests_total counter
secretfs_fuse_requests_total{errno="OK",op="LOOKUP"} 12
secretfs_fuse_requests_total{errno="ENOENT",op="LOOKUP"} 1
secretfs_fuse_requests_total{errno="OK",op="READ"} 3e+00
secretfs_fuse_requests_total_created{errno="OK",op="LOOKUP"} 1.7e+09
secretfs_fuse_request_duration_seconds_count{op="LOOKUP"} 13
secretfs_other_total 99
secretfs_fuse_requests_total{errno="OK",op="OPEN"} 5 1700000000000
`
	got, err := parseRequests(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]float64{"LOOKUP": 13, "READ": 3, "OPEN": 5}; !maps.Equal(got, want) {
		t.Errorf("parseRequests = %v, want %v", got, want)
	}
	if _, err := parseRequests(strings.NewReader("secretfs_other_total 1\n")); err == nil {
		t.Error("metrics without the counter parsed without an error")
	}
}

// Costs per operation: differences of two snapshots, divided by the
// operations made, written as a reader reads them.
func TestCounts(t *testing.T) {
	before := counts{"GetItem": 10, "Query": 2}
	after := counts{"GetItem": 30, "Query": 2, "Decrypt": 20}
	per := after.minus(before).per(20)
	if want := (counts{"GetItem": 1, "Decrypt": 1}); !maps.Equal(per, want) {
		t.Errorf("per operation: %v, want %v", per, want)
	}
	if got, want := per.String(), "1 Decrypt + 1 GetItem"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (counts{}).String(); got != "0" {
		t.Errorf("no calls: %q, want 0", got)
	}
	for v, want := range map[float64]string{2400000: "2,400,000", 0.25: "0.25", 66.6: "66.6", 1797.4: "1,797", 1.0 / 750: "0.0013"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}
