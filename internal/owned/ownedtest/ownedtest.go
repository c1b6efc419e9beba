// Package ownedtest gives the tests of what package owned checks files
// of another user or group, or with an access control list: the ids to
// give them, and the list. It is for tests only: it fails or skips the
// test it is given.
package ownedtest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// OtherUID is a user other than root and the tests' user.
const OtherUID = 1000

// OtherGID is a group that neither root nor the tests' user is in.
const OtherGID = 4242

// RequireRoot skips t unless it runs as root, which alone may give a
// file to another user; in CI, which runs the tests as root, it fails.
func RequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "needs root, to give a file to another user")
	}
}

// skipOutsideCI skips t, saying why, except in CI (CI set), which must
// run every test: there it fails.
func skipOutsideCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal("CI runs the tests as root: " + why)
	}
	t.Skip(why)
}

// InOtherGroup gives p (made by this process) to a group other than
// root's, and returns it: OtherGID as root, else this process's own
// group, which is the file's already; it skips t where that is root's.
func InOtherGroup(t *testing.T, p string) int {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getegid() == 0 {
			skipOutsideCI(t, "this process's group is root's, and it cannot give a file another")
		}
		return os.Getegid()
	}
	if err := os.Chown(p, -1, OtherGID); err != nil {
		t.Fatal(err)
	}
	return OtherGID
}

// LetWrite gives p an access control list that lets uid read and write
// it (and search it, if a directory), as setfacl -m u:UID:rw (rwx) would.
func LetWrite(t *testing.T, p string, uid uint32) { t.Helper(); let(t, p, uid, 6) }

// LetRead gives p an access control list that lets uid read it (and
// search it, if a directory), as setfacl -m u:UID:r (rx) would.
func LetRead(t *testing.T, p string, uid uint32) { t.Helper(); let(t, p, uid, 4) }

// let gives p an access control list that gives uid perm (and search, if
// p is a directory), its owner, group and others keeping their mode bits,
// and the mask (shown as the group bits) letting uid and the group both.
func let(t *testing.T, p string, uid, perm uint32) {
	t.Helper()
	const (
		userObj, user, groupObj, mask, other = 0x01, 0x02, 0x04, 0x10, 0x20
		noID                                 = 0xffffffff
	)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.IsDir() {
		perm |= 1
	}
	m := uint32(fi.Mode().Perm())
	owner, group, others := m>>6&7, m>>3&7, m&7
	acl := []byte{2, 0, 0, 0} // version 2, then (tag, perm, id), little-endian, in the order of tags
	for _, e := range [][3]uint32{{userObj, owner, noID}, {user, perm, uid}, {groupObj, group, noID}, {mask, perm | group, noID}, {other, others, noID}} {
		acl = append(acl, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8), byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	if err := unix.Setxattr(p, "system.posix_acl_access", acl, 0); err != nil {
		t.Fatalf("setting an access control list on %s: %v", p, err)
	}
}
