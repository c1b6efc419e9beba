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
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs"
)

// The inode table: which inode the kernel holds for each revision of a
// secret (mount.versions, and by what it is: mount.byName), for each
// rendering of a view (mount.views, view.go) and for each secret being
// created here (mount.secrets).
//
// Inode numbers come from package inonum (mount.ino), in ranges that
// never meet: a revision's (inonum.Numbers.Version), a view rendering's
// (Numbers.View), go-fuse's automatic numbers (the applications'
// directories), and one this mount counts out (a secret being created,
// Numbers.Created; the signal directory, inonum.SignalDir). This package
// keeps which node holds each number.

// revisionID is what a revision inode is: one revision of one secret.
type revisionID struct {
	key     store.Key
	version store.Version
	iv      string
}

func idOf(k store.Key, rev store.Revision) revisionID {
	return revisionID{key: k, version: rev.Version, iv: string(rev.IV)}
}

// versionInode returns the inode of the revision meta describes, in
// parent. The inode the kernel already has for it is found by what it is
// (mount.byName), whatever its number: a renamed secret's inode holds the
// new name's revision under the number of the old name's (see
// renamedInPlace). A new one gets a number from mount.ino (Version); a
// number held by another revision (a collision of the hash) is passed over
// for the next attempt's, the same way every time; after
// inonum.MaxAttempts the lookup fails rather than loop or share an inode. A node is one
// application, name and revision, never matched by its number alone.
func (m *mount) versionInode(ctx context.Context, parent *gofs.Inode, k store.Key, meta store.Meta) (*versionNode, error) {
	rev := meta.Revision()
	if n := m.versionOf(k, rev); n != nil && n.rev.Is(k, rev) {
		return n, nil
	}
	for attempt := range inonum.MaxAttempts {
		ino := m.ino.Version(k, rev, attempt)
		n := m.version(ino)
		if n == nil {
			n = m.addVersion(ctx, parent, k, meta, ino)
		}
		if n.rev.Is(k, rev) {
			return n, nil
		}
		m.log.WithFields(logrus.Fields{"secret": k.String(), "holder": n.rev.Key().String(), "attempt": attempt}).
			Warn("the inode number of a revision is held by another; it gets the next")
	}
	return nil, fault.E(k.Path(), "no free inode number for this revision after "+strconv.Itoa(inonum.MaxAttempts)+" tries")
}

func (m *mount) version(ino uint64) *versionNode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.versions[ino]
}

// versionOf returns the node registered as revision rev of k, or nil.
func (m *mount) versionOf(k store.Key, rev store.Revision) *versionNode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.registeredAs(idOf(k, rev))
}

// addVersion makes the inode of revision meta of k, number ino, and
// registers it, unless another request registered one for ino first: then
// that one is returned, and this one, which the kernel never saw, dropped.
func (m *mount) addVersion(ctx context.Context, parent *gofs.Inode, k store.Key, meta store.Meta, ino uint64) *versionNode {
	n := &versionNode{immutableNode: immutableNode{m: m, ino: ino}}
	n.rev = m.vfs.NewRevision(k, meta, func() { m.revive(n) }, func() { m.notify.content(&n.Inode) })
	n.serves = n.rev
	parent.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	m.mu.Lock()
	defer m.mu.Unlock()
	if held := m.versions[ino]; held != nil {
		return held
	}
	m.versions[ino] = n
	m.register(n, idOf(k, meta.Revision()))
	return n
}

// register makes n the inode of id, unless a node that is still id (in
// mount.versions) holds it. m.mu must be held.
//
// The nodes are kept by name (mount.byName), each registered as one
// revision of its name, in a list through versionNode.sameName that most
// often holds one: `ls -l` asks for every name again, and a map keyed by
// the name alone, whose strings are most often the very ones the listing
// gives, costs less than one keyed by a revisionID, whose IV is copied,
// hashed and compared, and less to fill on a fresh mount.
func (m *mount) register(n *versionNode, id revisionID) {
	held := m.registeredAs(id)
	if held != nil && held != n && m.versions[held.ino] == held {
		return
	}
	if held != nil {
		m.unregister(held)
	}
	if held != n && n.registered != (revisionID{}) {
		m.unregister(n) // as what it was before; a new node never was
	}
	n.registered, n.sameName = id, m.byName[id.key]
	m.byName[id.key] = n
}

// registeredAs returns the node registered as id, or nil. m.mu must be
// held.
func (m *mount) registeredAs(id revisionID) *versionNode {
	for n := m.byName[id.key]; n != nil; n = n.sameName {
		if n.registered == id {
			return n
		}
	}
	return nil
}

// unregister takes n out of mount.byName, where it is under the name it
// was registered as. m.mu must be held.
func (m *mount) unregister(n *versionNode) {
	k := n.registered.key
	first := m.byName[k]
	switch {
	case first == n && n.sameName == nil:
		delete(m.byName, k)
	case first == n:
		m.byName[k] = n.sameName
	default:
		for p := first; p != nil; p = p.sameName {
			if p.sameName == n {
				p.sameName = n.sameName
				break
			}
		}
	}
	n.sameName = nil
}

// revive registers n again if OnForget dropped it while a request still
// held it. go-fuse's OnForget contract (fs/api.go) says the implementer
// must make sure "the inode cannot be revived concurrently by a LOOKUP":
// a lookup that found n in the table just before the kernel's FORGET
// returns it to the kernel, which then holds an inode the table no longer
// names, and whose snapshot OnForget unpinned. Its next use pins the
// snapshot again (vfs.Revision calls this then), and this puts it back in
// the table, so that the next lookup of that revision finds it instead of
// making a second inode of one number. A number another node took
// meanwhile stays that node's.
func (m *mount) revive(n *versionNode) {
	id := n.id()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.versions[n.ino] == nil {
		m.versions[n.ino] = n
		m.register(n, id)
	}
}

// forgotVersion drops n from the table: the kernel forgot it.
func (m *mount) forgotVersion(n *versionNode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.versions[n.ino] == n {
		delete(m.versions, n.ino)
	}
	m.unregister(n)
}

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
	n, ok := moved.Operations().(*versionNode)
	if !ok || !n.rev.Is(e.From, e.Was) {
		return false
	}
	now := idOf(e.Key, e.Now.Revision())
	m.mu.Lock()
	if m.registeredAs(now) != nil || m.versions[n.ino] != n {
		m.mu.Unlock()
		return false
	}
	m.register(n, now)
	m.mu.Unlock()
	n.rev.Rekey(e.Key, e.Now)
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
	if d == nil {
		fresh := &createdNode{m: m, s: s}
		parent.NewInode(ctx, fresh, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: m.ino.Created()})
		m.mu.Lock()
		if d = m.secrets[s]; d == nil {
			d = fresh
			m.secrets[s] = d
		}
		m.mu.Unlock()
		if d == fresh {
			return d
		}
	}
	s.Unhold()
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
// the name for e.Fresh, and a revision's attributes for the TTL (they
// never change); a secret being created has attributes that change as it
// is written, which it keeps for no time at all.
func (m *mount) entry(ctx context.Context, parent *gofs.Inode, k store.Key, e vfs.Entry, err error, by entryFor, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if err != nil {
		return nil, m.errno(by.op(), k.Path(), err)
	}
	if e.View != nil {
		return m.viewEntry(ctx, parent, e, by, out)
	}
	if e.Created != nil {
		d := m.createdInode(ctx, parent, e.Created)
		fill(&out.Attr, d.s.Attr())
		out.SetEntryTimeout(kernelTime(0))
		out.SetAttrTimeout(kernelTime(0))
		return &d.Inode, 0
	}
	n, err := m.versionInode(ctx, parent, k, e.Meta)
	if err != nil {
		return nil, m.errno(by.op(), k.Path(), err)
	}
	if by != creation {
		if err := n.rev.Verify(ctx); err != nil {
			return nil, m.errno(by.op(), k.Path(), err)
		}
	}
	if by == lookup && m.noOpen.Load() {
		n.rev.Touch()
	}
	fill(&out.Attr, n.rev.Attr())
	out.SetEntryTimeout(kernelTime(e.Fresh))
	out.SetAttrTimeout(kernelTime(m.opts.TTL))
	return &n.Inode, 0
}

// viewEntry returns the inode of the view's rendering e describes, for a
// request (by), and fills out. A rendering never changes: the kernel may
// keep its attributes for the TTL, and the name as long as its inputs
// stand (e.Fresh).
func (m *mount) viewEntry(ctx context.Context, parent *gofs.Inode, e vfs.Entry, by entryFor, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	k := e.View.Key()
	n, err := m.viewInode(ctx, parent, e.View)
	if err != nil {
		return nil, m.errno(by.op(), k.Path(), err)
	}
	if by == lookup && m.noOpen.Load() {
		n.rev.Touch()
	}
	fill(&out.Attr, n.rev.Attr())
	out.SetEntryTimeout(kernelTime(e.Fresh))
	out.SetAttrTimeout(kernelTime(m.opts.TTL))
	return &n.Inode, 0
}
