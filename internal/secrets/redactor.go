package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Redactor replaces real values by their placeholders in what comes back from
// an upstream that received them, so an echoing or error-reporting API cannot
// hand a key to the app. Every spelling the leak guard knows (raw, escaped,
// base64 fragments) is replaced; the leftmost, then longest, match wins. A
// Redactor for no secrets does nothing and costs nothing.
type Redactor struct {
	t       *Table
	needles []needle // longest first
	m       *matcher
}

// Redactor returns a Redactor for the secrets named (placeholders, as from
// Rewriter.Used); unknown names are ignored.
func (t *Table) Redactor(names []string) *Redactor {
	d := &Redactor{t: t}
	if t == nil {
		return d
	}
	for _, n := range t.needles {
		if slices.Contains(names, t.secrets[n.secret].Name) {
			d.needles = append(d.needles, n)
		}
	}
	slices.SortStableFunc(d.needles, func(a, b needle) int { return len(b.text) - len(a.text) })
	d.m = newMatcher(d.needles)
	return d
}

// Active reports whether d redacts anything at all.
func (d *Redactor) Active() bool { return d != nil && len(d.needles) > 0 }

// String returns s with every real value replaced by its placeholder.
func (d *Redactor) String(s string) string {
	if !d.Active() {
		return s
	}
	b := []byte(s)
	ms := d.m.find(nil, b, 0, len(b), &scratch{})
	if len(ms) == 0 {
		return s
	}
	out, _ := d.replace(nil, b, 0, len(b), ms)
	return string(out)
}

// replace appends win[start:limit] to dst with the matches replaced,
// leftmost then longest first, and returns the index up to which win is
// consumed (past limit when a match crosses it).
func (d *Redactor) replace(dst, win []byte, start, limit int, ms []match) ([]byte, int) {
	leftmostLongest(ms)
	i := start
	for _, m := range ms {
		if m.start < i {
			continue // overlaps what was already replaced
		}
		dst = append(dst, win[i:m.start]...)
		dst = append(dst, d.t.secrets[d.needles[m.k].secret].Name...)
		i = m.end
	}
	if i < limit {
		dst = append(dst, win[i:limit]...)
		i = limit
	}
	return dst, i
}

// ErrCutAtValue ends a body of announced length in which a real value turned
// up whose placeholder has another length: the length was promised before
// the value was seen, so the body is cut there instead.
var ErrCutAtValue = errors.New("a real secret value in an answer of announced length: cut at the value (its placeholder would change the length)")

// step returns a stepFunc with its own scratch space.
func (d *Redactor) step() stepFunc { return d.stepKeeping(false) }

// stepKeeping is step; with sameLength, a replacement that would change the
// length fails the step (ErrCutAtValue) instead.
func (d *Redactor) stepKeeping(sameLength bool) stepFunc {
	var ms []match
	var sc scratch
	return func(dst, win []byte, start, limit int) ([]byte, int, error) {
		ms = d.m.find(ms[:0], win, start, limit, &sc)
		if len(ms) == 0 && len(dst) == 0 {
			// Nothing to replace: hand out the window itself (valid until
			// the next read, which is all a stream promises) — no copy.
			return win[start:limit:limit], limit, nil
		}
		if len(ms) == 0 {
			return append(dst, win[start:limit]...), limit, nil
		}
		before := len(dst)
		dst, i := d.replace(dst, win, start, limit, ms)
		if sameLength && len(dst)-before != i-start {
			return nil, start, ErrCutAtValue
		}
		return dst, i, nil
	}
}

// Reader redacts a stream, including values split across reads, in bounded
// memory.
func (d *Redactor) Reader(src io.Reader) io.Reader {
	if !d.Active() {
		return src
	}
	return d.streamReader(src, d.step())
}

// streamReader runs step over src as a stream that keeps enough history for
// line breaks before a spelling and holds back only what could begin one.
func (d *Redactor) streamReader(src io.Reader, step stepFunc) io.Reader {
	s := newStream(src, step, d.m.hold(), d.m.hold())
	s.tail = d.m.mustHold
	return &streamReader{s: s}
}

// Header redacts every header name and value in place. A name that changes is
// moved to its redacted name.
func (d *Redactor) Header(h http.Header) {
	if !d.Active() {
		return
	}
	for name, vals := range h {
		for i, v := range vals {
			vals[i] = d.String(v)
		}
		if nn := d.String(name); nn != name {
			delete(h, name)
			h[nn] = append(h[nn], vals...)
		}
	}
}

// Body decodes a response body with the given Content-Encoding (every layer
// CanDecode knows) and redacts it as a stream. The result is the identity
// body: the caller drops Content-Encoding (Response does). ok is false, and
// body is returned untouched, when the coding cannot be decoded: such a body
// must be withheld, since it could carry a value unseen.
func (d *Redactor) Body(body io.ReadCloser, contentEncoding string) (io.ReadCloser, bool, error) {
	layers, ok := parseCodings(contentEncoding)
	if !ok {
		return body, false, nil
	}
	if !d.Active() || body == nil {
		return body, true, nil
	}
	if len(layers) > 0 {
		dec, err := decodeLayers(body, layers)
		if err != nil {
			return body, true, err
		}
		body = dec
	}
	return &readCloser{Reader: d.Reader(body), c: body}, true, nil
}

// Response redacts resp's headers and body. A coded body is decoded and
// passed on as identity (Content-Encoding removed: decoding once is cheaper
// than decoding and encoding again). An identity body of known length up to
// MaxBufferedBody keeps an exact Content-Length; others lose it. It reports
// false, leaving the body alone, when the coding cannot be decoded: the
// caller must not pass such a body on.
func (d *Redactor) Response(resp *http.Response) (bool, error) {
	if !d.Active() {
		return true, nil
	}
	d.Header(resp.Header)
	if resp.Body == nil || resp.Body == http.NoBody {
		return true, nil
	}
	enc := resp.Header.Get("Content-Encoding")
	if vs := resp.Header.Values("Content-Encoding"); len(vs) > 1 {
		enc = strings.Join(vs, ", ")
	}
	layers, ok := parseCodings(enc)
	if !ok {
		return false, nil
	}
	if len(layers) == 0 && resp.ContentLength >= 0 && resp.ContentLength <= MaxBufferedBody {
		data, err := io.ReadAll(io.LimitReader(resp.Body, resp.ContentLength))
		if err != nil {
			// The upstream broke off mid-body. Pass on what came, redacted
			// as a stream (which never lets out the undecided tail of a
			// broken source), then the same error, so the app sees the body
			// cut short. Its length is no longer known: redaction may have
			// changed it.
			resp.Body = &readCloser{Reader: d.Reader(io.MultiReader(bytes.NewReader(data), errorReader{err})), c: resp.Body}
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
			return true, nil
		}
		_ = resp.Body.Close()
		out := []byte(d.String(string(data)))
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		if resp.Header.Get("Content-Length") != "" {
			resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		}
		return true, nil
	}
	if len(layers) == 0 && resp.ContentLength > 0 {
		// A large identity body keeps its announced length (an HTTP/1
		// client would otherwise get it chunked, at a cost of about a
		// seventh of the download rate): a value whose placeholder has
		// another length cuts it (ErrCutAtValue).
		resp.Body = &readCloser{Reader: d.streamReader(resp.Body, d.stepKeeping(true)), c: resp.Body}
		resp.Header.Del("Content-Encoding") // identity, perhaps spelled out
		return true, nil
	}
	body, _, err := d.Body(resp.Body, enc)
	if err != nil {
		return true, fmt.Errorf("redacting the response body: %w", err)
	}
	resp.Body = body
	if len(layers) > 0 {
		// Another representation now: a strong validator or a digest of
		// the coded bytes would be wrong for it.
		if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
			resp.Header.Set("ETag", "W/"+et)
		}
		for _, h := range []string{"Content-MD5", "Digest", "Content-Digest", "Repr-Digest"} {
			resp.Header.Del(h)
		}
	}
	resp.Header.Del("Content-Encoding")
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return true, nil
}

// describe names the secrets redacted, never a value.
func (d *Redactor) describe() string {
	if d == nil {
		return "secrets.Redactor{}"
	}
	var names []string
	for _, n := range d.needles {
		if name := d.t.secrets[n.secret].Name; !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return "secrets.Redactor{" + strings.Join(names, ", ") + "}"
}

func (d *Redactor) GoString() string              { return d.describe() }
func (d *Redactor) Format(f fmt.State, verb rune) { formatRedacted(f, verb, d.describe()) }
func (d *Redactor) LogValue() slog.Value          { return slog.StringValue(d.describe()) }

// errorReader fails every read with err.
type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }
