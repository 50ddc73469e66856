package inbound

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// echoApp answers with what it received, as JSON, and counts its requests.
type echoApp struct{ hits atomic.Int64 }

type echoed struct {
	Method, Host, Target, BodySHA string
	BodyLen                       int
	Header                        http.Header
}

func (a *echoApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.hits.Add(1)
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(echoed{Method: r.Method, Host: r.Host, Target: r.RequestURI,
		BodySHA: hex.EncodeToString(h.Sum(nil)), BodyLen: int(n), Header: r.Header})
}

func decodeEcho(t *testing.T, resp *http.Response) echoed {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %s: %s", resp.Status, b)
	}
	var e echoed
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestForwardedAndHopByHopHeaders(t *testing.T) {
	app := &echoApp{}
	r := newRig(t, startApp(t, app), Config{})
	req, _ := http.NewRequest("GET", r.url("/hello?x=1"), nil)
	req.Host = "agent.example"
	for k, v := range map[string]string{
		"X-Forwarded-For":   "6.6.6.6",
		"X-Forwarded-Host":  "evil.example",
		"X-Forwarded-Proto": "http",
		"Forwarded":         "for=6.6.6.6",
		"X-Real-Ip":         "6.6.6.6",
		"Connection":        "X-Hop",
		"X-Hop":             "drop me",
		"Keep-Alive":        "timeout=5",
		"Te":                "trailers, deflate",
		"X-Keep":            "kept",
	} {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	e := decodeEcho(t, resp)
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Host":  "agent.example",
		"X-Forwarded-Proto": "https",
		"X-Real-Ip":         "127.0.0.1",
		"X-Keep":            "kept",
	}
	for k, v := range want {
		if got := strings.Join(e.Header.Values(k), ","); got != v {
			t.Errorf("app saw %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Forwarded", "X-Hop", "Keep-Alive"} {
		if v := e.Header.Values(k); len(v) > 0 {
			t.Errorf("app saw hop-by-hop or untrusted %s = %q", k, v)
		}
	}
	if te := e.Header.Get("Te"); te != "trailers" && te != "" {
		t.Errorf("app saw Te %q, want only trailers", te)
	}
	if e.Host != "agent.example" || e.Target != "/hello?x=1" {
		t.Errorf("app saw Host %q target %q", e.Host, e.Target)
	}
	ev := r.events.wait(t, 1)
	if ev.Kind != flowlog.KindInbound || ev.Decision != flowlog.Allow || ev.Status != 200 ||
		ev.Host != "agent.example" || ev.Path != "/hello?x=1" || ev.Method != "GET" || !strings.HasPrefix(ev.Client, "127.0.0.1:") ||
		ev.Port == 0 || ev.BytesOut == 0 {
		t.Errorf("flow event %+v", ev)
	}
}

func TestServerSentEventsAreFlushed(t *testing.T) {
	release := make(chan struct{})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		fmt.Fprint(w, "data: second\n\n")
	})
	r := newRig(t, startApp(t, app), Config{})
	resp, err := r.client.Get(r.url("/sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "data: first\n" {
			t.Errorf("first line %q", line)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the first event did not arrive while the app held the stream open: not flushed")
	}
	close(release)
}

func TestBodiesStreamIntact(t *testing.T) {
	for _, filtered := range []bool{false, true} {
		t.Run(fmt.Sprintf("filter=%v", filtered), func(t *testing.T) {
			app := &echoApp{}
			cfg := Config{FilterBytes: 64 << 10}
			if filtered {
				cfg.Filter = NewStaticFilter(mustRules(t, "(?i)ignore previous instructions"))
			}
			r := newRig(t, startApp(t, app), cfg)
			body := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB
			sum := sha256.Sum256(body)
			for _, chunked := range []bool{false, true} {
				var rd io.Reader = bytes.NewReader(body)
				if chunked {
					rd = io.MultiReader(rd) // hides the length: sent chunked
				}
				resp, err := r.client.Post(r.url("/upload"), "application/octet-stream", rd)
				if err != nil {
					t.Fatal(err)
				}
				e := decodeEcho(t, resp)
				if e.BodyLen != len(body) || e.BodySHA != hex.EncodeToString(sum[:]) {
					t.Errorf("chunked=%v: app got %d bytes (sha %s), want %d", chunked, e.BodyLen, e.BodySHA[:8], len(body))
				}
			}
			if ev := r.events.wait(t, 2); ev.BytesIn != int64(len(body)) {
				t.Errorf("bytes_in %d, want %d", ev.BytesIn, len(body))
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	app := &echoApp{}
	r := newRig(t, startApp(t, app), Config{MaxBodyBytes: 1 << 20})
	big := bytes.Repeat([]byte("x"), 2<<20)
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = bytes.NewReader(big)
		if chunked {
			rd = io.MultiReader(rd)
		}
		resp, err := r.client.Post(r.url("/upload"), "text/plain", rd)
		if err != nil {
			// The proxy may close while the client is still sending.
			t.Logf("chunked=%v: %v", chunked, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked=%v: status %s (%s), want 413", chunked, resp.Status, b)
		}
	}
	if ev := r.events.wait(t, 1); ev.Reason != refusal.BodyTooLarge || ev.Status != 413 || ev.Decision != flowlog.Block {
		t.Errorf("flow event %+v", ev)
	}
	// A normal request still works.
	resp, err := r.client.Post(r.url("/"), "text/plain", strings.NewReader("small"))
	if err != nil {
		t.Fatal(err)
	}
	decodeEcho(t, resp)
}

func TestAppDownGives502AndRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	r := newRig(t, addr, Config{})

	resp, err := r.client.Get(r.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "not answering on "+addr) ||
		strings.Count(string(b), "\n") != 1 || resp.Header.Get(refusal.Header) != refusal.AppUnavailable {
		t.Errorf("app down: %s %q", resp.Status, b)
	}
	if ev := r.events.wait(t, 1); ev.Reason != refusal.AppUnavailable || ev.Status != 502 {
		t.Errorf("flow event %+v", ev)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	srv := &http.Server{Handler: &echoApp{}}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err = r.client.Get(r.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	decodeEcho(t, resp)
}

func TestSourceAllowlist(t *testing.T) {
	tests := []struct {
		name  string
		allow []string
		want  int
	}{
		{"everyone", nil, 200},
		{"loopback listed", []string{"10.0.0.0/8", "127.0.0.0/8"}, 200},
		{"loopback not listed", []string{"10.0.0.0/8", "2001:db8::/32"}, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := &echoApp{}
			var allow []netip.Prefix
			for _, s := range tc.allow {
				allow = append(allow, netip.MustParsePrefix(s))
			}
			r := newRig(t, startApp(t, app), Config{Allow: allow})
			resp, err := r.client.Get(r.url("/"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %s (%s), want %d", resp.Status, b, tc.want)
			}
			ev := r.events.wait(t, 1)
			if tc.want == 403 {
				if app.hits.Load() != 0 || ev.Reason != refusal.SourceNotAllowed || ev.Decision != flowlog.Block {
					t.Errorf("refused source reached the app (%d) or flow event %+v", app.hits.Load(), ev)
				}
			} else if ev.Decision != flowlog.Allow {
				t.Errorf("flow event %+v", ev)
			}
		})
	}
}

func TestSourceAllowedUnmapsIPv4(t *testing.T) {
	h := New(Config{Certs: &Certs{}, Log: newSink(), Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}).Handler(443, "127.0.0.1:1")
	for addr, want := range map[string]bool{
		"198.51.100.7:5555":        true,
		"[::ffff:198.51.100.7]:55": true,
		"203.0.113.66:5555":        false,
		"[2001:db8::1]:443":        false,
		"garbage":                  false,
	} {
		if got := h.sourceAllowed(addr); got != want {
			t.Errorf("sourceAllowed(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestPlainHTTPOnTLSPortGetsAClearError(t *testing.T) {
	r := newRig(t, startApp(t, &echoApp{}), Config{})
	c, err := net.DialTimeout("tcp", r.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no clear answer to plain HTTP: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), "HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP: %s %q", resp.Status, b)
	}
}

func TestSlowClientsAreCutOffOthersServed(t *testing.T) {
	app := &echoApp{}
	r := newRig(t, startApp(t, app), Config{ReadHeaderTimeout: 300 * time.Millisecond, BodyIdleTimeout: 300 * time.Millisecond})

	t.Run("slow headers", func(t *testing.T) {
		c := r.tlsDial()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go func() { // a header line every 100ms, never the blank line
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := fmt.Fprintf(c, "X-Slow-%d: 1\r\n", i); err != nil {
						return
					}
				}
			}
		}()
		resp, err := r.client.Get(r.url("/"))
		if err != nil {
			t.Fatalf("a normal request beside the slow one: %v", err)
		}
		decodeEcho(t, resp)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		_, err = io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow-header connection still open after %v", time.Since(start))
		}
	})

	t.Run("stalled body", func(t *testing.T) {
		c := r.tlsDial()
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("stalled body: %v", err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled body: %s", resp.Status)
		}
	})

	t.Run("oversized headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", r.url("/"), nil)
		req.Header.Set("X-Big", strings.Repeat("a", 200<<10))
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("oversized headers: %s", resp.Status)
		}
	})
}

func TestNonWebSocketUpgradeRefused(t *testing.T) {
	app := &echoApp{}
	r := newRig(t, startApp(t, app), Config{})
	c := r.tlsDial()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: tunnel\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || app.hits.Load() != 0 {
		t.Errorf("upgrade to tunnel: %s, app hits %d", resp.Status, app.hits.Load())
	}
}

func TestHTTP2(t *testing.T) {
	app := &echoApp{}
	r := newRig(t, startApp(t, app), Config{MaxBodyBytes: 1 << 20})
	r.client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err := r.client.Post(r.url("/h2"), "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", resp.Proto)
	}
	if e := decodeEcho(t, resp); e.BodyLen != 5 || e.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("app saw %+v", e)
	}
	if ev := r.events.wait(t, 1); ev.Detail["proto"] != "h2" || ev.Status != 200 {
		t.Errorf("flow event %+v", ev)
	}
	resp, err = r.client.Post(r.url("/h2"), "text/plain", io.MultiReader(bytes.NewReader(make([]byte, 2<<20))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized h2 body: %s", resp.Status)
	}
}
