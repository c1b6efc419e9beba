package vfs

import (
	"fmt"
	"slices"
	"syscall"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// A local file belongs to whoever made it and keeps its owner and mode
// when renamed. Here a secret's owner and mode are its path's (the owner
// rules, else the mount options), so making a file, or moving one, gives
// it the owner and mode its maker or mover chose by choosing the path:
// a user who may write an application's directory could move a secret
// shown as root's 0400 to a path shown as theirs and read it, or remove
// it and make one of that name, shown as root's, holding a value of
// theirs. The kernel checks only the directories' modes for that
// (default_permissions). So a maker must be able to write the file it
// makes, as shown (its owner, or one its mode lets write: a group's
// member under 0660 makes what they could rewrite anyway); and a mover
// must either leave the file's owner, group and mode as they are (as a
// local rename does), or be able to read it where it is and make it
// where it goes (which `cat old > new; rm old` would do: the move gives
// them nothing more). Root, and the user the mount runs as (who may
// write the store itself), may do all of it.

// Access bits, as the mode's owner, group and other triplets hold them.
const (
	mayRead  = 4
	mayWrite = 2
)

// privileged reports whether c may give a secret any owner and mode.
func (v *FS) privileged(c Caller) bool { return c.UID == 0 || c.UID == v.self }

// permits reports whether a file shown as uid:gid with mode lets c do
// want (mayRead, mayWrite, or both), as the kernel's check would: the
// owner's bits, else the group's for a member (its gid, or one of its
// supplementary groups), else the others'. A caller whose supplementary
// groups are not known may or may not be a member: it gets only what
// both the group's and the others' bits give (a mode such as 0604, which
// keeps a group out, keeps it out too).
func permits(c Caller, uid, gid, mode, want uint32) bool {
	switch {
	case c.UID == 0:
		return true
	case c.UID == uid:
		mode >>= 6
	case c.GID == gid || slices.Contains(c.Groups, gid):
		mode >>= 3
	case c.Groups == nil:
		mode &= mode >> 3
	}
	return mode&want == want
}

// checkCreator refuses c the creation of k with flags, where verr is
// what the store said of k: stored after all (nil), or not (NotFound).
func (v *FS) checkCreator(c Caller, k store.Key, flags uint32, verr error) error {
	switch {
	case verr == nil:
		return v.checkOpenFound(c, k, flags)
	case fault.Is(fault.NotFound, verr):
		return v.checkMaker(c, k)
	}
	return nil
}

// checkMaker refuses c the making of the secret k, unless c could write
// it as shown: its owner, or one its mode lets write (or c is
// privileged).
func (v *FS) checkMaker(c Caller, k store.Key) error {
	uid, gid, mode := v.owner(k, v.opts.FileMode)
	if v.privileged(c) || uid == c.UID || permits(c, uid, gid, mode, mayWrite) {
		return nil // root, its owner (who could chmod it), or one who may write it
	}
	return fault.E(k.Path(), fault.NotPermitted, fmt.Sprintf("a secret made at this path is shown as %d:%d, mode %#o, which user %d could not write: only root may make another user's file", uid, gid, mode, c.UID))
}

// checkMove refuses c a move of the secret from to to that would give it
// another owner, group or mode, unless c may read it at from and make it
// at to (or c is privileged).
func (v *FS) checkMove(c Caller, from, to store.Key) error {
	if v.privileged(c) {
		return nil
	}
	fromUID, fromGID, fromMode := v.owner(from, v.opts.FileMode)
	toUID, toGID, toMode := v.owner(to, v.opts.FileMode)
	if fromUID == toUID && fromGID == toGID && fromMode == toMode {
		return nil
	}
	if permits(c, fromUID, fromGID, fromMode, mayRead) && v.checkMaker(c, to) == nil {
		return nil
	}
	return fault.E(from.Path(), fault.NotPermitted, fmt.Sprintf("moved to %s it would be shown as %d:%d, mode %#o, not %d:%d, mode %#o, and user %d may not both read it here and make it there",
		to.Path(), toUID, toGID, toMode, fromUID, fromGID, fromMode, c.UID))
}

// checkOpenFound refuses c an open, with flags, of the secret k that a
// creation found stored after all (made elsewhere since the kernel last
// looked): the kernel checked only the directory, believing the name
// free, so this checks the file's mode as the kernel would have, and
// answers as it would (EACCES).
func (v *FS) checkOpenFound(c Caller, k store.Key, flags uint32) error {
	if c.Own {
		return nil
	}
	var want uint32
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		want = mayRead
	case syscall.O_WRONLY:
		want = mayWrite
	default:
		want = mayRead | mayWrite
	}
	if flags&syscall.O_TRUNC != 0 {
		want |= mayWrite
	}
	if uid, gid, mode := v.owner(k, v.opts.FileMode); permits(c, uid, gid, mode, want) {
		return nil
	}
	return fault.E(k.Path(), fault.Permission, "made elsewhere since the kernel looked, and its mode does not let this user open it so")
}
