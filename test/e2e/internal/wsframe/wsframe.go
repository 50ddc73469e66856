//go:build e2e

// Package wsframe is a minimal WebSocket (RFC 6455) implementation for the
// end-to-end tests: the fake upstream's echo endpoint and the agent's client.
//
//	c, err := wsframe.Dial(tlsConn, "allowed.test", "/ws")
//	c.WriteText("hello")
//	op, msg, err := c.ReadMessage()
//
// Non-goals: fragmentation, extensions, compression, production use.
package wsframe

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// Opcodes used here.
const (
	OpText  = 0x1
	OpClose = 0x8
	OpPing  = 0x9
	OpPong  = 0xA
)

const magic = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxPayload bounds a frame so a broken peer cannot make us allocate much.
const maxPayload = 1 << 20

// Conn is one WebSocket connection.
type Conn struct {
	c      net.Conn
	r      *bufio.Reader
	client bool // clients mask what they send
}

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.c.Close() }

// NetConn returns the underlying connection (for deadlines).
func (c *Conn) NetConn() net.Conn { return c.c }

// AcceptKey computes Sec-WebSocket-Accept for key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + magic))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Dial performs the client handshake for path on host over an established conn.
func Dial(conn net.Conn, host, path string) (*Conn, error) {
	var k [16]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, err
	}
	key := base64.StdEncoding.EncodeToString(k[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, key)
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, fmt.Errorf("writing handshake: %w", err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, fmt.Errorf("reading handshake response: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("handshake: status %s (X-Panopticon-Block: %q)", resp.Status, resp.Header.Get("X-Panopticon-Block"))
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != AcceptKey(key) {
		return nil, fmt.Errorf("handshake: bad Sec-WebSocket-Accept %q", got)
	}
	return &Conn{c: conn, r: r, client: true}, nil
}

// Accept upgrades a server-side request.
func Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "not a websocket request", http.StatusBadRequest)
		return nil, errors.New("not a websocket request")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		http.Error(w, "missing Sec-WebSocket-Key", http.StatusBadRequest)
		return nil, errors.New("missing key")
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return nil, errors.New("cannot hijack")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, err
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + AcceptKey(key) + "\r\n\r\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		conn.Close()
		return nil, err
	}
	return &Conn{c: conn, r: brw.Reader}, nil
}

// WriteText sends one text frame.
func (c *Conn) WriteText(msg string) error { return c.WriteFrame(OpText, []byte(msg)) }

// WriteFrame sends one final frame with opcode op.
func (c *Conn) WriteFrame(op byte, payload []byte) error {
	hdr := []byte{0x80 | op, 0}
	maskBit := byte(0)
	if c.client {
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
	if c.client {
		var mask [4]byte
		if _, err := rand.Read(mask[:]); err != nil {
			return err
		}
		hdr = append(hdr, mask[:]...)
		body = make([]byte, len(payload))
		for i, b := range payload {
			body[i] = b ^ mask[i%4]
		}
	}
	_, err := c.c.Write(append(hdr, body...))
	return err
}

// ReadMessage reads the next data frame, answering pings on the way.
func (c *Conn) ReadMessage() (op byte, payload []byte, err error) {
	for range 100 {
		op, payload, err = c.readFrame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case OpPing:
			if err := c.WriteFrame(OpPong, payload); err != nil {
				return 0, nil, err
			}
		case OpPong:
		default:
			return op, payload, nil
		}
	}
	return 0, nil, errors.New("too many control frames")
}

func (c *Conn) readFrame() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	op := h[0] & 0x0F
	masked := h[1]&0x80 != 0
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > maxPayload {
		return 0, nil, fmt.Errorf("frame of %d bytes is too large", n)
	}
	var mask [4]byte
	if masked {
		if _, err := io.ReadFull(c.r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range p {
			p[i] ^= mask[i%4]
		}
	}
	return op, p, nil
}
