package secrets

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestRedactor(t *testing.T) {
	tab := testTable(t)
	d := tab.Redactor([]string{openaiPH, githubPH, "PLACEHOLDER_SECRET_VALUE_UNKNOWN"})
	tests := []struct{ name, in, want string }{
		{"text without values is returned as is", "nothing here", "nothing here"},
		{"a raw value becomes its placeholder", `{"echo":"` + openaiValue + `"}`, `{"echo":"` + openaiPH + `"}`},
		{"every occurrence is replaced", openaiValue + openaiValue + " " + githubValue, openaiPH + openaiPH + " " + githubPH},
		{"a query-escaped value is replaced", "u=?k=" + url.QueryEscape(githubValue), "u=?k=" + githubPH},
		{"a JSON-escaped value is replaced", `"gh-test-FAKE-1111\/+=&x"`, `"` + githubPH + `"`},
		{"a base64 value is replaced", "b64=" + base64.StdEncoding.EncodeToString([]byte(openaiValue)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := d.String(tt.in)
			assertNoValue(t, "redacted", []byte(got))
			if b64 := base64.StdEncoding.EncodeToString([]byte(openaiValue[:15])); strings.Contains(got, b64) {
				t.Errorf("base64 of the value survived: %q", got)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("secrets that were not sent are not redacted", func(t *testing.T) {
		only := tab.Redactor([]string{githubPH})
		if got := only.String(openaiValue); got != openaiValue {
			t.Errorf("got %q", got)
		}
	})
	t.Run("a redactor for no secrets is inactive and returns readers as they are", func(t *testing.T) {
		none := tab.Redactor(nil)
		r := strings.NewReader("x")
		if none.Active() || none.Reader(r) != r {
			t.Error("inactive redactor wrapped the reader")
		}
	})
	t.Run("headers are redacted in place", func(t *testing.T) {
		h := http.Header{"X-Echo": {"k=" + openaiValue}, "Www-Authenticate": {"ok"}}
		d.Header(h)
		if h.Get("X-Echo") != "k="+openaiPH || h.Get("Www-Authenticate") != "ok" {
			t.Errorf("headers %v", h)
		}
	})
	t.Run("a response is redacted and its Content-Length corrected", func(t *testing.T) {
		body := "echo " + openaiValue
		resp := &http.Response{Header: http.Header{"Content-Length": {"22"}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
		if ok, err := d.Response(resp); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got, _ := io.ReadAll(resp.Body)
		if string(got) != "echo "+openaiPH || resp.ContentLength != int64(len(got)) || resp.Header.Get("Content-Length") != "36" {
			t.Errorf("body %q len %d header %q", got, resp.ContentLength, resp.Header.Get("Content-Length"))
		}
	})
}

func TestRedactorReaderEqualsStringForEverySplit(t *testing.T) {
	d := testTable(t).Redactor([]string{openaiPH, githubPH})
	in := "x" + openaiValue + githubValue + "sk-test-FAKE-000" + url.QueryEscape(githubValue) + openaiValue
	want := d.String(in)
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j += 5 {
			got, err := io.ReadAll(d.Reader(&splitReader{data: []byte(in), sizes: []int{i, j - i, 1}}))
			if err != nil || string(got) != want {
				t.Fatalf("split %d,%d: got %q, want %q (%v)", i, j, got, want, err)
			}
		}
	}
	got, _ := io.ReadAll(d.Reader(iotest.OneByteReader(strings.NewReader(in))))
	if string(got) != want {
		t.Fatalf("one byte reads: got %q, want %q", got, want)
	}
}

func TestRedactorFindsLineBrokenBase64AtEveryAlignment(t *testing.T) {
	tab := testTable(t)
	d := tab.Redactor(tab.Names())
	strip := strings.NewReplacer("\r", "", "\n", "", " ", "", `\n`, "", `\r`, "")
	for _, w := range []int{60, 64, 76} {
		for _, sep := range []string{"\n", "\r\n", `\n`, "\n    "} {
			t.Run(fmt.Sprintf("wrapped every %d with %q", w, sep), func(t *testing.T) {
				for lead := 0; lead < w+3; lead++ {
					doc := strings.Repeat("a", lead) + openaiValue + " and " + githubValue + " end"
					enc := base64.StdEncoding.EncodeToString([]byte(doc))
					var lines []string
					for len(enc) > w {
						lines, enc = append(lines, enc[:w]), enc[w:]
					}
					in := `{"content":"` + strings.Join(append(lines, enc), sep) + `"}`
					got := d.String(in)
					if _, found := tab.ContainsValue([]byte(strip.Replace(got))); found {
						t.Fatalf("lead %d: a value survived in %q", lead, got)
					}
					if r, _ := io.ReadAll(d.Reader(iotest.OneByteReader(strings.NewReader(in)))); string(r) != got {
						t.Fatalf("lead %d: the stream differs from String", lead)
					}
				}
			})
		}
	}
	t.Run("text with line breaks and no value is returned as is", func(t *testing.T) {
		in := strings.Repeat("The quick brown fox\njumps over the lazy dog\r\n", 200)
		if got := d.String(in); got != in {
			t.Error("text changed")
		}
	})
}

// A body of separators must cost a pass, not a walk per separator: an
// agent could otherwise pin a core with one header, and any host with one
// answer.
func TestLineBreakSearchIsLinearInSeparators(t *testing.T) {
	tab := testTable(t)
	red := tab.Redactor(tab.Names())
	for name, unit := range map[string]string{
		"newlines":                          "\n",
		"CRLFs":                             "\r\n",
		"JSON-escaped newlines":             `\n`,
		"indented newlines":                 " \t\n",
		"one needle character, one newline": "a\n",
	} {
		t.Run(name, func(t *testing.T) {
			body := strings.Repeat(unit, (1<<20)/len(unit))
			start := time.Now()
			if got := red.String(body); got != body {
				t.Fatal("the body changed, with no value in it")
			}
			if _, err := io.Copy(io.Discard, red.Reader(strings.NewReader(body))); err != nil {
				t.Fatal(err)
			}
			// A quadratic walk takes minutes here; a pass, milliseconds.
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("1 MiB of %q took %v to scan", unit, d)
			}
		})
	}
}

// A streamed answer (server-sent events, a token stream) must reach the
// agent as it comes: only bytes that could begin a value wait for more.
func TestAStreamedEventIsNotHeldBackUnlessItCouldStartAValue(t *testing.T) {
	tab := testTable(t)
	red := tab.Redactor(tab.Names())
	pr, pw := io.Pipe()
	defer pw.Close()
	r := red.Reader(pr)
	next := func(t *testing.T, want string) {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			b := make([]byte, 4096)
			n, _ := r.Read(b)
			got <- string(b[:n])
		}()
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("read %q, want %q", g, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%q was held back waiting for more input", want)
		}
	}
	go func() { _, _ = io.WriteString(pw, "event: delta\ndata: {\"text\":\"hello\"}\n\n") }()
	next(t, "event: delta\ndata: {\"text\":\"hello\"}\n\n")

	// An event ending in the start of a value: that start waits, the rest goes.
	half := openaiValue[:len(openaiValue)/2]
	go func() { _, _ = io.WriteString(pw, "data: "+half) }()
	next(t, "data: ")
	go func() { _, _ = io.WriteString(pw, openaiValue[len(openaiValue)/2:]+"\n\n") }()
	next(t, openaiPH+"\n\n")
}

// Found by an adversarial review: a spelling broken only by spaces or tabs
// is searched when a line break lies within reach, before or after it; a
// stream must decide it as String does, whatever its reads.
func TestAStreamDecidesSpaceBrokenSpellingsAsStringDoes(t *testing.T) {
	tab := testTable(t)
	red := tab.Redactor(tab.Names())
	broken := openaiValue[:len(openaiValue)-5] + " " + openaiValue[len(openaiValue)-5:]
	for _, c := range []struct {
		in    string
		split int
	}{
		{broken + "\nabcdef", len(broken)},                                  // the line break comes in the next read
		{strings.Replace(broken, " ", "\t", 1) + "\r\nabcdef", len(broken)}, // a tab, CRLF
		{`{"a":"` + broken + `\nabc"}`, 6 + len(broken)},                    // JSON-escaped
		{"test-FAKE\n" + broken, len("test-FAKE\n")},                        // the line break was in an earlier read
		{"xx\n  " + broken + " zz", 2},
	} {
		want := red.String(c.in)
		if want == c.in {
			t.Fatalf("%q: String redacts nothing; the case tests nothing", c.in)
		}
		for _, sizes := range [][]int{{c.split, 1 << 20}, {1}} {
			got, err := io.ReadAll(red.Reader(&splitReader{data: []byte(c.in), sizes: sizes}))
			if err != nil || string(got) != want {
				t.Errorf("%q split %v: stream %q, String %q (%v)", c.in, sizes, got, want, err)
			}
		}
		if got, _ := io.ReadAll(red.Reader(iotest.OneByteReader(strings.NewReader(c.in)))); string(got) != want {
			t.Errorf("%q one byte at a time: stream %q, String %q", c.in, got, want)
		}
	}
}
