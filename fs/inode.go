package fs

import (
	"context"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/internal/inonum"
	"github.com/secretfs/secretfs/internal/inotable"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// The inode table: which inode the kernel holds for each revision of a
// secret and each rendering of a view (mount.table, by number and by what
// it is: package inotable), and for each secret being created here
// (mount.secrets).
//
// Inode numbers come from package inonum (mount.ino), in ranges that
// never meet: a revision's (inonum.Numbers.Version), a view rendering's
// (Numbers.View), go-fuse's automatic numbers (the applications'
// directories), and one this mount counts out (a secret being created,
// Numbers.Created; the signal directory, inonum.SignalDir). This package
// keeps which node holds each number.

// versionInode returns the inode of the revision meta describes, in
// parent. The inode the kernel already has for it is found by what it is
// (inotable.Table.Find), whatever its number: a renamed secret's inode holds the
// new name's revision under the number of the old name's (see
// renamedInPlace). A new one gets a number from mount.ino (Version), one
// held by another passed over (numbered). A node is one application, name
// and revision, as the kernel was told it (its size too: see
// vfs.Revision.Shows), never matched by its number alone.
func (m *mount) versionInode(ctx context.Context, parent *gofs.Inode, k store.Key, meta store.Meta) (*immutableNode, error) {
	rev := meta.Revision()
	if n := m.versionOf(k, rev); n != nil {
		if n.rev.Shows(k, meta) {
			return n, nil
		}
		// Relisted with another size (vfs.Revision.Shows): the kernel
		// keeps n's, so n is no longer what a lookup of rev finds.
		m.table.Unregister(n)
	}
	return m.numbered(k, "revision",
		func(attempt int) uint64 { return m.ino.Version(k, rev, attempt) },
		func(n *immutableNode) bool { return n.rev != nil && n.rev.Shows(k, meta) },
		func(ino uint64) (*immutableNode, error) { return m.addVersion(ctx, parent, k, meta, ino), nil })
}

// numbered returns the inode of one immutable thing, what (a "revision",
// a "rendering") of k: the one at the first of its numbers (number(0),
// number(1), ...) that is either free, where add makes it and enters it in
// the table, or whose inode is that thing already (is). A number whose
// inode is another's (a collision of the hash) is passed over, the same
// way every time; after inonum.MaxAttempts numbers it fails rather than
// loop or share an inode. add returns the inode the table holds at ino
// then, its own or one another request entered first, or why it made
// none.
func (m *mount) numbered(k store.Key, what string, number func(attempt int) uint64, is func(*immutableNode) bool, add func(ino uint64) (*immutableNode, error)) (*immutableNode, error) {
	for attempt := range inonum.MaxAttempts {
		ino := number(attempt)
		n := m.table.Get(ino)
		if n == nil {
			var err error
			if n, err = add(ino); err != nil {
				return nil, err
			}
		}
		if is(n) {
			return n, nil
		}
		m.log.WithFields(logrus.Fields{"secret": k.String(), "holder": n.serves.Key().String(), "attempt": attempt}).
			Warn("the inode number of a " + what + " is held by another; it gets the next")
	}
	return nil, fault.E(k.Path(), "no free inode number for this "+what+" after "+strconv.Itoa(inonum.MaxAttempts)+" tries")
}

// listedIno is the inode number a listing gives a secret it lists (the
// d_ino of getdents, which os.scandir and fts read) from its metadata: the
// number of the inode the kernel holds for that revision, else the one a
// lookup will give it (attempt 0: another only on a collision of the
// keyed hash, which is beyond chance). A view's rendering, and a secret
// being created, are not known until they are looked up: 0, which go-fuse
// sends as FUSE's "unknown".
func (m *mount) listedIno(meta store.Meta) uint64 {
	rev := meta.Revision()
	if len(rev.IV) == 0 || m.vfs.IsView(meta.Key) {
		return 0
	}
	if n := m.versionOf(meta.Key, rev); n != nil {
		return n.Ino
	}
	return m.ino.Version(meta.Key, rev, 0)
}

// versionOf returns the node of revision rev of k, or nil.
func (m *mount) versionOf(k store.Key, rev store.Revision) *immutableNode {
	return m.table.Find(inotable.Of(k, rev))
}

// addVersion makes the inode of revision meta of k, number ino, and
// registers it, unless another request registered one for ino first: then
// that one is returned, and this one, which the kernel never saw, dropped.
func (m *mount) addVersion(ctx context.Context, parent *gofs.Inode, k store.Key, meta store.Meta, ino uint64) *immutableNode {
	n := &immutableNode{m: m, Entry: inotable.Entry{Ino: ino}}
	n.rev = m.vfs.NewRevision(k, meta, func() { m.revive(n) }, func() { notifyContent(&n.Inode) })
	n.serves = n.rev
	n.fileOps = fileOps{m, n.rev}
	held, _ := m.add(ctx, parent, n, inotable.Of(k, meta.Revision()))
	return held
}

// add gives n, made for id, its inode in parent and enters it in the
// table, unless another request entered a node numbered n.Ino first:
// then that one is returned, and n, which the kernel never saw, is not
// (mine is false).
func (m *mount) add(ctx context.Context, parent *gofs.Inode, n *immutableNode, id inotable.ID) (held *immutableNode, mine bool) {
	made := n
	if lost := lostByTheTable(parent, n.Ino, id); lost != nil {
		n = lost
	} else {
		parent.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: n.Ino})
	}
	held, entered := m.table.Add(n, id)
	return held, entered && held == made
}

// lostByTheTable returns the node that the kernel holds as id, number
// ino, under id's name in parent, if there is one: the table does not
// have it (add is asked to make one), because its OnForget ran while a
// lookup that had found it handed it back to the kernel, which go-fuse's
// bridge then registered again. A new node of that number would never
// be registered (the bridge keeps the one it holds) and would take the
// kernel's node's place in the table; this one is entered again instead
// (and pins again at its next use). go-fuse's OnForget contract asks the
// file system to keep such a lookup from reviving an inode; mount.revive
// and this undo it instead.
func lostByTheTable(parent *gofs.Inode, ino uint64, id inotable.ID) *immutableNode {
	c := parent.GetChild(id.Key.Name)
	if c == nil || c.StableAttr().Ino != ino || c.Forgotten() {
		return nil
	}
	if n, ok := c.Operations().(*immutableNode); ok && n.id() == id {
		return n
	}
	return nil
}

// revive enters n in the table again if OnForget dropped it while a
// request still held it (see inotable.Table.Revive): its next use pins
// again what OnForget unpinned (vfs.Revision and vfs.ViewRevision call
// this then).
func (m *mount) revive(n *immutableNode) { m.table.Revive(n, n.id()) }

// forgot drops n from the table: the kernel forgot it.
func (m *mount) forgot(n *immutableNode) { m.table.Forgot(n) }

// renamedInPlace keeps the inode a RENAME moved: the kernel moves its
// entry of the old name to the new name, pointing at the inode of the
// revision it had for the old name, while the rename wrote that value
// under the new name as a new revision (e.Now). When the moved inode is
// the revision renamed (e.Was), it holds the same bytes as e.Now: it
// becomes e.Now's inode (vfs.Revision.Rekey), so that the next lookup of
// the new name finds the very inode the kernel already has for it, and a
// program that stats the name and then opens it (cp checks that both are
// one file) sees one inode. It reports whether it did; if not (the kernel
// held another revision, or a secret being created, or one already has
// e.Now's inode), the new name must be looked up again. Called while the
// RENAME is served, before go-fuse moves the entry in its own tree.
func (m *mount) renamedInPlace(e vfs.Event) bool {
	if e.From == (store.Key{}) || e.Now.Key == (store.Key{}) {
		return false // a secret being created, which committed nothing yet
	}
	parent := m.root.GetChild(e.From.App)
	if parent == nil {
		return false
	}
	moved := parent.GetChild(e.From.Name)
	if moved == nil {
		return false
	}
	n, ok := moved.Operations().(*immutableNode)
	if !ok || n.rev == nil || !n.rev.Is(e.From, e.Was) {
		return false
	}
	if !m.table.Rename(n, inotable.Of(e.Key, e.Now.Revision())) {
		return false
	}
	n.rev.Rekey(e.Key, e.Now)
	// The kernel keeps the attributes it has for the moved inode, which
	// are the old path's: a new path may have another owner and mode.
	notifyAttrBeforeReply(moved)
	return true
}

// createdInode returns the inode of s, a secret being created here, in
// parent, making it. It takes over one hold of s (see vfs.Secret.Hold):
// the new inode keeps it until the kernel forgets it; an inode that
// existed already has its own, and the one given is ended.
func (m *mount) createdInode(ctx context.Context, parent *gofs.Inode, s *vfs.Secret) *createdNode {
	m.mu.Lock()
	d := m.secrets[s]
	m.mu.Unlock()
	if d != nil {
		s.Unhold()
		return d
	}
	fresh := &createdNode{fileOps: fileOps{m, s}, m: m, s: s}
	parent.NewInode(ctx, fresh, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: m.ino.Created()})
	m.mu.Lock()
	if d = m.secrets[s]; d == nil {
		d = fresh
		m.secrets[s] = d
	}
	m.mu.Unlock()
	if d != fresh {
		s.Unhold() // another request made one first
	}
	return d
}

// forgotCreated drops d from the table, and its hold of its secret: the
// kernel forgot it.
func (m *mount) forgotCreated(d *createdNode) {
	m.mu.Lock()
	mine := m.secrets[d.s] == d
	if mine {
		delete(m.secrets, d.s)
	}
	m.mu.Unlock()
	if mine {
		d.s.Unhold()
	}
}

// entryFor says which request an entry answers.
type entryFor uint8

const (
	lookup   entryFor = iota // LOOKUP: a legacy item's size is learnt; on a read-only mount, a reader is back (see appNode.Lookup)
	listing                  // READDIRPLUS: answered from the listing
	creation                 // CREATE: the writer needs no size, and reads nothing
)

// op names the request, for a log line.
func (by entryFor) op() string { return [...]string{"lookup", "readdirplus", "create"}[by] }

// entry returns, for a request (by) of k, the inode of what vfs
// says the name points at (e, or err), and fills out. The kernel may keep
// the name for e.Fresh, and the attributes of a revision or a view's
// rendering for the TTL (they never change); a secret being created has
// attributes that change as it is written, which it keeps for no time at
// all.
func (m *mount) entry(ctx context.Context, parent *gofs.Inode, k store.Key, e vfs.Entry, err error, by entryFor, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if err != nil {
		return m.entryFailed(ctx, parent, k, err, by, out)
	}
	if e.Created != nil {
		d := m.createdInode(ctx, parent, e.Created)
		fill(&out.Attr, d.s.Attr())
		out.SetEntryTimeout(kernelTime(0))
		out.SetAttrTimeout(kernelTime(0))
		return &d.Inode, 0
	}
	var n *immutableNode
	if e.View != nil {
		n, err = m.viewInode(ctx, parent, e.View)
	} else {
		n, err = m.versionInode(ctx, parent, k, e.Meta)
	}
	if err == nil && n.rev != nil && by != creation {
		err = n.rev.Verify(ctx)
	}
	if err != nil {
		return m.entryFailed(ctx, parent, k, err, by, out)
	}
	if by == lookup && m.noOpen.Load() {
		n.serves.Touch()
	}
	fill(&out.Attr, n.serves.Attr())
	out.SetEntryTimeout(kernelTime(e.Fresh))
	out.SetAttrTimeout(kernelTime(m.opts.TTL))
	return &n.Inode, 0
}

// entryFailed answers a failed look at k: its errno, logged as any
// request's failure; but the mount's own change signal looks at every
// name it signals, and no reader asked: its failure is logged for
// debugging only, and for a view that cannot be rendered any more its
// look finds an unrenderedNode, through which its touch tells the
// watchers of the view's directory.
func (m *mount) entryFailed(ctx context.Context, parent *gofs.Inode, k store.Key, err error, by entryFor, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !m.isOwnSignal(ctx) {
		return nil, m.errno(by.op(), k.Path(), err)
	}
	m.log.WithFields(logrus.Fields{"op": by.op(), "path": k.String()}).WithError(err).Debug("the change signal's look at a name failed")
	if by == lookup && m.vfs.IsView(k) {
		return m.unrendered(ctx, parent, k, err, out), 0
	}
	return nil, errnoOf(err)
}
