package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/refusal"
	"time"
)

// helloBytes captures the ClientHello a real tls.Client sends for serverName.
func helloBytes(t *testing.T, serverName string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_ = c.Handshake()
		client.Close()
	}()
	var buf bytes.Buffer
	_ = server.SetDeadline(time.Now().Add(2 * time.Second))
	tmp := make([]byte, 64<<10)
	for {
		n, err := server.Read(tmp)
		buf.Write(tmp[:n])
		if err != nil || buf.Len() >= 5 && buf.Len() >= 5+int(buf.Bytes()[3])<<8|int(buf.Bytes()[4]) {
			break
		}
	}
	return buf.Bytes()
}

func TestSniffClassifiesFirstBytes(t *testing.T) {
	hello := helloBytes(t, "allowed.test")
	cases := []struct {
		name string
		in   []byte
		want int
	}{
		{"TLS ClientHello", hello, protoTLS},
		{"HTTP GET", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), protoHTTP},
		{"HTTP OPTIONS", []byte("OPTIONS * HTTP/1.1\r\n"), protoHTTP},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.2\r\n"), protoOther},
		{"lower-case method", []byte("get / HTTP/1.1\r\n"), protoOther},
		{"method too long", []byte("ABCDEFGHIJ / HTTP/1.1\r\n"), protoOther},
		{"binary", []byte{0x00, 0x01, 0x02}, protoOther},
		{"space first", []byte(" GET /"), protoOther},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sniff(bufio.NewReader(bytes.NewReader(tc.in)))
			if err != nil {
				t.Fatalf("sniff: %v", err)
			}
			if got != tc.want {
				t.Fatalf("sniff = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestClientHelloGivesSNIAndReplaysEveryByte(t *testing.T) {
	for _, name := range []string{"allowed.test", "api.wild.test", ""} {
		t.Run("sni="+name, func(t *testing.T) {
			raw := helloBytes(t, name)
			// One byte per read: a ClientHello split across many TCP segments.
			hello, seen, err := clientHello(iotest.OneByteReader(bytes.NewReader(raw)))
			if hello == nil {
				t.Fatalf("no hello: %v", err)
			}
			if hello.ServerName != name {
				t.Fatalf("ServerName = %q, want %q", hello.ServerName, name)
			}
			if !bytes.Equal(seen, raw[:len(seen)]) || len(seen) == 0 {
				t.Fatalf("replayed bytes differ from what the client sent")
			}
		})
	}
}

func TestClientHelloRejectsGarbage(t *testing.T) {
	garbage := append([]byte{0x16, 0x03, 0x01, 0x00, 0x05}, []byte("hello")...)
	hello, _, err := clientHello(bytes.NewReader(garbage))
	if hello != nil || err == nil {
		t.Fatalf("garbage accepted as a ClientHello: hello=%v err=%v", hello, err)
	}
}

func TestRefuseWritesOneLineReasonAndHeader(t *testing.T) {
	p := &Proxy{}
	rec := &headerRecorder{h: http.Header{}}
	ev := newEventForTest()
	p.refuse(rec, ev, &Block{Reason: "not-allowlisted", Message: "denied.test is not\non the allowlist"})
	if rec.code != http.StatusForbidden || rec.h.Get(refusal.Header) != "not-allowlisted" {
		t.Fatalf("got %d %q", rec.code, rec.h.Get(refusal.Header))
	}
	body := rec.body.String()
	if strings.Count(body, "\n") != 1 || !strings.HasPrefix(body, "panopticon: blocked: denied.test is not on the allowlist") {
		t.Fatalf("body %q is not one line with the reason", body)
	}
	if ev.Decision != "block" || ev.Reason != "not-allowlisted" || ev.Status != 403 {
		t.Fatalf("event %+v", ev)
	}
}

type headerRecorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) WriteHeader(c int)           { r.code = c }
func (r *headerRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }

var _ io.Writer = (*headerRecorder)(nil)

func newEventForTest() *flowlog.Event { return &flowlog.Event{} }
