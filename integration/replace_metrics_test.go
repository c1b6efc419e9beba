package integration

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// --replace --metrics-addr takes the predecessor's metrics address as it
// steps down, and serves any other address at once: one that another
// process holds is refused before the switch, having changed nothing, as
// a plain mount refuses it. (It was accepted, and the log said later that
// "the predecessor's metrics address did not come free".)
func TestReplaceRefusesAMetricsAddressHeldByAnotherProcess(t *testing.T) {
	b, value := replacedSecret(t, "metrics")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldAddr := held.Addr().String()

	t.Run("the predecessor serves no metrics", func(t *testing.T) {
		dir, logPath, old := liveAt(t, b, value)
		_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--metrics-addr", heldAddr, "--log-file", logPath)
		t.Logf("--replace --metrics-addr %s (held by the test): %v, %s", heldAddr, err, strings.TrimSpace(errOut))
		if err == nil {
			t.Errorf("--replace with a metrics address another process holds succeeded: %s", errOut)
		}
		if !strings.Contains(errOut, "--metrics-addr "+heldAddr) || !strings.Contains(errOut, "serves no metrics") || !strings.Contains(errOut, "the live mount goes on serving, unchanged") {
			t.Errorf("--replace said %q; want that the address is taken and not the predecessor's", errOut)
		}
		wantServedBy(t, dir, old.cmd.Process.Pid, "the old process")
		if strings.Contains(old.log(), "stepped down") {
			t.Errorf("the old process stepped down:\n%s", old.log())
		}
	})

	t.Run("the predecessor serves them at another address", func(t *testing.T) {
		own := "127.0.0.1:" + strconv.Itoa(freePort(t))
		dir, logPath, old := liveAt(t, b, value, "--metrics-addr", own)
		_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--metrics-addr", heldAddr, "--log-file", logPath)
		if err == nil || !strings.Contains(errOut, "serves its metrics at "+own) {
			t.Errorf("--replace with a metrics address another process holds: %v, %q; want a refusal naming the predecessor's address", err, errOut)
		}
		wantServedBy(t, dir, old.cmd.Process.Pid, "the old process")
	})

	t.Run("the predecessor's own address is taken over", func(t *testing.T) {
		own := "127.0.0.1:" + strconv.Itoa(freePort(t))
		dir, logPath, _ := liveAt(t, b, value, "--metrics-addr", own)
		_, errOut, err := b.run(nil, "mount", dir, "--replace", "--daemon", "--metrics-addr", own, "--log-format", "json", "--log-file", logPath)
		if err != nil {
			t.Fatalf("--replace at the predecessor's metrics address: %v, %s", err, errOut)
		}
		pid := daemonPID(t, errOut)
		t.Cleanup(func() { stopDaemon(t, pid, dir) })
		eventually(t, 30*time.Second, "the new process serves the metrics address", func() bool {
			log, _ := os.ReadFile(logPath)
			return strings.Contains(string(log), "serving /metrics and /healthz")
		})
		resp, err := http.Get("http://" + own + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz at the taken-over address: %s", resp.Status)
		}
		log, _ := os.ReadFile(logPath)
		if strings.Contains(string(log), "did not come free") {
			t.Errorf("the new process could not take the predecessor's metrics address:\n%s", log)
		}
	})
}
