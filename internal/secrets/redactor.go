package secrets

import (
	"bytes"
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
	max     int
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
			d.max = max(d.max, len(n.text))
		}
	}
	slices.SortStableFunc(d.needles, func(a, b needle) int { return len(b.text) - len(a.text) })
	return d
}

// Active reports whether d redacts anything at all.
func (d *Redactor) Active() bool { return d != nil && len(d.needles) > 0 }

// String returns s with every real value replaced by its placeholder.
func (d *Redactor) String(s string) string {
	if !d.Active() {
		return s
	}
	found := false
	for _, n := range d.needles {
		if strings.Contains(s, n.text) {
			found = true
			break
		}
	}
	if !found {
		return s
	}
	out, _, _ := d.step()(nil, []byte(s), 0, len(s))
	return string(out)
}

// step returns a stepFunc with its own scratch space.
func (d *Redactor) step() stepFunc {
	next := make([]int, len(d.needles))
	return func(dst, win []byte, start, limit int) ([]byte, int, error) {
		// next[k]: where needle k next occurs at or after i (-1: nowhere in
		// win), so each needle is searched once per occurrence, not per match.
		for k := range next {
			next[k] = -2
		}
		i := start
		for i < limit {
			best, bestK := -1, -1
			for k, n := range d.needles {
				if next[k] == -2 || (next[k] >= 0 && next[k] < i) {
					next[k] = -1
					if j := bytes.Index(win[i:], n.bytes); j >= 0 {
						next[k] = i + j
					}
				}
				// Needles are sorted longest first: on a tie, keep the earlier.
				if p := next[k]; p >= 0 && p < limit && (best < 0 || p < best) {
					best, bestK = p, k
				}
			}
			if best < 0 {
				return append(dst, win[i:limit]...), limit, nil
			}
			dst = append(dst, win[i:best]...)
			dst = append(dst, d.t.secrets[d.needles[bestK].secret].Name...)
			i = best + len(d.needles[bestK].text)
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
	return &streamReader{s: newStream(src, d.step(), d.max-1, 0)}
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

// Body redacts a response body with the given Content-Encoding: identity,
// gzip and deflate are decoded, redacted and re-encoded as a stream (ok true).
// Other encodings are returned untouched with ok false: the caller should
// not let such a body reach the app from a host that received a secret —
// send Accept-Encoding: AcceptEncoding upstream so it does not happen.
func (d *Redactor) Body(body io.ReadCloser, contentEncoding string) (io.ReadCloser, bool) {
	c := parseCoding(contentEncoding)
	if !d.Active() || body == nil {
		return body, true
	}
	switch c {
	case codingIdentity:
		return &readCloser{Reader: d.Reader(body), c: body}, true
	case codingUnknown:
		return body, false
	}
	return transcode(body, c, d.Reader), true
}

// Response redacts resp's headers and body and keeps Content-Length right
// (exact for bodies of known length up to MaxBufferedBody, removed
// otherwise). It reports false when the body's encoding could not be decoded
// and so was not redacted.
func (d *Redactor) Response(resp *http.Response) (bool, error) {
	if !d.Active() {
		return true, nil
	}
	d.Header(resp.Header)
	if resp.Body == nil || resp.Body == http.NoBody {
		return true, nil
	}
	enc := resp.Header.Get("Content-Encoding")
	if !CanDecode(enc) {
		return false, nil
	}
	if resp.ContentLength >= 0 && resp.ContentLength <= MaxBufferedBody {
		data, err := readBody(resp.Body, resp.ContentLength)
		if err != nil {
			return true, err
		}
		body, _ := d.Body(io.NopCloser(bytes.NewReader(data)), enc)
		out, err := io.ReadAll(body)
		if err != nil {
			return true, fmt.Errorf("redacting the response body: %w", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		if resp.Header.Get("Content-Length") != "" {
			resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		}
		return true, nil
	}
	resp.Body, _ = d.Body(resp.Body, enc)
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
