// Package bench holds in-process Go benchmarks of panopticon's hot paths,
// for CPU and allocation profiles (`make bench` runs them; see README.md).
//
// BenchmarkDecide and BenchmarkAllowlistMemory need nothing. The egress
// benchmarks drive internal/egress.Proxy exactly as panopticon wires it —
// minter, pinned dialer, verified upstream TLS, flow log, secrets — over
// loopback; they need root inside a network namespace where
//
//	ip addr add 203.0.113.10/32 dev lo
//	iptables -t nat -A OUTPUT -p tcp -d 203.0.113.10 --dport 443 \
//	    -m mark ! --mark 0x1337 -j REDIRECT --to-ports 18443
//
// and PANOBENCH_PROF=1 (bench/run.sh sets this up), and skip otherwise.
package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/ca"
	"github.com/panopticon-dev/panopticon/internal/egress"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/secrets"
	"github.com/panopticon-dev/panopticon/internal/upstream"
)

const (
	upstreamIP = "203.0.113.10"
	proxyPort  = "18443"
	dnsAddr    = "127.0.0.1:5300"
	mark       = 0x1337
	secretVal  = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz-REAL"
)

// allowlistText has bench.test and secret.test plus filler up to n entries,
// a third of them wildcards (as bench/cmd/panobench writes it).
func allowlistText(n int) string {
	var b strings.Builder
	b.WriteString("bench.test\nsecret.test\nnores.test\n")
	for i := 3; i < n; i++ {
		if i%3 == 0 {
			fmt.Fprintf(&b, "*.w%d.filler-%d.example\n", i, i%97)
		} else {
			fmt.Fprintf(&b, "api%d.filler-%d.example\n", i, i%97)
		}
	}
	return b.String()
}

func mustList(tb testing.TB, n int) *policy.Allowlist {
	tb.Helper()
	l, err := policy.Parse([]byte(allowlistText(n)), "bench")
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

var sizes = []int{10, 10000, 100000}

// BenchmarkDecide is the decision cost: one allowed name, one wildcard hit
// deep in the list, one miss, per op.
func BenchmarkDecide(b *testing.B) {
	for _, n := range sizes {
		pol := policy.New(mustList(b, n), policy.NewGuard(nil))
		b.Run("entries="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			deep := fmt.Sprintf("x.w%d.filler-%d.example", (n-1)/3*3, ((n-1)/3*3)%97)
			for b.Loop() {
				if !pol.Decide("bench.test", 443).Allow {
					b.Fatal("bench.test refused")
				}
				if n > 3 && !pol.Decide(deep, 443).Allow {
					b.Fatalf("%s refused", deep)
				}
				if pol.Decide("api.unlisted.example", 443).Allow {
					b.Fatal("unlisted allowed")
				}
			}
		})
	}
}

// BenchmarkAllowlistMemory reports the live heap per parsed entry.
func BenchmarkAllowlistMemory(b *testing.B) {
	for _, n := range sizes[1:] {
		b.Run("entries="+strconv.Itoa(n), func(b *testing.B) {
			// Measured once: parsing 100,000 entries is slow and its cost is not the point.
			text := []byte(allowlistText(n))
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			l, err := policy.Parse(text, "bench")
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			per := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
			runtime.KeepAlive(l)
			for b.Loop() {
			}
			b.ReportMetric(per, "bytes/entry")
		})
	}
}

// ---- the in-process egress testbed ----

type bed struct {
	proxyCA  *x509.CertPool
	upCA     *x509.CertPool
	proxy    *egress.Proxy
	minter   *ca.Minter
	shutdown func()
}

var (
	bedOnce sync.Once
	theBed  *bed
	bedErr  error
)

func needBed(b *testing.B) *bed {
	b.Helper()
	if os.Getenv("PANOBENCH_PROF") != "1" {
		b.Skip("needs root in a prepared network namespace: run bench/run.sh (or see the package comment)")
	}
	bedOnce.Do(func() { theBed, bedErr = newBed() })
	if bedErr != nil {
		b.Fatal(bedErr)
	}
	return theBed
}

func newBed() (*bed, error) {
	dir, err := os.MkdirTemp("", "egressbench-")
	if err != nil {
		return nil, err
	}
	// The fake upstream: bench.test and secret.test on 203.0.113.10:443.
	upKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	upTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egressbench upstream CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	upDER, err := x509.CreateCertificate(rand.Reader, upTmpl, upTmpl, &upKey.PublicKey, upKey)
	if err != nil {
		return nil, err
	}
	upCert, _ := x509.ParseCertificate(upDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "bench.test"}, DNSNames: []string{"bench.test", "secret.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		upCert, &leafKey.PublicKey, upKey)
	if err != nil {
		return nil, err
	}
	upPool := x509.NewCertPool()
	upPool.AddCert(upCert)
	upLn, err := net.Listen("tcp", net.JoinHostPort(upstreamIP, "443"))
	if err != nil {
		return nil, fmt.Errorf("upstream listener (is 203.0.113.10 on lo?): %w", err)
	}
	upSrv := &http.Server{Handler: upstreamHandler(), TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	go func() {
		_ = upSrv.Serve(tls.NewListener(upLn, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}))
	}()

	// DNS for panopticon's resolver.
	pc, err := net.ListenPacket("udp", dnsAddr)
	if err != nil {
		return nil, err
	}
	dnsSrv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP(upstreamIP).To4()})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = dnsSrv.ActivateAndServe() }()

	// Panopticon's egress door, wired as cmd/panopticon/run.go wires it.
	authority, err := ca.LoadOrCreate(dir + "/ca")
	if err != nil {
		return nil, err
	}
	proxyPool := x509.NewCertPool()
	proxyPool.AppendCertsFromPEM(authority.CertPEM())
	minter := ca.NewMinter(authority, 4096)
	list, err := policy.Parse([]byte(allowlistText(10)), "bench")
	if err != nil {
		return nil, err
	}
	pol := policy.New(list, policy.NewGuard(nil))
	resolver := upstream.NewResolver(dnsAddr, mark)
	dialer := &upstream.Dialer{Resolver: resolver, Guard: pol.Guard(), Mark: mark}
	flows, err := flowlog.New(flowlog.Options{Dir: dir + "/log"}, nil)
	if err != nil {
		return nil, err
	}
	table, _, err := secrets.FromEnv(map[string]string{
		"PLACEHOLDER_SECRET_VALUE_BENCH":   secretVal,
		"PLACEHOLDER_SECRET_DOMAINS_BENCH": "secret.test",
	})
	if err != nil {
		return nil, err
	}
	transport := upstream.NewTransport(dialer.DialContext, upPool) // as in production
	proxy := egress.New(egress.Config{
		Policy: pol, Certs: minter, Transport: transport, Log: flows,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Secrets: table,
	})
	ln, err := net.Listen("tcp", ":"+proxyPort)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = proxy.Serve(ctx, ln) }()
	return &bed{proxyCA: proxyPool, upCA: upPool, proxy: proxy, minter: minter, shutdown: func() {
		cancel()
		upSrv.Close()
		_ = dnsSrv.Shutdown()
		flows.Close()
		os.RemoveAll(dir)
	}}, nil
}

var (
	smallBody = bytes.Repeat([]byte("0123456789"), 10)
	bulkBody  = bytes.Repeat([]byte("0123456789abcdef"), (8<<20)/16) // as panobench's /big
)

func upstreamHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Header()["Content-Length"] = []string{"100"}
		_, _ = w.Write(smallBody)
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/octet-stream"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(bulkBody))}
		_, _ = w.Write(bulkBody)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	return mux
}

// client returns an HTTP/1.1 client that dials 203.0.113.10:443 — through
// the redirect to the proxy, or (marked) straight to the upstream.
func client(pool *x509.CertPool, direct, keepAlive bool) *http.Client {
	d := upstream.Marked(0, 5*time.Second)
	if direct {
		d = upstream.Marked(mark, 5*time.Second)
	}
	// The proxy dials the upstream from 203.0.113.10. A client on the same
	// address, or a direct client where a proxied one was (conntrack keeps a
	// closed connection's NAT mapping for minutes, across runs), could reuse
	// a source port whose old mapping then sends the new connection to the
	// wrong listener. Each kind of client gets its own loopback source.
	src := net.IPv4(127, 0, 0, 1)
	if direct {
		src = net.IPv4(127, 0, 0, 2)
	}
	d.LocalAddr = &net.TCPAddr{IP: src}
	conf := &tls.Config{RootCAs: pool, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, net.JoinHostPort(upstreamIP, "443"))
		},
		TLSClientConfig:     conf,
		MaxIdleConnsPerHost: 64,
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
	}}
}

func get(b *testing.B, cl *http.Client, url string) {
	resp, err := cl.Get(url)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("status %d", resp.StatusCode)
	}
}

func perSecond(b *testing.B, start time.Time, unit string) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

// BenchmarkKeepAlive: 32 clients, keep-alive GETs of 100 bytes; "direct"
// skips the proxy (in-process ratio), "egress" goes through it.
func BenchmarkKeepAlive(b *testing.B) {
	bd := needBed(b)
	for _, c := range []struct {
		name   string
		pool   *x509.CertPool
		direct bool
	}{{"direct", bd.upCA, true}, {"egress", bd.proxyCA, false}} {
		b.Run(c.name, func(b *testing.B) {
			cl := client(c.pool, c.direct, true)
			b.ReportAllocs()
			b.SetParallelism(16)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, cl, "https://bench.test/")
				}
			})
			perSecond(b, start, "req/s")
		})
	}
}

// BenchmarkNewConn: a new (resumed) TLS connection per request.
func BenchmarkNewConn(b *testing.B) {
	bd := needBed(b)
	for _, c := range []struct {
		name   string
		pool   *x509.CertPool
		direct bool
	}{{"direct", bd.upCA, true}, {"egress", bd.proxyCA, false}} {
		b.Run(c.name, func(b *testing.B) {
			cl := client(c.pool, c.direct, false)
			b.ReportAllocs()
			b.SetParallelism(4)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, cl, "https://bench.test/")
				}
			})
			perSecond(b, start, "conn/s")
		})
	}
}

// BenchmarkDownload: 8 MiB GETs from bench.test, one client: "direct"
// skips the proxy, "egress" goes through it (decrypt, redaction scan,
// encrypt).
func BenchmarkDownload(b *testing.B) {
	bd := needBed(b)
	for _, c := range []struct {
		name   string
		direct bool
		pool   *x509.CertPool
	}{{"direct", true, bd.upCA}, {"egress", false, bd.proxyCA}} {
		b.Run(c.name, func(b *testing.B) {
			cl := client(c.pool, c.direct, true)
			b.SetBytes(int64(len(bulkBody)))
			b.ReportAllocs()
			for b.Loop() {
				get(b, cl, "https://bench.test/download")
			}
		})
	}
}

// BenchmarkUpload: 8 MiB POSTs to secret.test (the substitution path), with
// and without placeholders.
func BenchmarkUpload(b *testing.B) {
	bd := needBed(b)
	const size = 8 << 20
	plain := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz012345"), size/32)
	sprinkled := bytes.Clone(plain)
	for off := 0; off+64 < size; off += 64 << 10 {
		copy(sprinkled[off:], "PLACEHOLDER_SECRET_VALUE_BENCH")
	}
	for _, c := range []struct {
		name string
		body []byte
	}{{"plain", plain}, {"placeholders", sprinkled}} {
		b.Run(c.name, func(b *testing.B) {
			cl := client(bd.proxyCA, false, true)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := cl.Post("https://secret.test/upload", "application/octet-stream", bytes.NewReader(c.body))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
