package integration

import (
	"strings"
	"testing"
	"time"
)

// The kernel reads a file only up to the size it was told, and never
// reads one it was told is empty: a Size forged to 0 (with the Version
// bumped, so that the mount sees a new revision) must not make an empty
// file of a secret, nor a Size forged below 0 (which no item records: a
// malformed item) one of a secret that does not decrypt, nor its absence.
// Both are EIO, with a log line naming the secret, on both backends; the
// others read.
func TestASizeForgedToZeroOrBelowIsEIONotAnEmptyFile(t *testing.T) {
	for name, newBackend := range tamperBackends() {
		t.Run(name, func(t *testing.T) {
			b, w := newBackend(t)
			zero, negative, good := unique("zero"), unique("negative"), unique("good")
			// v2 binds no Version: the bumped Version alone decrypts, and
			// only the Size check can refuse the item.
			b.cli(t, []byte(zero), "put", "app/zero", "--format", "v2")
			// v3 binds the Version: the bumped one does not decrypt.
			b.cli(t, []byte(negative), "put", "app/negative")
			b.cli(t, []byte(good), "put", "app/good")

			m := mount(t, b, "--ttl", "1s", "--read-only")
			for _, v := range []string{zero, negative, good} {
				m.secret(v)
			}
			if got := m.mustSh("cat app/zero app/negative app/good"); got != zero+negative+good {
				t.Fatalf("cat before the tampering = %q", got)
			}
			w.setNumbers(t, "app", "zero", map[string]int64{"Size": 0, "Version": firstVersion + 1})
			w.setNumbers(t, "app", "negative", map[string]int64{"Size": -7, "Version": firstVersion + 1})

			for _, s := range []string{"zero", "negative"} {
				var out, errOut string
				defer func() {
					if t.Failed() {
						t.Logf("last cat: %q %q; log:\n%s", out, errOut, m.log())
					}
				}()
				eventually(t, 10*time.Second, "the mount sees app/"+s+"'s new revision", func() bool {
					var err error
					out, errOut, err = m.sh("cat app/" + s)
					return err != nil || out != map[string]string{"zero": zero, "negative": negative}[s]
				})
				if out != "" || !strings.Contains(errOut, "Input/output error") {
					t.Fatalf("cat app/%s after its Size was forged: %q, %q; want EIO, not an empty file", s, out, errOut)
				}
				m.failSh("cat app/"+s, "Input/output error") // and stays so
			}
			if got := m.mustSh("cat app/good"); got != good {
				t.Fatalf("cat app/good = %q beside the forged items", got)
			}
			logNamesAndHoldsNoValue(t, m.log(), []string{
				`app/zero: integrity check failed: the decrypted value does not have the 0 bytes the item's Size records`,
				`cache.Lookup: app/negative: `,
				`integrity check failed: malformed item: attribute Size is negative (-7)`,
			}, zero, negative, good)
		})
	}
}

// A store writer who forges an item's Size between the mount's listing
// and its read of the item (the listing records 4 bytes, the read finds
// the true Size) must not make the file the value's first 4 bytes: the
// read is EIO, with a log line naming the secret, on both backends.
func TestASizeThatDiffersBetweenTheListingAndTheReadIsEIO(t *testing.T) {
	for name, newBackend := range tamperBackends() {
		t.Run(name, func(t *testing.T) {
			b, w := newBackend(t)
			old, fresh := unique("old"), unique("fresh")
			b.cli(t, []byte(old), "put", "app/s")
			const ttl = 2 * time.Second
			m := mount(t, b, "--ttl", ttl.String(), "--read-only")
			m.secret(old)
			m.secret(fresh)
			if got := m.mustSh("cat app/s"); got != old {
				t.Fatalf("cat app/s = %q", got)
			}
			b.cli(t, []byte(fresh), "put", "app/s")
			version := int64(firstVersion + 1) // the put's: the revision stays, only its Size changes
			w.setNumbers(t, "app", "s", map[string]int64{"Size": 4, "Version": version})
			time.Sleep(ttl + 500*time.Millisecond)
			if got := m.mustSh("ls -l app"); !strings.Contains(got, " 4 ") {
				t.Fatalf("ls -l app after the forged Size = %q: want the listing to record 4 bytes", got)
			}
			w.setNumbers(t, "app", "s", map[string]int64{"Size": int64(len(fresh)), "Version": version})
			out, errOut, err := m.sh("cat app/s")
			if err == nil || out != "" || !strings.Contains(errOut, "Input/output error") {
				t.Fatalf("cat app/s with 4 bytes listed and %d read: %q, %q, %v; want EIO, never a prefix", len(fresh), out, errOut, err)
			}
			logNamesAndHoldsNoValue(t, m.log(), []string{"app/s: integrity check failed: the store gave two sizes for one revision, 4 bytes when listed and"}, old, fresh)
		})
	}
}
