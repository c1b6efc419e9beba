package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/secretfs/secretfs/internal/testserver"
)

// Every test docs/SEMANTICS.md names as showing a behaviour exists, so the
// table cannot point at tests that were renamed or removed.
func TestSemanticsNamesOnlyTestsThatExist(t *testing.T) {
	root, doc := repoFile(t, "docs", "SEMANTICS.md")
	defined := map[string]bool{}
	def := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if filepath.Ext(p) == ".go" {
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range def.FindAllSubmatch(src, -1) {
				defined[string(m[1])] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`(Test\\w+)`").FindAllSubmatch(doc, -1)
	if len(named) < 20 {
		t.Fatalf("docs/SEMANTICS.md names only %d tests", len(named))
	}
	for _, m := range named {
		if !defined[string(m[1])] {
			t.Errorf("docs/SEMANTICS.md names %s, which no test file defines", m[1])
		}
	}
}

// repoFile returns the repository's root and the content of the file at
// path (its elements) beneath it.
func repoFile(t *testing.T, path ...string) (root string, content []byte) {
	t.Helper()
	root, err := testserver.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	content, err = os.ReadFile(filepath.Join(append([]string{root}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return root, content
}
