package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/panopticon-dev/panopticon/internal/policy"
)

func TestRewriterString(t *testing.T) {
	tab := testTable(t)
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name     string
		host     string
		tls      bool
		in, want string
		kind     error
		used     []string
	}{
		{name: "text without placeholders is returned as is", host: "api.openai.test", tls: true, in: "hello", want: "hello"},
		{name: "a placeholder for an authorised host is swapped", host: "api.openai.test", tls: true,
			in: "Bearer " + openaiPH, want: "Bearer " + openaiValue, used: []string{openaiPH}},
		{name: "a wildcard domain authorises its subdomains", host: "eu.openai-cdn.test", tls: true,
			in: openaiPH, want: openaiValue, used: []string{openaiPH}},
		{name: "a wildcard domain authorises the bare domain", host: "openai-cdn.test", tls: true,
			in: openaiPH, want: openaiValue, used: []string{openaiPH}},
		{name: "host names are compared normalised", host: "API.OpenAI.test.", tls: true,
			in: openaiPH, want: openaiValue, used: []string{openaiPH}},
		{name: "repeated and adjacent placeholders are all swapped", host: "api.openai.test", tls: true,
			in: openaiPH + openaiPH + "," + openaiPH, want: openaiValue + openaiValue + "," + openaiValue, used: []string{openaiPH}},
		{name: "text after a placeholder is kept", host: "api.openai.test", tls: true,
			in: openaiPH + "X", want: openaiValue + "X", used: []string{openaiPH}},
		{name: "an unknown placeholder passes untouched", host: "api.openai.test", tls: true,
			in: "PLACEHOLDER_SECRET_VALUE_NOPE PLACEHOLDER_SECRET_VALUE_", want: "PLACEHOLDER_SECRET_VALUE_NOPE PLACEHOLDER_SECRET_VALUE_"},
		{name: "a placeholder for another host is unauthorised", host: "evil.test", tls: true, in: "x " + openaiPH, kind: ErrUnauthorized},
		{name: "a sibling of the authorised name is unauthorised", host: "openai.test", tls: true, in: openaiPH, kind: ErrUnauthorized},
		{name: "a suffix trick is unauthorised", host: "api.openai.test.evil.test", tls: true, in: openaiPH, kind: ErrUnauthorized},
		{name: "plain HTTP never gets a value even for the authorised host", host: "api.openai.test", tls: false, in: openaiPH, kind: ErrPlainHTTP},
		{name: "a pinned secret without peer keys is withheld", host: "pinned.test", tls: true, in: pinnedPH, kind: ErrPinMismatch},
		{name: "one unauthorised placeholder among authorised ones blocks", host: "api.openai.test", tls: true, in: openaiPH + githubPH, kind: ErrUnauthorized},
		{name: "a real value is a leak even to its own host", host: "api.openai.test", tls: true, in: "key=" + openaiValue, kind: ErrLeak},
		{name: "a real value is a leak to any host", host: "evil.test", tls: true, in: "key=" + openaiValue, kind: ErrLeak},
		{name: "a query-escaped real value is a leak", host: "evil.test", tls: true, in: "k=" + url.QueryEscape(githubValue), kind: ErrLeak},
		{name: "a JSON-escaped real value is a leak", host: "evil.test", tls: true, in: `{"k":"gh-test-FAKE-1111\/+=&x"}`, kind: ErrLeak},
		{name: "a base64 real value is a leak", host: "evil.test", tls: true, in: b64([]byte(openaiValue)), kind: ErrLeak},
		{name: "a base64 real value inside a longer blob is a leak", host: "evil.test", tls: true, in: b64([]byte("u:" + openaiValue + "zz")), kind: ErrLeak},
		{name: "a plain-HTTP request with a real value is a leak", host: "evil.test", tls: false, in: openaiValue, kind: ErrLeak},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := tab.Rewriter(tt.host, tt.tls)
			got, err := rw.String(tt.in)
			if tt.kind != nil {
				var v *Violation
				if !errors.As(err, &v) || !errors.Is(err, tt.kind) {
					t.Fatalf("err = %v, want a *Violation of kind %v", err, tt.kind)
				}
				if !strings.Contains(err.Error(), v.Secret) || !strings.Contains(err.Error(), v.Host) || v.Secret == "" || v.Host == "" {
					t.Errorf("error %q does not name secret and host", err)
				}
				assertNoValue(t, "error", []byte(err.Error()))
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if u := rw.Used(); strings.Join(u, ",") != strings.Join(tt.used, ",") {
				t.Errorf("Used() = %v, want %v", u, tt.used)
			}
		})
	}
}

func TestUnauthorisedErrorNamesSecretAndHost(t *testing.T) {
	_, err := testTable(t).Rewriter("evil.test", true).String(openaiPH)
	want := "secret PLACEHOLDER_SECRET_VALUE_OPENAI is not authorised for host evil.test"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestPinnedSecretIsReleasedOnlyToAPinnedKey(t *testing.T) {
	tab := testTable(t)
	other := bytes.Repeat([]byte{1}, 32)
	for _, tc := range []struct {
		name string
		keys [][]byte
		ok   bool
	}{
		{"a chain holding the pinned key gets the value", [][]byte{other, goodPin[:]}, true},
		{"a chain with another key is refused", [][]byte{other}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw := tab.RewriterFor(Upstream{Host: mustHost(t, "pinned.test"), VerifiedTLS: true, PeerKeys: tc.keys})
			got, err := rw.String(pinnedPH)
			if tc.ok && (err != nil || got != pinnedValue) {
				t.Fatalf("got %q, %v", got, err)
			}
			if !tc.ok && !errors.Is(err, ErrPinMismatch) {
				t.Fatalf("err = %v, want ErrPinMismatch", err)
			}
		})
	}
}

func TestRewriterStringFastPathDoesNotAllocate(t *testing.T) {
	rw := testTable(t).Rewriter("api.openai.test", true)
	s := strings.Repeat("an ordinary header value; ", 20)
	if n := testing.AllocsPerRun(100, func() { _, _ = rw.String(s) }); n != 0 {
		t.Errorf("String allocated %v times on input without placeholders", n)
	}
	h := http.Header{"Accept": {"application/json"}, "User-Agent": {"agent/1.0"}}
	if n := testing.AllocsPerRun(100, func() { _ = rw.Header(h) }); n != 0 {
		t.Errorf("Header allocated %v times on headers without placeholders", n)
	}
}

func TestRewriterHeader(t *testing.T) {
	tab := testTable(t)
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name string
		host string
		in   http.Header
		want http.Header
		kind error
	}{
		{name: "bearer token is swapped", host: "api.openai.test",
			in:   http.Header{"Authorization": {"Bearer " + openaiPH}, "X-Other": {"a", "b " + openaiPH}},
			want: http.Header{"Authorization": {"Bearer " + openaiValue}, "X-Other": {"a", "b " + openaiValue}}},
		{name: "basic credentials are decoded, swapped and re-encoded", host: "api.github.test",
			in:   http.Header{"Authorization": {basic("user:" + githubPH)}},
			want: http.Header{"Authorization": {basic("user:" + githubValue)}}},
		{name: "basic user name is swapped too", host: "api.github.test",
			in:   http.Header{"Proxy-Authorization": {basic(githubPH + ":x")}},
			want: http.Header{"Proxy-Authorization": {basic(githubValue + ":x")}}},
		{name: "basic credentials without placeholders keep their exact encoding", host: "api.github.test",
			in:   http.Header{"Authorization": {"basic dXNlcjpwYXNz"}},
			want: http.Header{"Authorization": {"basic dXNlcjpwYXNz"}}},
		{name: "basic credentials for an unauthorised host are refused", host: "evil.test",
			in: http.Header{"Authorization": {basic("user:" + githubPH)}}, kind: ErrUnauthorized},
		{name: "a real value inside basic credentials is a leak", host: "api.github.test",
			in: http.Header{"Authorization": {basic("user:" + githubValue)}}, kind: ErrLeak},
		{name: "a placeholder in a header name is refused even for its host", host: "api.openai.test",
			in: http.Header{"X-" + openaiPH: {"v"}}, kind: ErrUnauthorized},
		{name: "a placeholder in a header for another host is refused", host: "evil.test",
			in: http.Header{"X-Key": {openaiPH}}, kind: ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tab.Rewriter(tt.host, true).Header(tt.in)
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) {
					t.Fatalf("err = %v, want %v", err, tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if strings.Join(tt.in[k], "|") != strings.Join(v, "|") {
					t.Errorf("%s = %q, want %q", k, tt.in[k], v)
				}
			}
		})
	}
}

func TestRewriterURL(t *testing.T) {
	tab := testTable(t)
	tests := []struct {
		name, host, in, want string
		kind                 error
	}{
		{name: "placeholder in the query is swapped and escaped", host: "api.github.test",
			in: "https://api.github.test/x?a=1&key=" + githubPH + "&b=%20", want: "https://api.github.test/x?a=1&key=" + url.QueryEscape(githubValue) + "&b=%20"},
		{name: "percent-encoded placeholder in the query is found", host: "api.github.test",
			in: "https://api.github.test/x?key=PLACEHOLDER%5FSECRET%5FVALUE%5FGITHUB", want: "https://api.github.test/x?key=" + url.QueryEscape(githubValue)},
		{name: "placeholder in a path segment is swapped and path-escaped", host: "api.github.test",
			in: "https://api.github.test/v1/" + githubPH + "/items", want: "https://api.github.test/v1/" + url.PathEscape(githubValue) + "/items"},
		{name: "untouched parts keep their exact escaping", host: "api.openai.test",
			in: "https://api.openai.test/a%2Fb/c?x=%41&k=" + openaiPH, want: "https://api.openai.test/a%2Fb/c?x=%41&k=" + openaiValue},
		{name: "percent-encoded placeholder for another host is refused", host: "evil.test",
			in: "https://evil.test/?k=PLACEHOLDER%5FSECRET%5FVALUE%5FOPENAI", kind: ErrUnauthorized},
		{name: "percent-encoded placeholder in the path for another host is refused", host: "evil.test",
			in: "https://evil.test/PLACEHOLDER%5FSECRET%5FVALUE%5FOPENAI", kind: ErrUnauthorized},
		{name: "a query-escaped real value is a leak", host: "evil.test",
			in: "https://evil.test/?k=" + url.QueryEscape(githubValue), kind: ErrLeak},
		{name: "a fully percent-encoded real value is a leak", host: "evil.test",
			in: "https://evil.test/?k=%73%6b-test-FAKE-0000", kind: ErrLeak},
		{name: "a placeholder in userinfo is swapped", host: "api.openai.test",
			in: "https://u:" + openaiPH + "@api.openai.test/", want: "https://u:" + openaiValue + "@api.openai.test/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			err = tab.Rewriter(tt.host, true).URL(u)
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) {
					t.Fatalf("err = %v, want %v", err, tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tt.want {
				t.Errorf("got %s\nwant %s", u, tt.want)
			}
		})
	}
}

func TestRewriterRequest(t *testing.T) {
	tab := testTable(t)
	t.Run("known-length body is swapped and Content-Length is exact", func(t *testing.T) {
		body := `{"key":"` + openaiPH + `"}`
		req, _ := http.NewRequest("POST", "https://api.openai.test/v1?k="+openaiPH, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+openaiPH)
		rw := tab.Rewriter("api.openai.test", true)
		if err := rw.Request(req); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(req.Body)
		want := `{"key":"` + openaiValue + `"}`
		if string(got) != want || req.ContentLength != int64(len(want)) {
			t.Errorf("body %q (ContentLength %d), want %q (%d)", got, req.ContentLength, want, len(want))
		}
		if req.URL.RawQuery != "k="+openaiValue || req.Header.Get("Authorization") != "Bearer "+openaiValue {
			t.Errorf("URL %s, Authorization %s", req.URL, req.Header.Get("Authorization"))
		}
		if g, _ := req.GetBody(); g != nil {
			if again, _ := io.ReadAll(g); string(again) != want {
				t.Errorf("GetBody = %q", again)
			}
		}
	})
	t.Run("unknown-length body is streamed without Content-Length", func(t *testing.T) {
		req, _ := http.NewRequest("POST", "https://api.openai.test/", io.NopCloser(strings.NewReader(openaiPH)))
		req.ContentLength = -1
		if err := tab.Rewriter("api.openai.test", true).Request(req); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(req.Body)
		if string(got) != openaiValue || req.ContentLength != -1 {
			t.Errorf("body %q, ContentLength %d", got, req.ContentLength)
		}
	})
	t.Run("a placeholder in a buffered body is refused before anything is sent", func(t *testing.T) {
		req, _ := http.NewRequest("POST", "https://evil.test/", strings.NewReader("x="+openaiPH))
		if err := tab.Rewriter("evil.test", true).Request(req); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("a placeholder in the Host header is refused", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "https://api.openai.test/", nil)
		req.Host = openaiPH + ".evil.test"
		if err := tab.Rewriter("api.openai.test", true).Request(req); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
}

// streamOf runs src through the rewriter's Reader.
func streamOf(rw *Rewriter, src io.Reader) ([]byte, error) { return io.ReadAll(rw.Reader(src)) }

func TestRewriterReaderEqualsStringForEverySplit(t *testing.T) {
	tab := testTable(t)
	inputs := []string{
		openaiPH,
		"a" + openaiPH + "b",
		openaiPH + openaiPH,
		"PLACEHOLDER_SECRET_VALUE_OPENA PLACEHOLDER_SECRET_VALUE_" + openaiPH,
		"PLACEHOLDER_SECRET_VALUE_" + "PLACEHOLDER_SECRET_VALUE_OPENAI",
		strings.Repeat("x", 40) + openaiPH + strings.Repeat("y", 3),
		"unauthorised " + githubPH,
		"leak " + openaiValue,
		"leak across placeholder PLACEHOLDER_SECRET_VALUE_OPENAI" + url.QueryEscape(githubValue),
	}
	for _, in := range inputs {
		rw := tab.Rewriter("api.openai.test", true)
		want, wantErr := rw.String(in)
		check := func(t *testing.T, got []byte, err error) {
			t.Helper()
			if (err != nil) != (wantErr != nil) || (err != nil && !errors.Is(err, errors.Unwrap(wantErr))) {
				t.Fatalf("stream err = %v, String err = %v", err, wantErr)
			}
			if err == nil && string(got) != want {
				t.Fatalf("stream %q != String %q", got, want)
			}
		}
		t.Run("one byte at a time: "+in, func(t *testing.T) {
			got, err := streamOf(tab.Rewriter("api.openai.test", true), iotest.OneByteReader(strings.NewReader(in)))
			check(t, got, err)
		})
		t.Run("split at every index: "+in, func(t *testing.T) {
			for i := 0; i <= len(in); i++ {
				for j := i; j <= len(in); j += 7 {
					got, err := streamOf(tab.Rewriter("api.openai.test", true), &splitReader{data: []byte(in), sizes: []int{i, j - i}})
					check(t, got, err)
				}
			}
		})
		t.Run("half reads and data with EOF: "+in, func(t *testing.T) {
			got, err := streamOf(tab.Rewriter("api.openai.test", true), iotest.DataErrReader(iotest.HalfReader(strings.NewReader(in))))
			check(t, got, err)
		})
	}
}

func TestRewriterReaderStopsBeforeTheOffendingPlaceholder(t *testing.T) {
	tab := testTable(t)
	for _, tc := range []struct{ name, bad string }{
		{"an unauthorised placeholder", githubPH},
		{"a real value", openaiValue},
	} {
		t.Run(tc.name+" is never emitted, not even in part", func(t *testing.T) {
			prefix := strings.Repeat("ok ", 50_000) // several chunks
			in := prefix + tc.bad + " tail"
			for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in))} {
				rd := tab.Rewriter("api.openai.test", true).Reader(r)
				var out bytes.Buffer
				_, err := io.Copy(&out, rd)
				var v *Violation
				if !errors.As(err, &v) {
					t.Fatalf("err = %v, want *Violation", err)
				}
				if out.Len() > len(prefix) || !strings.HasPrefix(prefix, out.String()) {
					t.Fatalf("emitted %d bytes beyond the clean prefix", out.Len()-len(prefix))
				}
			}
		})
	}
}

func TestRewriterLargeStreamHasBoundedWindow(t *testing.T) {
	tab := testTable(t)
	rd := tab.Rewriter("api.openai.test", true).Reader(io.MultiReader(
		strings.NewReader(strings.Repeat("z", 1<<20)), strings.NewReader(openaiPH)))
	sr := rd.(*streamReader)
	n, err := io.Copy(io.Discard, sr)
	if err != nil || n != 1<<20+int64(len(openaiValue)) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if c := cap(sr.s.win); c > chunkSize+4*len(openaiPH)+4*len(githubValue)*3 {
		t.Errorf("window grew to %d bytes", c)
	}
}

func TestRewriterUsedIsSafeForConcurrentUse(t *testing.T) {
	rw := testTable(t).Rewriter("api.openai.test", true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = rw.String(openaiPH)
				_ = rw.Used()
			}
		})
	}
	wg.Wait()
	if u := rw.Used(); len(u) != 1 || u[0] != openaiPH {
		t.Errorf("Used() = %v", u)
	}
}

func TestNilAndEmptyTables(t *testing.T) {
	var tab *Table
	rw := tab.Rewriter("x.test", false)
	if s, err := rw.String(openaiPH); err != nil || s != openaiPH {
		t.Errorf("nil table String = %q, %v", s, err)
	}
	if tab.Len() != 0 || tab.Names() != nil || rw.Used() != nil {
		t.Error("nil table is not empty")
	}
	if d := tab.Redactor([]string{openaiPH}); d.Active() || d.String("x") != "x" {
		t.Error("nil table redactor is active")
	}
}

func mustHost(t *testing.T, s string) policy.Host {
	t.Helper()
	h, err := policy.ParseHost(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
