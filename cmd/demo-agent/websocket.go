package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// A hand-written subset of RFC 6455: the opening handshake and unfragmented frames,
// enough for an echo server and a one-shot client.

const (
	wsGUID       = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	maxWSPayload = 1 << 20
	wsIdle       = 2 * time.Minute

	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

type wsFrame struct {
	fin     bool
	opcode  byte
	payload []byte
}

// wsAccept is the Sec-WebSocket-Accept value for a client key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	return httpguts.HeaderValuesContainsToken(h[http.CanonicalHeaderKey(name)], token)
}

// wsHandler upgrades every request to a WebSocket and echoes each data frame back.
func wsHandler(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") ||
			!strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			http.Error(w, "this is the WebSocket echo port: send a WebSocket upgrade", http.StatusUpgradeRequired)
			return
		}
		if r.Header.Get("Sec-WebSocket-Version") != "13" {
			w.Header().Set("Sec-WebSocket-Version", "13")
			http.Error(w, "unsupported WebSocket version", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, "cannot hijack connection", http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
		if err := rw.Flush(); err != nil {
			return
		}
		for {
			_ = conn.SetDeadline(time.Now().Add(wsIdle))
			f, err := readFrame(rw.Reader, true)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					log.Info("websocket closed", "remote", r.RemoteAddr, "err", err)
					_ = writeFrame(rw.Writer, wsFrame{fin: true, opcode: opClose, payload: closePayload(1002, "protocol error")}, nil)
					_ = rw.Flush()
				}
				return
			}
			reply := f
			switch f.opcode {
			case opPing:
				reply.opcode = opPong
			case opPong:
				continue
			}
			if err := writeFrame(rw.Writer, reply, nil); err != nil {
				return
			}
			if err := rw.Flush(); err != nil || f.opcode == opClose {
				return
			}
		}
	})
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// readFrame reads one frame. A server requires masked frames (RFC 6455 §5.1).
func readFrame(r *bufio.Reader, wantMasked bool) (wsFrame, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: hdr[0]&0x80 != 0, opcode: hdr[0] & 0x0f}
	if hdr[0]&0x70 != 0 {
		return f, errors.New("reserved bits set (no extension was negotiated)")
	}
	masked := hdr[1]&0x80 != 0
	if masked != wantMasked {
		return f, fmt.Errorf("frame masked=%v, want %v", masked, wantMasked)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if f.opcode >= opClose && (n > 125 || !f.fin) {
		return f, errors.New("control frame too long or fragmented")
	}
	if n > maxWSPayload {
		return f, fmt.Errorf("frame of %d bytes exceeds the %d byte limit", n, maxWSPayload)
	}
	var mask [4]byte
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return f, err
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	if masked {
		for i := range f.payload {
			f.payload[i] ^= mask[i%4]
		}
	}
	return f, nil
}

// writeFrame writes one frame, masked with mask when mask is not nil (clients must).
func writeFrame(w io.Writer, f wsFrame, mask []byte) error {
	b0 := f.opcode & 0x0f
	if f.fin {
		b0 |= 0x80
	}
	buf := []byte{b0, 0}
	n := len(f.payload)
	switch {
	case n < 126:
		buf[1] = byte(n)
	case n <= 0xffff:
		buf[1] = 126
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf[1] = 127
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	payload := f.payload
	if mask != nil {
		buf[1] |= 0x80
		buf = append(buf, mask[:4]...)
		payload = make([]byte, n)
		for i := range f.payload {
			payload[i] = f.payload[i] ^ mask[i%4]
		}
	}
	if _, err := w.Write(buf); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func newMask() []byte {
	m := make([]byte, 4)
	_, _ = rand.Read(m)
	return m
}
