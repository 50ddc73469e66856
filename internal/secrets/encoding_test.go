package secrets

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"strings"
	"testing"
)

type codec struct {
	name   string
	enc    string
	encode func([]byte) []byte
	decode func(io.Reader) (io.Reader, error)
}

var codecs = []codec{
	{"gzip", "gzip", func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
	{"deflate (zlib, RFC 9110)", "deflate", func(b []byte) []byte {
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}, func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) }},
	{"deflate (raw, as some clients send it)", "deflate", func(b []byte) []byte {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, 5)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}, func(r io.Reader) (io.Reader, error) { return flate.NewReader(r), nil }},
}

func TestRewriterBodyCompressed(t *testing.T) {
	tab := testTable(t)
	plain := strings.Repeat("lorem ipsum ", 10000) + `{"key":"` + openaiPH + `"}` + strings.Repeat(" dolor", 5000)
	want := strings.Replace(plain, openaiPH, openaiValue, 1)
	for _, c := range codecs {
		t.Run(c.name+" body is decoded, swapped and re-encoded in the same format", func(t *testing.T) {
			rw := tab.Rewriter("api.openai.test", true)
			body, ok := rw.Body(io.NopCloser(iotest_oneKB(c.encode([]byte(plain)))), c.enc)
			if !ok {
				t.Fatal("ok = false")
			}
			defer body.Close()
			dec, err := c.decode(body)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(dec)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != want {
				t.Errorf("decoded body differs (len %d, want %d)", len(got), len(want))
			}
			if u := rw.Used(); len(u) != 1 {
				t.Errorf("Used = %v", u)
			}
		})
		t.Run(c.name+" body with an unauthorised placeholder fails on read", func(t *testing.T) {
			body, _ := tab.Rewriter("evil.test", true).Body(io.NopCloser(bytes.NewReader(c.encode([]byte(plain)))), c.enc)
			defer body.Close()
			_, err := io.ReadAll(body)
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
		})
		t.Run(c.name+" redactor decodes, redacts and re-encodes", func(t *testing.T) {
			body, ok := tab.Redactor([]string{openaiPH}).Body(io.NopCloser(bytes.NewReader(c.encode([]byte(want)))), c.enc)
			if !ok {
				t.Fatal("ok = false")
			}
			dec, err := c.decode(body)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(dec)
			if string(got) != plain {
				t.Error("redacted body differs")
			}
		})
	}
	t.Run("a corrupt gzip body is an error, not a pass-through", func(t *testing.T) {
		body, _ := tab.Rewriter("api.openai.test", true).Body(io.NopCloser(strings.NewReader("not gzip "+openaiPH)), "gzip")
		if _, err := io.ReadAll(body); err == nil {
			t.Fatal("no error")
		}
	})
}

// iotest_oneKB returns a reader yielding b in 1 KiB reads.
func iotest_oneKB(b []byte) io.Reader {
	sizes := make([]int, len(b)/1024+1)
	for i := range sizes {
		sizes[i] = 1024
	}
	return &splitReader{data: b, sizes: sizes}
}

func TestBodyUnknownEncoding(t *testing.T) {
	tab := testTable(t)
	t.Run("br body is passed untouched and reported as not swapped", func(t *testing.T) {
		in := "\x1b\x00opaque " + openaiPH
		body, ok := tab.Rewriter("api.openai.test", true).Body(io.NopCloser(strings.NewReader(in)), "br")
		if ok {
			t.Error("ok = true for br")
		}
		got, err := io.ReadAll(body)
		if err != nil || string(got) != in {
			t.Errorf("got %q, %v", got, err)
		}
	})
	t.Run("a real value verbatim in a zstd body is still a leak", func(t *testing.T) {
		body, _ := tab.Rewriter("evil.test", true).Body(io.NopCloser(strings.NewReader("zz"+openaiValue)), "zstd")
		if _, err := io.ReadAll(body); !errors.Is(err, ErrLeak) {
			t.Fatalf("err = %v, want ErrLeak", err)
		}
	})
	t.Run("redactor leaves br untouched and says so", func(t *testing.T) {
		in := io.NopCloser(strings.NewReader("x"))
		body, ok := tab.Redactor([]string{openaiPH}).Body(in, "br")
		if ok || body != in {
			t.Error("br body was touched or reported as redacted")
		}
	})
	for enc, want := range map[string]bool{"": true, "identity": true, "GZIP": true, "x-gzip": true, "deflate": true, "br": false, "zstd": false, "gzip, br": false} {
		if CanDecode(enc) != want {
			t.Errorf("CanDecode(%q) = %v", enc, !want)
		}
	}
}
