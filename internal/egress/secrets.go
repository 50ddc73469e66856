package egress

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/panopticon-dev/panopticon/internal/refusal"
	"github.com/panopticon-dev/panopticon/internal/secrets"

	"golang.org/x/net/http/httpguts"
)

// Leak guard modes for well-known credential formats.
const (
	LeakGuardLog   = "log"
	LeakGuardBlock = "block"
	LeakGuardOff   = "off"
)

// secretState is what the secret hooks learnt about one request.
type secretState struct {
	rw         *secrets.Rewriter
	authorised []string          // placeholders this host may receive
	transport  http.RoundTripper // non-nil: a transport that enforces pins
}

// applySecrets swaps placeholders in r for real values when the verified
// destination may receive them, and refuses the request otherwise. It runs
// after the destination was allowed and before anything is sent upstream.
func (p *Proxy) applySecrets(r *http.Request, f *flow) *Block {
	if p.cfg.LeakGuard != LeakGuardOff {
		if kinds := suspectedLeaks(r); len(kinds) > 0 {
			f.Event.Detail["suspected_leak"] = strings.Join(kinds, ",")
			if p.cfg.LeakGuard == LeakGuardBlock {
				return &Block{Reason: refusal.SuspectedLeak, Message: fmt.Sprintf("the request to %s carries what looks like a credential (%s); LEAK_GUARD=block", f.Host, strings.Join(kinds, ", "))}
			}
			p.cfg.Logger.Warn("suspected credential in a request", "host", f.Host, "kinds", kinds)
		}
	}
	t := p.cfg.Secrets
	if t.Len() == 0 {
		return nil
	}
	st := &secretState{authorised: t.AuthorisedFor(f.Host)}
	up := secrets.Upstream{Host: f.Name, VerifiedTLS: f.TLS}
	pinned := pinnedOf(t, st.authorised)
	if f.TLS && len(pinned) > 0 {
		// A pinned secret may only ride on a connection whose verified chain
		// holds a pinned key. The rewriter is told the pins are satisfied, and
		// every request that does (or may, later in a stream) carry such a
		// secret uses a transport that checks the pins during the handshake,
		// before a single byte of the request is sent.
		for _, name := range pinned {
			up.PeerKeys = append(up.PeerKeys, t.Pins(name)...)
		}
	}
	st.rw = t.RewriterFor(up)
	if enc := r.Header.Get("Content-Encoding"); enc != "" && r.Body != nil && r.Body != http.NoBody && !secrets.CanSwap(enc) {
		// Passed on untouched (still checked for real values): say so.
		f.Event.Detail["secrets_body"] = "not swapped: content-encoding " + enc
		p.cfg.Logger.Info("request body not scanned for placeholders", "host", f.Host, "content_encoding", enc)
	}
	if err := st.rw.Request(r); err != nil {
		return secretBlock(err, f.Host)
	}
	if len(up.PeerKeys) > 0 && (usesAny(st.rw.Used(), pinned) || streamedBody(r) || isWebSocketUpgrade(r)) {
		st.transport = p.pinnedTransport(f.Host, pinned)
	}
	// Every response is scanned for every real value, whichever host sends
	// it (a value stored through one host can be read back through another),
	// so each must arrive in a form that can be scanned whole.
	if isWebSocketUpgrade(r) {
		// Compressed frames could not be swapped (or redacted).
		r.Header.Del("Sec-WebSocket-Extensions")
	} else if ae := r.Header.Get("Accept-Encoding"); ae != "" {
		if f := secrets.FilterAcceptEncoding(ae); f != "" {
			r.Header.Set("Accept-Encoding", f)
		} else {
			r.Header.Del("Accept-Encoding")
		}
	}
	// Ranges would hand out a value in pieces, each too short to recognise:
	// ask for whole answers only (a server may always ignore Range).
	r.Header.Del("Range")
	r.Header.Del("If-Range")
	f.secrets = st
	return nil
}

// redactResponse replaces every real value in what comes back, from any
// host, with its placeholder, and withholds what cannot be scanned: a body in
// a coding we cannot decode, and partial content. It returns the response to
// pass on.
func (p *Proxy) redactResponse(resp *http.Response, f *flow) *http.Response {
	red := p.redactAll
	if red == nil {
		return resp
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		red.Header(resp.Header)
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = &redactedConn{r: red.WebSocket(rwc), ReadWriteCloser: rwc}
		}
		return resp
	}
	if resp.StatusCode == http.StatusPartialContent {
		return p.withhold(resp, f, &withheldError{reason: refusal.PartialContent,
			msg: "partial content (206) is not passed on while secrets are configured: a value could be read back in pieces"})
	}
	decoded, err := red.Response(resp)
	if !decoded || err != nil {
		msg := fmt.Sprintf("the response body's Content-Encoding %q cannot be decoded to check it for secret values", resp.Header.Get("Content-Encoding"))
		if err != nil {
			msg = fmt.Sprintf("the response body could not be decoded to check it for secret values: %v", err)
		}
		return p.withhold(resp, f, &withheldError{reason: refusal.Undecodable, msg: msg})
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		// Trailers arrive with the end of the body, announced or not (an
		// HTTP/1.1 chunked body may carry trailers it never declared);
		// redact them before goproxy copies them to the app.
		resp.Body = &trailerRedactor{ReadCloser: resp.Body, resp: resp, red: red}
	}
	return resp
}

// withheldError says why an upstream answer was not passed on.
type withheldError struct{ reason, msg string }

func (e *withheldError) Error() string { return e.msg }

// withhold discards resp and answers 502 with the reason instead.
func (p *Proxy) withhold(resp *http.Response, f *flow, err *withheldError) *http.Response {
	if resp.Body != nil {
		_ = resp.Body.Close()
	}
	f.upstreamErr = err
	p.cfg.Logger.Warn("response withheld", "host", f.Host, "reason", err.reason)
	return errorResponse(resp.Request, err)
}

// trailerRedactor redacts resp.Trailer when the body reaches its end (the
// transport fills the trailers just before it reports EOF).
type trailerRedactor struct {
	io.ReadCloser
	resp *http.Response
	red  *secrets.Redactor
}

func (t *trailerRedactor) Read(b []byte) (int, error) {
	n, err := t.ReadCloser.Read(b)
	if err == io.EOF && len(t.resp.Trailer) > 0 {
		t.red.Header(t.resp.Trailer)
	}
	return n, err
}

type redactedConn struct {
	io.ReadWriteCloser
	r io.Reader
}

func (c *redactedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func secretBlock(err error, host string) *Block {
	reason := refusal.SecretUnauthorised
	switch {
	case errors.Is(err, secrets.ErrPlainHTTP):
		reason = refusal.SecretPlainHTTP
	case errors.Is(err, secrets.ErrLeak):
		reason = refusal.SecretLeak
	case errors.Is(err, secrets.ErrPinMismatch):
		reason = refusal.SecretPin
	case errors.Is(err, secrets.ErrUnauthorized):
	default:
		// Reading the body failed, or something unexpected: refuse, say why.
		return &Block{Reason: refusal.BadRequest, Message: fmt.Sprintf("reading the request for %s: %v", host, err)}
	}
	return &Block{Reason: reason, Message: err.Error()}
}

// streamedBody reports whether r's body is sent as it is read (so placeholders
// in it are swapped only after the transport was chosen).
func streamedBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && (r.ContentLength < 0 || r.ContentLength > secrets.MaxBufferedBody)
}

func usesAny(used, names []string) bool {
	for _, u := range used {
		for _, n := range names {
			if u == n {
				return true
			}
		}
	}
	return false
}

// pinnedOf returns the names among names that have certificate pins.
func pinnedOf(t *secrets.Table, names []string) []string {
	var out []string
	for _, n := range names {
		if len(t.Pins(n)) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// pinError says the upstream chain holds none of a secret's pinned keys.
type pinError struct{ secret, host string }

func (e *pinError) Error() string {
	return fmt.Sprintf("%s presented no key pinned for %s", e.host, e.secret)
}

// pinnedTransport returns (and caches) a transport for host that completes a
// TLS handshake only when the verified chain satisfies every pinned secret.
func (p *Proxy) pinnedTransport(host string, pinned []string) *http.Transport {
	key := host + "\x00" + strings.Join(pinned, ",")
	p.pinnedMu.Lock()
	defer p.pinnedMu.Unlock()
	if tr, ok := p.pinned[key]; ok {
		return tr
	}
	if len(p.pinned) >= maxPinnedTransports {
		// Wildcard domains let the agent name endless hosts: stay bounded.
		for _, old := range p.pinned {
			old.CloseIdleConnections()
		}
		clear(p.pinned)
	}
	tr := p.cfg.Transport.Clone()
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	t := p.cfg.Secrets
	tr.TLSClientConfig.VerifyConnection = func(cs tls.ConnectionState) error {
		hashes := secrets.SPKIHashes(cs.VerifiedChains)
		for _, name := range pinned {
			if s, ok := t.Secret(name); ok && !s.PinOK(hashes) {
				return &pinError{secret: name, host: host}
			}
		}
		return nil
	}
	p.pinned[key] = tr
	return tr
}

// maxPinnedTransports bounds the transports kept for pinned secrets.
const maxPinnedTransports = 256

// suspectedLeaks names well-known credential formats in the request target,
// header values and (when small enough to hold) the body.
func suspectedLeaks(r *http.Request) []string {
	seen := map[string]bool{}
	add := func(kinds []string) {
		for _, k := range kinds {
			seen[k] = true
		}
	}
	add(secrets.SuspectLeaksString(r.URL.RequestURI()))
	for _, vs := range r.Header {
		for _, v := range vs {
			add(secrets.SuspectLeaksString(v))
		}
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength > 0 && r.ContentLength <= secrets.MaxBufferedBody {
		data, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(data))
		if err == nil {
			add(secrets.SuspectLeaks(data))
		}
	}
	if len(seen) == 0 {
		return nil
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func isWebSocketUpgrade(r *http.Request) bool {
	return httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
