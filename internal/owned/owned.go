// Package owned checks a file whose content decides who may read which
// secret (a mount's configuration file, an RSA key) before it is
// trusted: Check refuses one that someone other than root or this
// process's user could have written or put in its place, and
// CheckPrivate, for a file that is a secret itself (a private key), also
// one that anyone else may read. It only looks: it reads no content, and
// changes, creates and removes nothing.
//
// A refusal says who could (user N, members of group N, every user, the
// users and groups an access control list names), how (owning the file,
// writing or reading it, a directory or a symbolic link on the way), why
// that matters (the caller's reason, such as "it says who may read which
// secret") and the fix, and nothing of what the file holds. It does not
// name the file itself: its caller does, once.
package owned

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Check says who other than root and this process's user could have
// written f, which was opened from path, or put another file in its
// place, or returns nil if nobody could: one every user may write, one
// another user owns, one a group other than root's may write, or one in a
// directory that another user owns, or that every user or a group other
// than root's may write without the sticky bit, on the way the kernel
// walks from / to path (symbolic links included). why says what the file
// decides, for the refusal ("it says who may read which secret").
//
// The file is the one opened (f), not whatever path names by now; the
// directories are those path leads through now. An error of stat(2) or
// readlink(2) is returned as it is (an *fs.PathError).
func Check(f *os.File, path, why string) error { return check(f, path, why, false) }

// CheckPrivate is Check for a file that is a secret itself (a private
// key): it also says who other than root and this process's user may
// read f, or returns nil if nobody may: every user, the members of its
// group, whatever the group (as ssh refuses an "unprotected private key
// file"), or the users and groups its access control list names.
func CheckPrivate(f *os.File, path, why string) error { return check(f, path, why, true) }

func check(f *os.File, path, why string, private bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := othersMayWrite(f, fi, why); err != nil {
		return err
	}
	if private {
		if err := othersMayRead(f, fi, why); err != nil {
			return err
		}
	}
	return othersMayReplace(path, why)
}

// othersMayRead says who other than root and this process's user may
// read f, which fi describes, or nil if nobody may (see CheckPrivate).
// It does not ask who owns f: othersMayWrite refused another owner.
func othersMayRead(f *os.File, fi fs.FileInfo, why string) error {
	perm := fi.Mode().Perm()
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case perm&0o004 != 0:
		return fmt.Errorf("every user may read it (mode %#o), and %s: chmod go-r it", perm, why)
	case !ok || perm&0o040 == 0:
		return nil
	case fhasACL(f):
		return fmt.Errorf("the users and groups its access control list names (getfacl) may read it (mode %#o), and %s: chmod g-r it", perm, why)
	}
	return fmt.Errorf("members of group %d may read it (mode %#o), and %s: chmod g-r it", st.Gid, perm, why)
}

// othersMayWrite says who other than root and this process's user may
// write f, which fi describes, or nil if nobody may: every user, its
// owner, or those its group bits let write it (see groupWriters).
func othersMayWrite(f *os.File, fi fs.FileInfo, why string) error {
	perm := fi.Mode().Perm()
	if perm&0o002 != 0 {
		return fmt.Errorf("every user may write it (mode %#o), and %s: chmod o-w it", perm, why)
	}
	if who := anotherOwner(fi); who != "" {
		return fmt.Errorf("%s owns it, and %s: only root or the mount's user may", who, why)
	}
	if who := groupWriters(fi, fhasACL(f), "its"); who != "" {
		return fmt.Errorf("%s may write it (mode %#o), and %s: chmod g-w it", who, perm, why)
	}
	return nil
}

// othersMayReplace says who other than root and this process's user may
// put another file in file's place, or nil if nobody may: anyone who may
// rename or remove an entry of a directory on the way the kernel walks
// from / to file (each directory above the file it opens, and each
// directory holding a symbolic link met on the way, and each above
// those), or who owns such a link in a sticky directory.
func othersMayReplace(file, why string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	links, real, err := walk(abs)
	if err != nil {
		return err
	}
	var dirs []string
	for _, l := range links {
		dirs = append(dirs, l.dir)
	}
	for _, p := range append(dirs, filepath.Dir(real)) {
		if err := Dir(p, why); err != nil {
			return err
		}
	}
	for _, l := range links {
		if err := linkReplacer(l, why); err != nil {
			return err
		}
	}
	return nil
}

// Dir says who other than root and this process's user could rename or
// remove another's entry of dir or of a directory above it, and so put a
// file of theirs in the place of one made in dir, or nil if nobody
// could (see replacers); why says what such a file is, for the refusal.
// dir holds no symbolic link on the way.
func Dir(dir, why string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if err := replacers(d, fi, why); err != nil {
			return err
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// replacers says who other than root and this process's user may rename
// or remove another's entry of the directory dir, which fi describes, or
// nil if nobody may: its owner, and, unless it is sticky (where only an
// entry's owner or the directory's may), every user or those its group
// bits let write it (see groupWriters) if they may write it.
func replacers(dir string, fi fs.FileInfo, why string) error {
	if who := anotherOwner(fi); who != "" {
		return fmt.Errorf("%s may replace it (%s owns %s), and %s: move the file to a directory root or the mount's user owns", who, who, dir, why)
	}
	m := fi.Mode()
	if m&os.ModeSticky != 0 {
		return nil
	}
	if m.Perm()&0o002 != 0 {
		return fmt.Errorf("every user may replace it (%s may be written by every user and is not sticky), and %s: chmod o-w or +t %s, or move the file", dir, why, dir)
	}
	if who := groupWriters(fi, hasACL(dir), dir+"'s"); who != "" {
		return fmt.Errorf("%s may replace it (they may write %s, which is not sticky), and %s: chmod g-w or +t %s, or move the file", who, dir, why, dir)
	}
	return nil
}

// linkReplacer says who other than root and this process's user may
// replace the symbolic link l, whose directory replacers found nobody
// else may write without the sticky bit, or nil if nobody may: its
// owner, if another user's, where the directory is sticky (as /tmp is),
// who may remove it and make another that leads elsewhere.
func linkReplacer(l link, why string) error {
	who := anotherOwner(l.info)
	if who == "" {
		return nil
	}
	fi, err := os.Stat(l.dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSticky == 0 {
		return nil
	}
	path := filepath.Join(l.dir, l.info.Name())
	return fmt.Errorf("%s may replace it (%s owns the symbolic link %s on the way to it, in sticky %s), and %s: name the file the link leads to", who, who, path, l.dir, why)
}

// anotherOwner is "user N" if a user other than root and this process's
// user owns what fi describes, else "".
func anotherOwner(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return "user " + strconv.FormatUint(uint64(st.Uid), 10)
	}
	return ""
}

// groupWriters says who other than root and this process's user may
// write what fi describes through its group bits, or "" if nobody may:
// where it has an access control list (acl), whose mask the group bits
// then are, the users and groups the list names (whose is whose list it
// is, for the message); else the members of its group, unless that is
// root's (gid 0), which holds root alone by convention (the process's own
// group is not excepted: other users may be in it).
func groupWriters(fi fs.FileInfo, acl bool, whose string) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok || fi.Mode().Perm()&0o020 == 0:
		return ""
	case acl:
		return "the users and groups " + whose + " access control list names (getfacl)"
	case st.Gid != 0:
		return "members of group " + strconv.FormatUint(uint64(st.Gid), 10)
	}
	return ""
}

// aclName is the extended attribute that holds a file's POSIX access
// control list, if it has one beyond its mode bits.
const aclName = "system.posix_acl_access"

// hasACL says whether path has an access control list; an error (one
// the file system has no lists on, ENOTSUP, among them) says it has none.
func hasACL(path string) bool {
	_, err := unix.Getxattr(path, aclName, nil)
	return err == nil
}

// fhasACL is hasACL of an open file.
func fhasACL(f *os.File) bool {
	_, err := unix.Fgetxattr(int(f.Fd()), aclName, nil)
	return err == nil
}

// maxLinks bounds how many symbolic links walk follows, as the kernel
// does (ELOOP after 40).
const maxLinks = 40

// link is a symbolic link walk met: the directory that holds it
// (resolved), and what Lstat says of it.
type link struct {
	dir  string
	info fs.FileInfo
}

// walk resolves abs as the kernel does, a name at a time from /: a link's
// target replaces it, read from the directory the link is in (itself
// resolved). It returns the links met on the way, and the path with
// every link resolved.
func walk(abs string) (links []link, real string, err error) {
	todo := strings.Split(strings.TrimPrefix(abs, "/"), "/")
	real = "/"
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == "" || name == "." {
			continue
		}
		next := filepath.Join(real, name) // real is resolved: ".." is its parent
		fi, err := os.Lstat(next)
		if err != nil {
			return nil, "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			real = next
			continue
		}
		if len(links) == maxLinks {
			return nil, "", &fs.PathError{Op: "open", Path: abs, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(next)
		if err != nil {
			return nil, "", err
		}
		links = append(links, link{dir: real, info: fi})
		if filepath.IsAbs(target) {
			real = "/"
		}
		todo = append(strings.Split(strings.TrimPrefix(target, "/"), "/"), todo...)
	}
	return links, real, nil
}
