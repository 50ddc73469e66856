// Package dashboard serves panopticon's web dashboard and its API: a live
// flow table over server-sent events, per-host and blocked summaries, the
// effective allowlist with a runtime part the user edits, and /metrics.
//
//	rt, err := dashboard.OpenRuntimeList(filepath.Join(stateDir, dashboard.RuntimeFileName), pol)
//	srv := dashboard.New(dashboard.Options{Token: token, Policy: pol, Runtime: rt, Mode: "enforce", BufferSize: 1000})
//	srv.Seed(history) // e.g. flowlog.ReadRecent(logDir, 1000)
//	events, cancel := flows.Subscribe(4096)
//	go srv.Run(ctx, events)
//	http.Serve(ln, srv.Handler())
//
// Every page and API call needs the token: "Authorization: Bearer <token>",
// or the cookie a browser gets by opening /?token=<token> once (the redirect
// drops the token from the address bar). Changes are POSTs of JSON that
// must pass a same-origin check (Sec-Fetch-Site / Origin), so a page on
// another site cannot drive them even with the cookie in the browser.
//
// Memory is bounded: the newest BufferSize flows in a ring, and summaries
// capped in size. The UI is plain HTML, CSS and JavaScript embedded in the
// binary; it loads nothing from elsewhere and renders every string from the
// wire as text, never as markup.
//
// Non-goals: TLS (reach it over an SSH tunnel or a TLS front when it leaves
// the machine), multiple users or roles, editing ALLOWLIST_FILE (it is the
// operator's, read-only here), full history (the flow log and `panopticon
// tail` have it).
package dashboard

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/metrics"
	"github.com/panopticon-dev/panopticon/internal/policy"
)

// DefaultBufferSize is the ring size when Options.BufferSize is zero.
const DefaultBufferSize = 1000

// Options configure a Server.
type Options struct {
	Token      string // required; compared in constant time
	Policy     *policy.Policy
	Runtime    *RuntimeList // nil: the runtime allowlist cannot be changed
	Mode       string       // "enforce" or "audit", shown in the UI
	BufferSize int          // flows kept in memory
	// SelftestFile holds the last self-test verdict (written by the
	// healthcheck, which runs as root); shown in the header when present.
	SelftestFile string

	Metrics *metrics.Metrics // nil: New makes one, fed by Run
	Sources metrics.Sources  // counters kept elsewhere, for /metrics

	Logger *slog.Logger
}

// Server is the dashboard. Create it with New.
type Server struct {
	opts    Options
	cookie  string // the session cookie's value, derived from the token
	metrics *metrics.Metrics
	cop     *http.CrossOriginProtection

	mu      sync.Mutex
	ring    *ring                // guarded by mu
	sum     *summary             // guarded by mu
	lastID  uint64               // guarded by mu
	clients map[*client]struct{} // guarded by mu
}

// New returns a Server; opts.Token and opts.Policy are required.
func New(opts Options) *Server {
	if opts.Token == "" {
		panic("dashboard: no token")
	}
	// Unset (zero, or negative where max(…, 0) is used) means the default.
	opts.BufferSize = cmp.Or(max(opts.BufferSize, 0), DefaultBufferSize)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Mode == "" {
		opts.Mode = "enforce"
	}
	m := opts.Metrics
	if m == nil {
		m = metrics.New()
	}
	return &Server{
		opts:    opts,
		cookie:  cookieValue(opts.Token),
		metrics: m,
		cop:     http.NewCrossOriginProtection(),
		ring:    newRing(opts.BufferSize),
		sum:     newSummary(),
		clients: map[*client]struct{}{},
	}
}

// Seed loads past events (oldest first) into the ring and the summaries,
// but not into the metrics, which count from start-up.
func (s *Server) Seed(events []flowlog.Event) {
	for _, e := range events {
		s.ingest(e)
	}
}

// Ingest records one live event: ring, summaries, metrics, browsers.
func (s *Server) Ingest(e flowlog.Event) {
	s.metrics.Observe(e)
	s.ingest(e)
}

func (s *Server) ingest(e flowlog.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastID++
	f := Flow{ID: s.lastID, Event: e, RequestHeaders: e.RequestHeaders, ResponseHeaders: e.ResponseHeaders}
	s.ring.push(f)
	s.sum.add(e)
	for c := range s.clients {
		select {
		case c.ch <- f:
		default:
			// Too slow: end its stream; the browser reconnects with
			// Last-Event-ID and catches up from the ring.
			delete(s.clients, c)
			close(c.ch)
		}
	}
}

// Run ingests events until the channel closes or ctx ends.
func (s *Server) Run(ctx context.Context, events <-chan flowlog.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			s.Ingest(e)
		}
	}
}

// Serve serves the dashboard on ln until ctx ends, then shuts down (live
// streams are cut; other requests get five seconds to finish).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: either would cut the long-lived
		// event stream (a read deadline cancels the request's context).
		// Bodies are small and capped (mutation).
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.closeStreams()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
