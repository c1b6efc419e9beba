// Package inonum gives a mount's inode numbers: one per revision of a
// secret, one per rendering of a view, and one counted out per secret
// being created through the mount. It knows nothing of FUSE; package fs
// asks it for a number and keeps the inode table.
//
// The numbers come in three disjoint ranges, by their top two bits:
//
//   - 00, a revision's (Version): a keyed hash of the application, the
//     name and the revision;
//   - 01, a view rendering's (View): a keyed hash of the view's path and
//     the digest of its inputs' revisions;
//   - 10, go-fuse's automatic numbers (the applications' directories),
//     counted from 1<<63 up;
//   - 11, numbers counted out from 3<<62 up: a secret being created
//     (Created); the signal directory has the last but one (SignalDir),
//     which the count never reaches.
//
// So no two inodes the kernel holds at once share a number: tools that
// tell files apart by (st_dev, st_ino), as du, tar and cp -a do, see an
// application's directory and a secret being created as two files.
//
// 0 and FUSE's root node id (1) are never given.
//
// Why a keyed hash: whoever writes the store chooses a revision's IV, and
// so, were the number a plain hash, could choose an IV whose number is
// that of another secret the kernel holds. Each Numbers draws its own key
// at random (New), and the numbers an IV gives cannot be told without it.
// So the numbers change from mount to mount, as those of many FUSE file
// systems do; within one Numbers each revision and each rendering keeps
// its own. Two may still collide by chance (beyond chance with a keyed
// hash): the caller then asks for the next attempt, up to MaxAttempts.
package inonum

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"sync/atomic"

	"github.com/secretfs/secretfs/store"
)

const (
	// MaxAttempts bounds the numbers a caller tries for one revision or
	// one rendering (attempt 0 to MaxAttempts-1). With a keyed hash a
	// single collision is already beyond chance; running out means the
	// hash is broken, and the caller should fail rather than loop or
	// share an inode.
	MaxAttempts = 64

	// SignalDir is the signal directory's inode number: the last but one
	// of Created's range, which its count never reaches.
	SignalDir = ^uint64(0) - 1

	// rootID is FUSE's node id of the root (fuse.FUSE_ROOT_ID), which a
	// hashed number must not be.
	rootID = 1

	// createdRange is where Created counts from: the top two bits set,
	// above go-fuse's automatic numbers (from 1<<63).
	createdRange = 3 << 62
	// viewRange is the second bit of a hashed number: set on a view
	// rendering's, clear on a revision's.
	viewRange = 1 << 62
	// rangeBits are the two top bits, which say a number's range.
	rangeBits = 3 << 62
)

// keySize is the size of the key of the HMAC-SHA256: the hash's
// block-sized output needs no more, and a key of the hash's size is what
// RFC 2104 recommends.
const keySize = sha256.Size

// Numbers gives the inode numbers of one mount. Its methods may be
// called from many goroutines at once. The zero value must not be used:
// get one from New.
type Numbers struct {
	key     []byte    // of the HMAC, drawn at random by New
	hashers sync.Pool // of *hasher: HMAC-SHA256 under key, ready to Reset (see mac)
	created atomic.Uint64
	// forced, if set, replaces Version's keyed hash (see WithVersionHash).
	forced func(k store.Key, rev store.Revision, attempt int) uint64
}

// New returns the numbers of one mount, under a key of its own drawn at
// random.
func New() *Numbers {
	key := make([]byte, keySize)
	rand.Read(key) // never fails (crypto/rand, Go 1.24 and later)
	return &Numbers{key: key}
}

// WithVersionHash returns Numbers whose revision numbers come from hash
// instead of the keyed hash, then put in the revisions' range as Version
// puts its own (so never 0 or 1): tests use it to force collisions.
// Nothing else may. Views' and created numbers are New's.
func WithVersionHash(hash func(k store.Key, rev store.Revision, attempt int) uint64) *Numbers {
	n := New()
	n.forced = hash
	return n
}

// Version is the inode number of one revision of a secret (a Version and
// an IV, which is fresh on every write) at attempt (0, then more while the
// number is held by another revision): an HMAC-SHA256 of the
// application, the name, the IV, the version and the attempt, each
// length-prefixed, under this Numbers' key. Its top two bits are clear,
// and it is never 0 or 1.
func (n *Numbers) Version(k store.Key, rev store.Revision, attempt int) uint64 {
	var sum uint64
	if n.forced != nil {
		sum = n.forced(k, rev, attempt)
	} else {
		sum = n.mac([][]byte{[]byte(k.App), []byte(k.Name), rev.IV}, int64(rev.Version), int64(attempt))
	}
	ino := sum &^ rangeBits
	if ino <= rootID {
		ino += 2
	}
	return ino
}

// View is the inode number of the rendering of the view k whose inputs'
// revisions digest names, at attempt, as Version is a revision's: an
// HMAC-SHA256 of "view", the application, the name and the digest (which
// names the inputs' revisions, whose IVs whoever writes the store
// chooses) under this Numbers' key. Its top two bits are 01.
func (n *Numbers) View(k store.Key, digest string, attempt int) uint64 {
	return n.mac([][]byte{[]byte("view"), []byte(k.App), []byte(k.Name), []byte(digest)}, int64(attempt))&^rangeBits | viewRange
}

// Created is a new inode number for a secret being created: the top bit
// set, and a count from 1, one more at each call.
func (n *Numbers) Created() uint64 { return createdRange | n.created.Add(1) }

// mac returns the first 8 bytes of the HMAC-SHA256 of parts, each
// length-prefixed, then of the numbers nums, under n's key. It runs for
// every entry of a listing (`ls -l`), so the keyed hashes are made once
// and kept in a pool: hmac.New hashes the key into two blocks each time,
// which cost more than the message, and Reset restores them. The message
// and the sum are built in buffers kept with the hash: the hash is an
// interface, so any buffer passed to it would be allocated anew on every
// call.
func (n *Numbers) mac(parts [][]byte, nums ...int64) uint64 {
	h, _ := n.hashers.Get().(*hasher)
	if h == nil {
		h = &hasher{mac: hmac.New(sha256.New, n.key)}
	}
	b := h.msg[:0]
	for _, part := range parts {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	for _, num := range nums {
		b = binary.AppendVarint(b, num)
	}
	h.mac.Reset()
	h.mac.Write(b)
	out := binary.BigEndian.Uint64(h.mac.Sum(h.sum[:0]))
	n.hashers.Put(h)
	return out
}

// hasher is one keyed hash of mac, with its buffers.
type hasher struct {
	mac hash.Hash
	msg [256]byte // the message, unless a longer one is appended elsewhere
	sum [sha256.Size]byte
}
