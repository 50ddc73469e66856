package secrets

import (
	"bufio"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	maxControl     = 125
)

// ErrWebSocketProtocol is returned for frames this package will not pass:
// malformed frames, reserved opcodes, and RSV bits (permessage-deflate: strip
// Sec-WebSocket-Extensions from the upgrade request so it is not negotiated).
var ErrWebSocketProtocol = errors.New("websocket protocol error")

// WebSocket swaps placeholders in a client→server WebSocket byte stream
// (masked frames, RFC 6455). A message is processed as one stream across its
// frames, so a placeholder split between two frames is found. Output frames
// carry fresh masks and new lengths; a message may come out in more or fewer
// frames than it went in (fragmentation is not significant), and up to the
// longest placeholder's length of a fragment is held back until the next
// fragment or the end of the message. Control frames pass through unchanged
// but are checked for real values. Violations are returned by Read.
func (r *Rewriter) WebSocket(src io.Reader) io.Reader {
	if !r.active() {
		return src
	}
	return newWSReader(src, true, func(m io.Reader) *stream {
		s := r.newStream(m, "websocket")
		s.zeroOK = true
		return s
	}, func(op byte, payload []byte) ([]byte, error) {
		return payload, r.leakIn(payload, "websocket control frame")
	})
}

// WebSocket redacts a server→client WebSocket byte stream (unmasked frames):
// real values in messages, across frames, and in control frames (cut to the
// 125 bytes a control frame may carry).
func (d *Redactor) WebSocket(src io.Reader) io.Reader {
	if !d.Active() {
		return src
	}
	return newWSReader(src, false, func(m io.Reader) *stream {
		s := newStream(m, d.step(), d.m.hold(), 0)
		s.zeroOK = true
		return s
	}, func(op byte, payload []byte) ([]byte, error) {
		out := []byte(d.String(string(payload)))
		return out[:min(len(out), maxControl)], nil
	})
}

type wsHeader struct {
	fin    bool
	rsv    byte
	op     byte
	masked bool
	key    [4]byte
	length uint64
}

// wsReader re-frames a WebSocket stream through a transforming stream.
type wsReader struct {
	src     *bufio.Reader
	masked  bool // frames are masked (client→server), in and out
	stream  func(io.Reader) *stream
	control func(op byte, payload []byte) ([]byte, error)
	rng     *rand.ChaCha8

	buf []byte // output backing store
	out []byte
	err error

	msg    *wsMessage // current data message, nil between messages
	s      *stream
	first  bool // no frame of msg emitted yet
	opcode byte
	ctrl   []byte // control frames read inside a message, emitted after its next data frame
}

func newWSReader(src io.Reader, masked bool, s func(io.Reader) *stream, control func(byte, []byte) ([]byte, error)) *wsReader {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return &wsReader{src: bufio.NewReader(src), masked: masked, stream: s, control: control, rng: rand.NewChaCha8(seed)}
}

func (w *wsReader) Read(p []byte) (int, error) {
	for len(w.out) == 0 {
		if w.err != nil {
			return 0, w.err
		}
		w.buf = w.buf[:0]
		w.err = w.fill()
		w.out = w.buf
	}
	n := copy(p, w.out)
	w.out = w.out[n:]
	return n, nil
}

// fill appends the next frame(s) to w.buf.
func (w *wsReader) fill() error {
	if w.msg == nil {
		h, err := w.readHeader()
		if err != nil {
			return err // io.EOF between frames is a clean end
		}
		if h.op >= 0x8 {
			return w.controlFrame(h)
		}
		if h.op != wsText && h.op != wsBinary {
			return fmt.Errorf("%w: opcode %#x outside a message", ErrWebSocketProtocol, h.op)
		}
		w.msg = &wsMessage{w: w, fin: h.fin, remaining: h.length, key: h.key, masked: h.masked}
		w.s = w.stream(w.msg)
		w.first, w.opcode = true, h.op
	}
	chunk, err := w.s.next()
	last := err == io.EOF
	if err != nil && !last {
		return err
	}
	if len(chunk) > 0 || last {
		op := byte(wsContinuation)
		if w.first {
			op = w.opcode
		}
		w.buf = w.frame(w.buf, last && !w.msg.abandoned, op, chunk)
		w.first = false
	}
	w.buf = append(w.buf, w.ctrl...)
	w.ctrl = w.ctrl[:0]
	if last {
		w.msg, w.s = nil, nil
	}
	return nil
}

// controlFrame reads a control frame's payload, transforms it and appends the
// new frame to w.buf (outside a message) or w.ctrl (inside one).
func (w *wsReader) controlFrame(h wsHeader) error {
	if !h.fin || h.length > maxControl {
		return fmt.Errorf("%w: fragmented or oversized control frame", ErrWebSocketProtocol)
	}
	payload := make([]byte, h.length)
	if _, err := io.ReadFull(w.src, payload); err != nil {
		return unexpected(err)
	}
	if h.masked {
		maskBytes(payload, h.key, 0)
	}
	payload, err := w.control(h.op, payload)
	if err != nil {
		return err
	}
	if w.msg != nil {
		w.ctrl = w.frame(w.ctrl, true, h.op, payload)
	} else {
		w.buf = w.frame(w.buf, true, h.op, payload)
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (w *wsReader) readHeader() (wsHeader, error) {
	var h wsHeader
	var b [8]byte
	if _, err := io.ReadFull(w.src, b[:2]); err != nil {
		return h, err // io.EOF: no frame started
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] & 0x70
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n := uint64(b[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(w.src, b[:2]); err != nil {
			return h, unexpected(err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:2]))
	case 127:
		if _, err := io.ReadFull(w.src, b[:8]); err != nil {
			return h, unexpected(err)
		}
		n = binary.BigEndian.Uint64(b[:8])
		if n>>63 != 0 {
			return h, fmt.Errorf("%w: payload length with the top bit set", ErrWebSocketProtocol)
		}
	}
	h.length = n
	if h.masked {
		if _, err := io.ReadFull(w.src, h.key[:]); err != nil {
			return h, unexpected(err)
		}
	}
	switch {
	case h.rsv != 0:
		return h, fmt.Errorf("%w: RSV bits set (compressed frames cannot be inspected; do not negotiate permessage-deflate)", ErrWebSocketProtocol)
	case h.masked != w.masked:
		return h, fmt.Errorf("%w: frame masking is wrong for this direction", ErrWebSocketProtocol)
	case h.op >= 0x3 && h.op <= 0x7 || h.op >= 0xb:
		return h, fmt.Errorf("%w: reserved opcode %#x", ErrWebSocketProtocol, h.op)
	}
	return h, nil
}

// frame appends one frame to dst, masked with a fresh key when the direction
// is masked.
func (w *wsReader) frame(dst []byte, fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var mbit byte
	if w.masked {
		mbit = 0x80
	}
	n := len(payload)
	switch {
	case n <= 125:
		dst = append(dst, b0, mbit|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, mbit|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, mbit|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !w.masked {
		return append(dst, payload...)
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], uint32(w.rng.Uint64()))
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	maskBytes(dst[start:], key, 0)
	return dst
}

// maskBytes XORs b with key, b starting at offset pos of the payload.
func maskBytes(b []byte, key [4]byte, pos uint64) {
	for i := range b {
		b[i] ^= key[(pos+uint64(i))&3]
	}
}

// wsMessage reads the unmasked payload of one data message, across its
// frames. Control frames between fragments are handed to the wsReader, and
// Read then returns (0, nil) so the caller can forward them without waiting
// for the next fragment. A Close inside a message abandons it.
type wsMessage struct {
	w         *wsReader
	fin       bool
	remaining uint64
	key       [4]byte
	masked    bool
	pos       uint64
	abandoned bool
}

func (m *wsMessage) Read(p []byte) (int, error) {
	for {
		if m.remaining > 0 {
			n := int(min(uint64(len(p)), m.remaining))
			n, err := m.w.src.Read(p[:n])
			if m.masked {
				maskBytes(p[:n], m.key, m.pos)
			}
			m.pos += uint64(n)
			m.remaining -= uint64(n)
			if err != nil {
				return n, unexpected(err)
			}
			if m.remaining == 0 && m.fin {
				return n, io.EOF
			}
			return n, nil
		}
		if m.fin || m.abandoned {
			return 0, io.EOF
		}
		h, err := m.w.readHeader()
		if err != nil {
			return 0, unexpected(err)
		}
		if h.op >= 0x8 {
			if err := m.w.controlFrame(h); err != nil {
				return 0, err
			}
			if h.op == wsClose {
				m.abandoned = true
				return 0, io.EOF
			}
			return 0, nil
		}
		if h.op != wsContinuation {
			return 0, fmt.Errorf("%w: new message (opcode %#x) inside a fragmented one", ErrWebSocketProtocol, h.op)
		}
		m.fin, m.remaining, m.key, m.masked, m.pos = h.fin, h.length, h.key, h.masked, 0
	}
}
