package integration

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// After a rename, the new name is the very inode the kernel moved there:
// a program that stats the name and then opens it (cp checks that both
// are one file: "skipping file, as it was replaced while being copied")
// sees one inode, however soon after the rename it looks.
func TestARenamedSecretIsOneInodeToStatAndOpen(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		m := mount(t, b)
		value := m.secret(unique("renamed"))
		m.mustSh("mkdir app && printf %s " + value + " > app/s0")
		const rounds = 40
		for i := range rounds {
			from, to := m.path(fmt.Sprintf("app/s%d", i)), m.path(fmt.Sprintf("app/s%d", i+1))
			if _, err := os.ReadFile(from); err != nil { // the kernel holds the old name's revision
				t.Fatal(err)
			}
			if err := os.Rename(from, to); err != nil {
				t.Fatalf("round %d: rename: %v", i, err)
			}
			var st, fst syscall.Stat_t
			if err := syscall.Stat(to, &st); err != nil {
				t.Fatalf("round %d: stat: %v", i, err)
			}
			f, err := os.Open(to)
			if err != nil {
				t.Fatalf("round %d: open: %v", i, err)
			}
			err = syscall.Fstat(int(f.Fd()), &fst)
			got := make([]byte, len(value)+1)
			n, _ := f.Read(got)
			f.Close()
			if err != nil || st.Ino != fst.Ino {
				t.Fatalf("round %d: stat shows inode %d, the open file %d (%v): two inodes for one name", i, st.Ino, fst.Ino, err)
			}
			if string(got[:n]) != value {
				t.Fatalf("round %d: read %q", i, got[:n])
			}
		}
		for i := range 10 {
			m.mustSh(fmt.Sprintf("mv app/s%d app/m%d && cp app/m%d app/c%d && cmp app/m%d app/c%d", rounds, i, i, i, i, i) +
				fmt.Sprintf(" && mv app/m%d app/s%d", i, rounds))
		}
		if got := b.cli(t, nil, "get", fmt.Sprintf("app/s%d", rounds)); got != value {
			t.Errorf("the store holds %q after the renames", got)
		}
	})
}
