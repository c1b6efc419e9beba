// Package testserver runs the real servers the tests talk to on loopback:
// dynalite (a DynamoDB implementation, from npm, pinned in this folder's
// package-lock.json) and local-kms (a KMS implementation, `go install`ed
// at LocalKMSVersion by scripts/install-test-deps). Each runs on a free
// port behind a proxy that counts API calls by operation, so a test can
// assert how many GetItem or Decrypt calls something cost, observed from
// outside secretfs.
//
// A missing server is an error, never a skip: CI must not pass by testing
// nothing. Servers die with the test process (Pdeathsig) even if it
// crashes, and Close stops them.
package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Region and Account are what the local servers and the SDK clients of
// tests agree on.
const (
	Region  = "eu-west-1"
	Account = "111122223333"
)

// Env is the environment an AWS SDK client (or the secretfs binary) needs
// to talk to local servers: static credentials and the region. Endpoints
// are per server (Server.URL).
func Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=AKIDLOCALTEST",
		"AWS_SECRET_ACCESS_KEY=local-test-secret",
		"AWS_REGION=" + Region,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

// Server is one running server behind its counting proxy.
type Server struct {
	URL string // the proxy's address: point clients here

	cmd    *exec.Cmd
	exited chan struct{}
	proxy  *http.Server
	dir    string
	svc    service
	port   string // the server's own port, behind the proxy; a restart reuses it

	mu        sync.Mutex
	calls     map[string]int64
	total     int64         // every whole request, whatever its operation
	givenUp   int64         // whole requests dropped because their client left first
	resumed   chan struct{} // nil when not paused; closed by Resume
	throttled int           // requests still to refuse with a throttling error
	denied    int           // requests still to refuse with AccessDenied
	muted     string        // an operation whose requests land but whose answers are withheld
	unmuted   chan struct{} // closed by Unmute
	delayed   string        // an operation whose next request is held on its way (Delay)
	delivered chan struct{} // closed by Deliver
	inFlight  sync.WaitGroup
}

// service is how one AWS service writes an error: both use a JSON
// protocol with the error code in "__type", each with its own spelling.
type service struct {
	action      string // the IAM service prefix of its actions: "dynamodb", "kms"
	contentType string
	typePrefix  string // before the code in "__type"
	messageKey  string // DynamoDB writes "Message", KMS "message"
	// crc32 says the service sends the CRC32 of each body in X-Amz-Crc32,
	// which the DynamoDB SDK checks.
	crc32 bool
	// resource is the ARN an AccessDenied names for a request (its JSON
	// body, decoded).
	resource func(req map[string]any) string
}

var (
	dynamoDBService = service{
		action:      "dynamodb",
		contentType: "application/x-amz-json-1.0",
		typePrefix:  "com.amazonaws.dynamodb.v20120810#",
		messageKey:  "Message",
		crc32:       true,
		resource: func(req map[string]any) string {
			table, _ := req["TableName"].(string)
			if table == "" {
				return "*"
			}
			return "arn:aws:dynamodb:" + Region + ":" + Account + ":table/" + table
		},
	}
	kmsService = service{
		action:      "kms",
		contentType: "application/x-amz-json-1.1",
		messageKey:  "message",
		resource: func(req map[string]any) string {
			// KMS names the key's ARN; a Decrypt names no key, and the
			// proxy cannot read the one inside the ciphertext blob.
			id, _ := req["KeyId"].(string)
			switch {
			case id == "":
				return "arn:aws:kms:" + Region + ":" + Account + ":key/*"
			case strings.HasPrefix(id, "arn:"):
				return id
			case strings.HasPrefix(id, "alias/"):
				return "arn:aws:kms:" + Region + ":" + Account + ":" + id
			}
			return "arn:aws:kms:" + Region + ":" + Account + ":key/" + id
		},
	}
)

// The error codes the proxy answers with, and the principal it says was
// refused.
const (
	codeThrottling   = "ThrottlingException"
	codeAccessDenied = "AccessDeniedException"
	deniedPrincipal  = "arn:aws:iam::" + Account + ":user/secretfs-test"
)

// StartDynalite starts dynalite, in memory, on a free port.
func StartDynalite() (*Server, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "internal", "testserver", "node_modules", ".bin", "dynalite")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("dynalite is not installed (%v): run scripts/install-test-deps", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// Tables become ACTIVE at once, as tests create many.
	return start(exec.Command(bin, "--port", port, "--host", "127.0.0.1", "--createTableMs", "0", "--deleteTableMs", "0"),
		dynamoDBService, port, "")
}

// StartPersistentDynalite starts dynalite on a free port, keeping its
// tables on disk, in a fresh temporary directory, so that they survive
// Kill and Restart.
func StartPersistentDynalite() (*Server, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "internal", "testserver", "node_modules", ".bin", "dynalite")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dynalite-")
	if err != nil {
		return nil, err
	}
	return start(exec.Command(bin, "--port", port, "--host", "127.0.0.1", "--createTableMs", "0", "--deleteTableMs", "0", "--path", dir),
		dynamoDBService, port, dir)
}

// StartLocalKMS starts local-kms on a free port, keeping its keys in a
// fresh temporary directory.
func StartLocalKMS() (*Server, error) {
	bin, err := localKMSBinary()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "local-kms-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "KMS_DATA_PATH="+dir, "KMS_REGION="+Region, "KMS_ACCOUNT_ID="+Account,
		"KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"))
	return start(cmd, kmsService, port, dir)
}

func start(cmd *exec.Cmd, svc service, port, dir string) (*Server, error) {
	name := filepath.Base(cmd.Path)
	log, err := os.CreateTemp("", name+"-*.log")
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	// The server must not outlive the test process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &Server{cmd: cmd, exited: make(chan struct{}), dir: dir, svc: svc, port: port, calls: map[string]int64{}}
	go func() { cmd.Wait(); close(s.exited) }()

	backend := "127.0.0.1:" + port
	if err := waitListening(backend, s.exited); err != nil {
		s.Close()
		out, _ := os.ReadFile(log.Name())
		return nil, fmt.Errorf("%s did not start: %w\n%s", name, err, out)
	}
	os.Remove(log.Name())
	if err := s.serveProxy(backend); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// serveProxy puts a counting reverse proxy in front of backend.
func (s *Server) serveProxy(backend string) error {
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: backend})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.proxy = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, rp)
	})}
	go s.proxy.Serve(ln)
	s.URL = "http://" + ln.Addr().String()
	return nil
}

// serve counts r and forwards it to the server through rp, unless the
// server is paused, refusing, or r's client has given up.
//
// The server only ever sees whole requests from live clients: the proxy
// reads each body whole before anything else, so a client that gives up
// mid-body (a cancelled SDK call) reaches nothing (dynalite dies of a
// request cut off while it reads it: "Error: aborted"). A request whose
// client has left by the time it would be forwarded is dropped. Once
// forwarded, a request runs to its end even if the client leaves, as on a
// real server, so that no connection to the server is cut mid-request.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// Never arrived: neither counted nor forwarded.
		http.Error(w, "incomplete request body", http.StatusBadRequest)
		return
	}
	op := operationOf(r)
	if delivered := s.delay(op); delivered != nil {
		s.forwardDelayed(w, r, body, rp, delivered)
		return
	}
	refusal, muted, unmuted, resumed := s.admit(op)
	if resumed != nil {
		// An unreachable host: no answer, unless the partition
		// heals before the client gives up.
		select {
		case <-resumed:
		case <-r.Context().Done():
		}
	}
	if r.Context().Err() != nil {
		s.mu.Lock()
		s.givenUp++
		s.mu.Unlock()
		return
	}
	if refusal != "" {
		s.refuse(w, op, refusal, body)
		return
	}
	// Detached from the client's context, which ends when the client
	// leaves; still cancellable (a nil Done would make the ReverseProxy
	// watch the client's connection instead).
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	out := r.WithContext(ctx)
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	if !muted {
		rp.ServeHTTP(w, out)
		return
	}
	forwardMuted(w, r, out, rp, unmuted)
}

// operationOf names the API operation of r: "DynamoDB_20120810.GetItem"
// -> "GetItem"; "TrentService.Decrypt" -> "Decrypt".
func operationOf(r *http.Request) string {
	target := r.Header.Get("X-Amz-Target")
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		return target[i+1:]
	}
	return ""
}

// admit counts a request of op and says what happens to it: refused
// (AccessDenied or throttled, while Deny or Throttle last), its answer
// held back (Mute), or held until Resume (Pause).
func (s *Server) admit(op string) (refusal string, muted bool, unmuted, resumed chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if op != "" {
		s.calls[op]++
	}
	switch {
	case s.denied > 0:
		s.denied--
		refusal = codeAccessDenied
	case s.throttled > 0:
		s.throttled--
		refusal = codeThrottling
	}
	return refusal, op != "" && op == s.muted, s.unmuted, s.resumed
}

// forwardMuted forwards a request that lands while its answer is held
// back until Unmute, and lost if the client gives up first, as on a
// network that drops answers.
func forwardMuted(w http.ResponseWriter, r, out *http.Request, rp *httputil.ReverseProxy, unmuted chan struct{}) {
	rec := httptest.NewRecorder()
	rp.ServeHTTP(rec, out)
	select {
	case <-unmuted:
	case <-r.Context().Done():
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// delay takes the next request of op, while Delay lasts, off the
// network until Deliver (nil for every other request): it is counted now.
func (s *Server) delay(op string) (delivered chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "" || op != s.delayed {
		return nil
	}
	s.delayed = ""
	s.total++
	s.calls[op]++
	s.inFlight.Add(1)
	return s.delivered
}

// forwardDelayed forwards a delayed request once it is delivered, whether
// or not its client is still waiting (an answer nobody waits for is
// lost), as a network that held a packet and lets it through late.
func (s *Server) forwardDelayed(w http.ResponseWriter, r *http.Request, body []byte, rp *httputil.ReverseProxy, delivered chan struct{}) {
	defer s.inFlight.Done()
	<-delivered
	// Detached from the client, which has most often left by now, and
	// cancellable, as in serve: with a nil Done the ReverseProxy would
	// watch the client's closed connection and cut the request off
	// mid-way, which dynalite dies of (CI: "proxy error: context
	// canceled", then every request refused).
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	out := r.WithContext(ctx)
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	rp.ServeHTTP(w, out)
}

// Delay holds the next request of operation op (e.g. "PutItem") on its
// way to the server until Deliver: its client gives up at its deadline,
// and the request still arrives afterwards and takes effect, as one
// delayed in a network can. Other requests, and later ones of op, go
// through.
func (s *Server) Delay(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delayed, s.delivered = op, make(chan struct{})
}

// Deliver lets the request Delay held reach the server, and returns once
// the server has answered it. Without a held request, it only ends Delay.
func (s *Server) Deliver() {
	s.mu.Lock()
	if s.delivered != nil {
		close(s.delivered)
	}
	s.delayed, s.delivered = "", nil
	s.mu.Unlock()
	s.inFlight.Wait()
}

// Mute makes requests of operation op (e.g. "PutItem") land on the
// server while their answers are held back until Unmute: the client
// gives up at its deadline not knowing that its request took effect.
func (s *Server) Mute(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.muted, s.unmuted = op, make(chan struct{})
}

// Unmute ends Mute: answers still held go out.
func (s *Server) Unmute() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unmuted != nil {
		close(s.unmuted)
	}
	s.muted, s.unmuted = "", nil
}

// Freeze stops the server's process (SIGSTOP), as a hung host: the proxy
// forwards requests, and they wait, unanswered, until Thaw.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw continues a frozen server (SIGCONT).
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Kill kills the server's process (SIGKILL), as a crashed host: requests
// fail at once, the connection refused. Restart brings it back.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen process dies too
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts a killed server again, on the same port behind the same
// proxy. A persistent dynalite keeps its tables; an in-memory one starts
// empty.
func (s *Server) Restart() error {
	s.mu.Lock()
	old := s.cmd
	cmd := exec.Command(old.Path, old.Args[1:]...)
	cmd.Env = old.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restart %s: %w", filepath.Base(cmd.Path), err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return waitListening("127.0.0.1:"+s.port, exited)
}

// refuse answers a request of operation op, whose body is reqBody, with
// the error code, as the service itself does: HTTP 400 and a JSON body
// with the code in "__type" and a message. An AccessDenied names the
// action and resource, as AWS's do.
func (s *Server) refuse(w http.ResponseWriter, op, code string, reqBody []byte) {
	msg := "Rate of requests exceeds the allowed throughput."
	if code == codeAccessDenied {
		var req map[string]any
		_ = json.Unmarshal(reqBody, &req) // a body that is not JSON names no resource
		action := s.svc.action + ":" + op
		msg = "User: " + deniedPrincipal + " is not authorized to perform: " + action + " on resource: " +
			s.svc.resource(req) + " because no identity-based policy allows the " + action + " action"
	}
	body, _ := json.Marshal(map[string]string{"__type": s.svc.typePrefix + code, s.svc.messageKey: msg})
	w.Header().Set("Content-Type", s.svc.contentType)
	if s.svc.crc32 {
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	}
	w.WriteHeader(http.StatusBadRequest)
	w.Write(body)
}

// Calls returns how many requests of operation op (e.g. "GetItem",
// "Query", "Decrypt", "GenerateDataKey") the server has received.
func (s *Server) Calls(op string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Total returns how many requests the server has received, of every
// operation (and none). Like Calls, it counts only requests that arrived
// whole: those refused or left unanswered by the proxy too, never those
// a client gave up before it had sent them whole.
func (s *Server) Total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Counts returns how many requests of each operation the server has
// received (a copy).
func (s *Server) Counts() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
	s.total = 0
}

// Pause makes the server unreachable, as a network partition does: its
// proxy takes requests and does not answer, so a client can only give up
// at its own deadline. Resume ends the partition: requests still waiting
// go through, and the data is still there.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resumed == nil {
		s.resumed = make(chan struct{})
	}
}

// Throttle refuses the next n requests with a ThrottlingException, as a
// service does to a client over its rate. Throttle(0) ends it.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	s.throttled = n
	s.mu.Unlock()
}

// Deny refuses the next n requests with an AccessDeniedException, as a
// service does to a principal whose IAM or key policy does not allow the
// call: HTTP 400, naming the action and the table or key. Deny(0) ends
// it. A request refused by Deny does not count against Throttle.
func (s *Server) Deny(n int) {
	s.mu.Lock()
	s.denied = n
	s.mu.Unlock()
}

// Resume undoes Pause.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resumed != nil {
		close(s.resumed)
		s.resumed = nil
	}
}

// Stop kills the server process and leaves it unreachable for good (see
// Pause): a dead host.
func (s *Server) Stop() {
	s.Pause()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen process cannot stop
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
}

// Close stops the server and its proxy and removes its files.
func (s *Server) Close() error {
	s.Stop()
	if s.proxy != nil {
		s.proxy.Close() // also ends the requests the stopped proxy holds
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	return nil
}

func waitListening(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the process exited")
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after 30s", addr)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

// RepoRoot is the directory holding go.mod, found upwards from the working
// directory (go test runs in the package's directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
