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

	"github.com/elazarl/goproxy"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
	"github.com/panopticon-dev/panopticon/internal/upstream"
)

// ServeHTTP decides one decrypted (or plain) request and proxies it through goproxy.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	meta, _ := r.Context().Value(metaKey{}).(*connMeta)
	if meta == nil {
		http.Error(w, "panopticon: not a transparent connection", http.StatusMisdirectedRequest)
		return
	}
	f := p.newFlow(meta, r)
	defer p.emitFlow(f, w)

	v := decide(factsOf(meta, r), p.cfg.Audit, func(host policy.Host) policy.Decision { return p.decideHeld(meta, host) })
	f.decided(v)
	if v.Block != nil {
		p.refuse(w, f.Event, v.Block)
		return
	}
	r.URL.Scheme = "http"
	if f.TLS {
		r.URL.Scheme = "https"
	}
	r.URL.Host = joinHostPort(f.Host, f.Port, r.URL.Scheme)
	r.Host = r.URL.Host
	if blk := p.applySecrets(r, f); blk != nil {
		p.refuse(w, f.Event, blk)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, n: &f.sent}
	}
	upCtx, cancelUpstream := context.WithCancel(r.Context())
	defer cancelUpstream()
	r = r.WithContext(context.WithValue(upCtx, flowKey{}, f))

	rec := &recorder{ResponseWriter: w, flow: f, cancelUpstream: cancelUpstream}
	if r.ProtoMajor == 1 {
		rec.wire = meta.wire // HTTP/2 frames are written by the server's own goroutine
	}
	if f.secrets != nil && isWebSocketUpgrade(r) {
		rec.clientStream = f.secrets.rw.WebSocket
	}
	p.gp.ServeHTTP(rec, r)
	rec.closeHijacked()
	if p.settle(f, rec) {
		// goproxy ends the answer as if it were whole; the app must see it
		// cut short, as it would without us: abort instead (HTTP/1 closes
		// the connection before the last chunk, HTTP/2 resets the stream).
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

func joinHostPort(host string, port int, scheme string) string {
	if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
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

// onRequest sends a request that may carry a pinned secret through the
// transport that checks the pins.
func (p *Proxy) onRequest(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	f := flowOf(r)
	if f != nil && f.secrets != nil && f.secrets.transport != nil {
		tr := f.secrets.transport
		ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
			return tr.RoundTrip(req)
		})
	}
	return r, nil
}

// onResponse turns upstream failures into a clear answer and scans what
// comes back.
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	f := flowOf(ctx.Req)
	if resp == nil {
		err := ctx.Error
		if err == nil {
			err = errors.New("no response")
		}
		if f != nil {
			f.upstreamErr = err
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
	if f != nil {
		resp = p.redactResponse(resp, f)
		if resp.Body != nil && resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols {
			f.respLength = resp.ContentLength
			resp.Body = &watchedBody{ReadCloser: resp.Body, flow: f}
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
	flow         *flow // the request's flow, for the body's length
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
	flow *flow
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.flow.bodyErr == nil {
		b.flow.bodyErr = err
	}
	return n, err
}
