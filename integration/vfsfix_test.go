package integration

import (
	"strings"
	"testing"
)

// With --apps on a read-write mount, an application the list leaves out
// cannot be reached by making it: mkdir of one the store holds, or of a
// new one, is EPERM, as are a file of that name at the root and renaming
// an application onto it; nothing of it is ever listed or read, and the
// store is left as it was.
func TestAppsRefusesEveryChangeAtTheRootOfAnApplicationItLeavesOut(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	b.cli(t, []byte("billing's"), "put", "billing/secret")
	auth := unique("auth")
	b.cli(t, []byte(auth), "put", "auth/secret")
	m := mount(t, b, "--apps", "billing")
	m.secret(auth)

	// In the order of the trial that found mkdir let auth in.
	for _, c := range []struct{ script, want string }{
		{"cat auth/secret", "No such file"},
		{"mkdir auth", "Operation not permitted"},
		{"ls -l auth", "No such file"},
		{"cat auth/secret", "No such file"},
		{"mkdir newapp", "Operation not permitted"},
		{"printf x > newapp/s", "nonexistent"},
		{"touch auth", "Operation not permitted"},
		{"mv billing auth", "Operation not permitted"},
		{"mv billing/secret auth/secret", "No such file"},
		{"mkdir billing", "File exists"},
	} {
		m.failSh(c.script, c.want)
	}
	if got := m.mustSh("ls -a; cat billing/secret"); got != ".\n..\nbilling\nbilling's" {
		t.Errorf("the mount shows %q", got)
	}
	if got := b.cli(t, nil, "get", "auth/secret"); got != auth {
		t.Errorf("the store holds %q at auth/secret", got)
	}
	if got := b.cli(t, nil, "ls"); strings.Contains(got, "newapp") {
		t.Errorf("the store holds newapp: %q", got)
	}
	if log := m.log(); strings.Contains(log, "application created") {
		t.Errorf("the mount created an application:\n%s", log)
	}
}
