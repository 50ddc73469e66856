package inbound

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/ca"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

// sink collects flow events.
type sink struct {
	mu     sync.Mutex
	events []flowlog.Event
	added  chan struct{}
}

func newSink() *sink { return &sink{added: make(chan struct{}, 1000)} }

func (s *sink) Emit(e flowlog.Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
	select {
	case s.added <- struct{}{}:
	default:
	}
}

// wait returns the n-th event (1-based), waiting up to 3s for it.
func (s *sink) wait(t *testing.T, n int) flowlog.Event {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		s.mu.Lock()
		if len(s.events) >= n {
			e := s.events[n-1]
			s.mu.Unlock()
			return e
		}
		s.mu.Unlock()
		select {
		case <-s.added:
		case <-deadline:
			t.Fatalf("flow event %d never came; have %d", n, len(s.events))
		}
	}
}

// testCA is a throwaway CA and minter.
type testCA struct {
	ca     *ca.CA
	minter *ca.Minter
	pool   *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	c, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	return &testCA{ca: c, minter: ca.NewMinter(c, 16), pool: pool}
}

// rig is a Proxy serving one door on 127.0.0.1:0 in front of app.
type rig struct {
	t      *testing.T
	ca     *testCA
	proxy  *Proxy
	events *sink
	addr   string // the door
	client *http.Client
}

// newRig starts a door proxying to app (host:port). cfg may preset fields;
// Certs and Log are filled in.
func newRig(t *testing.T, app string, cfg Config) *rig {
	t.Helper()
	r := &rig{t: t, ca: newTestCA(t), events: newSink()}
	if cfg.Certs == nil {
		certs, err := NewMintedCerts(r.ca.minter, []string{"localhost"})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certs = certs
	}
	cfg.Log = r.events
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r.proxy = New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.proxy.Serve(ctx, Door{Listener: ln, App: app, HTTP2: true}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	r.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: r.ca.pool, ServerName: "localhost"},
			DisableKeepAlives: true,
		},
	}
	return r
}

func (r *rig) url(path string) string { return "https://" + r.addr + path }

// tlsDial opens a raw TLS connection to the door.
func (r *rig) tlsDial() *tls.Conn {
	r.t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", r.addr,
		&tls.Config{RootCAs: r.ca.pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// startApp serves h on 127.0.0.1:0 and returns its address.
func startApp(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// ---- a minimal WebSocket client and echo server for the tests ----

const wsMagic = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsMagic))
	return base64.StdEncoding.EncodeToString(h[:])
}

type wsTestConn struct {
	c      net.Conn
	r      *bufio.Reader
	client bool
}

// wsDial does the client handshake over c.
func wsDial(c net.Conn, path string, extra http.Header) (*wsTestConn, *http.Response, error) {
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", path, key)
	for name, vs := range extra {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, resp, fmt.Errorf("handshake: %s", resp.Status)
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		return nil, resp, errors.New("bad Sec-WebSocket-Accept")
	}
	return &wsTestConn{c: c, r: br, client: true}, resp, nil
}

// writeFrame sends one frame (masked when a client).
func (w *wsTestConn) writeFrame(fin bool, op byte, payload []byte) error {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0, 0}
	var maskBit byte
	if w.client {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr[1] = maskBit | byte(n)
	case n <= 0xFFFF:
		hdr[1] = maskBit | 126
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr[1] = maskBit | 127
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	body := payload
	if w.client {
		var m [4]byte
		rand.Read(m[:])
		hdr = append(hdr, m[:]...)
		body = make([]byte, len(payload))
		for i := range payload {
			body[i] = payload[i] ^ m[i%4]
		}
	}
	_, err := w.c.Write(append(hdr, body...))
	return err
}

// readMessage reads one (possibly fragmented) message; control frames are returned as they come.
func (w *wsTestConn) readMessage() (op byte, payload []byte, err error) {
	var msgOp byte
	var msg []byte
	for {
		h, err := readFrameHeader(w.r)
		if err != nil {
			return 0, nil, err
		}
		p := make([]byte, h.length)
		if _, err := io.ReadFull(w.r, p); err != nil {
			return 0, nil, err
		}
		if h.masked {
			for i := range p {
				p[i] ^= h.mask[i%4]
			}
		}
		if h.op >= opClose {
			return h.op, p, nil
		}
		if h.op != opContinuation {
			msgOp = h.op
		}
		msg = append(msg, p...)
		if h.fin {
			return msgOp, msg, nil
		}
	}
}

// wsEcho is an app that echoes WebSocket messages and records what it got.
type wsEcho struct {
	mu       sync.Mutex
	got      []string
	headers  []http.Header
	sessions int
}

func (e *wsEcho) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

func (e *wsEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		fmt.Fprint(w, "plain")
		return
	}
	e.mu.Lock()
	e.headers = append(e.headers, r.Header.Clone())
	e.sessions++
	e.mu.Unlock()
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		wsAccept(r.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n")
	ws := &wsTestConn{c: c, r: brw.Reader}
	for {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		op, p, err := ws.readMessage()
		if err != nil || op == opClose {
			return
		}
		if op == 0x9 {
			ws.writeFrame(true, 0xA, p)
			continue
		}
		e.mu.Lock()
		e.got = append(e.got, string(p))
		e.mu.Unlock()
		if ws.writeFrame(true, op, p) != nil {
			return
		}
	}
}
