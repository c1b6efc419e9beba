package fs

import (
	"context"
	"slices"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// rootNode is "/": one directory per application.
type rootNode struct {
	gofs.Inode
	m *mount
}

var (
	_ gofs.NodeGetattrer = (*rootNode)(nil)
	_ gofs.NodeLookuper  = (*rootNode)(nil)
	_ gofs.NodeReaddirer = (*rootNode)(nil)
	_ gofs.NodeMkdirer   = (*rootNode)(nil)
	_ gofs.NodeRmdirer   = (*rootNode)(nil)
	_ gofs.NodeRenamer   = (*rootNode)(nil)
	_ gofs.NodeCreater   = (*rootNode)(nil)
	_ gofs.NodeStatfser  = (*rootNode)(nil)
)

func (r *rootNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.m.dirAttr(&out.Attr)
	return 0
}

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	const op = "lookup"
	if err := store.ValidName(name); err != nil {
		return nil, r.m.errno(op, fault.Path(name), err)
	}
	ok, err := r.m.appExists(ctx, name)
	if err == nil && !ok {
		err = fault.E(fault.Path(name), fault.NotFound, "no such application")
	}
	if err != nil {
		return nil, r.m.errno(op, fault.Path(name), err)
	}
	return r.appInode(ctx, name, out), 0
}

func (r *rootNode) appInode(ctx context.Context, name string, out *fuse.EntryOut) *gofs.Inode {
	r.m.dirAttr(&out.Attr)
	if child := r.GetChild(name); child != nil {
		return child
	}
	return r.NewInode(ctx, &appNode{m: r.m, app: name}, gofs.StableAttr{Mode: syscall.S_IFDIR})
}

func (r *rootNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	apps, err := r.m.apps(ctx)
	if err != nil {
		return nil, r.m.errno("readdir", "/", err)
	}
	entries := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR}, {Name: "..", Mode: syscall.S_IFDIR}}
	for _, a := range apps {
		entries = append(entries, fuse.DirEntry{Name: a, Mode: syscall.S_IFDIR})
	}
	return gofs.NewListDirStream(entries), 0
}

// Mkdir makes a new, empty application.
func (r *rootNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	const op = "mkdir"
	if err := r.m.writable(fault.Path(name)); err != nil {
		return nil, r.m.errno(op, fault.Path(name), err)
	}
	if err := store.ValidName(name); err != nil {
		return nil, r.m.errno(op, fault.Path(name), err)
	}
	ok, err := r.m.appExists(ctx, name)
	if err == nil && ok {
		err = fault.E(fault.Path(name), fault.Exist)
	}
	if err != nil {
		return nil, r.m.errno(op, fault.Path(name), err)
	}
	r.m.mu.Lock()
	r.m.made[name] = true
	r.m.mu.Unlock()
	r.m.log.WithField("app", name).Info("application created")
	return r.appInode(ctx, name, out), 0
}

// Rmdir removes an application that holds no secrets.
func (r *rootNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	const op = "rmdir"
	if err := r.m.writable(fault.Path(name)); err != nil {
		return r.m.errno(op, fault.Path(name), err)
	}
	if slices.Contains(r.m.opts.Apps, name) {
		return r.m.errno(op, fault.Path(name), fault.E(fault.Path(name), fault.NotPermitted, "listed by --apps"))
	}
	if child := r.GetChild(name); child != nil {
		if a, ok := child.Operations().(*appNode); ok {
			a.settleAll() // a secret created and closed just now counts
		}
	}
	nonEmpty, err := r.m.cat.HasSecrets(ctx, name)
	if err != nil {
		return r.m.errno(op, fault.Path(name), err)
	}
	if nonEmpty {
		return r.m.errno(op, fault.Path(name), fault.E(fault.Path(name), fault.NotEmpty, "the application still holds secrets"))
	}
	r.m.mu.Lock()
	delete(r.m.made, name)
	r.m.mu.Unlock()
	r.m.log.WithField("app", name).Info("application removed")
	return 0
}

// Rename of an application would have to re-encrypt every secret in it
// (the ciphertext is bound to the application's name). EXDEV makes mv(1)
// do exactly that, file by file, through the file system.
func (r *rootNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if err := r.m.writable(fault.Path(name)); err != nil {
		return r.m.errno("rename", fault.Path(name), err)
	}
	return r.m.errno("rename", fault.Path(name), fault.E(fault.Path(name), fault.CrossDevice, "an application is moved secret by secret"))
}

// Create refuses files at the root: every secret belongs to an application.
func (r *rootNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	err := r.m.writable(fault.Path(name))
	if err == nil {
		err = fault.E(fault.Path(name), fault.NotPermitted, "secrets live in an application directory, not at the root")
	}
	return nil, nil, 0, r.m.errno("create", fault.Path(name), err)
}

func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return r.m.statfs(out)
}
