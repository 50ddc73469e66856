package secrets

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/panopticon-dev/panopticon/internal/policy"
)

var valuePrefixBytes = []byte(ValuePrefix)

// MaxBufferedBody is the largest request or response body that Request and
// Response rewrite in memory, so that Content-Length stays exact and a
// violation is found before any byte is sent. Larger bodies, and bodies of
// unknown length, are streamed (chunked).
const MaxBufferedBody = 1 << 20

// Upstream is where a request goes, as the proxy verified it.
type Upstream struct {
	Host        policy.Host // verified destination name (the SNI), parsed once by the door
	VerifiedTLS bool        // the upstream certificate was verified; false for plain HTTP
	PeerKeys    [][]byte    // SPKIHashes of the verified chain; needed by pinned secrets
}

// Rewriter swaps placeholders for real values on the way to one upstream. It
// is safe for concurrent use (the header hook and the body stream may run on
// different goroutines).
type Rewriter struct {
	t    *Table
	host string
	deny []error // per secret: nil when it may be released to this upstream
	used []atomic.Bool
}

// Rewriter returns a Rewriter for host (the verified destination name) without
// peer keys: pinned secrets are withheld. Use RewriterFor to pass them.
func (t *Table) Rewriter(host string, verifiedTLS bool) *Rewriter {
	h, _ := policy.ParseHost(host) // not a host name: the zero Host, authorised for nothing
	return t.RewriterFor(Upstream{Host: h, VerifiedTLS: verifiedTLS})
}

// RewriterFor returns a Rewriter for u.
func (t *Table) RewriterFor(u Upstream) *Rewriter {
	host := u.Host.String()
	r := &Rewriter{t: t, host: host}
	if t.Len() == 0 {
		return r
	}
	r.deny = make([]error, len(t.secrets))
	r.used = make([]atomic.Bool, len(t.secrets))
	for i, s := range t.secrets {
		switch {
		case !u.VerifiedTLS:
			r.deny[i] = ErrPlainHTTP
		case u.Host.IsZero() || !s.Authorised(host):
			r.deny[i] = ErrUnauthorized
		case !s.PinOK(u.PeerKeys):
			r.deny[i] = ErrPinMismatch
		}
	}
	return r
}

// Used returns the placeholders swapped so far, sorted and unique.
func (r *Rewriter) Used() []string {
	if r == nil {
		return nil
	}
	var names []string
	for i := range r.used {
		if r.used[i].Load() {
			names = append(names, r.t.secrets[i].Name)
		}
	}
	return names
}

func (r *Rewriter) violation(secret int, kind error, where string) *Violation {
	return &Violation{Secret: r.t.secrets[secret].Name, Host: r.host, Kind: kind, Where: where}
}

// active reports whether there is anything to swap or guard.
func (r *Rewriter) active() bool { return r != nil && r.t.Len() > 0 }

// String swaps the placeholders in s. It fails with a *Violation when s holds
// a placeholder this upstream may not receive, or a real value (any host).
// Input without placeholders and real values is returned as is, without
// allocating.
func (r *Rewriter) String(s string) (string, error) { return r.stringIn(s, "") }

func (r *Rewriter) stringIn(s, where string) (string, error) {
	if !r.active() {
		return s, nil
	}
	if k, ok := r.t.containsValueString(s); ok {
		return "", r.violation(k, ErrLeak, where)
	}
	if !strings.Contains(s, ValuePrefix) {
		return s, nil
	}
	out, _, err := r.replace(nil, []byte(s), 0, len(s), where)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// leakIn reports the first real value in b.
func (r *Rewriter) leakIn(b []byte, where string) error {
	for _, n := range r.t.needles {
		if bytes.Contains(b, n.bytes) {
			return r.violation(n.secret, ErrLeak, where)
		}
	}
	return nil
}

// placeholderAt returns the secret whose placeholder begins b. Placeholders
// are prefix-free (FromEnv checks), so at most one matches.
func (t *Table) placeholderAt(b []byte) (int, bool) {
	for i, s := range t.secrets {
		if len(b) >= len(s.Name) && string(b[:len(s.Name)]) == s.Name {
			return i, true
		}
	}
	return 0, false
}

// replace swaps the placeholders that begin in win[start:limit].
func (r *Rewriter) replace(dst, win []byte, start, limit int, where string) ([]byte, int, error) {
	i := start
	for i < limit {
		end := min(len(win), limit+len(valuePrefixBytes)-1) // only prefixes beginning before limit
		j := bytes.Index(win[i:end], valuePrefixBytes)
		if j < 0 {
			return append(dst, win[i:limit]...), limit, nil
		}
		j += i
		dst = append(dst, win[i:j]...)
		k, ok := r.t.placeholderAt(win[j:])
		if !ok {
			dst = append(dst, win[j])
			i = j + 1
			continue
		}
		if err := r.deny[k]; err != nil {
			return nil, 0, r.violation(k, err, where)
		}
		dst = append(dst, r.t.secrets[k].hz.value...)
		r.used[k].Store(true)
		i = j + len(r.t.secrets[k].Name)
	}
	return dst, i, nil
}

func (r *Rewriter) step(where string) stepFunc {
	return func(dst, win []byte, start, limit int) ([]byte, int, error) {
		if err := r.leakIn(win, where); err != nil {
			return nil, 0, err
		}
		return r.replace(dst, win, start, limit, where)
	}
}

// scanStep only guards against real values and passes everything else, for
// bodies it cannot decode.
func (r *Rewriter) scanStep(where string) stepFunc {
	return func(dst, win []byte, start, limit int) ([]byte, int, error) {
		if err := r.leakIn(win, where); err != nil {
			return nil, 0, err
		}
		return append(dst, win[start:limit]...), limit, nil
	}
}

func (r *Rewriter) newStream(src io.Reader, where string) *stream {
	return newStream(src, r.step(where), max(r.t.maxPlaceholder, r.t.maxNeedle)-1, r.t.maxNeedle-1)
}

// Reader swaps placeholders in a stream, including those split across reads,
// in bounded memory. On a violation Read returns the *Violation before any
// byte of the offending placeholder or value.
func (r *Rewriter) Reader(src io.Reader) io.Reader {
	if !r.active() {
		return src
	}
	return &streamReader{s: r.newStream(src, "body")}
}

// Header swaps placeholders in every header value, including the user and
// password inside "Basic" credentials of Authorization and
// Proxy-Authorization. A placeholder or real value in a header name is a
// Violation: there is no legitimate use for one.
func (r *Rewriter) Header(h http.Header) error {
	if !r.active() {
		return nil
	}
	for name, vals := range h {
		if err := r.checkNoSecret(name, "header name"); err != nil {
			return err
		}
		for i, v := range vals {
			nv, err := r.headerValue(name, v)
			if err != nil {
				return err
			}
			vals[i] = nv
		}
	}
	return nil
}

// checkNoSecret fails when s holds a real value or a configured placeholder,
// wherever swapping makes no sense.
func (r *Rewriter) checkNoSecret(s, where string) error {
	if k, ok := r.t.containsValueString(s); ok {
		return r.violation(k, ErrLeak, where)
	}
	for i := strings.Index(s, ValuePrefix); i >= 0; {
		if k, ok := r.t.placeholderAt([]byte(s[i:])); ok {
			return r.violation(k, ErrUnauthorized, where)
		}
		j := strings.Index(s[i+1:], ValuePrefix)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return nil
}

func (r *Rewriter) headerValue(name, v string) (string, error) {
	nv, err := r.headerValueIn(name, v)
	if v, ok := err.(*Violation); ok {
		v.Where = "header " + name + v.Where // built only on failure: the clean path allocates nothing
	}
	return nv, err
}

func (r *Rewriter) headerValueIn(name, v string) (string, error) {
	nv, err := r.stringIn(v, "")
	if err != nil {
		return "", err
	}
	if name != "Authorization" && name != "Proxy-Authorization" {
		return nv, nil
	}
	scheme, cred, ok := strings.Cut(nv, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return nv, nil
	}
	cred = strings.TrimSpace(cred)
	dec, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return nv, nil // not Basic credentials after all; the raw text was checked
	}
	nd, err := r.stringIn(string(dec), " (Basic credentials)")
	if err != nil {
		return "", err
	}
	if nd == string(dec) {
		return nv, nil
	}
	return scheme + " " + base64.StdEncoding.EncodeToString([]byte(nd)), nil
}

// URL swaps placeholders in the request target. Path segments and query keys
// and values are percent-decoded first, so an escaped placeholder
// ("PLACEHOLDER%5FSECRET…") or an escaped real value is found; only the parts
// that change are re-escaped (PathEscape, QueryEscape), so a real value with
// "/", "+" or "&" keeps its meaning. Userinfo is swapped too; a placeholder or
// value in the host is a Violation. The fragment is never sent and is left
// alone.
func (r *Rewriter) URL(u *url.URL) error {
	if !r.active() || u == nil {
		return nil
	}
	if err := r.checkNoSecret(u.Host, "URL host"); err != nil {
		return err
	}
	if u.User != nil {
		name, err := r.stringIn(u.User.Username(), "URL userinfo")
		if err != nil {
			return err
		}
		if pw, ok := u.User.Password(); ok {
			npw, err := r.stringIn(pw, "URL userinfo")
			if err != nil {
				return err
			}
			u.User = url.UserPassword(name, npw)
		} else {
			u.User = url.User(name)
		}
	}
	if u.Opaque != "" {
		o, err := r.stringIn(u.Opaque, "URL")
		if err != nil {
			return err
		}
		u.Opaque = o
	}
	if p, changed, err := r.escaped(u.EscapedPath(), "/", "", url.PathUnescape, url.PathEscape, "URL path"); err != nil {
		return err
	} else if changed {
		dec, err := url.PathUnescape(p)
		if err != nil {
			return fmt.Errorf("re-escaping the URL path: %w", err)
		}
		u.Path, u.RawPath = dec, p
	}
	if q, changed, err := r.escaped(u.RawQuery, "&", "=", url.QueryUnescape, url.QueryEscape, "URL query"); err != nil {
		return err
	} else if changed {
		u.RawQuery = q
	}
	return nil
}

// escaped decodes each part of s (split at sep, then at the first kv), swaps
// and re-escapes the parts that changed.
func (r *Rewriter) escaped(s, sep, kv string, unescape func(string) (string, error), escape func(string) string, where string) (string, bool, error) {
	if k, ok := r.t.containsValueString(s); ok {
		return "", false, r.violation(k, ErrLeak, where)
	}
	if !strings.Contains(s, ValuePrefix) && !strings.Contains(s, "%") && !strings.Contains(s, "+") {
		return s, false, nil
	}
	parts := strings.Split(s, sep)
	changed := false
	for i, part := range parts {
		var sub []string
		if kv != "" {
			if k, v, ok := strings.Cut(part, kv); ok {
				sub = []string{k, v}
			}
		}
		if sub == nil {
			sub = []string{part}
		}
		partChanged := false
		for j, raw := range sub {
			dec, err := unescape(raw)
			if err != nil {
				dec = raw // malformed escapes reach upstream as they are; the raw text is checked
			}
			nd, err := r.stringIn(dec, where)
			if err != nil {
				return "", false, err
			}
			if nd != dec {
				sub[j] = escape(nd)
				partChanged = true
			}
		}
		if partChanged {
			parts[i] = strings.Join(sub, kv)
			changed = true
		}
	}
	if !changed {
		return s, false, nil
	}
	return strings.Join(parts, sep), true, nil
}

// Request swaps placeholders in req's URL, Host, headers and body, and keeps
// Content-Length right: bodies of known length up to MaxBufferedBody are
// rewritten in memory (a violation anywhere in them is found before anything
// is sent); others are streamed with Content-Length removed (chunked). A body
// whose Content-Encoding cannot be decoded is passed on untouched but still
// guarded against real values; check CanSwap to log it.
func (r *Rewriter) Request(req *http.Request) error {
	if !r.active() {
		return nil
	}
	if err := r.checkNoSecret(req.Host, "Host"); err != nil {
		return err
	}
	if err := r.URL(req.URL); err != nil {
		return err
	}
	if err := r.Header(req.Header); err != nil {
		return err
	}
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	enc := req.Header.Get("Content-Encoding")
	if req.ContentLength >= 0 && req.ContentLength <= MaxBufferedBody {
		data, err := readBody(req.Body, req.ContentLength)
		if err != nil {
			return err
		}
		body, _ := r.Body(io.NopCloser(bytes.NewReader(data)), enc)
		out, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		req.ContentLength = int64(len(out))
		if req.Header.Get("Content-Length") != "" {
			req.Header.Set("Content-Length", strconv.Itoa(len(out)))
		}
		req.Body = io.NopCloser(bytes.NewReader(out))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(out)), nil }
		return nil
	}
	body, decoded := r.Body(req.Body, enc)
	req.Body = body
	req.GetBody = nil
	if decoded {
		req.ContentLength = -1
		req.Header.Del("Content-Length")
	}
	return nil
}

// readBody reads a body that announced n bytes, and closes it.
func readBody(body io.ReadCloser, n int64) ([]byte, error) {
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, n+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if int64(len(data)) > n {
		return nil, fmt.Errorf("reading the request body: longer than its Content-Length %d", n)
	}
	return data, nil
}

// describe names the host and the secrets used, never a value. Rewriter has
// no String() method: String(s) is the swap. Format, GoString and LogValue
// print this.
func (r *Rewriter) describe() string {
	if r == nil {
		return "secrets.Rewriter{}"
	}
	return fmt.Sprintf("secrets.Rewriter{host=%s used=%v}", r.host, r.Used())
}

func (r *Rewriter) GoString() string              { return r.describe() }
func (r *Rewriter) Format(f fmt.State, verb rune) { formatRedacted(f, verb, r.describe()) }
func (r *Rewriter) LogValue() slog.Value          { return slog.StringValue(r.describe()) }
