package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// Protocols a connection may open with.
const (
	protoTLS = iota + 1
	protoHTTP
	protoOther
)

// sniff classifies the first bytes without consuming them: a TLS handshake
// record, an HTTP/1 request line, or something else (which is never let through).
func sniff(br *bufio.Reader) (int, error) {
	first, err := br.Peek(1)
	if err != nil {
		return 0, err
	}
	if first[0] == 0x16 { // TLS handshake record
		return protoTLS, nil
	}
	// An HTTP/1 request starts with a method token followed by a space.
	for n := 1; n <= 8; n++ {
		b, err := br.Peek(n)
		if err != nil {
			return protoOther, nil
		}
		c := b[n-1]
		switch {
		case c == ' ' && n > 1:
			return protoHTTP, nil
		case c >= 'A' && c <= 'Z':
			continue
		default:
			return protoOther, nil
		}
	}
	return protoOther, nil
}

var errHelloRead = errors.New("client hello read")

// clientHello reads the TLS ClientHello from r and lets crypto/tls parse it
// (no hand-written parser). It returns what it learnt and every byte it
// consumed, so the caller can replay them into the real handshake.
func clientHello(r io.Reader) (*tls.ClientHelloInfo, []byte, error) {
	var seen bytes.Buffer
	var hello *tls.ClientHelloInfo
	err := tls.Server(readOnlyConn{r: io.TeeReader(r, &seen)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = &tls.ClientHelloInfo{ServerName: h.ServerName, SupportedProtos: append([]string(nil), h.SupportedProtos...)}
			return nil, errHelloRead
		},
	}).Handshake()
	if hello != nil {
		return hello, seen.Bytes(), nil
	}
	return nil, seen.Bytes(), err
}

// readOnlyConn lets crypto/tls read a ClientHello while making sure nothing
// (not even an alert) is written back to the client.
type readOnlyConn struct{ r io.Reader }

func (c readOnlyConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (readOnlyConn) Write([]byte) (int, error)        { return 0, io.ErrClosedPipe }
func (readOnlyConn) Close() error                     { return nil }
func (readOnlyConn) LocalAddr() net.Addr              { return nil }
func (readOnlyConn) RemoteAddr() net.Addr             { return nil }
func (readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (readOnlyConn) SetWriteDeadline(time.Time) error { return nil }
