package inonum

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"
)

// mac, which reuses keyed hashes from a pool, gives what a fresh
// HMAC-SHA256 under the Numbers' key gives for the same length-prefixed
// parts and numbers, from many goroutines at once: a hash put back in the
// pool carries nothing into the next number.
func TestMACIsAFreshHMACOfItsLengthPrefixedParts(t *testing.T) {
	m := New()
	want := func(parts [][]byte, nums ...int64) uint64 {
		var b []byte
		for _, p := range parts {
			b = binary.AppendUvarint(b, uint64(len(p)))
			b = append(b, p...)
		}
		for _, n := range nums {
			b = binary.AppendVarint(b, n)
		}
		mac := hmac.New(sha256.New, m.key)
		mac.Write(b)
		return binary.BigEndian.Uint64(mac.Sum(nil))
	}
	cases := []struct {
		parts [][]byte
		nums  []int64
	}{
		{[][]byte{[]byte("app"), []byte("db"), []byte("iv-1")}, []int64{1, 0}},
		{[][]byte{[]byte("ap"), []byte("pdb"), []byte("iv-1")}, []int64{1, 0}},
		{[][]byte{[]byte("app"), []byte("db"), []byte("iv-1")}, []int64{1, 1}},
		{[][]byte{[]byte("view"), []byte("app"), []byte("x"), make([]byte, 300)}, []int64{0}},
	}
	seen := map[uint64]int{}
	for i, c := range cases {
		got := m.mac(c.parts, c.nums...)
		if w := want(c.parts, c.nums...); got != w {
			t.Errorf("case %d: %#x, want %#x", i, got, w)
		}
		if j, dup := seen[got]; dup {
			t.Errorf("cases %d and %d give one number", j, i)
		}
		seen[got] = i
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				c := cases[(g+i)%len(cases)]
				if got, w := m.mac(c.parts, c.nums...), want(c.parts, c.nums...); got != w {
					t.Errorf("concurrently: %#x, want %#x", got, w)
					return
				}
			}
		}()
	}
	wg.Wait()
}
