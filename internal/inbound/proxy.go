// Package inbound is the inbound door: TLS reverse proxies in front of the
// app's own plain HTTP and WebSocket listeners on loopback, with a source
// allowlist and a request filter that keeps known-hostile input from the app.
//
//	filter, err := inbound.NewFilter(cfg.InboundFilterFile) // "" = starter rules
//	p := inbound.New(inbound.Config{
//		Certs:       certs, // inbound.NewMintedCerts(minter, cfg.InboundHostnames)
//		Filter:      filter,
//		FilterBytes: cfg.InboundFilterBytes,
//		Allow:       cfg.InboundAllowCIDRs,
//		Log:         flows,
//	})
//	go filter.Watch(ctx, time.Second, nil, nil)
//	err = p.Serve(ctx, inbound.Door{Listener: ln, App: "127.0.0.1:8443", HTTP2: true})
//
// Every request, and every WebSocket session, becomes one flow event of kind
// "inbound". Refusals answer with a one-line body and an X-Panopticon-Block
// header: 403 for a source outside the allowlist or a filter match (a
// WebSocket message that matches closes the session with code 1008), 413 for
// a body over the limit, 502 when the app does not answer.
//
// Non-goals: routing by host or path (there is one app), caching, rate
// limiting, and understanding compressed or encoded content — the filter is a
// tripwire for known phrasings, not a guarantee.
package inbound

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"time"

	"github.com/panopticon-dev/panopticon/internal/connlimit"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

// Defaults for zero Config fields.
const (
	DefaultMaxBodyBytes      = 32 << 20
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultBodyIdleTimeout   = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxConns          = 10000
	DefaultDialTimeout       = 5 * time.Second
	shutdownGrace            = 5 * time.Second
)

// FlowLog receives flow events (flowlog.Log).
type FlowLog interface{ Emit(flowlog.Event) }

var _ FlowLog = (*flowlog.Log)(nil)

// Config configures a Proxy. Zero durations and sizes take the defaults above.
type Config struct {
	Certs       *Certs         // required: chooses each handshake's certificate
	Filter      *Filter        // nil: no filtering
	FilterBytes int            // bytes of a body, and of a WebSocket text message, checked; 0 checks none
	Allow       []netip.Prefix // sources allowed; empty: every source
	Log         FlowLog        // required
	Logger      *slog.Logger   // nil: slog.Default()

	MaxBodyBytes      int64         // larger request bodies get 413
	ReadHeaderTimeout time.Duration // also bounds the TLS handshake
	IdleTimeout       time.Duration // keep-alive connections with no request
	BodyIdleTimeout   time.Duration // a request body that stalls this long is cut off
	MaxHeaderBytes    int           // larger request heads get 431
	MaxConns          int           // concurrent connections per door; more wait in the accept queue

	// Dial connects to the app; nil dials TCP with DefaultDialTimeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Door is one inbound listener and the app address behind it.
type Door struct {
	Listener net.Listener // plain TCP; Serve terminates TLS
	App      string       // host:port of the app's plain listener, e.g. 127.0.0.1:8443
	HTTP2    bool         // offer h2 in ALPN (keep false for the WebSocket door)
}

// Proxy serves inbound doors. Safe for concurrent use.
type Proxy struct {
	cfg       Config
	transport *http.Transport
}

// New returns a Proxy. It panics without Certs or Log, which are programming errors.
func New(cfg Config) *Proxy {
	if cfg.Certs == nil || cfg.Log == nil {
		panic("inbound.New: Certs and Log are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Unset (zero, or negative where max(…, 0) is used) means the default.
	cfg.MaxBodyBytes = cmp.Or(max(cfg.MaxBodyBytes, 0), DefaultMaxBodyBytes)
	cfg.ReadHeaderTimeout = cmp.Or(max(cfg.ReadHeaderTimeout, 0), DefaultReadHeaderTimeout)
	cfg.IdleTimeout = cmp.Or(max(cfg.IdleTimeout, 0), DefaultIdleTimeout)
	cfg.BodyIdleTimeout = cmp.Or(max(cfg.BodyIdleTimeout, 0), DefaultBodyIdleTimeout)
	cfg.MaxHeaderBytes = cmp.Or(max(cfg.MaxHeaderBytes, 0), DefaultMaxHeaderBytes)
	cfg.MaxConns = cmp.Or(max(cfg.MaxConns, 0), DefaultMaxConns)
	if cfg.FilterBytes < 0 {
		cfg.FilterBytes = 0
	}
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: DefaultDialTimeout}).DialContext
	}
	return &Proxy{cfg: cfg, transport: &http.Transport{
		Proxy:                 nil, // never HTTP(S)_PROXY from the environment
		DialContext:           dial,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
	}}
}

// Serve terminates TLS on d.Listener and proxies to d.App until ctx is done,
// then drains for a few seconds and closes what is left, WebSockets included.
func (p *Proxy) Serve(ctx context.Context, d Door) error {
	port := 0
	if a, ok := d.Listener.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	h := p.Handler(port, d.App)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: p.cfg.Certs.GetCertificate,
		},
		// Handshake failures and plain HTTP on the TLS port are internet noise.
		ErrorLog: slog.NewLogLogger(p.cfg.Logger.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context {
			return context.WithoutCancel(ctx)
		},
	}
	if !d.HTTP2 {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		srv.TLSConfig.NextProtos = []string{"http/1.1"}
	}
	srv.RegisterOnShutdown(h.closeHijacked)

	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	err := srv.ServeTLS(connlimit.Listen(d.Listener, p.cfg.MaxConns), "", "")
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}

// Handler returns the handler for one door: listener port (for flow events)
// and the app's host:port. Serve uses it; tests can mount it on httptest.
func (p *Proxy) Handler(port int, app string) *Handler {
	h := &Handler{p: p, port: port, app: app, hijacked: map[net.Conn]struct{}{}}
	target := &url.URL{Scheme: "http", Host: app}
	h.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the app sees the name the client asked for
			pr.SetXForwarded()       // client-sent X-Forwarded-* were already removed
			pr.Out.Header.Del("X-Real-Ip")
			if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
				pr.Out.Header.Set("X-Real-Ip", ip)
			}
		},
		Transport:     p.transport,
		FlushInterval: -1, // stream every write (SSE, chunked LLM output)
		ErrorLog:      slog.NewLogLogger(p.cfg.Logger.Handler(), slog.LevelDebug),
		ErrorHandler:  h.proxyError,
	}
	return h
}
