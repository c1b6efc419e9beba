package testserver

import (
	"net/http"
	"strings"
	"testing"
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
			s.ResetCalls()
			if got := s.Calls("SomeOperation"); got != 0 {
				t.Errorf("after ResetCalls: %d", got)
			}
		})
	}
}
