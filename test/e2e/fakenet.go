//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/miekg/dns"
	"golang.org/x/net/icmp"

	"github.com/panopticon-dev/panopticon/test/e2e/internal/wsframe"

	"github.com/panopticon-dev/panopticon/internal/testpki"
)

// The fake internet. Every host lives on the "net" namespace's loopback.
const (
	AttackerIP   = "203.0.113.66"
	AttackerIPv6 = "2001:db8:2::66"
	DirectDNSIP  = "203.0.113.53" // an outside resolver the app might try to use directly
	UpstreamDNS  = "198.51.100.1:53"
	PodIP        = "198.51.100.2"
	NetIP        = "198.51.100.1"
)

// fakeHost describes one named upstream.
type fakeHost struct {
	Name      string
	IP        string
	TLSPorts  []int
	HTTPPorts []int
	BadCert   bool // serve a certificate from a CA nobody trusts
}

var fakeHosts = []fakeHost{
	{Name: "allowed.test", IP: "203.0.113.10", TLSPorts: []int{443}, HTTPPorts: []int{80}},
	{Name: "api.wild.test", IP: "203.0.113.11", TLSPorts: []int{443}},
	{Name: "alt.test", IP: "203.0.113.12", TLSPorts: []int{443, 8443}},
	{Name: "wild.test", IP: "203.0.113.13", TLSPorts: []int{443}},
	{Name: "xwild.test", IP: "203.0.113.14", TLSPorts: []int{443}}, // must not match *.wild.test
	{Name: "denied.test", IP: "203.0.113.20", TLSPorts: []int{443}},
	{Name: "badcert.test", IP: "203.0.113.21", TLSPorts: []int{443}, BadCert: true},
}

var (
	attackerTCPPorts = []int{443, 80, 22, 8443, 853, 9999}
	attackerUDPPorts = []int{53, 443, 9999}
)

// dnsRecords are the fake authoritative answers (A only; AAAA is NODATA).
func dnsRecords() map[string]string {
	m := map[string]string{
		"private.test.": "10.0.0.5",
		"rebind.test.":  "127.0.0.1",
		"evil.test.":    AttackerIP,
		// metadata.test points at the cloud metadata address; flip.test
		// rebinds between a public and a loopback answer (see FakeDNS).
		"metadata.test.":  "169.254.169.254",
		"linklocal.test.": "169.254.10.10",
		"flip.test.":      "203.0.113.10",
	}
	for _, h := range fakeHosts {
		m[h.Name+"."] = h.IP
	}
	return m
}

// recorder is an append-only log of what a fake server saw. Tests take a
// Mark before acting and ask what was seen Since that mark.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

// Mark returns a position in the log.
func (r *recorder) Mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// Since returns what was recorded after mark m.
func (r *recorder) Since(m int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events[min(m, len(r.events)):]...)
}

// Saw returns everything recorded.
func (r *recorder) Saw() []string { return r.Since(0) }

func (r *recorder) rec() *recorder { return r }

// Watched is anything that records what reached it.
type Watched interface {
	rec() *recorder
	String() string
}

// ---- certificates ----

// newTestCA is the CA of the fake upstreams (UPSTREAM_CA_FILE).
func newTestCA() (*testpki.CA, error) {
	return testpki.New("Panopticon e2e upstream test CA", 24*time.Hour)
}

// ---- named HTTPS/HTTP upstreams ----

// Upstream is one fake named host. It records every connection and request.
type Upstream struct {
	recorder
	Name string
	IP   string

	storeMu sync.Mutex
	stored  []byte // the last body POSTed to /store, served back by /stored

	peers map[string]*Upstream // every upstream of the testbed, for /stored?from=
}

func (u *Upstream) String() string { return u.Name + " (" + u.IP + ")" }

// Request is what the upstream saw, as recorded (JSON-encoded in the log).
type Request struct {
	Port    int         `json:"port"`
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Query   string      `json:"query,omitempty"`
	Header  http.Header `json:"header"`
	Body    string      `json:"body,omitempty"`
	Proto   string      `json:"proto"`
	TLS     bool        `json:"tls"`
	SNI     string      `json:"sni,omitempty"`
	Remote  string      `json:"remote"`
	Elapsed string      `json:"-"`
}

// Requests returns the requests seen since mark m (connection events skipped).
func (u *Upstream) Requests(m int) []Request {
	var out []Request
	for _, e := range u.Since(m) {
		if s, ok := strings.CutPrefix(e, "request "); ok {
			var r Request
			if json.Unmarshal([]byte(s), &r) == nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// countingListener records every accepted connection.
type countingListener struct {
	net.Listener
	rec  *recorder
	port int
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.rec.add("conn :%d from %s", l.port, c.RemoteAddr())
	}
	return c, err
}

func (u *Upstream) handler(port int, useTLS bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", u.Name)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "host": r.Host, "path": r.URL.Path, "query": r.URL.RawQuery,
			"header": r.Header, "body": string(body), "served_by": u.Name,
		})
	})
	mux.HandleFunc("/store", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		u.storeMu.Lock()
		u.stored = body
		u.storeMu.Unlock()
		fmt.Fprint(w, "stored")
	})
	mux.HandleFunc("/stored", func(w http.ResponseWriter, r *http.Request) {
		// ?from=HOST reads what was stored at another upstream (one service,
		// two host names); ?as=FORM sends it back transformed (see
		// storedAs); Range requests are honoured, as by any file server.
		src := u
		if from := r.URL.Query().Get("from"); from != "" {
			if src = u.peers[from]; src == nil {
				http.Error(w, "no such host", http.StatusNotFound)
				return
			}
		}
		if rg := r.Header.Get("Range"); rg != "" {
			u.add("range %s", rg)
		}
		src.storeMu.Lock()
		data := bytes.Clone(src.stored)
		src.storeMu.Unlock()
		body, enc, ctype := storedAs(data, r.URL.Query().Get("as"))
		if enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		w.Header().Set("Content-Type", ctype)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl, _ := w.(http.Flusher)
		// ?n= events (default 3, at most 200), ?every= ms apart (default 200, at most 1000).
		n, every := 3, 200
		if v, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && v > 0 && v <= 200 {
			n = v
		}
		if v, err := strconv.Atoi(r.URL.Query().Get("every")); err == nil && v > 0 && v <= 1000 {
			every = v
		}
		for i := 1; i <= n; i++ {
			if i > 1 {
				time.Sleep(time.Duration(every) * time.Millisecond)
			}
			fmt.Fprintf(w, "event: tick\ndata: %d\n\n", i)
			if fl != nil {
				fl.Flush()
			}
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 256<<20 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		// Promise 1 MB (or, with ?chunked, nothing: the end would be the
		// last chunk), send 4 KB, then reset the connection mid-body.
		if _, chunked := r.URL.Query()["chunked"]; !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		}
		w.WriteHeader(http.StatusOK)
		w.Write(bytes.Repeat([]byte("r"), 4096))
		w.(http.Flusher).Flush()
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
				if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
					tcp.SetLinger(0)
				}
			}
			c.Close()
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := wsframe.Accept(w, r)
		if err != nil {
			return
		}
		defer ws.Close()
		for range 100 {
			ws.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
			op, p, err := ws.ReadMessage()
			if err != nil || op == wsframe.OpClose {
				return
			}
			u.add("ws-message %s", p)
			if from := u.peers[r.URL.Query().Get("from")]; from != nil {
				// Answer with what another host of the service stored.
				from.storeMu.Lock()
				p = bytes.Clone(from.stored)
				from.storeMu.Unlock()
			}
			if ws.WriteFrame(op, p) != nil {
				return
			}
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		rq := Request{Port: port, Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery,
			Header: r.Header, Body: string(body), Proto: r.Proto, TLS: r.TLS != nil, Remote: r.RemoteAddr}
		if r.TLS != nil {
			rq.SNI = r.TLS.ServerName
		}
		b, _ := json.Marshal(rq)
		u.add("request %s", b)
		mux.ServeHTTP(w, r)
	})
}

// ---- attacker ----

// Attacker listens on many ports of 203.0.113.66 and 2001:db8:2::66 and
// records every connection, datagram and ICMP echo request. Tests assert it
// saw nothing.
type Attacker struct{ recorder }

func (a *Attacker) String() string { return "attacker (" + AttackerIP + ", " + AttackerIPv6 + ")" }

func (a *Attacker) serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, "ATTACKER banner\r\n")
			buf := make([]byte, 512)
			n, _ := c.Read(buf)
			a.add("tcp %s <- %s: %q", c.LocalAddr(), c.RemoteAddr(), buf[:n])
		}()
	}
}

func (a *Attacker) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		a.add("udp %s <- %s: %q", pc.LocalAddr(), from, buf[:n])
		pc.WriteTo([]byte("ATTACKER reply"), from)
	}
}

func (a *Attacker) serveICMP(pc *icmp.PacketConn, proto int) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		if typ := fmt.Sprint(m.Type); typ == "echo" || typ == "echo request" {
			a.add("icmp %s from %s", typ, from)
		}
	}
}

// ---- DNS ----

// FakeDNS answers from dnsRecords and records every question. Faults: Down
// drops every query unanswered, Delay holds each answer back. flip.test
// answers its public address and 127.0.0.1 in turn (every other A query).
type FakeDNS struct {
	recorder
	Addr  string
	Down  atomic.Bool
	Delay atomic.Int64 // nanoseconds
	flips atomic.Int64
}

func (d *FakeDNS) String() string { return "DNS server " + d.Addr }

// Asked reports whether any question since m was for name (case-insensitive, any type).
func (d *FakeDNS) Asked(m Marks, name string) bool {
	name = dns.CanonicalName(name)
	for _, e := range d.Since(m[&d.recorder]) {
		if f := strings.Fields(e); len(f) >= 2 && dns.CanonicalName(f[1]) == name {
			return true
		}
	}
	return false
}

func (d *FakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	// What else the query carried (bits a resolver might pass on for the agent).
	do, opts := false, 0
	if opt := req.IsEdns0(); opt != nil {
		do, opts = opt.Do(), len(opt.Option)
	}
	d.add("%s %s %s from %s class=%s do=%v opts=%d cd=%v ad=%v", w.LocalAddr().Network(), q.Name, dns.Type(q.Qtype), w.RemoteAddr(),
		dns.Class(q.Qclass), do, opts, req.CheckingDisabled, req.AuthenticatedData)
	if d.Down.Load() {
		return
	}
	time.Sleep(time.Duration(d.Delay.Load()))
	ip, ok := dnsRecords()[dns.CanonicalName(q.Name)]
	ttl := uint32(30)
	if dns.CanonicalName(q.Name) == "flip.test." && q.Qtype == dns.TypeA {
		ttl = 0
		if d.flips.Add(1)%2 == 0 {
			ip = "127.0.0.1"
		}
	}
	switch {
	case !ok:
		resp.Rcode = dns.RcodeNameError
		if dns.IsSubDomain("neg.test.", dns.CanonicalName(q.Name)) {
			// With the zone's SOA, as real servers send: cacheable for 30 s (RFC 2308).
			soa, _ := dns.NewRR("neg.test. 300 IN SOA ns.neg.test. host.neg.test. 1 7200 900 86400 30")
			resp.Ns = append(resp.Ns, soa)
		}
	case q.Qtype == dns.TypeA:
		resp.Answer = append(resp.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   net.ParseIP(ip).To4(),
		})
	}
	w.WriteMsg(resp)
}

// storedAs spells data the way real services hand stored content back:
// compressed (gzip, br, zstd, stacked, or a coding nobody decodes), or as
// line-wrapped base64 (MIME, PEM, GitHub's contents API).
func storedAs(data []byte, form string) (body []byte, contentEncoding, contentType string) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	br := func(b []byte) []byte {
		var buf bytes.Buffer
		w := brotli.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	zs := func(b []byte) []byte {
		w, _ := zstd.NewWriter(nil)
		defer w.Close()
		return w.EncodeAll(b, nil)
	}
	wrap := func(b []byte, width int, sep string) string {
		enc := base64.StdEncoding.EncodeToString(b)
		var lines []string
		for len(enc) > width {
			lines, enc = append(lines, enc[:width]), enc[width:]
		}
		return strings.Join(append(lines, enc), sep)
	}
	const octets = "application/octet-stream"
	switch form {
	case "gzip":
		return gz(data), "gzip", octets
	case "br":
		return br(data), "br", octets
	case "zstd":
		return zs(data), "zstd", octets
	case "gzip,br":
		return br(gz(data)), "gzip, br", octets
	case "identity,identity":
		return data, "identity, identity", octets
	case "compress":
		return data, "compress", octets // labelled with a coding no proxy decodes
	case "mime":
		return []byte(wrap(data, 76, "\r\n") + "\r\n"), "", "text/plain"
	case "pem":
		return []byte("-----BEGIN DATA-----\n" + wrap(data, 64, "\n") + "\n-----END DATA-----\n"), "", "text/plain"
	case "large":
		// Past the size the proxy buffers: streamed, its length announced.
		return append(bytes.Repeat([]byte("0123456789abcdef"), (2<<20)/16), data...), "", octets
	case "github":
		j, _ := json.Marshal(map[string]string{"encoding": "base64", "content": wrap(data, 60, "\n") + "\n"})
		return j, "", "application/json"
	}
	return data, "", octets
}
