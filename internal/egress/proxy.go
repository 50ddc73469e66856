// Package egress is the transparent egress proxy: every TCP connection the app
// opens off the loopback lands here (nat REDIRECT), and leaves — if it leaves —
// as a new, verified TLS or HTTP connection to the *name* the app asked for.
//
//	p := egress.New(egress.Config{Policy: pol, Certs: minter, Transport: tr, Log: flows})
//	go p.Serve(ctx, listener) // listener on TRANSPARENT_PORT
//
// For each connection it reads the original destination (SO_ORIGINAL_DST),
// peeks the first bytes — a TLS ClientHello gives the SNI, a plain HTTP request
// line gives the Host — and closes anything else. TLS is terminated with a leaf
// minted by our CA; the decrypted requests are served by net/http (timeouts,
// header limits, HTTP/2) and handed to goproxy, whose transport dials only what
// our own resolver returned for the name. A request whose Host differs from the
// SNI, a name that is an IP literal and a name not on the allowlist all get a
// 403 with a one-line reason and an X-Panopticon-Block header.
//
// The whole destination verdict is one pure function, decide (verdict.go);
// one flow value (flow.go) carries a request from that verdict through the
// secret engine and goproxy to its flow event. Revocation (revoke.go) closes
// open connections whose host a reload took off the allowlist.
//
// Non-goals: CONNECT proxying (there is no explicit proxy mode), caching,
// protocols other than TLS and plain HTTP (HTTP/1 and HTTP/2 inside them;
// anything else is refused).
package egress

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/panopticon-dev/panopticon/internal/connlimit"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
	"github.com/panopticon-dev/panopticon/internal/secrets"
)

// Decider answers whether host:port may be reached (*policy.Policy).
type Decider interface {
	DecideHost(host policy.Host, port int) policy.Decision
}

// CertSource mints certificates for intercepted names (*ca.Minter).
type CertSource interface {
	Certificate(name string) (*tls.Certificate, error)
}

// Emitter records flow events (*flowlog.Log).
type Emitter interface {
	Emit(flowlog.Event)
}

// Config wires a Proxy. Policy, Certs, Transport and Log are required.
type Config struct {
	Policy    Decider
	Certs     CertSource
	Transport *http.Transport // upstream transport: pinned dialer, verified TLS, no env proxy
	Log       Emitter
	Logger    *slog.Logger
	// OwnPorts are panopticon's own listening ports; a connection whose
	// original destination is one of them on loopback is refused (no loops).
	OwnPorts []int
	// Audit lets through what the allowlist would refuse, logged as
	// would-block (MODE=audit). No other guard is relaxed.
	Audit bool
	// Secrets swaps placeholders for real values on the way to authorised
	// hosts (nil: no secrets). LeakGuard is log, block or off for
	// well-known credential formats (default log).
	Secrets   *secrets.Table
	LeakGuard string

	MaxConns          int           // concurrent client connections (default 10000); more wait in the accept queue
	HandshakeTimeout  time.Duration // to read the first bytes and finish TLS (default 10s)
	IdleTimeout       time.Duration // keep-alive idle time (default 90s)
	MaxHeaderBytes    int           // request header limit (default 64 KiB)
	ReadHeaderTimeout time.Duration // default 10s
}

// Block is a refusal with a machine-readable reason and a human sentence.
type Block struct {
	Reason  string // short token, e.g. "not-allowlisted"
	Message string // one line for the agent
}

// Proxy is the transparent egress proxy.
type Proxy struct {
	cfg      Config
	gp       *goproxy.ProxyHttpServer
	srv      *http.Server
	tlsConf  *tls.Config
	own      map[uint16]bool
	pinnedMu sync.Mutex
	pinned   map[string]*http.Transport // host+secrets → transport enforcing pins
	live     liveConns

	redactAll *secrets.Redactor // every real value → its placeholder (nil: no secrets)
}

// New builds a Proxy from cfg.
func New(cfg Config) *Proxy {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Unset (zero, or negative where max(…, 0) is used) means the default.
	cfg.MaxConns = cmp.Or(cfg.MaxConns, 10000)
	cfg.HandshakeTimeout = cmp.Or(cfg.HandshakeTimeout, 10*time.Second)
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, 90*time.Second)
	cfg.MaxHeaderBytes = cmp.Or(cfg.MaxHeaderBytes, 64<<10)
	if cfg.LeakGuard == "" {
		cfg.LeakGuard = LeakGuardLog
	}
	cfg.ReadHeaderTimeout = cmp.Or(cfg.ReadHeaderTimeout, 10*time.Second)
	p := &Proxy{cfg: cfg, own: map[uint16]bool{}, pinned: map[string]*http.Transport{}}
	if cfg.Secrets.Len() > 0 {
		p.redactAll = cfg.Secrets.Redactor(cfg.Secrets.Names())
	}
	for _, port := range cfg.OwnPorts {
		p.own[uint16(port)] = true
	}

	gp := goproxy.NewProxyHttpServer()
	gp.Tr = cfg.Transport
	gp.KeepAcceptEncoding = true
	gp.Logger = printfLogger{cfg.Logger}
	gp.ConnectDial = nil
	gp.OnRequest().DoFunc(p.onRequest)
	gp.OnResponse().DoFunc(p.onResponse)
	p.gp = gp

	p.tlsConf = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: p.certificate,
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ConnContext:       connContext,
		ErrorLog:          log.New(slogWriter{cfg.Logger}, "", 0),
	}
	return p
}

// Serve accepts connections from ln until ctx is done, then stops accepting
// and gives open requests until they finish (bounded by the caller's exit).
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	ln = connlimit.Listen(ln, p.cfg.MaxConns) // at the cap, the next one waits its turn
	inner := newConnListener(ln.Addr())
	go func() { _ = p.srv.Serve(inner) }()
	go p.watchPolicy(ctx)
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = p.srv.Shutdown(shutdownCtx)
				inner.Close()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) ||
				errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) {
				// Out of descriptors or a client gone before accept: back off
				// and keep serving, as net/http does.
				p.cfg.Logger.Warn("egress accept failed; retrying", "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accepting on %s: %w", ln.Addr(), err)
		}
		go p.handleConn(inner, c)
	}
}

// connMeta is what we learnt about a client connection before HTTP.
type connMeta struct {
	client  string
	dst     netip.AddrPort
	sni     string      // the ClientHello's server name: normalised when it parsed
	sniHost policy.Host // the SNI as a Host (zero when there is none, or sniErr)
	sniErr  error       // why the SNI is not a host name
	tls     bool
	raw     net.Conn  // the client's socket, closed on revocation
	start   time.Time // accepted
	state   *connState
	wire    *cork // gathers the writes of one HTTP/1 body piece
}

// setSNI records a TLS connection's server name, parsed once per connection
// rather than per request.
func (m *connMeta) setSNI(sni string) {
	m.tls, m.sni = true, sni
	if sni != "" {
		if m.sniHost, m.sniErr = policy.ParseHost(sni); m.sniErr == nil {
			m.sni = m.sniHost.String()
		}
	}
}

// connState is what revocation needs to know about a live connection.
type connState struct {
	mu      sync.Mutex
	host    policy.Host // the destination a request on it was allowed to
	revoked bool
}

type metaKey struct{}

// conn replays the bytes sniffing consumed, carries connMeta, and forgets
// the connection (revocation) exactly once when closed.
type conn struct {
	net.Conn
	r       io.Reader
	meta    *connMeta
	release func()
	once    sync.Once
	wire    cork
}

func (c *conn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *conn) Write(b []byte) (int, error) { return c.wire.write(b) }
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if mc, ok := c.(*conn); ok {
		return context.WithValue(ctx, metaKey{}, mc.meta)
	}
	return ctx
}

func (p *Proxy) handleConn(inner *connListener, c net.Conn) {
	start := time.Now()
	meta := &connMeta{client: c.RemoteAddr().String(), raw: c, start: start, state: &connState{}}
	fail := func(reason, msg string) {
		_ = c.Close() // gives its place back (connlimit)
		p.live.remove(meta)
		if reason == "" {
			return
		}
		p.emit(flowlog.Event{
			Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: reason,
			Client: meta.client, Host: meta.sni, Port: int(meta.dst.Port()),
			DurationMS: time.Since(start).Milliseconds(),
			Detail:     map[string]string{"dst": meta.dst.String(), "error": msg},
		})
	}
	tcp, ok := connlimit.Underlying(c).(*net.TCPConn)
	if !ok {
		fail("", "")
		return
	}
	dst, err := originalDst(tcp)
	if err != nil {
		p.cfg.Logger.Warn("egress: no original destination", "client", meta.client, "err", err)
		fail(refusal.Loop, err.Error())
		return
	}
	meta.dst = dst
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	if dst.Addr().Unmap() == local.Addr().Unmap() && dst.Port() == local.Port() ||
		dst.Addr().IsLoopback() && p.own[dst.Port()] {
		// A probe that connects and sends nothing (the healthcheck) is not a flow.
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := bufio.NewReaderSize(c, 16).Peek(1); err != nil {
			fail("", "")
			return
		}
		fail(refusal.Loop, "connection straight to panopticon's own listener")
		return
	}

	_ = c.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(c, 4096)
	proto, err := sniff(br)
	if err != nil {
		fail("", "") // closed before sending anything: not a flow
		return
	}
	p.live.add(meta)
	wrapped := &conn{Conn: c, r: br, meta: meta, release: func() { p.live.remove(meta) }}
	wrapped.wire.direct = c.Write
	meta.wire = &wrapped.wire
	switch proto {
	case protoTLS:
		hello, seen, err := clientHello(br)
		if hello == nil {
			fail(refusal.NotTLSOrHTTP, fmt.Sprintf("unreadable TLS ClientHello: %v", err))
			return
		}
		meta.setSNI(hello.ServerName)
		wrapped.r = io.MultiReader(bytesReader(seen), br)
		_ = c.SetDeadline(time.Time{}) // http.Server sets its own handshake and header deadlines
		inner.push(tls.Server(wrapped, p.tlsConf))
	case protoHTTP:
		_ = c.SetDeadline(time.Time{})
		inner.push(wrapped)
	default:
		fail(refusal.NotTLSOrHTTP, "first bytes are neither a TLS ClientHello nor an HTTP request")
	}
}

// certificate mints the leaf for the SNI, or for the original destination's
// address when the client sent none (so we can still answer with a 403).
func (p *Proxy) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	if name == "" {
		if mc, ok := hello.Conn.(*conn); ok {
			name = mc.meta.dst.Addr().String()
		}
	}
	if name == "" {
		return nil, errors.New("no server name and no original destination")
	}
	return p.cfg.Certs.Certificate(name)
}

func (p *Proxy) emit(e flowlog.Event) {
	if p.cfg.Log != nil {
		p.cfg.Log.Emit(e)
	}
}

// connListener hands sniffed connections to the http.Server.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// printfLogger routes goproxy's Printf logging to slog (debug level).
type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, v ...any) {
	p.l.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "goproxy")
}

// slogWriter routes net/http's error log (TLS handshake errors, …) to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.l.Info(strings.TrimSpace(string(b)), "component", "egress")
	return len(b), nil
}
