package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secretfs/secretfs/internal/testserver"
)

// The read path: hot reads from the kernel's page cache, revalidation
// without decryption, freshness within the TTL, whole values while
// secrets rotate, signals, and the POSIX corners readers meet.

// initLocal prepares a local backend for admin verbs before any mount
// (a DynamoDB backend is prepared when it is made).
func initLocal(t *testing.T, b *backend) {
	t.Helper()
	if b.name == "local" {
		b.cli(t, nil, "init")
	}
}

// Reading unchanged secrets costs no key unwrap and no item read at
// steady state, and one listing per application per TTL, whatever the
// read rate.
func TestSteadyStateDecryptsNothingAndListsEachApplicationOncePerTTL(t *testing.T) {
	b := dynamoBackend(t)
	const n = 10
	for i := range n {
		b.cli(t, []byte(fmt.Sprintf("value %d", i)), "put", fmt.Sprintf("steady/s%d", i))
	}
	const ttl = 2 * time.Second
	m := mount(t, b, "--ttl", ttl.String(), "--read-only")
	read := func() {
		t.Helper()
		for i := range n {
			if got, err := os.ReadFile(m.path(fmt.Sprintf("steady/s%d", i))); err != nil || string(got) != fmt.Sprintf("value %d", i) {
				t.Fatalf("read s%d: %q, %v", i, got, err)
			}
		}
	}
	read() // cold: each secret is read and decrypted once
	dynalite.ResetCalls()
	localKMS.ResetCalls()
	const period = 6 * time.Second
	start, reads := time.Now(), 0
	for time.Since(start) < period {
		read()
		reads += n
	}
	elapsed := time.Since(start)
	queries, gets, decrypts := dynalite.Calls("Query"), dynalite.Calls("GetItem"), localKMS.Calls("Decrypt")
	t.Logf("%d reads of %d unchanged secrets over %s with --ttl %s: %d Decrypt, %d GetItem, %d Query", reads, n, elapsed.Round(time.Millisecond), ttl, decrypts, gets, queries)
	if decrypts != 0 || gets != 0 {
		t.Errorf("steady reads of unchanged secrets cost %d Decrypt and %d GetItem, want none", decrypts, gets)
	}
	if most := int64(elapsed/ttl) + 1; queries > most || queries == 0 {
		t.Errorf("steady reads cost %d Query over %s, want between 1 and %d (one per application per TTL)", queries, elapsed.Round(time.Millisecond), most)
	}
}

// A change made elsewhere (`secretfs put`) is read by the next open
// within the TTL, on a read-only mount whose readers are served from the
// kernel's page cache without asking the mount.
func TestAChangeIsReadWithinTheTTLOnAHotReadOnlyMount(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		old, fresh := unique("old"), unique("fresh")
		initLocal(t, b)
		b.cli(t, []byte(old), "put", "app/s")
		const ttl = 2 * time.Second
		m := mount(t, b, "--ttl", ttl.String(), "--read-only")
		m.secret(old)
		m.secret(fresh)
		for range 50 { // hot
			if got, err := os.ReadFile(m.path("app/s")); err != nil || string(got) != old {
				t.Fatalf("read %q, %v", got, err)
			}
		}
		b.cli(t, []byte(fresh), "put", "app/s")
		eventually(t, ttl+time.Second, "a reader that keeps reading reads the new value", func() bool {
			got, err := os.ReadFile(m.path("app/s"))
			if err != nil || (string(got) != old && string(got) != fresh) {
				t.Fatalf("read %q, %v: neither value", got, err)
			}
			return string(got) == fresh
		})
	})
}

// version64K is the i-th of the values the rotation test writes: 64 KiB
// (sixteen pages), every byte telling which version it belongs to, so
// that a read mixing two versions is seen.
func version64K(i int) []byte {
	line := []byte(fmt.Sprintf("version %02d;", i))
	return bytes.Repeat(line, 64<<10/len(line)+1)[:64<<10]
}

// A 64 KiB value rotated ten times, elsewhere and through the mount, while
// readers loop: every read is one whole version, and a file kept open
// keeps reading the version it opened.
func TestAValueRotatedWhileReadersLoopIsAlwaysReadWhole(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		b.cli(t, version64K(0), "put", "app/big")
		m := mount(t, b, "--ttl", "1s")
		whole := func(got []byte) int {
			for i := 0; i <= 10; i++ {
				if bytes.Equal(got, version64K(i)) {
					return i
				}
			}
			return -1
		}
		held, err := os.Open(m.path("app/big"))
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		seen := map[int]int{}
		for range 3 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					got, err := os.ReadFile(m.path("app/big"))
					v := whole(got)
					if err != nil || v < 0 {
						t.Errorf("a read got %d bytes (%v) that are not one whole version", len(got), err)
						return
					}
					mu.Lock()
					seen[v]++
					mu.Unlock()
				}
			})
		}
		for i := 1; i <= 10; i++ {
			if i%2 == 1 {
				b.cli(t, version64K(i), "put", "app/big")
			} else if err := os.WriteFile(m.path("app/big"), version64K(i), 0o600); err != nil {
				t.Fatalf("rotation %d through the mount: %v", i, err)
			}
			time.Sleep(300 * time.Millisecond)
			buf := make([]byte, 128<<10)
			n, err := held.ReadAt(buf, 0)
			if n != 64<<10 || whole(buf[:n]) != 0 {
				t.Errorf("the file opened at version 0 reads %d bytes of version %d (%v) after rotation %d", n, whole(buf[:n]), err, i)
			}
		}
		eventually(t, 5*time.Second, "readers read the last version", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return seen[10] > 0
		})
		close(stop)
		wg.Wait()
		t.Logf("reads by version: %v", seen)
	})
}

// buildC compiles a C program from testdata into the test's temp dir.
func buildC(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc is needed to build %s: %v", name, err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-o", bin, filepath.Join("testdata", name+".c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return bin
}

// A program whose SIGALRM handler does not restart system calls, reading
// secrets that must be fetched at each open, never sees EINTR from
// open(2) or read(2): only a fatal signal interrupts a read, as on a
// local file system.
func TestAReaderCatchingSignalsNeverSeesEINTR(t *testing.T) {
	reader := buildC(t, "sigreader")
	eachBackend(t, func(t *testing.T, b *backend) {
		initLocal(t, b)
		var files []string
		for i := range 5 {
			name := fmt.Sprintf("app/s%d", i)
			b.cli(t, []byte(strings.Repeat("x", 100+i)), "put", name)
			files = append(files, name)
		}
		// --ttl 0: every open asks the store, so that every read waits
		// on the mount while the timer fires.
		m := mount(t, b, "--ttl", "0")
		cmd := exec.Command(reader, append([]string{"60"}, files...)...)
		cmd.Dir = m.dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sigreader: %v\n%s", err, out)
		}
		var reads, eintr, signals int
		if _, err := fmt.Sscanf(string(out), "reads=%d eintr=%d signals=%d", &reads, &eintr, &signals); err != nil {
			t.Fatalf("sigreader printed %q", out)
		}
		t.Logf("%d reads, %d EINTR, %d signals caught", reads, eintr, signals)
		if eintr != 0 {
			t.Errorf("%d open or read calls failed with EINTR", eintr)
		}
		if reads != 300 || signals < 50 {
			t.Errorf("%d reads while catching %d signals: the test did not exercise what it claims", reads, signals)
		}
	})
}

// A stat, a listing or a lookup never waits for a commit in flight: here
// the writer's close waits for KMS (frozen), while they answer.
func TestStatListAndLookupAnswerDuringASlowCommit(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("old"), "put", "app/s")
	b.cli(t, []byte("other"), "put", "app/t")
	// --ttl 0: the kernel keeps nothing, so the mount itself answers.
	m := mount(t, b, "--timeout", "30s", "--ttl", "0")
	m.mustSh("cat app/s app/t >/dev/null")
	w, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("new"); err != nil {
		t.Fatal(err)
	}
	localKMS.Pause()
	defer localKMS.Resume()
	// The counters run across the shard's tests (and this test's puts):
	// wait for a GenerateDataKey after these, the close's.
	keysBefore := localKMS.Calls("GenerateDataKey")
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	eventually(t, 10*time.Second, "the close reaches KMS", func() bool { return localKMS.Calls("GenerateDataKey") > keysBefore })
	out := m.mustSh("stat -c %s app/s; ls -l app | wc -l; cat app/t; stat -L -c %s app/t")
	select {
	case err := <-closed:
		t.Fatalf("the close returned (%v) before the stat: the test proves nothing", err)
	default:
	}
	if out != "3\n3\nother5\n" {
		t.Errorf("during the commit: %q", out)
	}
	localKMS.Resume()
	if err := <-closed; err != nil {
		t.Errorf("close once KMS is back: %v", err)
	}
	if got := m.mustSh("cat app/s"); got != "new" {
		t.Errorf("after the commit: %q", got)
	}
}

// What close() says is true: a close that fails because KMS does not
// answer commits nothing, then or later.
func TestAFailedCloseNeverCommitsLater(t *testing.T) {
	b := dynamoBackend(t)
	b.cli(t, []byte("old"), "put", "app/s")
	m := mount(t, b, "--timeout", "2s")
	w, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	value := m.secret(unique("never"))
	if _, err := w.WriteString(value); err != nil {
		t.Fatal(err)
	}
	localKMS.Pause()
	err = w.Close()
	localKMS.Resume()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with KMS frozen: %v, want EIO", err)
	}
	time.Sleep(3 * time.Second) // a release or a retry would have committed by now
	if got := b.cli(t, nil, "get", "app/s"); got != "old" {
		t.Errorf("after a failed close the store holds %q, want the old value", got)
	}
	if got := m.mustSh("cat app/s"); got != "old" {
		t.Errorf("after a failed close the mount reads %q", got)
	}
}

// During an outage one syscall asks the store once: the kernel's requests
// for it (a lookup that revalidates the name, another after it failed)
// do not each wait for a deadline of their own.
func TestOneSyscallDuringAnOutageAsksTheStoreOnce(t *testing.T) {
	b, own := ownDynamo(t, false)
	b.cli(t, []byte("v"), "put", "app/s")
	m := mount(t, b, "--ttl", "1s", "--timeout", "2s", "--stale-if-error", "0")
	m.mustSh("cat app/s >/dev/null")
	time.Sleep(1500 * time.Millisecond) // past the TTL: the next stat revalidates
	own.Pause()
	defer own.Resume()
	own.ResetCalls()
	m.failSh("stat app/s", "Input/output error")
	if n := own.Total(); n != 1 {
		t.Errorf("one stat during an outage sent %d requests to the store, want 1: %v", n, own.Counts())
	}
}

// Readers' POSIX corners: a shared read-only mapping, fstat of an open
// file after its name is removed, statfs inside an application.
func TestMmapFstatAfterUnlinkAndStatfsInAnApplication(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		value := unique("mapped")
		initLocal(t, b)
		b.cli(t, []byte(value), "put", "app/s")
		m := mount(t, b)
		m.secret(value)
		f, err := os.Open(m.path("app/s"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		data, err := syscall.Mmap(int(f.Fd()), 0, len(value), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			t.Fatalf("mmap MAP_SHARED, PROT_READ: %v", err)
		}
		if string(data) != value {
			t.Errorf("the mapping holds %q", data)
		}
		syscall.Munmap(data)
		// A writer's descriptor bypasses the page cache, which a shared
		// writable mapping would need: the kernel refuses it, ENODEV.
		w, err := os.OpenFile(m.path("app/s"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if data, err := syscall.Mmap(int(w.Fd()), 0, len(value), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED); err != syscall.ENODEV {
			if err == nil {
				syscall.Munmap(data)
			}
			t.Errorf("mmap MAP_SHARED, PROT_WRITE of a writer's descriptor: %v, want ENODEV", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("close of the writer that wrote nothing: %v", err)
		}

		m.mustSh("rm app/s")
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatalf("fstat after unlink: %v", err)
		}
		if st.Nlink != 0 || st.Size != int64(len(value)) {
			t.Errorf("fstat after unlink: nlink %d, size %d; want 0 and %d", st.Nlink, st.Size, len(value))
		}
		buf := make([]byte, 100)
		if n, _ := f.ReadAt(buf, 0); string(buf[:n]) != value {
			t.Errorf("the open file of a removed secret reads %q", buf[:n])
		}

		m.mustSh("echo x > app/t")
		var root, app syscall.Statfs_t
		if err := syscall.Statfs(m.dir, &root); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Statfs(m.path("app"), &app); err != nil {
			t.Fatal(err)
		}
		if app.Blocks == 0 || app.Bavail == 0 || app.Blocks != root.Blocks || app.Namelen != root.Namelen {
			t.Errorf("statfs in an application: %+v; at the root: %+v", app, root)
		}
		var file syscall.Statfs_t
		if err := syscall.Statfs(m.path("app/t"), &file); err != nil || file.Bavail != root.Bavail {
			t.Errorf("statfs of a secret: %+v, %v", file, err)
		}
	})
}

// copiesInMemory counts the copies of marker in the readable memory of
// process pid, read through /proc/<pid>/mem (as root), and logs where
// each is (the bytes before it, never the value).
func copiesInMemory(t *testing.T, pid int, marker []byte) (copies int) {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	region := regexp.MustCompile(`^([0-9a-f]+)-([0-9a-f]+) r`)
	for _, line := range strings.Split(string(maps), "\n") {
		mm := region.FindStringSubmatch(line)
		if mm == nil || strings.Contains(line, "[vvar]") || strings.Contains(line, "[vsyscall]") {
			continue
		}
		start, _ := strconv.ParseUint(mm[1], 16, 64)
		end, _ := strconv.ParseUint(mm[2], 16, 64)
		if end-start > 4<<30 {
			continue // the race detector's shadow memory, never plaintext
		}
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start))
		buf = buf[:n]
		for off := 0; ; {
			i := bytes.Index(buf[off:], marker)
			if i < 0 {
				break
			}
			at := off + i
			copies++
			t.Logf("a copy at %#x in %s, after % x", start+uint64(at), line, buf[max(at-96, 0):at])
			off = at + 1
		}
	}
	return copies
}

// Plaintext the mount holds is wiped once nobody has read it for
// --cache-idle: after the idle window, the secret's bytes are nowhere in
// the mount's memory, though they were written and read through the
// mount (so passed through go-fuse's request buffers, which its patched
// copy wipes: third_party/go-fuse) and through the admin verbs.
func TestPlaintextIsGoneFromTheMountsMemoryAfterTheIdleWindow(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		// --ttl 0: the value put by the admin verb is seen at once.
		const idle = 8 * time.Second
		m := mount(t, b, "--cache-idle", idle.String(), "--ttl", "0")
		written, put := m.secret(unique("marker-written")), m.secret(unique("marker-put"))
		pid := m.cmd.Process.Pid
		// Each value is looked for right after its last read by the
		// mount, well within the idle window: found, the scan can find a
		// copy; and the window is measured from the last read.
		inUse := func(what, v string) {
			t.Helper()
			if copiesInMemory(t, pid, []byte(v)) == 0 {
				t.Fatalf("the value %s is not in the mount's memory even while in use: the scan proves nothing", what)
			}
		}
		m.mustSh("mkdir -p app && printf %s " + written + " > app/w && cat app/w app/w >/dev/null")
		inUse("written through the mount", written)
		b.cli(t, []byte(put), "put", "app/p")
		m.mustSh("cat app/p app/p >/dev/null")
		inUse("put by the admin verb", put)
		copies := func() (n int) {
			for _, v := range []string{written, put} {
				n += copiesInMemory(t, pid, []byte(v))
			}
			return n
		}
		time.Sleep(idle + idle/2) // the sweep runs every idle/8
		if n := copies(); n != 0 {
			t.Errorf("%d copies of secret values outlived --cache-idle in the mount's memory", n)
		}
	})
}

// metricsAddr returns a free loopback address for --metrics-addr.
func metricsAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fuseRequests scrapes the mount's /metrics and returns how many requests
// of each operation it has served.
func fuseRequests(t *testing.T, addr string) map[string]int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	line := regexp.MustCompile(`(?m)^secretfs_fuse_requests_total\{errno="[^"]*",op="([A-Z]+)"\} (\d+)$`)
	counts := map[string]int{}
	for _, m := range line.FindAllStringSubmatch(string(body), -1) {
		n, _ := strconv.Atoi(m[2])
		counts[m[1]] += n
	}
	return counts
}

// delta returns after minus before, per operation, without zeros.
func delta(before, after map[string]int) map[string]int {
	d := map[string]int{}
	for op, n := range after {
		if n != before[op] {
			d[op] = n - before[op]
		}
	}
	return d
}

// A hot read (open, read, close of a secret read before) asks a
// read-only mount nothing at all: the kernel serves it from its page
// cache. On a read-write mount it costs one OPEN (the RELEASE that
// follows is sent once the close has returned). Neither asks the store
// or the key anything: on DynamoDB, no GetItem, Query, Scan or Decrypt.
func TestHotReadsAskTheMountNothingOnAReadOnlyMountAndOnceOnAReadWriteMount(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		b.cli(t, nil, "init")
		b.cli(t, bytes.Repeat([]byte("k"), 1024), "put", "app/s")
		for _, mode := range []struct {
			name  string
			flags []string
			want  map[string]int
		}{
			{"read-only", []string{"--read-only"}, map[string]int{}},
			{"read-write", nil, map[string]int{"OPEN": 1000, "RELEASE": 1000}},
		} {
			t.Run(mode.name, func(t *testing.T) {
				addr := metricsAddr(t)
				m := mount(t, b, append([]string{"--metrics-addr", addr}, mode.flags...)...)
				p := m.path("app/s")
				for range 3 { // cold, then warm: the kernel learns the name and the pages
					if _, err := os.ReadFile(p); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(100 * time.Millisecond) // the last RELEASE arrives after its close
				before := fuseRequests(t, addr)
				calls := backendCalls()
				buf := make([]byte, 4096)
				for range 1000 {
					f, err := os.Open(p)
					if err != nil {
						t.Fatal(err)
					}
					if n, err := f.Read(buf); n != 1024 || err != nil {
						t.Fatalf("read %d bytes, %v", n, err)
					}
					f.Close()
				}
				time.Sleep(100 * time.Millisecond)
				got := delta(before, fuseRequests(t, addr))
				t.Logf("1000 hot open+read+close on a %s %s mount: %v", b.name, mode.name, got)
				if fmt.Sprint(got) != fmt.Sprint(mode.want) {
					t.Errorf("1000 hot reads asked the mount %v, want %v", got, mode.want)
				}
				if got := backendCalls() - calls; b.name == "dynamodb" && got != 0 {
					t.Errorf("1000 hot reads made %d requests to DynamoDB and KMS, want none", got)
				}
			})
		}
	})
}

// Stale-if-error: while the store cannot answer, frozen (SIGSTOP) or
// killed, a secret read before is served its last value (one warning per
// secret per outage), one never read fails with EIO, and everything
// recovers, without a remount, when the store is back.
func TestStaleIfErrorWithTheStoreFrozenAndKilled(t *testing.T) {
	own, err := testserver.StartPersistentDynalite()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	table := fmt.Sprintf("stale-%d-%d", os.Getpid(), tables.Add(1))
	b := &backend{name: "dynamodb", table: table,
		env:   append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+own.URL, "AWS_ENDPOINT_URL_KMS="+localKMS.URL),
		flags: []string{"--backend", "dynamodb", "--table", table, "--kms-key", localKMSKey(t), "--timeout", "2s"}}
	b.cli(t, nil, "init")
	b.cli(t, []byte("known"), "put", "app/known")
	for _, name := range []string{"frozen", "killed"} {
		b.cli(t, []byte("never read"), "put", "app/unread-"+name)
	}
	const ttl = time.Second
	m := mount(t, b, "--ttl", ttl.String(), "--stale-if-error", "1h", "--read-only")
	last := m.mustSh("cat app/known")
	for _, outage := range []struct {
		name       string
		start, end func()
	}{
		{"frozen", own.Freeze, own.Thaw},
		{"killed", own.Kill, func() {
			if err := own.Restart(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		time.Sleep(ttl + 200*time.Millisecond) // past the TTL: every name must be revalidated
		outage.start()
		for range 3 {
			if got := m.mustSh("cat app/known"); got != last {
				t.Errorf("%s store: a secret read before reads %q, want its last value %q", outage.name, got, last)
			}
		}
		m.failSh("cat app/unread-"+outage.name, "Input/output error")
		outage.end()
		last = "changed after the " + outage.name + " store came back"
		b.cli(t, []byte(last), "put", "app/known")
		eventually(t, 10*time.Second, "the mount reads the value changed once the store is back", func() bool {
			out, _, err := m.sh("cat app/known")
			return err == nil && out == last
		})
		if got := m.mustSh("cat app/unread-" + outage.name); got != "never read" {
			t.Errorf("once the store is back, a secret never read before reads %q", got)
		}
	}
	lines := func(msg string) int {
		return len(regexp.MustCompile(`"msg":"`+msg+`","secret":"app/known"`).FindAllString(m.log(), -1))
	}
	if n := lines("the store cannot answer: serving the last known value"); n != 2 {
		t.Errorf("%d warnings of stale values of app/known over two outages, want 2 (one per secret per outage)", n)
	}
	if n := lines("the store answers again: serving fresh values"); n != 2 {
		t.Errorf("%d log lines of recovery of app/known over two outages, want 2", n)
	}
}

// A commit whose request landed but whose answer was lost is found to
// have landed: close succeeds, and the log, the mount and the store agree.
func TestACommitWhoseAnswerWasLostIsFoundToHaveLanded(t *testing.T) {
	b, own := ownDynamo(t, false, "--timeout", "1s")
	b.cli(t, []byte("before"), "put", "app/s")
	m := mount(t, b)
	w, err := os.OpenFile(m.path("app/s"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	value := m.secret(unique("landed"))
	if _, err := w.WriteString(value); err != nil {
		t.Fatal(err)
	}
	own.Mute("PutItem")
	err = w.Close()
	own.Unmute()
	if err != nil {
		t.Fatalf("close of a write that landed without an answer: %v, want success", err)
	}
	if got := b.cli(t, nil, "get", "app/s"); got != value {
		t.Errorf("the store holds %q", got)
	}
	if got := m.mustSh("cat app/s"); got != value {
		t.Errorf("the mount reads %q", got)
	}
	if !strings.Contains(m.log(), `"msg":"secret written"`) {
		t.Errorf("the log does not say the secret was written:\n%s", m.log())
	}
}
