package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// loadResult is what one `panobench load` prints (one JSON object).
type loadResult struct {
	Mode     string  `json:"mode"`
	Ops      int64   `json:"ops"`    // requests, connections or queries completed
	Errors   int64   `json:"errors"` // failed operations
	FirstErr string  `json:"first_error,omitempty"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"per_sec"`
	P50MS    float64 `json:"p50_ms,omitempty"`
	P99MS    float64 `json:"p99_ms,omitempty"`
	Bytes    int64   `json:"bytes,omitempty"`
	MBps     float64 `json:"mb_per_sec,omitempty"` // 10^6 bytes per second
	Received int64   `json:"received,omitempty"`   // bytes the upstream says it read (upload)
	Open     int     `json:"open,omitempty"`       // idle connections held
}

type loadFlags struct {
	mode        string
	host        string
	path        string
	caFile      string
	resume      bool
	conc        int
	dur         time.Duration
	size        int64
	placeholder string
	every       int64
	n           int
	openFor     time.Duration
	server      string
	workers     int
}

// loadCmd is a client in a pod namespace. It resolves the host once through
// the pod's resolver, then dials that address with the name as SNI.
func loadCmd(ctx context.Context, args []string) error {
	var f loadFlags
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	fs.StringVar(&f.mode, "mode", "", "newconn | download | upload | idle | dns")
	fs.StringVar(&f.host, "host", benchHost, "upstream name")
	fs.StringVar(&f.path, "path", "/", "request path")
	fs.StringVar(&f.caFile, "ca", "", "PEM file of the CA to trust (the proxy's, or the upstream's for direct)")
	fs.BoolVar(&f.resume, "resume", false, "newconn: keep a TLS client session cache (resumption)")
	fs.IntVar(&f.conc, "c", 8, "concurrent workers")
	fs.DurationVar(&f.dur, "d", 5*time.Second, "duration")
	fs.Int64Var(&f.size, "bytes", 100<<20, "download/upload size")
	fs.StringVar(&f.placeholder, "placeholder", "", "upload: sprinkle this placeholder through the body")
	fs.Int64Var(&f.every, "every", 64<<10, "upload: one placeholder per this many bytes")
	fs.IntVar(&f.n, "n", 10000, "idle: connections to open")
	fs.DurationVar(&f.openFor, "open-for", 60*time.Second, "idle: stop opening after this long")
	fs.StringVar(&f.server, "server", net.JoinHostPort(dnsIP, "53"), "dns: server address")
	fs.IntVar(&f.workers, "workers", 2, "dns: workers")
	_ = fs.Parse(args)

	var (
		res loadResult
		err error
	)
	switch f.mode {
	case "newconn":
		res, err = loadNewConn(ctx, f)
	case "download":
		res, err = loadDownload(ctx, f)
	case "upload":
		res, err = loadUpload(ctx, f)
	case "idle":
		res, err = loadIdle(ctx, f)
	case "dns":
		res, err = loadDNS(ctx, f)
	default:
		return fmt.Errorf("load: unknown -mode %q", f.mode)
	}
	if err != nil {
		return err
	}
	res.Mode = f.mode
	return json.NewEncoder(os.Stdout).Encode(res)
}

func clientTLS(f loadFlags) (*tls.Config, error) {
	pem, err := os.ReadFile(f.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", f.caFile)
	}
	conf := &tls.Config{RootCAs: pool, ServerName: f.host, NextProtos: []string{"http/1.1"}}
	if f.resume {
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return conf, nil
}

// resolve looks the name up once (through the pod's resolv.conf; inside
// panopticon's pod the query is answered by its DNS listener).
func resolve(ctx context.Context, host string) (string, error) {
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", host, err)
	}
	for _, a := range addrs {
		if !strings.Contains(a, ":") {
			return net.JoinHostPort(a, "443"), nil
		}
	}
	return "", fmt.Errorf("resolving %s: no IPv4 address", host)
}

func request(method, host, path string, length int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: panobench\r\n", method, path, host)
	if length >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	}
	b.WriteString("\r\n")
	return b.String()
}

// oneRequest dials a new TLS connection, sends GET path and reads the answer.
func oneRequest(ctx context.Context, addr string, conf *tls.Config, f loadFlags, keep bool) (*tls.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := tls.Client(raw, conf)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	if _, err := io.WriteString(c, request("GET", f.host, f.path, -1)); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil || !keep {
		c.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return c, nil
}

type errCounter struct {
	n     atomic.Int64
	once  sync.Once
	first string
}

func (e *errCounter) add(err error) {
	e.n.Add(1)
	e.once.Do(func() { e.first = err.Error() })
}

// loadNewConn opens a new TLS connection for every request.
func loadNewConn(ctx context.Context, f loadFlags) (loadResult, error) {
	conf, err := clientTLS(f)
	if err != nil {
		return loadResult{}, err
	}
	addr, err := resolve(ctx, f.host)
	if err != nil {
		return loadResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.dur)
	defer cancel()
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs errCounter
		wg   sync.WaitGroup
	)
	start := time.Now()
	over := overFunc(ctx)
	for range f.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for !over() {
				t0 := time.Now()
				if _, err := oneRequest(ctx, addr, conf, f, false); err != nil {
					if !over() {
						errs.add(err)
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	res := loadResult{Ops: int64(len(lats)), Errors: errs.n.Load(), FirstErr: errs.first, Seconds: secs, PerSec: float64(len(lats)) / secs}
	res.P50MS, res.P99MS = percentiles(lats)
	return res, nil
}

func percentiles(lats []time.Duration) (p50, p99 float64) {
	if len(lats) == 0 {
		return 0, 0
	}
	slices.Sort(lats)
	at := func(q float64) float64 {
		i := min(len(lats)-1, int(q*float64(len(lats))))
		return float64(lats[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

func bulkClient(f loadFlags, addr string) (*http.Client, error) {
	conf, err := clientTLS(f)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:           nil,
		TLSClientConfig: conf,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
		},
		DisableCompression: true,
		WriteBufferSize:    64 << 10,
		ReadBufferSize:     64 << 10,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}

// loadDownload fetches /big?n=size once.
func loadDownload(ctx context.Context, f loadFlags) (loadResult, error) {
	addr, err := resolve(ctx, f.host)
	if err != nil {
		return loadResult{}, err
	}
	cl, err := bulkClient(f, addr)
	if err != nil {
		return loadResult{}, err
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+f.host+"/big?n="+strconv.FormatInt(f.size, 10), nil)
	start := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		return loadResult{Errors: 1, FirstErr: err.Error()}, nil
	}
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
	resp.Body.Close()
	secs := time.Since(start).Seconds()
	res := loadResult{Ops: 1, Bytes: n, Seconds: secs, MBps: float64(n) / secs / 1e6}
	if err == nil && (resp.StatusCode != 200 || n != f.size) {
		err = fmt.Errorf("status %d, %d of %d bytes", resp.StatusCode, n, f.size)
	}
	if err != nil {
		res.Ops, res.Errors, res.FirstErr = 0, 1, err.Error()
	}
	return res, nil
}

// patternBody is size bytes of filler with placeholder every `every` bytes.
type patternBody struct {
	left        int64
	pos         int64
	every       int64
	placeholder string
}

func (b *patternBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), b.left))
	for i := range n {
		p[i] = 'a' + byte((b.pos+int64(i))%26)
	}
	if b.placeholder != "" {
		// Place the placeholder wherever a multiple of every falls in this
		// chunk and the whole placeholder fits before the end of the body.
		for off := (b.pos + b.every - 1) / b.every * b.every; off < b.pos+int64(n); off += b.every {
			end := off + int64(len(b.placeholder))
			if end > b.pos+int64(n) || end > b.pos+b.left {
				break
			}
			copy(p[off-b.pos:], b.placeholder)
		}
	}
	b.pos += int64(n)
	b.left -= int64(n)
	return n, nil
}

// placeholderCount is how many placeholders patternBody writes; the caller
// uses it to check that the proxy really substituted them.
func placeholderCount(size, every int64, ph string, chunk int64) int64 {
	if ph == "" {
		return 0
	}
	b := &patternBody{left: size, every: every, placeholder: ph}
	buf := make([]byte, chunk)
	var count int64
	for {
		n, err := b.Read(buf)
		count += int64(strings.Count(string(buf[:n]), ph))
		if err != nil {
			return count
		}
	}
}

// loadUpload posts size bytes to /upload and reports what the upstream read.
func loadUpload(ctx context.Context, f loadFlags) (loadResult, error) {
	addr, err := resolve(ctx, f.host)
	if err != nil {
		return loadResult{}, err
	}
	cl, err := bulkClient(f, addr)
	if err != nil {
		return loadResult{}, err
	}
	body := &patternBody{left: f.size, every: f.every, placeholder: f.placeholder}
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+f.host+"/upload", body)
	req.ContentLength = f.size
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		return loadResult{Errors: 1, FirstErr: err.Error()}, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	secs := time.Since(start).Seconds()
	res := loadResult{Ops: 1, Bytes: f.size, Seconds: secs, MBps: float64(f.size) / secs / 1e6}
	res.Received, _ = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d: %q", resp.StatusCode, data)
	}
	if err != nil {
		res.Ops, res.Errors, res.FirstErr = 0, 1, err.Error()
	}
	return res, nil
}

// loadIdle opens up to n keep-alive connections (one request each), prints
// "READY <open>" and holds them until stdin is closed.
func loadIdle(ctx context.Context, f loadFlags) (loadResult, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	conf, err := clientTLS(f)
	if err != nil {
		return loadResult{}, err
	}
	addr, err := resolve(ctx, f.host)
	if err != nil {
		return loadResult{}, err
	}
	openCtx, cancel := context.WithTimeout(ctx, f.openFor)
	defer cancel()
	var (
		mu    sync.Mutex
		conns []net.Conn
		errs  errCounter
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range f.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for openCtx.Err() == nil && next.Add(1) <= int64(f.n) {
				c, err := oneRequest(openCtx, addr, conf, f, true)
				if err != nil {
					if openCtx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "READY %d\n", len(conns))
	// Hold until the parent closes stdin (it measures meanwhile).
	_, _ = io.Copy(io.Discard, os.Stdin)
	alive := 0
	for _, c := range conns {
		// A connection the proxy closed meanwhile reads EOF at once.
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			alive++
		}
		c.Close()
	}
	return loadResult{Ops: int64(len(conns)), Errors: errs.n.Load(), FirstErr: errs.first, Seconds: secs,
		PerSec: float64(len(conns)) / secs, Open: alive}, nil
}

// loadDNS sends A queries for host from workers, one outstanding each.
func loadDNS(ctx context.Context, f loadFlags) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, f.dur)
	defer cancel()
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs errCounter
		wg   sync.WaitGroup
	)
	start := time.Now()
	over := overFunc(ctx)
	for range f.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			conn, err := cl.Dial(f.server)
			if err != nil {
				errs.add(err)
				return
			}
			defer conn.Close()
			var mine []time.Duration
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(f.host), dns.TypeA)
			for !over() {
				m.Id = dns.Id()
				t0 := time.Now()
				resp, _, err := cl.ExchangeWithConnContext(ctx, m, conn)
				if err == nil && (resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0) {
					err = fmt.Errorf("rcode %s, %d answers", dns.RcodeToString[resp.Rcode], len(resp.Answer))
				}
				if err != nil {
					if !over() {
						errs.add(err)
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	res := loadResult{Ops: int64(len(lats)), Errors: errs.n.Load(), FirstErr: errs.first, Seconds: secs, PerSec: float64(len(lats)) / secs}
	res.P50MS, res.P99MS = percentiles(lats)
	return res, nil
}

// overFunc reports whether ctx's deadline has passed. The context's own
// timer fires a little late, and meanwhile every I/O fails at once with a
// timeout: those failures are the end of the run, not errors.
func overFunc(ctx context.Context) func() bool {
	deadline, ok := ctx.Deadline()
	return func() bool {
		return ctx.Err() != nil || ok && !time.Now().Before(deadline.Add(-5*time.Millisecond))
	}
}
