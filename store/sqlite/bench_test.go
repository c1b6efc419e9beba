package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/secretfs/secretfs/store"
)

// BenchmarkGetAmong reads one item of a table of 100 or of 5,000: a
// search by key costs about the same in both.
func BenchmarkGetAmong(b *testing.B) {
	for _, n := range []int{100, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, filepath.Join(b.TempDir(), "s.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := 0; i < n; i++ {
				it := &store.Item{Meta: store.Meta{Key: store.Key{App: "app", Name: fmt.Sprintf("s%05d", i)}}, MasterKeyID: "k",
					ProtectedDocumentKey: make([]byte, 256), ProtectedSecretValue: make([]byte, 100),
				}
				it.InitialisationVector = make([]byte, 12)
				it.Format = "v2"
				it.Version = 1
				it.Size = 84
				it.Modified = time.Now()
				if err := s.Put(ctx, it, store.NoItem); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Get(ctx, store.Key{App: "app", Name: fmt.Sprintf("s%05d", i%n)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
