package integration

import (
	"fmt"
	"os"
	"strconv"
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
// read is EIO, with a log line naming the secret, on both backends. Once
// the listing gives the true Size again (a TTL on), the file reads the
// value: the revision relisted with another size is another inode. (It
// stayed EIO until a restart: the kernel kept the inode of 4 bytes, and
// the catalog the failed revision.)
func TestASizeThatDiffersBetweenTheListingAndTheReadIsEIOUntilTheListingIsRepaired(t *testing.T) {
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
			// Which check refuses it depends on when the mount read the
			// item: after the Size was put back (the two sizes differ),
			// or before (the value does not decrypt to the 4 bytes).
			log := m.log()
			logNamesAndHoldsNoValue(t, log, []string{"app/s: integrity check failed: "}, old, fresh)
			if !strings.Contains(log, "the store gave two sizes for one revision, 4 bytes when listed and") &&
				!strings.Contains(log, "the decrypted value does not have the 4 bytes the item's Size records") {
				t.Errorf("the log names neither check of the size:\n%s", log)
			}
			eventually(t, 10*time.Second, "app/s reads its value once the listing gives its true size", func() bool {
				out, _, err := m.sh("cat app/s")
				return err == nil && out == fresh
			})
			if got := m.mustSh("stat -c %s app/s"); got != strconv.Itoa(len(fresh))+"\n" {
				t.Errorf("stat app/s shows %q bytes, want %d", got, len(fresh))
			}
		})
	}
}

// A store writer who puts a 300 MiB ProtectedSecretValue in secrets.db
// (the local store has no item size limit of its own, as DynamoDB's
// 400 KB) must not make the mount load it: that OOM-killed a mount in a
// memory-limited container, leaving its path "Transport endpoint is not
// connected". The read is EIO naming the secret, the others read, and
// the mount's peak memory stays far below the blob's size.
func TestAHugeStoredValueIsEIOAndNeverLoaded(t *testing.T) {
	b := localBackend(t)
	b.cli(t, nil, "init")
	good := unique("good")
	b.cli(t, []byte(good), "put", "app/good")
	b.cli(t, []byte(unique("big")), "put", "app/big")
	m := mount(t, b, "--ttl", "1s", "--read-only")
	m.secret(good)
	const blob = 300 << 20
	execOne(t, storeDB(t, b), "UPDATE secrets SET ProtectedSecretValue = zeroblob(?), Version = Version + 1 WHERE SecretName = 'big'", blob)
	eventually(t, 10*time.Second, "cat app/big fails", func() bool {
		_, _, err := m.sh("cat app/big")
		return err != nil
	})
	m.failSh("cat app/big", "Input/output error")
	if got := m.mustSh("cat app/good"); got != good {
		t.Fatalf("cat app/good = %q beside the huge item", got)
	}
	if out, _, _ := m.sh("ls -l app"); !strings.Contains(out, " good\n") { // app/big: "cannot access", exit 1
		t.Fatalf("ls -l app = %q: the other secret must list", out)
	}
	peak := peakRSS(t, m.cmd.Process.Pid)
	t.Logf("the mount's peak RSS: %d MiB, with a %d MiB value stored", peak>>20, blob>>20)
	if peak > blob/3 {
		t.Errorf("the mount's peak RSS is %d MiB: it loaded the %d MiB value", peak>>20, blob>>20)
	}
	logNamesAndHoldsNoValue(t, m.log(), []string{"app/big", "integrity check failed"}, good)
}

// peakRSS is the peak resident memory of process pid, in bytes
// (/proc/PID/status VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
