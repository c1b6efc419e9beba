package metrics

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics (the Prometheus text format, or whatever
// format the scraper negotiates) and /healthz (200 "ok", or 503 and a
// one-line reason).
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		// A collector that fails (the process collector without /proc)
		// must not hide the others.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("/healthz", r.serveHealth)
	return mux
}

// readHeaderTimeout bounds how long a client may take to send its
// request headers, so idle or slow clients cannot hold connections open.
const readHeaderTimeout = 10 * time.Second

// Server is Handler listening on an address.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	err  error // why Serve returned; read after done is closed
}

// Serve listens on addr (HOST:PORT; port 0 picks a free one) and serves
// Handler there until Close. It returns an error at once if it cannot
// listen, so that a mount with a bad --metrics-addr fails at start-up.
func (r *Registry) Serve(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:   ln,
		srv:  &http.Server{Handler: r.Handler(), ReadHeaderTimeout: readHeaderTimeout},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.err = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, closes every connection and returns once the
// server has stopped, with the error that stopped it if it stopped before
// Close.
func (s *Server) Close() error {
	cerr := s.srv.Close()
	<-s.done
	if !errors.Is(s.err, http.ErrServerClosed) {
		return s.err
	}
	return cerr
}
