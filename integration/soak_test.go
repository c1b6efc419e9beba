package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/secretfs/secretfs/internal/testserver"
)

// A chaos soak: readers and writers on three mounts of one DynamoDB table
// while dynalite and local-kms are frozen at random, for 1 to 4 seconds
// at a time, and each is killed and restarted once. What must hold:
//
//   - no torn read: every value read is one whole value a writer wrote
//     (each carries its own checksum);
//   - no reader gets an error for a secret it has read before (within
//     the stale window, which outlasts the soak): the mount serves the last
//     value while the store or KMS cannot answer;
//   - every write whose close succeeded landed, and no write whose close
//     failed did, unless its outcome was logged as unknown: each secret
//     has one writer, so its final Version counts the writes that landed,
//     and its final value is the last one acknowledged (or one written
//     after it whose outcome was unknown).
//
// SECRETFS_SOAK sets how long the chaos lasts (default 2m).
func TestSoakReadersAndWritersWhileTheStoreAndKMSFreezeAndDie(t *testing.T) {
	duration := 2 * time.Minute
	if v := os.Getenv("SECRETFS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SECRETFS_SOAK=%q: %v", v, err)
		}
		duration = d
	}
	// What went wrong, once each, said again after the mounts' logs
	// (which the mounts' cleanups print when the test failed): a report
	// that shows only the end of the output still shows why.
	var problemsMu sync.Mutex
	var problems []string
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		problemsMu.Lock()
		defer problemsMu.Unlock()
		if !slices.Contains(problems, msg) {
			problems = append(problems, msg)
			t.Error(msg)
		}
	}
	t.Cleanup(func() { // registered first, so it runs after every other cleanup
		problemsMu.Lock()
		defer problemsMu.Unlock()
		if len(problems) > 0 {
			t.Logf("the soak failed for these reasons (above, the mounts' logs):\n%s", strings.Join(problems, "\n"))
		}
	})
	fatal := func(format string, args ...any) {
		problem(format, args...)
		t.FailNow()
	}

	ddb, err := testserver.StartPersistentDynalite()
	if err != nil {
		fatal("starting dynalite: %v", err)
	}
	defer ddb.Close()
	kms, alias := ownKMS(t)
	table := fmt.Sprintf("soak-%d-%d", os.Getpid(), tables.Add(1))
	b := &backend{name: "dynamodb", table: table,
		env:   append(testserver.Env(), "AWS_ENDPOINT_URL_DYNAMODB="+ddb.URL, "AWS_ENDPOINT_URL_KMS="+kms.URL),
		flags: []string{"--backend", "dynamodb", "--table", table, "--kms-key", alias, "--timeout", "1s"}}
	b.cli(t, nil, "init")

	const secrets, writers = 6, 2
	mounts := make([]*mounted, 3)
	for i := range mounts {
		mounts[i] = mount(t, b, "--ttl", "1s", "--stale-if-error", "1h")
	}
	// Each secret has one writer (secret i: writer i%writers, through
	// mount i%writers), which makes its final Version a count of the
	// writes that landed.
	history := make([]*writeHistory, secrets)
	for i := range secrets {
		h := &writeHistory{name: fmt.Sprintf("s%d", i)}
		value := soakValue(h.name, -1, 0, 2000)
		mounts[0].secret(string(value))
		if err := os.MkdirAll(mounts[0].path("soak"), 0o700); err != nil {
			fatal("%v", err)
		}
		if err := os.WriteFile(mounts[0].path("soak/"+h.name), value, 0o600); err != nil {
			fatal("%v", err)
		}
		h.acked = append(h.acked, value)
		history[i] = h
	}

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	var wg sync.WaitGroup
	var torn, readsOK, readErrorsNew, readErrorsKnown atomic.Int64

	// Readers: each on one mount, reading secrets at random.
	for r := range 4 {
		m := mounts[r%len(mounts)]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			seen := map[string]bool{}
			for ctx.Err() == nil {
				name := fmt.Sprintf("s%d", rng.IntN(secrets))
				data, err := os.ReadFile(m.path("soak/" + name))
				switch {
				case err != nil && seen[name]:
					readErrorsKnown.Add(1)
					problem("reader %d: %s, read before, failed at %s: %v", r, name, time.Now().UTC().Format("15:04:05.000"), err)
				case err != nil:
					readErrorsNew.Add(1)
				case !soakWhole(data, name):
					torn.Add(1)
					problem("reader %d: %s read torn or foreign (%d bytes)", r, name, len(data))
				default:
					readsOK.Add(1)
					seen[name] = true
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		})
	}
	// Writers: each on its own mount, rewriting its own secrets.
	for w := range writers {
		m := mounts[w]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(100+w), 2))
			seq := 0
			for ctx.Err() == nil {
				h := history[w+writers*rng.IntN(secrets/writers)]
				seq++
				value := soakValue(h.name, w, seq, []int{100, 5000, 70000}[rng.IntN(3)])
				f, err := os.OpenFile(m.path("soak/"+h.name), os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					h.add(nil, value, false) // never written: neither acknowledged nor refused
					// Not in a tight loop while a server is frozen: each
					// attempt is a log line the cleanup scans.
					time.Sleep(50 * time.Millisecond)
					continue
				}
				m.secret(string(value)) // registered once it can be written: the cleanup scans the log for each
				if _, err := f.Write(value); err != nil {
					problem("writer %d: write() failed: %v", w, err)
				}
				h.add(f.Close(), value, true)
				time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
			}
		})
	}
	// Chaos: freezes of either server, or both, and one kill of each.
	freezes := chaos(ctx, problem, ddb, kms, duration)
	wg.Wait()

	// Everything answers again: the store holds what it holds.
	ddb.Thaw()
	kms.Thaw()
	raw := awsdynamodb.NewFromConfig(awsConfig(t), func(o *awsdynamodb.Options) { o.BaseEndpoint = aws.String(ddb.URL) })
	logs := ""
	for _, m := range mounts {
		logs += m.log()
	}
	// The final values are read with a deadline for a loaded machine, not
	// the mounts' 1 s: this is not a test of deadlines.
	check := *b
	check.flags = append(slices.Clone(b.flags), "--timeout", "30s")
	acked, refused := 0, 0
	for _, h := range history {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		item, err := raw.GetItem(ctx, &awsdynamodb.GetItemInput{TableName: aws.String(table), Key: itemKey("soak", h.name), ConsistentRead: aws.Bool(true)})
		cancel()
		if err != nil || item.Item == nil {
			fatal("reading soak/%s from the store: %v", h.name, err)
		}
		version, _ := strconv.Atoi(item.Item["Version"].(*types.AttributeValueMemberN).Value)
		unknown := countUnknown(logs, "soak/"+h.name)
		landed := version - 1 // the first write made Version 1
		acked += len(h.acked) - 1
		refused += len(h.refused)
		if landed < len(h.acked)-1 || landed > len(h.acked)-1+unknown {
			problem("soak/%s: %d writes landed (Version %d); %d were acknowledged and %d refused, %d with an unknown outcome",
				h.name, landed, version, len(h.acked)-1, len(h.refused), unknown)
		}
		got, errOut, err := check.run(nil, "get", "soak/"+h.name)
		if err != nil {
			fatal("secretfs get soak/%s: %v: %s", h.name, err, errOut)
		}
		if !bytes.Equal([]byte(got), h.acked[len(h.acked)-1]) && !h.refusedAfterLastAck([]byte(got)) {
			problem("soak/%s holds a value that is neither its last acknowledged write nor one whose outcome was unknown after it", h.name)
		}
		for _, v := range h.refusedBeforeLastAck() {
			if bytes.Equal([]byte(got), v) {
				problem("soak/%s holds a write whose close failed", h.name)
			}
		}
	}
	t.Logf("%s of chaos (%d freezes, a kill and restart of each server): %d reads whole, %d torn; %d reader errors on secrets never read before, %d on secrets read before; %d writes acknowledged, %d refused",
		duration, freezes, readsOK.Load(), torn.Load(), readErrorsNew.Load(), readErrorsKnown.Load(), acked, refused)
	if readsOK.Load() == 0 || acked == 0 {
		problem("the soak read or wrote nothing: it shows nothing")
	}
}

// writeHistory is what one secret's writer did: the values whose close
// succeeded (the first one is the setup's), and those whose close failed,
// in order.
type writeHistory struct {
	name    string
	mu      sync.Mutex
	acked   [][]byte
	refused [][]byte
	order   []bool // per write attempted: acknowledged
}

func (h *writeHistory) add(closeErr error, value []byte, attempted bool) {
	if !attempted {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if closeErr == nil {
		h.acked = append(h.acked, value)
	} else {
		h.refused = append(h.refused, value)
	}
	h.order = append(h.order, closeErr == nil)
}

// refusedAfterLastAck reports whether v is a value whose close failed
// after the last acknowledged one: only such a write, if its outcome was
// unknown, may be what the store holds.
func (h *writeHistory) refusedAfterLastAck(v []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	refused := 0
	for i, ok := range h.order {
		if !ok {
			if bytes.Equal(h.refused[refused], v) {
				return !slices.Contains(h.order[i+1:], true)
			}
			refused++
		}
	}
	return false
}

// refusedBeforeLastAck returns the values whose close failed before a
// later write was acknowledged: none of them may be what the store holds.
func (h *writeHistory) refusedBeforeLastAck() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out [][]byte
	refused := 0
	for i, ok := range h.order {
		if !ok {
			if slices.Contains(h.order[i+1:], true) {
				out = append(out, h.refused[refused])
			}
			refused++
		}
	}
	return out
}

// countUnknown counts the commits of secret the mounts logged as having
// an unknown outcome (the store took the write and did not answer, nor
// say afterwards what it held): such a write may have landed.
func countUnknown(logs, secret string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, secret) && strings.Contains(line, "outcome is unknown") {
			n++
		}
	}
	return n
}

// soakValue is a value that says whose it is and carries its own
// checksum, so that a read can tell a whole value from a torn one.
func soakValue(name string, writer, seq, size int) []byte {
	head := fmt.Sprintf("secret=%s writer=%d seq=%d\n", name, writer, seq)
	body := []byte(head)
	block := sha256.Sum256(body)
	for len(body) < size {
		body = append(body, hex.EncodeToString(block[:])...)
		block = sha256.Sum256(block[:])
	}
	sum := sha256.Sum256(body)
	return append(body, "\nsha256="+hex.EncodeToString(sum[:])+"\n"...)
}

// soakWhole reports whether data is one whole soak value of secret name.
func soakWhole(data []byte, name string) bool {
	i := bytes.LastIndex(data, []byte("\nsha256="))
	if i < 0 || !bytes.HasPrefix(data, []byte("secret="+name+" ")) {
		return false
	}
	sum := sha256.Sum256(data[:i])
	return string(data[i:]) == "\nsha256="+hex.EncodeToString(sum[:])+"\n"
}

// chaos freezes dynalite, local-kms or both at random for 1 to 4 seconds
// at a time until ctx ends, and kills and restarts each once, a third and
// two thirds of the way. It returns the number of freezes.
func chaos(ctx context.Context, problem func(string, ...any), ddb, kms *testserver.Server, duration time.Duration) int {
	rng := rand.New(rand.NewPCG(42, 42))
	start := time.Now()
	killed := map[*testserver.Server]bool{}
	freezes := 0
	for ctx.Err() == nil {
		for _, s := range []*testserver.Server{kms, ddb} {
			at := time.Duration(1+len(killed)) * duration / 3
			if !killed[s] && time.Since(start) > at {
				killed[s] = true
				s.Kill()
				sleep(ctx, time.Duration(1+rng.IntN(3))*time.Second)
				if err := s.Restart(); err != nil {
					problem("restarting a server after the kill: %v", err)
				}
			}
		}
		targets := [][]*testserver.Server{{ddb}, {kms}, {ddb, kms}}[rng.IntN(3)]
		for _, s := range targets {
			s.Freeze()
		}
		freezes++
		sleep(ctx, time.Duration(1000+rng.IntN(3000))*time.Millisecond)
		for _, s := range targets {
			s.Thaw()
		}
		sleep(ctx, time.Duration(500+rng.IntN(3000))*time.Millisecond)
	}
	return freezes
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
