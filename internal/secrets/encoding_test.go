package secrets

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
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
		t.Run(c.name+" redactor decodes and redacts, and hands on identity", func(t *testing.T) {
			body, ok, err := tab.Redactor([]string{openaiPH}).Body(io.NopCloser(bytes.NewReader(c.encode([]byte(want)))), c.enc)
			if !ok || err != nil {
				t.Fatal(ok, err)
			}
			got, _ := io.ReadAll(body)
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
	t.Run("redactor refuses what it cannot decode and leaves it untouched", func(t *testing.T) {
		for _, enc := range []string{"compress", "gzip, foo", "exi"} {
			in := io.NopCloser(strings.NewReader("x"))
			body, ok, _ := tab.Redactor([]string{openaiPH}).Body(in, enc)
			if ok || body != in {
				t.Errorf("%q: body was touched or reported as decodable", enc)
			}
		}
	})
	for enc, want := range map[string]bool{"": true, "identity": true, "GZIP": true, "x-gzip": true, "deflate": true, "br": true, "zstd": true,
		"gzip, br": true, "identity, identity": true, "compress": false, "gzip, compress": false, "x-custom": false} {
		if _, ok := parseCodings(enc); ok != want {
			t.Errorf("parseCodings(%q) decodable = %v", enc, !want)
		}
	}
	for enc, want := range map[string]bool{"gzip": true, "deflate": true, "br": false, "zstd": false} {
		if CanSwap(enc) != want {
			t.Errorf("CanSwap(%q) = %v", enc, !want)
		}
	}
}

func TestRedactorDecodesEveryResponseCoding(t *testing.T) {
	tab := testTable(t)
	red := tab.Redactor(tab.Names())
	plain := []byte(`{"echo":"` + openaiValue + `"}`)
	br := func(b []byte) []byte {
		var buf bytes.Buffer
		w := brotli.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	zs := func(b []byte) []byte {
		w, _ := zstd.NewWriter(nil)
		return w.EncodeAll(b, nil)
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	id := func(b []byte) []byte { return b }
	cases := []struct {
		name, enc string
		encode    func([]byte) []byte
	}{
		{"brotli", "br", br},
		{"zstd", "zstd", zs},
		{"identity twice", "identity, identity", id},
		{"gzip then brotli", "gzip, br", func(b []byte) []byte { return br(gz(b)) }},
		{"zstd then gzip", "zstd, gzip", func(b []byte) []byte { return gz(zs(b)) }},
	}
	for _, c := range cases {
		t.Run("a value in a "+c.name+" response is redacted", func(t *testing.T) {
			resp := &http.Response{Header: http.Header{"Content-Encoding": {c.enc}}, ContentLength: -1,
				Body: io.NopCloser(bytes.NewReader(c.encode(plain)))}
			ok, err := red.Response(resp)
			if !ok || err != nil {
				t.Fatal(ok, err)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			assertNoValue(t, "response", got)
			if string(got) != `{"echo":"`+openaiPH+`"}` || resp.Header.Get("Content-Encoding") != "" {
				t.Errorf("got %q, Content-Encoding %q", got, resp.Header.Get("Content-Encoding"))
			}
		})
	}
	t.Run("an undecodable response is reported, not passed", func(t *testing.T) {
		resp := &http.Response{Header: http.Header{"Content-Encoding": {"compress"}}, ContentLength: -1, Body: io.NopCloser(strings.NewReader(openaiValue))}
		if ok, _ := red.Response(resp); ok {
			t.Fatal("ok = true for compress")
		}
	})
	t.Run("a corrupt brotli body ends in an error", func(t *testing.T) {
		resp := &http.Response{Header: http.Header{"Content-Encoding": {"br"}}, ContentLength: -1, Body: io.NopCloser(strings.NewReader("\xff\xff not brotli " + openaiValue))}
		if ok, err := red.Response(resp); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("no error (got %d bytes)", len(got))
		}
		assertNoValue(t, "corrupt brotli", got)
	})
}

func TestRedactorPassesABodyCutShortAsCutShort(t *testing.T) {
	tab := testTable(t)
	red := tab.Redactor(tab.Names())
	reset := errors.New("connection reset by peer")
	// The upstream promised 100000 bytes, sent a redactable value, then the
	// first half of another, then broke off.
	// (The redactor keeps back a tail as long as the longest spelling it
	// looks for; the filler puts the first value well before it.)
	filler := strings.Repeat("x", 8<<10)
	sent := "head " + openaiValue + " middle " + filler + openaiValue[:len(openaiValue)/2]
	resp := &http.Response{Header: http.Header{"Content-Length": {"100000"}}, ContentLength: 100000,
		Body: io.NopCloser(io.MultiReader(strings.NewReader(sent), errorReader{reset}))}
	ok, err := red.Response(resp)
	if !ok || err != nil {
		t.Fatalf("Response = %v, %v; a broken body is the app's to see, not a withheld answer", ok, err)
	}
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, reset) {
		t.Errorf("reading the body ended with %v; want the upstream's reset, so the app sees it cut short", err)
	}
	if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("Content-Length = %d / %q; want none: redaction may change the length, and the error marks the cut", resp.ContentLength, resp.Header.Get("Content-Length"))
	}
	if !strings.HasPrefix(string(got), "head "+openaiPH+" middle") {
		t.Errorf("got %q; want what came, redacted", got)
	}
	if strings.Contains(string(got), openaiValue[:len(openaiValue)/2]) {
		t.Errorf("the start of a value at the cut was let out: %q", got)
	}
}

func TestALargeBodyOfAnnouncedLengthKeepsItOrIsCutAtAValue(t *testing.T) {
	tab := testTable(t)
	red := tab.Redactor(tab.Names())
	filler := strings.Repeat("0123456789abcdef", (MaxBufferedBody+100<<10)/16)
	respond := func(body string) *http.Response {
		return &http.Response{Header: http.Header{"Content-Length": {strconv.Itoa(len(body))}}, ContentLength: int64(len(body)),
			Body: io.NopCloser(iotest_oneKB([]byte(body)))}
	}
	t.Run("without a value it passes whole, its length kept", func(t *testing.T) {
		resp := respond(filler)
		if ok, err := red.Response(resp); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != filler {
			t.Fatalf("read %d bytes, %v; want the body unchanged", len(got), err)
		}
		if resp.ContentLength != int64(len(filler)) || resp.Header.Get("Content-Length") != strconv.Itoa(len(filler)) {
			t.Errorf("Content-Length = %d / %q; want the announced one", resp.ContentLength, resp.Header.Get("Content-Length"))
		}
	})
	t.Run("a value in it cuts it there: no byte of the value, an error", func(t *testing.T) {
		body := filler[:len(filler)/2] + "echo:" + openaiValue + ":" + filler[len(filler)/2:]
		resp := respond(body)
		if ok, err := red.Response(resp); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got, err := io.ReadAll(resp.Body)
		if !errors.Is(err, ErrCutAtValue) {
			t.Fatalf("reading ended with %v; want ErrCutAtValue", err)
		}
		assertNoValue(t, "cut body", got)
		if len(got) >= len(filler)/2+len("echo:") || !strings.HasPrefix(body, string(got)) {
			t.Errorf("got %d bytes; want a prefix of what came before the value", len(got))
		}
	})
}

func TestAnEmptyCodedBodyIsAnEmptyBody(t *testing.T) {
	tab := testTable(t)
	red := tab.Redactor(tab.Names())
	for _, enc := range []string{"gzip", "deflate", "br", "zstd", "gzip, br"} {
		resp := &http.Response{Header: http.Header{"Content-Encoding": {enc}, "Etag": {`"abc"`}}, ContentLength: -1, Body: io.NopCloser(strings.NewReader(""))}
		if ok, err := red.Response(resp); !ok || err != nil {
			t.Errorf("%s: Response = %v, %v; an empty body is not undecodable", enc, ok, err)
			continue
		}
		if got, err := io.ReadAll(resp.Body); err != nil || len(got) != 0 {
			t.Errorf("%s: read %q, %v; want an empty body", enc, got, err)
		}
		if et := resp.Header.Get("ETag"); et != `W/"abc"` {
			t.Errorf("%s: ETag %q after decoding; want it weakened", enc, et)
		}
	}
}
