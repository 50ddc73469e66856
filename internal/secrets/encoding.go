package secrets

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// coding is a Content-Encoding this package can decode and re-encode.
type coding int

const (
	codingUnknown coding = iota
	codingIdentity
	codingGzip
	codingDeflate
)

func parseCoding(contentEncoding string) coding {
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
		return codingIdentity
	case "gzip", "x-gzip":
		return codingGzip
	case "deflate":
		return codingDeflate
	}
	return codingUnknown // br, zstd, compress, and lists such as "gzip, br"
}

// AcceptEncoding lists the codings responses can be decoded from; send it (or
// the agent's list cut down to it) upstream as Accept-Encoding.
const AcceptEncoding = "gzip, deflate, br, zstd"

// FilterAcceptEncoding cuts the agent's Accept-Encoding down to codings
// responses can be decoded from, keeping their order and weights ("" when none is left:
// the upstream then answers in identity).
func FilterAcceptEncoding(accept string) string {
	var keep []string
	for _, part := range strings.Split(accept, ",") {
		name, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "gzip", "x-gzip", "deflate", "br", "zstd", "identity":
			keep = append(keep, strings.TrimSpace(part))
		}
	}
	return strings.Join(keep, ", ")
}

// CanSwap reports whether placeholders are swapped in request bodies with
// this Content-Encoding (identity, gzip, deflate: they are re-encoded after).
func CanSwap(contentEncoding string) bool { return parseCoding(contentEncoding) != codingUnknown }

// responseCoding is one layer of a response's Content-Encoding.
type responseCoding string

// parseCodings returns the layers of a Content-Encoding in the order they
// were applied, without identity; ok is false for any coding not decodable.
func parseCodings(contentEncoding string) ([]responseCoding, bool) {
	var out []responseCoding
	for _, part := range strings.Split(contentEncoding, ",") {
		switch c := strings.ToLower(strings.TrimSpace(part)); c {
		case "", "identity":
		case "gzip", "x-gzip":
			out = append(out, "gzip")
		case "deflate", "br", "zstd":
			out = append(out, responseCoding(c))
		default:
			return nil, false
		}
	}
	return out, true
}

// maxZstdWindow bounds the memory one zstd stream may ask for.
const maxZstdWindow = 8 << 20

// decodeLayers undoes codings (applied in that order) on body. The result
// reads the identity body; closing it closes body.
func decodeLayers(body io.ReadCloser, codings []responseCoding) (io.ReadCloser, error) {
	raw := bufio.NewReader(body)
	if _, err := raw.Peek(1); err == io.EOF {
		// An empty body in any coding is an empty body (a 204-like
		// answer that still names its coding).
		return &decodedBody{Reader: http.NoBody, src: body}, nil
	}
	var r io.Reader = raw
	var closers []func()
	for i := len(codings) - 1; i >= 0; i-- {
		switch codings[i] {
		case "gzip":
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, fmt.Errorf("decoding gzip body: %w", err)
			}
			r = zr
		case "deflate":
			br := bufio.NewReader(r)
			if isZlib(br) {
				zr, err := zlib.NewReader(br)
				if err != nil {
					return nil, fmt.Errorf("decoding deflate body: %w", err)
				}
				r = zr
			} else {
				r = flate.NewReader(br)
			}
		case "br":
			r = brotli.NewReader(r)
		case "zstd":
			zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderLowmem(true))
			if err != nil {
				return nil, fmt.Errorf("decoding zstd body: %w", err)
			}
			closers = append(closers, zr.Close)
			r = zr
		}
	}
	return &decodedBody{Reader: r, src: body, closers: closers}, nil
}

// decodedBody is a decoded response body.
type decodedBody struct {
	io.Reader
	src     io.Closer
	closers []func()
}

func (d *decodedBody) Close() error {
	for _, c := range d.closers {
		c()
	}
	return d.src.Close()
}

// readCloser pairs a transformed reader with the original body's Close.
type readCloser struct {
	io.Reader
	c io.Closer
}

func (rc *readCloser) Close() error { return rc.c.Close() }

// transcode decodes body, runs it through transform and encodes it again, in a
// goroutine writing into a pipe. Closing the result stops the goroutine and
// closes body. Decoding and transform errors surface from Read.
func transcode(body io.ReadCloser, c coding, transform func(io.Reader) io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(transcodeTo(pw, body, c, transform))
	}()
	return &pipeBody{pr: pr, src: body}
}

func transcodeTo(w io.Writer, body io.Reader, c coding, transform func(io.Reader) io.Reader) error {
	var (
		dec io.Reader
		enc io.WriteCloser
	)
	switch c {
	case codingGzip:
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fmt.Errorf("decoding gzip body: %w", err)
		}
		defer zr.Close()
		dec, enc = zr, gzip.NewWriter(w)
	case codingDeflate:
		// "deflate" means zlib (RFC 9110), but some clients send raw deflate.
		br := bufio.NewReader(body)
		if isZlib(br) {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return fmt.Errorf("decoding deflate body: %w", err)
			}
			defer zr.Close()
			dec, enc = zr, zlib.NewWriter(w)
		} else {
			fr := flate.NewReader(br)
			defer fr.Close()
			fw, _ := flate.NewWriter(w, flate.DefaultCompression)
			dec, enc = fr, fw
		}
	default:
		return fmt.Errorf("transcoding: unsupported coding %d", c)
	}
	if _, err := io.Copy(enc, transform(dec)); err != nil {
		return err
	}
	return enc.Close()
}

// isZlib reports whether the stream starts with a zlib header (RFC 1950).
func isZlib(br *bufio.Reader) bool {
	h, err := br.Peek(2)
	if err != nil {
		return false
	}
	return h[0]&0x0f == 8 && h[0]>>4 <= 7 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0
}

// pipeBody is the read end of a transcoding goroutine.
type pipeBody struct {
	pr  *io.PipeReader
	src io.Closer
}

func (p *pipeBody) Read(b []byte) (int, error) { return p.pr.Read(b) }

func (p *pipeBody) Close() error {
	p.pr.Close() // unblocks the goroutine
	return p.src.Close()
}

// Body swaps placeholders in a request body with the given Content-Encoding.
// Identity, gzip and deflate bodies are decoded, swapped and re-encoded as a
// stream, and ok is true. Other encodings (br, zstd, …) are returned
// untouched with ok false — placeholders in them are not swapped, which the
// caller logs — but the bytes are still scanned for real values (ErrLeak from
// Read), since a stored or weakly compressed body can carry one verbatim. The
// length of a decoded body may change: drop Content-Length (Request does).
// Violations and decoding errors are returned by Read; close the result.
func (r *Rewriter) Body(body io.ReadCloser, contentEncoding string) (io.ReadCloser, bool) {
	c := parseCoding(contentEncoding)
	if !r.active() || body == nil {
		return body, c != codingUnknown
	}
	switch c {
	case codingIdentity:
		return &readCloser{Reader: r.Reader(body), c: body}, true
	case codingUnknown:
		s := newStream(body, r.scanStep("body"), r.t.maxNeedle-1, r.t.maxNeedle-1)
		return &readCloser{Reader: &streamReader{s: s}, c: body}, false
	}
	return transcode(body, c, r.Reader), true
}
