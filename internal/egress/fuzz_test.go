package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"testing/iotest"
	"time"
)

// realHello is the ClientHello a real tls.Client sends for serverName.
func realHello(tb testing.TB, serverName string, protos ...string) []byte {
	tb.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: protos})
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_ = c.Handshake()
		client.Close()
	}()
	_ = server.SetDeadline(time.Now().Add(2 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		tb.Fatalf("reading a ClientHello: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		tb.Fatalf("reading a ClientHello: %v", err)
	}
	return append(hdr, body...)
}

// helloVerdict asks crypto/tls itself, on a fresh server, whether data opens
// with a ClientHello and which server name it carries.
func helloVerdict(data []byte) (ok bool, name string) {
	_ = tls.Server(readOnlyConn{r: bytes.NewReader(data)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			ok, name = true, h.ServerName
			return nil, errHelloRead
		},
	}).Handshake()
	return ok, name
}

// FuzzClientHello: clientHello never panics, returns a hello only for what
// crypto/tls accepts as one (with the same server name), and the bytes it
// reports as consumed are exactly a prefix of the input, so replaying them
// followed by the rest reproduces the stream — also when the hello arrives
// one byte per read (a ClientHello split across many TCP segments).
func FuzzClientHello(f *testing.F) {
	for _, name := range []string{"allowed.test", "", "xn--bcher-kva.example", "a.b.c.d.e.f.example"} {
		h := realHello(f, name, "h2", "http/1.1")
		f.Add(h)
		f.Add(h[:len(h)/2])                                            // truncated
		f.Add(append(h[:len(h):len(h)], "GET /"...))                   // trailing data
		f.Add(append([]byte{0x16, 0x03, 0x01, 0x00, 0x04}, h[5:9]...)) // short record
	}
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		hello, seen, err := clientHello(bytes.NewReader(data))
		if !bytes.HasPrefix(data, seen) {
			t.Fatalf("consumed bytes are not a prefix of the input")
		}
		ok, name := helloVerdict(data)
		if hello != nil {
			if err != nil {
				t.Fatalf("hello and error together: %v", err)
			}
			if !ok || name != hello.ServerName {
				t.Fatalf("hello %q for input crypto/tls rejects (ok=%v name=%q)", hello.ServerName, ok, name)
			}
			// Replaying what was consumed, then the rest, is the original stream.
			replayed, _ := io.ReadAll(io.MultiReader(bytes.NewReader(seen), bytes.NewReader(data[len(seen):])))
			if !bytes.Equal(replayed, data) {
				t.Fatalf("replay differs from the input")
			}
			// The replayed prefix alone is a complete hello.
			if ok2, name2 := helloVerdict(seen); !ok2 || name2 != hello.ServerName {
				t.Fatalf("the consumed bytes alone are not the hello (ok=%v name=%q)", ok2, name2)
			}
		} else if ok {
			t.Fatalf("crypto/tls accepts a hello (%q) that clientHello refused: %v", name, err)
		}
		// Segmentation must not change the answer.
		// (How much it reads beyond the hello may differ: whatever it
		// read is replayed, which the prefix check above covers.)
		hello1, seen1, _ := clientHello(iotest.OneByteReader(bytes.NewReader(data)))
		if (hello1 == nil) != (hello == nil) || hello != nil && hello1.ServerName != hello.ServerName {
			t.Fatalf("one byte per read gives a different answer")
		}
		if !bytes.HasPrefix(data, seen1) {
			t.Fatalf("one byte per read: consumed bytes are not a prefix of the input")
		}
	})
}

// FuzzSniff: sniff never panics, never consumes input, calls TLS exactly the
// inputs that start with a handshake record byte, and HTTP only an upper-case
// method token followed by a space.
func FuzzSniff(f *testing.F) {
	f.Add(realHello(f, "allowed.test"))
	for _, s := range []string{"GET / HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n", "CONNECT a:443 HTTP/1.1\r\n",
		"SSH-2.0-OpenSSH_9.2\r\n", "get / HTTP/1.1", " GET /", "ABCDEFGHI / HTTP/1.1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "G", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		proto, err := sniff(br)
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data) {
			t.Fatalf("sniff consumed input")
		}
		if len(data) == 0 {
			if err == nil {
				t.Fatalf("no error for empty input")
			}
			return
		}
		if err != nil {
			t.Fatalf("sniff: %v", err)
		}
		if (proto == protoTLS) != (data[0] == 0x16) {
			t.Fatalf("TLS verdict %v for first byte %#x", proto == protoTLS, data[0])
		}
		if proto == protoHTTP {
			sp := bytes.IndexByte(data, ' ')
			if sp < 1 || sp > 7 {
				t.Fatalf("HTTP verdict without a method token: %q", data[:min(len(data), 16)])
			}
			for _, c := range data[:sp] {
				if c < 'A' || c > 'Z' {
					t.Fatalf("HTTP verdict for method %q", data[:sp])
				}
			}
		}
	})
}
