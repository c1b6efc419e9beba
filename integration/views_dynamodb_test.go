package integration

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secretfs/secretfs/internal/testserver"
)

// Views over DynamoDB follow the stale-if-error rule of their inputs:
// while the store cannot answer, their last rendering is served for
// --stale-if-error past the TTL, and they are EIO after it.

// viewPaths are the views of viewsConfig: a field view, a template view,
// an application's view as JSON, and a field view in an application that
// holds only views.
var viewPaths = []string{"billing/db-user", "billing/app.env", "billing/all.json", "reports/billing-user"}

// viewsTTL is the TTL of the mounts of the views over DynamoDB.
const viewsTTL = 2 * time.Second

// readViews reads every view of viewPaths with cat, one at a time, and
// returns what each read, failing the test if one cannot be read.
func readViews(t *testing.T, m *mounted) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, p := range viewPaths {
		got[p] = m.mustSh("cat " + p)
	}
	return got
}

// viewsRead reports whether every view of viewPaths reads what want
// gives it.
func viewsRead(m *mounted, want map[string]string) bool {
	for _, p := range viewPaths {
		got, err := os.ReadFile(m.path(p))
		if err != nil || string(got) != want[p] {
			return false
		}
	}
	return true
}

// Views keep serving their last rendering while DynamoDB is frozen
// (SIGSTOP: no answer) or while KMS is frozen with a newer revision of
// an input listed, past the TTL and within --stale-if-error: every view
// reads the bytes it read before, never EIO, and the log says, once per
// input, that the mount serves the last known value. Once the store is
// back, a change of the inputs is seen in every view within --ttl + 1 s.
func TestViewsServeTheirLastRenderingWhileTheStoreIsFrozenAndChangeOnceItThaws(t *testing.T) {
	for _, frozen := range []string{"dynamodb", "kms"} {
		t.Run(frozen, func(t *testing.T) {
			var b *backend
			var server *testserver.Server
			if frozen == "dynamodb" {
				b, server = ownDynamo(t, false, "--timeout", "1s")
			} else {
				var alias string
				server, alias = ownKMS(t)
				table := fmt.Sprintf("viewkms-%d-%d", os.Getpid(), tables.Add(1))
				b = &backend{name: "dynamodb", table: table, alias: alias,
					env:   append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+dynalite.URL, "AWS_ENDPOINT_URL_KMS="+server.URL),
					flags: []string{"--backend", "dynamodb", "--table", table, "--kms-key", alias, "--timeout", "1s"}}
				b.cli(t, nil, "init")
			}
			password := unique("pw")
			token := putViewInputs(t, b, password)
			m := mount(t, b, "--ttl", viewsTTL.String(), "--stale-if-error", "1h", "--read-only",
				"--config", writeConfig(t, viewsConfig))
			m.secret(password)
			m.secret(token)
			before := readViews(t, m)
			if frozen == "kms" {
				// A newer revision of every input, which the mount lists
				// and cannot decrypt while KMS is frozen.
				password = m.secret(unique("pw"))
				b.cli(t, []byte(`{"username": "billing-svc", "password": "`+password+`"}`), "put", "billing/db-credentials")
				token = m.secret(unique("tok"))
				b.cli(t, []byte(token), "put", "billing/api-token")
			}

			server.Freeze()
			t.Cleanup(server.Thaw) // before the mount's cleanup, should the test stop here
			time.Sleep(viewsTTL + 500*time.Millisecond)
			for i := range 3 {
				for p, got := range readViews(t, m) {
					if got != before[p] {
						t.Errorf("read %d of %s with %s frozen: %q, want its last rendering %q", i, p, frozen, got, before[p])
					}
				}
			}
			for _, input := range []string{"billing/db-credentials", "billing/api-token"} {
				warnings := regexp.MustCompile(`"msg":"the store cannot answer: serving the last known value","secret":"`+input+`"`).FindAllString(m.log(), -1)
				if len(warnings) != 1 {
					t.Errorf("%d warnings that %s is served stale, want 1 per input per outage", len(warnings), input)
				}
			}
			if strings.Contains(m.log(), `"level":"error"`) {
				t.Errorf("an error was logged while every view was within the stale window:\n%s", m.log())
			}

			server.Thaw()
			user := unique("user")
			password = m.secret(unique("pw"))
			token = m.secret(unique("tok"))
			b.cli(t, []byte(`{"username": "`+user+`", "password": "`+password+`"}`), "put", "billing/db-credentials")
			b.cli(t, []byte(token), "put", "billing/api-token")
			after := map[string]string{
				"billing/db-user":      user,
				"billing/app.env":      "DB_USER=" + user + "\nDB_PASSWORD=\"" + password + "\"\nAPI_TOKEN=\"" + token + "\"\n",
				"billing/all.json":     "{\n  \"API_TOKEN\": \"" + token + "\",\n  \"DB_CREDENTIALS\": " + jsonString(`{"username": "`+user+`", "password": "`+password+`"}`) + "\n}\n",
				"reports/billing-user": user,
			}
			eventually(t, viewsTTL+time.Second, "every view shows the inputs changed once the store is back", func() bool {
				return viewsRead(m, after)
			})
		})
	}
}

// Past the stale window, with DynamoDB still frozen, a view whose inputs
// can no longer be served is EIO, with one error-level line naming the
// view for each lookup of it that failed (the kernel sends two for a
// cat of a name it holds: its revalidation, then a lookup afresh), and
// no value in the log (the harness checks it at cleanup). Once the store
// is back, the views read again.
func TestAViewPastTheStaleWindowIsEIOWithALogLineNamingItPerFailedLookup(t *testing.T) {
	b, own := ownDynamo(t, false, "--timeout", "1s")
	password := unique("pw")
	token := putViewInputs(t, b, password)
	const staleIfError = 2 * time.Second
	addr := metricsAddr(t)
	m := mount(t, b, "--ttl", viewsTTL.String(), "--stale-if-error", staleIfError.String(), "--read-only",
		"--metrics-addr", addr, "--config", writeConfig(t, viewsConfig))
	m.secret(password)
	m.secret(token)
	before := readViews(t, m)

	own.Freeze()
	t.Cleanup(own.Thaw) // before the mount's cleanup, should the test stop here
	time.Sleep(viewsTTL + staleIfError + time.Second)
	failedLookups := func() int {
		_, families := scrapeMetrics(t, addr)
		n, _ := sampleSum(families, "secretfs_fuse_requests_total", map[string]string{"op": "LOOKUP", "errno": "EIO"})
		return int(n)
	}
	for _, p := range viewPaths {
		failed := failedLookups()
		if out, errOut, err := m.sh("cat " + p); err == nil || !strings.Contains(errOut, p+": Input/output error") {
			t.Errorf("past the stale window, cat %s: %q, %v, %q; want EIO", p, out, err, errOut)
		}
		failed = failedLookups() - failed
		logged := strings.Count(m.log(), `"level":"error","msg":"`+p+`: the view cannot be rendered: `)
		if failed == 0 || logged != failed {
			t.Errorf("cat %s: %d lookups failed with EIO, and %d error lines name the view; want one per failed lookup", p, failed, logged)
		}
	}

	own.Thaw()
	eventually(t, 10*time.Second, "the views read again once the store is back", func() bool {
		return viewsRead(m, before)
	})
}
