package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/fault"
)

// dirNode is what the root and the applications' directories share:
// their attributes, which change only to what they are.
type dirNode struct {
	gofs.Inode
	m   *mount
	app string // "" for the root
}

var (
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeSetattrer = (*dirNode)(nil)
	_ gofs.NodeStatfser  = (*dirNode)(nil)
	_ gofs.NodeFsyncer   = (*dirNode)(nil)
)

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fill(&out.Attr, d.m.vfs.DirAttr(d.app))
	out.SetTimeout(kernelTime(d.m.opts.TTL))
	return 0
}

func (d *dirNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := d.m.vfs.SetattrDir(d.app, change(in)); err != nil {
		return d.m.errno("setattr", fault.Path(d.app), err)
	}
	fill(&out.Attr, d.m.vfs.DirAttr(d.app))
	out.SetTimeout(kernelTime(d.m.opts.TTL))
	return 0
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return statfs(out) }

// Fsync of a directory succeeds: every change of a name is in the store
// before its request returns. Programs that write a file atomically
// fsync its directory after the rename (go-fuse would answer ENOTSUP).
func (d *dirNode) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno { return 0 }

// rootNode is "/": one directory per application.
type rootNode struct{ dirNode }

var (
	_ gofs.NodeLookuper  = (*rootNode)(nil)
	_ gofs.NodeReaddirer = (*rootNode)(nil)
	_ gofs.NodeMkdirer   = (*rootNode)(nil)
	_ gofs.NodeRmdirer   = (*rootNode)(nil)
	_ gofs.NodeRenamer   = (*rootNode)(nil)
	_ gofs.NodeCreater   = (*rootNode)(nil)
)

// Lookup finds an application. The mount's own change signal also finds
// the signal directory there (see signalDir); nobody else does.
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d := r.m.signalDirFor(ctx, name, out); d != nil {
		return d, 0
	}
	if err := r.m.vfs.LookupApp(ctx, name); err != nil {
		return nil, r.m.errno("lookup", fault.Path(name), err)
	}
	return r.appInode(ctx, name, out), 0
}

func (r *rootNode) appInode(ctx context.Context, name string, out *fuse.EntryOut) *gofs.Inode {
	fill(&out.Attr, r.m.vfs.DirAttr(name))
	out.SetEntryTimeout(kernelTime(r.m.opts.TTL))
	out.SetAttrTimeout(kernelTime(r.m.opts.TTL))
	if child := r.GetChild(name); child != nil {
		return child
	}
	return r.NewInode(ctx, &appNode{dirNode{m: r.m, app: name}}, gofs.StableAttr{Mode: syscall.S_IFDIR})
}

func (r *rootNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	apps, err := r.m.vfs.Apps(ctx)
	if err != nil {
		return nil, r.m.errno("readdir", "/", err)
	}
	entries := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR}, {Name: "..", Mode: syscall.S_IFDIR}}
	for _, a := range apps {
		var ino uint64 // 0: FUSE's "unknown", for a directory the kernel has not looked up
		if held := r.GetChild(a); held != nil {
			ino = held.StableAttr().Ino // go-fuse numbers it when it is made
		}
		entries = append(entries, fuse.DirEntry{Name: a, Mode: syscall.S_IFDIR, Ino: ino})
	}
	return gofs.NewListDirStream(entries), 0
}

// Mkdir makes a new, empty application.
func (r *rootNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if err := r.m.vfs.Mkdir(ctx, name); err != nil {
		return nil, r.m.errno("mkdir", fault.Path(name), err)
	}
	return r.appInode(ctx, name, out), 0
}

// Rmdir removes an application that holds no secrets.
func (r *rootNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	return r.m.errno("rmdir", fault.Path(name), r.m.vfs.Rmdir(ctx, name))
}

// Rename of an application is EXDEV (see vfs.FS.RenameApp); to is its
// new name at the root, or "" for a place inside an application.
func (r *rootNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to := ""
	if _, ok := newParent.(*rootNode); ok {
		to = newName
	}
	return r.m.errno("rename", fault.Path(name), r.m.vfs.RenameApp(name, to, flags))
}

// Create refuses files at the root.
func (r *rootNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, r.m.errno("create", fault.Path(name), r.m.vfs.CreateInRoot(name))
}
