package vfs

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/vfs/vfstest"
)

// listedSecrets is how many secrets the application of the `ls -l`
// benchmarks holds: as many as scripts/bench lists.
const listedSecrets = 2500

// pagedCatalog is the fake catalog with List answered from a sorted copy
// of what it holds, a page of listPage names at a time, as package
// cache's index answers it: the benchmarks then measure this package,
// not the fake's sorting of every page.
type pagedCatalog struct {
	*vfstest.Catalog
	sorted []store.Meta
}

// listPage is the size of a page of the real catalog's List.
const listPage = 1000

func (c *pagedCatalog) List(ctx context.Context, app, after string, limit int) ([]store.Meta, string, error) {
	i, _ := slices.BinarySearchFunc(c.sorted, after, func(m store.Meta, name string) int { return strings.Compare(m.Name, name) })
	for i < len(c.sorted) && c.sorted[i].Name <= after {
		i++
	}
	page := c.sorted[i:min(i+listPage, len(c.sorted))]
	if i+listPage >= len(c.sorted) {
		return page, "", nil
	}
	return page, page[len(page)-1].Name, nil
}

// listFixture is a file system whose application "many" holds n
// secrets, each looked up once, as a catalog within its TTL holds them.
func listFixture(b *testing.B, n int, opts Options) *FS {
	f := newFixture(b, opts)
	cat := &pagedCatalog{Catalog: f.cat}
	for i := range n {
		k := store.Key{App: "many", Name: fmt.Sprintf("s-%04d", i)}
		cat.sorted = append(cat.sorted, f.cat.Store(k, "value"))
		if _, err := f.cat.Lookup(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
	f.fs = New(cat, f.fs.opts)
	return f.fs
}

// ownerRules are owner rules as a config file gives them (package
// mountconfig's OwnerOf: the first rule whose pattern matches), none of
// which matches the secrets listed: every name is tried against each.
func ownerRules(rules ...string) func(string) Owner {
	uid := uint32(1234)
	return func(p string) Owner {
		for _, pattern := range rules {
			if ok, _ := path.Match(pattern, p); ok {
				return Owner{UID: &uid}
			}
		}
		return Owner{}
	}
}

// BenchmarkListAttr is what `ls -l` of an application of 2,500 secrets
// asks of the file system once the catalog holds them (within the TTL)
// and the kernel holds their inodes: per name, the next entry of the
// listing, its lookup from the listing (READDIRPLUS), the revision the
// adapter's inode table holds for it, and its attributes. One op is one
// whole listing.
func BenchmarkListAttr(b *testing.B) {
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"mount-options", Options{}},
		{"owner-rules", Options{OwnerOf: ownerRules("other/*", "many/db-*", "*/tls-*")}},
	} {
		b.Run(c.name, func(b *testing.B) {
			v := listFixture(b, listedSecrets, c.opts)
			revs := map[store.Key]*Revision{}
			list := func() {
				l := v.List("many")
				n := 0
				for {
					meta, ok, err := l.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if !ok {
						break
					}
					e, err := v.LookupListed(ctx, meta)
					if err != nil {
						b.Fatal(err)
					}
					r := revs[meta.Key]
					if r == nil {
						r = v.NewRevision(meta.Key, e.Meta, func() {}, func() {})
						revs[meta.Key] = r
					}
					if !r.Is(meta.Key, e.Meta.Revision()) {
						b.Fatalf("%v: the revision held is not the one listed", meta.Key)
					}
					if a := r.Attr(); a.Nlink != 1 {
						b.Fatalf("%v: nlink %d, want 1", meta.Key, a.Nlink)
					}
					n++
				}
				if n != listedSecrets {
					b.Fatalf("listed %d secrets, want %d", n, listedSecrets)
				}
			}
			list() // the inode table, as the kernel holds it
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				list()
			}
		})
	}
}
