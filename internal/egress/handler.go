package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
	"github.com/panopticon-dev/panopticon/internal/secrets"
	"github.com/panopticon-dev/panopticon/internal/upstream"
)

type flowKey struct{}

// ServeHTTP decides one decrypted (or plain) request and proxies it through goproxy.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	meta, _ := r.Context().Value(metaKey{}).(*connMeta)
	if meta == nil {
		http.Error(w, "panopticon: not a transparent connection", http.StatusMisdirectedRequest)
		return
	}
	ev := &flowlog.Event{
		Kind:   flowlog.KindEgress,
		Client: meta.client,
		Port:   int(meta.dst.Port()),
		Method: r.Method,
		Path:   r.URL.RequestURI(),
		Detail: map[string]string{"dst": meta.dst.Addr().String()},
	}
	if r.ProtoMajor == 2 {
		ev.Detail["proto"] = "h2"
	}
	ev.RequestHeaders = p.headerSnapshot(r.Header) // as the agent sent them: placeholders only
	defer func() {
		ev.ResponseHeaders = p.headerSnapshot(w.Header())
		ev.DurationMS = time.Since(start).Milliseconds()
		p.emit(*ev)
	}()

	host, blk := destination(meta, r)
	ev.Host = host
	if r.Method == http.MethodConnect {
		// goproxy would open a raw tunnel to the allowed host and port, out
		// of sight of the request checks and the secret rules: this is not a
		// forward proxy. (An h2 extended CONNECT is refused the same way.)
		blk = &Block{Reason: refusal.Connect,
			Message: "CONNECT is not supported: connect to the destination directly; panopticon intercepts it"}
	}
	wouldBlock := ""
	if blk == nil {
		d := p.decideHeld(meta, host)
		switch {
		case d.Allow:
			ev.Reason, ev.Rule, ev.RuleSource = d.Rule(), d.Rule(), d.RuleSource()
		case p.cfg.Audit && (d.Reason == refusal.NotAllowlisted || d.Reason == refusal.PortNotAllowed):
			// Audit mode: the allowlist is learnt, not enforced. Every other
			// guard (IP literals, Host games, private addresses, secrets) still holds.
			wouldBlock = d.Reason
		default:
			blk = &Block{Reason: d.Reason, Message: policyMessage(host, int(meta.dst.Port()), d.Reason)}
		}
	}
	if blk != nil {
		p.refuse(w, ev, blk)
		return
	}

	flow := &Flow{Host: host, Port: int(meta.dst.Port()), TLS: meta.tls, Event: ev, respLength: -1}
	scheme := "http"
	if meta.tls {
		scheme = "https"
	}
	r.URL.Scheme = scheme
	r.URL.Host = joinHostPort(host, flow.Port, scheme)
	r.Host = r.URL.Host
	if blk := p.applySecrets(r, flow); blk != nil {
		p.refuse(w, ev, blk)
		return
	}
	var sent atomic.Int64
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, n: &sent}
	}
	upCtx, cancelUpstream := context.WithCancel(r.Context())
	defer cancelUpstream()
	r = r.WithContext(context.WithValue(upCtx, flowKey{}, flow))

	rec := &recorder{ResponseWriter: w, flow: flow, cancelUpstream: cancelUpstream}
	if r.ProtoMajor == 1 {
		rec.wire = meta.wire // HTTP/2 frames are written by the server's own goroutine
	}
	if flow.secrets != nil && isWebSocketUpgrade(r) {
		rec.clientStream = flow.secrets.rw.WebSocket
	}
	p.gp.ServeHTTP(rec, r)
	rec.closeHijacked()
	if flow.secrets != nil {
		ev.Secrets = flow.secrets.rw.Used()
	}

	ev.Decision = flowlog.Allow
	if wouldBlock != "" {
		ev.Decision, ev.Reason = flowlog.WouldBlock, wouldBlock
	}
	ev.Status = rec.status
	ev.BytesIn = rec.written + rec.hijackedIn.Load()
	ev.BytesOut = sent.Load() + rec.hijackedOut.Load()
	if flow.upstreamErr != nil {
		ev.Decision = flowlog.Block
		ev.Reason = upstreamReason(flow.upstreamErr)
		ev.Detail["error"] = flow.upstreamErr.Error()
	}
	switch {
	case rec.writeErr != nil:
		// The app went away (the upstream read was then cancelled).
		ev.Detail["error"] = "writing to the app: " + p.redactedText(rec.writeErr.Error())
	case flow.bodyErr != nil && rec.hijacked == nil:
		// goproxy ends the answer as if it were whole; the app must see it
		// cut short, as it would without us: abort instead (HTTP/1 closes
		// the connection before the last chunk, HTTP/2 resets the stream).
		if errors.Is(flow.bodyErr, secrets.ErrCutAtValue) {
			ev.Detail["redaction"] = flow.bodyErr.Error()
			p.cfg.Logger.Warn("response cut at a real secret value", "host", flow.Host)
		} else {
			ev.Detail["error"] = "the upstream's body broke off: " + p.redactedText(flow.bodyErr.Error())
		}
		panic(http.ErrAbortHandler)
	}
}

// redactedText is s with every real value replaced by its placeholder.
func (p *Proxy) redactedText(s string) string {
	if p.redactAll == nil {
		return s
	}
	return p.redactAll.String(s)
}

// destination returns the name this request may go to, normalised (it is
// what we connect to and bind secrets to, never another spelling), or why it
// may not go. For TLS the name is the SNI (normalised once per connection)
// and the Host header must agree with it (goproxy would otherwise dial the
// Host); for plain HTTP it is the Host header. A port in the Host header must
// match the port the app connected to.
func destination(meta *connMeta, r *http.Request) (string, *Block) {
	hostHdr, portHdr := splitHostPort(r.Host)
	if portHdr != "" && portHdr != strconv.Itoa(int(meta.dst.Port())) {
		return hostHdr, &Block{Reason: refusal.HostMismatch, Message: fmt.Sprintf("Host port %s differs from the connection's port %d", portHdr, meta.dst.Port())}
	}
	if meta.tls {
		if meta.sni == "" {
			reason := refusal.NoSNI
			if hostHdr == "" || policy.IsIPLiteral(hostHdr) {
				reason = refusal.IPLiteral
			}
			return hostHdr, &Block{Reason: reason, Message: "TLS without a server name (SNI); use a host name, not an IP address"}
		}
		if hostHdr != "" && normalized(hostHdr) != meta.sni {
			return meta.sni, &Block{Reason: refusal.HostMismatch, Message: fmt.Sprintf("Host %q differs from the TLS server name %q", hostHdr, meta.sni)}
		}
		return meta.sni, nil
	}
	if hostHdr == "" {
		return "", &Block{Reason: refusal.NoHost, Message: "HTTP request without a Host header"}
	}
	return normalized(hostHdr), nil
}

// normalized is policy.NormalizeHost, or for what it refuses (IP literals,
// malformed names — the policy decides about those) the lower-cased name
// without a trailing dot.
func normalized(host string) string {
	if n, err := policy.NormalizeHost(host); err == nil {
		return n
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func splitHostPort(hp string) (string, string) {
	if h, p, err := net.SplitHostPort(hp); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), ""
}

func joinHostPort(host string, port int, scheme string) string {
	if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func policyMessage(host string, port int, reason string) string {
	switch reason {
	case refusal.NotAllowlisted:
		return fmt.Sprintf("%s is not on the allowlist; add it to allowlist.txt to allow it", host)
	case refusal.PortNotAllowed:
		return fmt.Sprintf("%s is allowlisted, but not on port %d; add %s:%d to allow it", host, port, host, port)
	case refusal.IPLiteral:
		return fmt.Sprintf("%s is an IP address; destinations must be host names on the allowlist", host)
	default:
		return fmt.Sprintf("%s:%d refused (%s)", host, port, reason)
	}
}

// refuse answers with the block's status, reason header and one-line body.
func (p *Proxy) refuse(w http.ResponseWriter, ev *flowlog.Event, b *Block) {
	ev.Decision = flowlog.Block
	ev.Reason = b.Reason
	ev.Status, ev.BytesIn = refusal.Write(w, b.Reason, b.Message)
}

// Bounds of the header snapshot kept for the dashboard's detail view.
const (
	maxSnapshotHeaders = 64
	maxSnapshotValue   = 512
)

// headerSnapshot copies h for the dashboard (bounded), with any real secret
// value replaced by its placeholder: the agent should only hold placeholders,
// but if it somehow sent a real value, the dashboard must not show it.
func (p *Proxy) headerSnapshot(h http.Header) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	out := make(http.Header, min(len(h), maxSnapshotHeaders))
	for k, vs := range h {
		if len(out) == maxSnapshotHeaders {
			break
		}
		out[k] = append([]string(nil), vs...)
	}
	if p.redactAll != nil {
		p.redactAll.Header(out) // before truncating: a cut value would no longer be recognised
	}
	for _, vs := range out {
		for i, v := range vs {
			if len(v) > maxSnapshotValue {
				vs[i] = v[:maxSnapshotValue] + "…"
			}
		}
	}
	return out
}

// onRequest tags the goproxy context with our flow so onResponse can find it.
func (p *Proxy) onRequest(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	flow, _ := r.Context().Value(flowKey{}).(*Flow)
	ctx.UserData = flow
	if flow != nil && flow.secrets != nil && flow.secrets.transport != nil {
		tr := flow.secrets.transport
		ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
			return tr.RoundTrip(req)
		})
	}
	return r, nil
}

// onResponse turns upstream failures into a clear answer and runs the response hook.
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	flow, _ := ctx.UserData.(*Flow)
	if resp == nil {
		err := ctx.Error
		if err == nil {
			err = errors.New("no response")
		}
		if flow != nil {
			flow.upstreamErr = err
		}
		resp := errorResponse(ctx.Req, err)
		if p.redactAll != nil {
			// The error text may quote what the upstream sent.
			body, _ := io.ReadAll(resp.Body)
			red := p.redactAll.String(string(body))
			resp.Body = io.NopCloser(strings.NewReader(red))
			resp.ContentLength = int64(len(red))
			resp.Header.Set("Content-Length", strconv.Itoa(len(red)))
		}
		return resp
	}
	if flow != nil {
		resp = p.redactResponse(resp, flow)
		if resp.Body != nil && resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols {
			flow.respLength = resp.ContentLength
			resp.Body = &watchedBody{ReadCloser: resp.Body, flow: flow}
		}
	}
	return resp
}

func upstreamReason(err error) string {
	var ge *upstream.GuardError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var tve *tls.CertificateVerificationError
	var pe *pinError
	var we *withheldError
	switch {
	case errors.As(err, &we):
		return we.reason
	case errors.As(err, &pe):
		return refusal.SecretPin
	case errors.As(err, &ge):
		return refusal.PrivateAddress
	case errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie), errors.As(err, &tve):
		return refusal.UpstreamCert
	default:
		return refusal.UpstreamError
	}
}

func errorResponse(req *http.Request, err error) *http.Response {
	reason := upstreamReason(err)
	msg := fmt.Sprintf("upstream %s failed: %v", req.URL.Host, err)
	switch reason {
	case refusal.Undecodable, refusal.PartialContent:
		msg = fmt.Sprintf("answer from %s withheld: %v", req.URL.Host, err)
	case refusal.PrivateAddress:
		msg = fmt.Sprintf("%s resolves to a private address: %v", req.URL.Host, err)
	case refusal.SecretPin:
		msg = fmt.Sprintf("secret withheld: %v", err)
	}
	return refusal.Response(req, reason, msg)
}

// recorder counts what goes back to the app, flushes each write (so streamed
// bodies arrive as they are sent), and tracks a hijacked (WebSocket) connection.
type recorder struct {
	http.ResponseWriter
	// clientStream, when set, rewrites what the app sends after an upgrade
	// (WebSocket placeholders).
	clientStream func(io.Reader) io.Reader
	flow         *Flow // the request's flow, for the body's length
	wire         *cork // HTTP/1: each piece of body leaves in one socket write
	// cancelUpstream aborts the upstream request: it unblocks a body read
	// that a failed write to the app no longer waits for.
	cancelUpstream context.CancelFunc
	writeErr       error // the first failed write to the app
	status         int
	written        int64
	hijacked       net.Conn
	hijackedIn     atomic.Int64
	hijackedOut    atomic.Int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
		if h := r.Header(); r.flow != nil && r.flow.respLength >= 0 && h.Get("Content-Length") == "" && h.Get("Trailer") == "" {
			// goproxy drops Content-Length from every body a hook replaced;
			// where the length is still exact, the app gets it back (and
			// with it, a way to tell a whole body from one cut short).
			h.Set("Content-Length", strconv.FormatInt(r.flow.respLength, 10))
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	return r.writePieces(b)
}

// writePieces writes each piece to the app, then flushes once: on HTTP/1 the
// whole lot leaves in one socket write (streamed bodies arrive as they are
// sent, without a write per chunk-framing fragment).
func (r *recorder) writePieces(pieces ...[]byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.wire != nil {
		if err := r.wire.set(true); err != nil {
			return 0, err
		}
	}
	var n int
	var err error
	for _, b := range pieces {
		var k int
		k, err = r.ResponseWriter.Write(b)
		n += k
		if err != nil {
			break
		}
	}
	r.written += int64(n)
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if r.wire != nil {
		if werr := r.wire.set(false); err == nil {
			err = werr
		}
	}
	if err != nil && r.writeErr == nil {
		r.writeErr = err
	}
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked (HTTP/2)")
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Bytes the HTTP server already buffered (a first frame sent with the
	// upgrade) must pass through the same rewriting as the rest, so hand
	// them over inside the connection and return an empty reader.
	buffered, _ := rw.Reader.Peek(rw.Reader.Buffered())
	var src io.Reader = io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), c)
	if r.clientStream != nil {
		src = r.clientStream(src)
	}
	cc := &countingConn{Conn: c, r: src, in: &r.hijackedIn, out: &r.hijackedOut}
	r.hijacked = cc
	return cc, bufio.NewReadWriter(bufio.NewReader(bytes.NewReader(nil)), rw.Writer), nil
}

func (r *recorder) closeHijacked() {
	if r.hijacked != nil {
		_ = r.hijacked.Close()
	}
}

// countingConn counts a hijacked connection: reads are bytes going upstream,
// writes bytes coming back to the app.
type countingConn struct {
	net.Conn
	r       io.Reader
	in, out *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.out.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.in.Add(int64(n))
	return n, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// watchedBody notes in the flow how an upstream body broke off (any read
// error other than its end).
type watchedBody struct {
	io.ReadCloser
	flow *Flow
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.flow.bodyErr == nil {
		b.flow.bodyErr = err
	}
	return n, err
}
