package inbound

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// Handler proxies one door's requests to the app.
type Handler struct {
	p    *Proxy
	port int
	app  string
	rp   *httputil.ReverseProxy

	mu       sync.Mutex
	hijacked map[net.Conn]struct{} // guarded by mu: live WebSocket sessions
}

type stateKey struct{}

// reqState is one request's flow event in the making.
type reqState struct {
	mu    sync.Mutex
	ev    flowlog.Event
	body  *bodyReader
	start time.Time
}

func (st *reqState) block(status int, reason string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ev.Decision == flowlog.Block {
		return // the first reason wins
	}
	st.ev.Decision, st.ev.Reason = flowlog.Block, reason
	if status != 0 {
		st.ev.Status = status
	}
}

func (st *reqState) setDetail(k, v string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ev.Detail == nil {
		st.ev.Detail = map[string]string{}
	}
	st.ev.Detail[k] = v
}

// ServeHTTP checks the source, the size and the filter, then proxies.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{start: time.Now(), ev: flowlog.Event{
		Kind:     flowlog.KindInbound,
		Decision: flowlog.Allow,
		Client:   r.RemoteAddr,
		Host:     hostOnly(r.Host),
		Port:     h.port,
		Method:   r.Method,
		Path:     r.RequestURI,
	}}
	if r.ProtoMajor == 2 {
		st.setDetail("proto", "h2")
	}
	rec := &recorder{ResponseWriter: w, h: h, st: st, r: r}
	defer h.finish(st, rec)

	if !h.sourceAllowed(r.RemoteAddr) {
		w.Header().Set("Connection", "close")
		h.refuse(rec, st, refusal.SourceNotAllowed,
			"your address is not allowed to reach this service")
		return
	}
	if up := upgradeType(r.Header); up != "" && !strings.EqualFold(up, "websocket") {
		h.refuse(rec, st, refusal.BadUpgrade,
			"only WebSocket upgrades are proxied")
		return
	}
	limit := h.p.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close")
		h.refuse(rec, st, refusal.BodyTooLarge,
			fmt.Sprintf("request body over the %d-byte limit", limit))
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		st.body = &bodyReader{
			rc:   http.MaxBytesReader(w, r.Body, limit),
			ctrl: http.NewResponseController(w),
			idle: h.p.cfg.BodyIdleTimeout,
		}
		r.Body = st.body
	}

	if rules := h.p.cfg.Filter.Rules(); rules.Len() > 0 {
		rule, where, err := h.filter(r, rules)
		if err != nil {
			h.bodyFailed(rec, st, err)
			return
		}
		if where != "" {
			st.setDetail("matched", where)
			h.refuse(rec, st, rule.Reason(), "request refused by the inbound filter")
			h.p.cfg.Logger.Warn("inbound request refused by filter", "rule", rule.Reason(), "matched", where, "client", r.RemoteAddr)
			return
		}
	}
	if isWebSocket(r) && h.inspectWS() {
		// Compressed frames could not be inspected: negotiate none.
		r.Header.Del("Sec-WebSocket-Extensions")
	}

	h.rp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// hostOnly strips the port and IPv6 brackets from a Host header, so the
// flow event's host and port are separate fields as in every other door.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

// sourceAllowed reports whether remote (ip:port) is in the allowlist.
func (h *Handler) sourceAllowed(remote string) bool {
	if len(h.p.cfg.Allow) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false // unparseable is refused, not allowed
	}
	ip := ap.Addr().Unmap().WithZone("")
	for _, pfx := range h.p.cfg.Allow {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// filter checks the target, the headers and the first FilterBytes of the
// body. where is "" when nothing matched; err is a failure reading the body.
func (h *Handler) filter(r *http.Request, rules *Rules) (rule Rule, where string, err error) {
	if rule, ok := rules.matchEncoded(r.RequestURI); ok {
		return rule, "target", nil
	}
	if rule, ok := rules.Match("Host: " + r.Host); ok {
		return rule, "header Host", nil
	}
	for name, values := range r.Header {
		for _, v := range values {
			if rule, ok := rules.Match(name + ": " + v); ok {
				return rule, "header " + name, nil
			}
		}
	}
	n := h.p.cfg.FilterBytes
	if n == 0 || r.Body == nil || r.Body == http.NoBody {
		return Rule{}, "", nil
	}
	if r.ContentLength >= 0 {
		n = int(min(int64(n), r.ContentLength))
	}
	prefix := make([]byte, n)
	k, err := io.ReadFull(r.Body, prefix)
	prefix = prefix[:k]
	eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && !eof {
		return Rule{}, "", err
	}
	// Replay what was read, so the app gets the body intact.
	rest := r.Body
	r.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(prefix), rest), c: rest}
	if rule, ok := rules.matchBytes(prefix); ok {
		return rule, "body", nil
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if rule, ok := rules.matchEncoded(string(prefix)); ok {
			return rule, "body", nil
		}
	}
	return Rule{}, "", nil
}

// replayBody is a request body whose first bytes were read for the filter.
type replayBody struct {
	io.Reader
	c io.Closer
}

func (b *replayBody) Close() error { return b.c.Close() }

// refuse answers a refusal with a one-line body. tag goes into refusal.Header
// (the rule itself stays in the flow log, not in the client's hands).
func (h *Handler) refuse(w http.ResponseWriter, st *reqState, reason, msg string) {
	st.block(refusal.Status(reason), reason)
	refusal.Write(w, reason, msg)
}

// bodyFailed answers a request whose body could not be read.
func (h *Handler) bodyFailed(w http.ResponseWriter, st *reqState, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		h.refuse(w, st, refusal.BodyTooLarge,
			fmt.Sprintf("request body over the %d-byte limit", tooLarge.Limit))
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		h.refuse(w, st, refusal.ClientTimeout,
			"request body stalled; connection closed")
	default:
		w.Header().Set("Connection", "close")
		h.refuse(w, st, refusal.ClientError, "request body could not be read")
	}
}

// proxyError is the ReverseProxy ErrorHandler: the app did not answer, or
// the client's body failed on the way.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		st = &reqState{}
	}
	if st.body != nil {
		if berr := st.body.failure(); berr != nil {
			h.bodyFailed(w, st, berr)
			return
		}
	}
	if r.Context().Err() != nil {
		st.mu.Lock()
		st.ev.Reason = refusal.ClientGone // nobody left to answer
		st.mu.Unlock()
		return
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		h.p.cfg.Logger.Warn("inbound: the app is not answering", "app", h.app, "err", err)
		h.refuse(w, st, refusal.AppUnavailable, fmt.Sprintf("the app is not answering on %s (%s)", h.app, shortErr(err)))
		return
	}
	h.p.cfg.Logger.Warn("inbound: bad response from the app", "app", h.app, "err", err)
	h.refuse(w, st, refusal.AppError, "bad response from the app ("+shortErr(err)+")")
}

// shortErr is the innermost cause, e.g. "connection refused".
func shortErr(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// finish emits the flow event.
func (h *Handler) finish(st *reqState, rec *recorder) {
	st.mu.Lock()
	ev := st.ev
	st.mu.Unlock()
	if ev.Status == 0 {
		ev.Status = rec.status
	}
	if st.body != nil {
		ev.BytesIn = st.body.n.Load()
	}
	ev.BytesOut = rec.bytes
	if ws := rec.ws; ws != nil {
		ev.BytesIn += ws.in.Load()
		ev.BytesOut += ws.outBytes.Load()
	}
	if st.body != nil {
		st.body.finish()
	}
	ev.DurationMS = time.Since(st.start).Milliseconds()
	h.p.cfg.Log.Emit(ev)
}

// recorder notes the status and size of the response, and wraps a hijacked
// connection (WebSocket) on its way to the ReverseProxy.
type recorder struct {
	http.ResponseWriter
	h      *Handler
	st     *reqState
	r      *http.Request
	status int
	bytes  int64
	ws     *wsConn
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 && code >= 200 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// FlushError lets http.ResponseController (and so ReverseProxy) flush.
func (rw *recorder) FlushError() error { return http.NewResponseController(rw.ResponseWriter).Flush() }

// Unwrap exposes the server's writer to http.ResponseController.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// Hijack is how ReverseProxy takes over an upgraded connection.
func (rw *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(rw.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	rw.status = http.StatusSwitchingProtocols
	return rw.h.hijackedConn(rw, c, brw), brw, nil
}

// bodyReader counts a request body, caps it (MaxBytesReader underneath) and
// cuts it off when it stalls for idle: each Read carries a read deadline,
// cleared again afterwards so a long response is never cut short by it.
type bodyReader struct {
	rc   io.ReadCloser
	ctrl *http.ResponseController
	idle time.Duration

	mu   sync.Mutex
	done bool  // guarded by mu: the handler returned; leave the connection alone
	err  error // guarded by mu: the first read failure other than EOF
	n    atomic.Int64
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.deadline(time.Now().Add(b.idle))
	n, err := b.rc.Read(p)
	b.deadline(time.Time{})
	b.n.Add(int64(n))
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *bodyReader) deadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.ctrl.SetReadDeadline(t)
	}
}

func (b *bodyReader) Close() error { return b.rc.Close() }

func (b *bodyReader) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *bodyReader) finish() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}
