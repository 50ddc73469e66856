//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/test/e2e/internal/wsframe"
)

// InboundApp is the agent's own server inside the pod: an HTTP echo on
// APP_HTTP_PORT (8443) and a WebSocket echo on APP_WS_PORT (12001). It binds
// every address, as a careless app would, so only the firewall keeps those
// ports from the outside. It records every request and message it receives.
type InboundApp struct {
	recorder
	tb *Testbed

	mu   sync.Mutex
	http *http.Server // guarded by mu; nil while stopped
	ws   *http.Server
}

const (
	appHTTPPort = 8443
	appWSPort   = 12001
)

func (a *InboundApp) String() string { return "the app's own listeners (:8443, :12001)" }

// StartInboundApp starts both listeners in the pod; they stop with the testbed.
func (tb *Testbed) StartInboundApp(t *testing.T) *InboundApp {
	t.Helper()
	a := &InboundApp{tb: tb}
	ws, err := a.listen(appWSPort, http.HandlerFunc(a.serveWS))
	if err != nil {
		t.Fatalf("app websocket listener: %v", err)
	}
	a.ws = ws
	a.StartHTTP(t)
	tb.onClose(func() {
		a.StopHTTP()
		ws.Close()
	})
	return a
}

func (a *InboundApp) listen(port int, h http.Handler) (*http.Server, error) {
	var ln net.Listener
	err := a.tb.inNetns(a.tb.Pod, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}

// StartHTTP (re)starts the HTTP listener.
func (a *InboundApp) StartHTTP(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.http != nil {
		return
	}
	srv, err := a.listen(appHTTPPort, http.HandlerFunc(a.serveHTTP))
	if err != nil {
		t.Fatalf("app http listener: %v", err)
	}
	a.http = srv
}

// StopHTTP closes the HTTP listener, as a crashed app would.
func (a *InboundApp) StopHTTP() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.http != nil {
		a.http.Close()
		a.http = nil
	}
}

// AppRequest is what the app saw, echoed back as JSON and recorded.
type AppRequest struct {
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Target  string      `json:"target"`
	Header  http.Header `json:"header"`
	BodyLen int         `json:"body_len"`
	Body    string      `json:"body,omitempty"` // the first KiB
	Remote  string      `json:"remote"`
}

func (a *InboundApp) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rq := AppRequest{Method: r.Method, Host: r.Host, Target: r.RequestURI, Header: r.Header,
		BodyLen: len(body), Body: string(body[:min(len(body), 1024)]), Remote: r.RemoteAddr}
	b, _ := json.Marshal(rq)
	a.add("request %s", b)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (a *InboundApp) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := wsframe.Accept(w, r)
	if err != nil {
		return
	}
	defer ws.Close()
	a.add("ws open %s", r.RequestURI)
	for range 100 {
		ws.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
		op, p, err := ws.ReadMessage()
		if err != nil || op == wsframe.OpClose {
			return
		}
		a.add("ws message %q", p)
		if ws.WriteFrame(op, p) != nil {
			return
		}
	}
}

// Requests returns the HTTP requests the app saw since mark m.
func (a *InboundApp) Requests(m int) []AppRequest {
	var out []AppRequest
	for _, e := range a.Since(m) {
		if s, ok := strings.CutPrefix(e, "request "); ok {
			var r AppRequest
			if json.Unmarshal([]byte(s), &r) == nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// ---- a client in the fake internet ----

// Outsider connects from the "net" namespace to the pod, as a chat front
// end or webhook sender would.
type Outsider struct {
	tb    *Testbed
	Src   string // source address; "" lets the kernel choose (198.51.100.1)
	roots *x509.CertPool
}

// Outsider returns a client in the internet namespace trusting panopticon's CA.
func (tb *Testbed) Outsider(t *testing.T, p *Panopticon, src string) *Outsider {
	t.Helper()
	pem, err := os.ReadFile(p.ExportDir + "/ca-cert.pem")
	if err != nil {
		t.Fatalf("panopticon's CA: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("panopticon's ca-cert.pem holds no certificate")
	}
	return &Outsider{tb: tb, Src: src, roots: roots}
}

// Dial opens a TCP connection from the internet namespace.
func (o *Outsider) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := o.tb.inNetns(o.tb.Net, func() error {
		d := &net.Dialer{Timeout: timeout}
		if o.Src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.Src)}
		}
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	return c, err
}

// DialTLS opens a verified TLS connection; serverName "" sends no SNI
// (the address is verified against the certificate's IP SANs).
func (o *Outsider) DialTLS(addr, serverName string) (*tls.Conn, error) {
	c, err := o.Dial(addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: o.roots, ServerName: serverName, NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// Client is an HTTP client whose connections start in the internet
// namespace; names in resolve map to addresses (like curl --resolve).
func (o *Outsider) Client(resolve map[string]string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, port, _ := net.SplitHostPort(addr)
				if ip, ok := resolve[host]; ok {
					addr = net.JoinHostPort(ip, port)
				}
				return o.Dial(addr, 3*time.Second)
			},
			TLSClientConfig:   &tls.Config{RootCAs: o.roots},
			DisableKeepAlives: true,
		},
	}
}
