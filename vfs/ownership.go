package vfs

import (
	"fmt"
	"syscall"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// A local file belongs to whoever made it and keeps its owner and mode
// when renamed; only its owner may change its mode, and only root its
// owner. Here a secret's owner and mode are its path's (the owner rules,
// else the mount options), so making a file, or moving one, would give
// it an owner and mode its maker or mover chose by choosing the path: a
// user who may write an application's directory could move a secret
// shown as root's 0400 to a path shown as theirs and read it, or remove
// it and make one of that name, shown as root's, holding a value of
// theirs. The kernel checks only the directories' modes for that
// (default_permissions), so these checks refuse what a local file system
// would not let the caller do: making a file another user owns, moving
// one so that its owner or group changes, and changing its mode by a
// move unless the caller owns it. Root, and the user the mount runs as
// (who may write the store itself), may do all of it.

// privileged reports whether c may give a secret any owner and mode.
func (v *FS) privileged(c Caller) bool { return c.UID == 0 || c.UID == v.self }

// checkCreator refuses c the creation of k with flags (ownership.go's
// checks), where verr is what the store said of k: stored after all
// (nil), or not (NotFound).
func (v *FS) checkCreator(c Caller, k store.Key, flags uint32, verr error) error {
	switch {
	case verr == nil:
		return v.checkOpenFound(c, k, flags)
	case fault.Is(fault.NotFound, verr):
		return v.checkMaker(c, k)
	}
	return nil
}

// checkMaker refuses c the making of the secret k, unless k's path shows
// it as c's (or c is privileged).
func (v *FS) checkMaker(c Caller, k store.Key) error {
	if v.privileged(c) {
		return nil
	}
	if uid, _, _ := v.owner(k, v.opts.FileMode); uid != c.UID {
		return fault.E(k.Path(), fault.NotPermitted, fmt.Sprintf("a secret made at this path is shown as user %d's, and user %d may not make another user's file", uid, c.UID))
	}
	return nil
}

// checkMove refuses c a move of the secret from to to that would change
// its owner or group, or its mode unless c owns it (or c is privileged).
func (v *FS) checkMove(c Caller, from, to store.Key) error {
	if v.privileged(c) {
		return nil
	}
	fromUID, fromGID, fromMode := v.owner(from, v.opts.FileMode)
	toUID, toGID, toMode := v.owner(to, v.opts.FileMode)
	switch {
	case fromUID != toUID || fromGID != toGID:
		return fault.E(from.Path(), fault.NotPermitted, fmt.Sprintf("moved to %s it would be shown as %d:%d's, not %d:%d's, and only root may change a file's owner", to.Path(), toUID, toGID, fromUID, fromGID))
	case fromMode != toMode && c.UID != fromUID:
		return fault.E(from.Path(), fault.NotPermitted, fmt.Sprintf("moved to %s its mode would be %#o, not %#o, and only its owner may change it", to.Path(), toMode, fromMode))
	}
	return nil
}

// checkOpenFound refuses c an open for writing, with flags, of the secret
// k that a creation found stored after all (made elsewhere since the
// kernel last looked): the kernel checked only the directory, believing
// the name free, so this checks the file's mode as the kernel would have.
// A request does not carry the caller's supplementary groups: a caller
// the group's bits would let in only through one is refused.
func (v *FS) checkOpenFound(c Caller, k store.Key, flags uint32) error {
	if c.UID == 0 || c.Own {
		return nil
	}
	want := uint32(2) // write
	if flags&syscall.O_ACCMODE == syscall.O_RDWR {
		want |= 4 // and read
	}
	uid, gid, mode := v.owner(k, v.opts.FileMode)
	switch {
	case c.UID == uid:
		mode >>= 6
	case c.GID == gid:
		mode >>= 3
	}
	if mode&want != want {
		return fault.E(k.Path(), fault.NotPermitted, "made elsewhere since the kernel looked, and its mode does not let this user open it so")
	}
	return nil
}
