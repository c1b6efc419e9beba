package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Owner, group and modes are exactly the mount options, for every file
// and directory, and the kernel enforces them: the owner reads, a user who
// is neither owner nor in the group is refused, chown and chmod to other
// values are refused.
func TestOwnerAndModesComeFromTheMountOptions(t *testing.T) {
	requireRoot(t)
	b := localBackend(t)
	value := unique("owner")
	b.cli(t, nil, "init")
	b.cli(t, []byte(value), "put", "app/s")
	m := mountAt(t, b, traversableDir(t), "--uid", "65534", "--gid", "65533", "--file-mode", "0440", "--dir-mode", "0550", "--allow-other")
	m.secret(value)
	for path, want := range map[string]string{".": "550 65534 65533", "app": "550 65534 65533", "app/s": "440 65534 65533"} {
		if got := strings.TrimSpace(m.mustSh("stat -c '%a %u %g' " + path)); got != want {
			t.Errorf("stat %s shows %q, want %q", path, got, want)
		}
	}
	const (
		asOwner    = "setpriv --reuid=65534 --regid=65534 --clear-groups "
		asGroup    = "setpriv --reuid=65532 --regid=65533 --clear-groups "
		asStranger = "setpriv --reuid=65532 --regid=65532 --clear-groups "
	)
	for who, as := range map[string]string{"the owner": asOwner, "the group": asGroup} {
		if got := m.mustSh(as + "cat app/s"); got != value {
			t.Errorf("%s reads %q, want the value", who, got)
		}
	}
	m.failSh(asStranger+"ls app", "Permission denied")
	m.failSh(asOwner+"sh -c 'echo x > app/s'", "Permission denied") // 0440: nobody may write
	m.failSh("chown 0 app/s", "Operation not permitted")
	m.failSh("chmod 0644 app/s", "Operation not permitted")
	if got := b.cli(t, nil, "get", "app/s"); got != value {
		t.Errorf("after the refused changes the secret is %q", got)
	}
}

// A secret's mtime is the time of its last write: reads leave it alone,
// a rewrite moves it.
func TestMtimeIsTheTimeOfTheLastWrite(t *testing.T) {
	m := mount(t, localBackend(t))
	mtime := func() int64 {
		t.Helper()
		v, err := strconv.ParseInt(strings.TrimSpace(m.mustSh("stat -c %Y app/s")), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := time.Now().Unix()
	m.mustSh("mkdir app && echo one > app/s")
	after := time.Now().Unix()
	written := mtime()
	if written < before || written > after {
		t.Fatalf("mtime %d after a write between %d and %d", written, before, after)
	}
	time.Sleep(1100 * time.Millisecond) // mtime has one-second resolution in stat(1)
	m.mustSh("cat app/s >/dev/null")
	if got := mtime(); got != written {
		t.Errorf("a read moved mtime from %d to %d", written, got)
	}
	m.mustSh("echo two > app/s")
	if got := mtime(); got <= written {
		t.Errorf("a rewrite left mtime at %d (was %d)", got, written)
	}
}

// statfs reports the name limit and room to write, so that tools which
// check for free space (df, installers) do not take the mount for full.
func TestStatfsReportsTheNameLimitAndRoom(t *testing.T) {
	m := mount(t, localBackend(t))
	fields := strings.Fields(m.mustSh("stat -f -c '%l %a %b %d' ."))
	if len(fields) != 4 {
		t.Fatalf("stat -f printed %q", fields)
	}
	if fields[0] != "255" {
		t.Errorf("the name limit is %s, want 255", fields[0])
	}
	for what, v := range map[string]string{"available blocks": fields[1], "blocks": fields[2], "free inodes": fields[3]} {
		if n, err := strconv.ParseUint(v, 10, 64); err != nil || n == 0 {
			t.Errorf("statfs reports %s %q; want room", what, v)
		}
	}
	m.mustSh("df . >/dev/null")
}

// A change made elsewhere (here by `secretfs put`, as another host would)
// shows in stat within one TTL, and the size stat shows is the size of the
// value a read then gets: a program that reads st_size bytes reads a
// whole value. The kernel keeps attributes for as long as it is told;
// told a whole TTL for an answer the mount's cache had held for most of a
// TTL already, it would show the old size for up to twice the TTL.
func TestAChangeElsewhereShowsInStatWithinTheTTL(t *testing.T) {
	const ttl = 3 * time.Second
	b := localBackend(t)
	old, fresh := unique("short"), unique("a-much-longer-value-than-before")
	b.cli(t, nil, "init")
	// app/a lists first, so that the one-name listing by which a lookup
	// of app/ checks that the application exists never covers app/z.
	b.cli(t, []byte("a"), "put", "app/a")
	b.cli(t, []byte(old), "put", "app/z")
	m := mount(t, b, "--ttl", ttl.String())
	m.secret(old)
	m.secret(fresh)
	size := func() int {
		t.Helper()
		n, err := strconv.Atoi(strings.TrimSpace(m.mustSh("stat -c %s app/z")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	start := time.Now()
	m.mustSh("ls -l app >/dev/null") // the kernel learns the attributes from the listing
	time.Sleep(ttl / 2)
	if got := m.mustSh("cat app/z"); got != old { // the mount's cache holds the old value from now on
		t.Fatalf("cat: %q", got)
	}
	b.cli(t, []byte(fresh), "put", "app/z")
	put := time.Now()
	// The listing's attributes run out and the kernel asks again, while
	// the mount's cache still holds the old value. (Only stat from here
	// on: a read would make the kernel ask again at the next stat.)
	time.Sleep(time.Until(start.Add(ttl + ttl/6)))
	if n := size(); n != len(old) && n != len(fresh) {
		t.Fatalf("stat shows size %d, neither value's", n)
	}
	time.Sleep(time.Until(put.Add(ttl + ttl/6)))
	if n := size(); n != len(fresh) {
		t.Errorf("one TTL after the change, stat shows size %d, want the new value's %d", n, len(fresh))
	}
	// head reads exactly st_size bytes, as a program that trusts fstat.
	if got := m.mustSh(`head -c "$(stat -c %s app/z)" app/z`); got != fresh {
		t.Errorf("one TTL after the change, reading st_size bytes gives %d bytes, not the new value", len(got))
	}
}
