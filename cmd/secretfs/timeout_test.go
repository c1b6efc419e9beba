package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/fault"
)

// A verb whose backend gives no answer within --timeout says what it was
// about and which flag bounds the wait, whichever call ran out of time
// (opening the store, or the verb's own). A deadline of 1ns has always
// passed by the first call.
func TestATimedOutVerbNamesWhatItWasAboutAndTheTimeout(t *testing.T) {
	dataDir := newStore(t)
	mnt := t.TempDir() // the mount's first backend call times out before anything is mounted
	if _, stderr, err := run(t, strings.NewReader("v"), append([]string{"put", "billing/db"}, dataDir...)...); err != nil {
		t.Fatalf("put: %v\n%s", err, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "billing/db"}, "get billing/db: no answer within --timeout 1ns from the local store"},
		{[]string{"put", "billing/db"}, "put billing/db: no answer within --timeout 1ns from the local store"},
		{[]string{"rm", "billing/db"}, "rm billing/db: no answer within --timeout 1ns from the local store"},
		{[]string{"ls", "billing"}, "ls billing: no answer within --timeout 1ns from the local store"},
		{[]string{"ls"}, "ls: no answer within --timeout 1ns from the local store"},
		{[]string{"env", "billing", "web"}, "env billing web: no answer within --timeout 1ns from the local store"},
		{[]string{"migrate", "billing"}, "migrate billing: no answer within --timeout 1ns from the local store"},
		{[]string{"init"}, "init: no answer within --timeout 1ns from the local store"},
		{[]string{"mount", mnt}, "mount " + mnt + ": no answer within --timeout 1ns from the local store"},
	} {
		args := append(append([]string{"--timeout", "1ns"}, tc.args...), dataDir...)
		_, _, err := run(t, strings.NewReader("new"), args...)
		if err == nil || fault.Message(err) != tc.want {
			t.Errorf("secretfs %s: error %v, want %q", strings.Join(args, " "), err, tc.want)
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) || !fault.Is(fault.Unavailable, err) {
			t.Errorf("secretfs %s: error %v lost its cause: errors.Is(DeadlineExceeded) %v, kind %v",
				strings.Join(args, " "), err, errors.Is(err, context.DeadlineExceeded), fault.KindOf(err))
		}
	}
	// Nothing was changed or removed by the verbs that timed out.
	stdout, _, err := run(t, nil, append([]string{"get", "billing/db"}, dataDir...)...)
	if err != nil || stdout != "v" {
		t.Errorf("get after the timeouts: %q, %v; want the value put first", stdout, err)
	}
}

// Only the deadline is reworded: other errors, and a name that ls would
// quote, are said as before.
func TestTimedOutLeavesOtherErrorsAndQuotesNames(t *testing.T) {
	c := &config{timeout: 3e9}
	cmd := newGetCommand(c)
	other := errors.New("refused")
	if got := c.timedOut(other, cmd, "a/b"); got != other {
		t.Errorf("timedOut(%v) = %v, want it unchanged", other, got)
	}
	err := c.timedOut(fault.E(fault.Unavailable, context.DeadlineExceeded), cmd, "a\x1b/b")
	if want := `get 'a'$'\033''/b': no answer within --timeout 3s`; err.Error() != want {
		t.Errorf("timedOut of a name with an escape: %q, want %q", err, want)
	}
}
