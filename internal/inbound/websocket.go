package inbound

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
)

// closePolicyViolation is the close code sent when a message matches a rule.
const closePolicyViolation = 1008

// errFiltered ends the client→app copy after a message matched a rule. It is
// not io.EOF, so the proxy tears both directions down at once.
var errFiltered = errors.New("websocket message refused by the inbound filter")

// wsConn wraps the client side of a proxied WebSocket. Reads — what goes to
// the app — pass through a frame reader that holds each text message until
// it has been checked (up to limit bytes of it); writes — what comes from
// the app — are tracked frame by frame, so a close frame of our own is never
// spliced into the middle of one of the app's.
//
// Non-goals: validating the protocol (the app does that) and compressed
// messages (the handler strips Sec-WebSocket-Extensions from the upgrade, so
// none are negotiated; a frame with RSV bits set is refused).
type wsConn struct {
	net.Conn
	r       *bufio.Reader
	limit   int                                // bytes of a text message checked; 0 checks none
	check   func(text []byte) (Rule, bool)     // the filter
	onMatch func(rule Rule, protocolErr error) // told once, before the close frame goes out

	// Reader state (one reader goroutine).
	out     []byte // raw bytes ready for the app
	pass    int64  // raw payload bytes to copy through unchecked
	inMsg   bool   // inside a fragmented data message
	inspect bool   // that message is text still being inspected
	held    []byte // raw frames of the message being inspected
	text    []byte // its unmasked payload so far
	err     error  // sticky

	// Writer state.
	wmu    sync.Mutex
	wt     frameTracker // guarded by wmu
	closed bool         // guarded by wmu: no more writes to the client

	in, outBytes atomic.Int64
	closeOnce    sync.Once
}

func newWSConn(c net.Conn, br *bufio.Reader, limit int, check func([]byte) (Rule, bool), onMatch func(Rule, error)) *wsConn {
	if br == nil {
		br = bufio.NewReader(c)
	}
	return &wsConn{Conn: c, r: br, limit: limit, check: check, onMatch: onMatch}
}

// Read hands the app the client's frames, holding text messages until checked.
func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.err != nil {
			return 0, w.err
		}
		if len(w.out) > 0 {
			n := copy(p, w.out)
			w.out = w.out[n:]
			w.in.Add(int64(n))
			return n, nil
		}
		if w.pass > 0 {
			n, err := w.r.Read(p[:min(int64(len(p)), w.pass)])
			w.pass -= int64(n)
			w.in.Add(int64(n))
			if err == io.EOF && w.pass > 0 {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				w.err = err
			}
			return n, err
		}
		if err := w.nextFrame(); err != nil {
			w.err = err
		}
	}
}

// frameHeader is a parsed frame header and its raw bytes.
type frameHeader struct {
	fin    bool
	rsv    byte
	op     byte
	masked bool
	mask   [4]byte
	length uint64
	raw    []byte
}

func readFrameHeader(r *bufio.Reader) (frameHeader, error) {
	var h frameHeader
	var b [14]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return h, err // io.EOF here is a clean end between frames
	}
	h.fin, h.rsv, h.op = b[0]&0x80 != 0, b[0]&0x70, b[0]&0x0F
	h.masked = b[1]&0x80 != 0
	n := 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if _, err := io.ReadFull(r, b[2:4]); err != nil {
			return h, unexpected(err)
		}
		h.length, n = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if _, err := io.ReadFull(r, b[2:10]); err != nil {
			return h, unexpected(err)
		}
		h.length, n = binary.BigEndian.Uint64(b[2:10]), 10
		if h.length > 1<<62 {
			return h, fmt.Errorf("websocket frame length %d is out of range", h.length)
		}
	default:
		h.length = uint64(l)
	}
	if h.masked {
		if _, err := io.ReadFull(r, b[n:n+4]); err != nil {
			return h, unexpected(err)
		}
		copy(h.mask[:], b[n:n+4])
		n += 4
	}
	h.raw = append([]byte(nil), b[:n]...)
	return h, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// nextFrame reads one frame header and decides what to do with the frame:
// queue it whole (control frames, checked text), hold it (text not yet
// decided), or let its payload stream through (binary, or past the limit).
func (w *wsConn) nextFrame() error {
	h, err := readFrameHeader(w.r)
	if err != nil {
		return err
	}
	startsText := h.op == opText
	continuesText := h.op == opContinuation && w.inMsg && w.inspect
	if h.op >= opClose || !(startsText || continuesText) || w.limit <= 0 {
		// Control frame, binary data, or the unchecked rest of a message.
		switch {
		case h.op >= opClose: // control frames may come between fragments
		case h.op != opContinuation:
			w.inMsg, w.inspect = !h.fin, false
		case h.fin:
			w.inMsg, w.inspect = false, false
		}
		w.out = append(w.out[:0], h.raw...)
		w.pass = int64(h.length)
		return nil
	}
	if h.rsv != 0 {
		// Compressed (or otherwise extended) text cannot be inspected.
		return w.refuse(Rule{}, fmt.Errorf("websocket text frame with reserved bits %#x set (no extension was negotiated)", h.rsv))
	}
	if startsText {
		w.inMsg, w.inspect = !h.fin, true
		w.held, w.text = w.held[:0], w.text[:0]
	}
	budget := uint64(w.limit - len(w.text))
	take := min(h.length, budget)
	payload := make([]byte, take)
	if _, err := io.ReadFull(w.r, payload); err != nil {
		return unexpected(err)
	}
	w.held = append(append(w.held, h.raw...), payload...)
	for i := range payload {
		if h.masked {
			payload[i] ^= h.mask[i%4]
		}
	}
	w.text = append(w.text, payload...)
	// Decide once the message is complete, the limit is reached, or a flood
	// of tiny fragments has made the held frames large.
	full := take < h.length || len(w.text) >= w.limit || len(w.held) > 2*w.limit+4096
	if !h.fin && !full {
		return nil // hold, read the next fragment
	}
	if rule, ok := w.check(w.text); ok {
		return w.refuse(rule, nil)
	}
	w.out = append(w.out[:0], w.held...)
	w.held, w.text = w.held[:0], w.text[:0]
	w.pass = int64(h.length - take)
	if h.fin {
		w.inMsg, w.inspect = false, false
	} else {
		w.inspect = false // the rest of this message streams through unchecked
	}
	return nil
}

// refuse closes the session: a close frame (1008 for a rule, 1002 for a
// protocol error) to the client, then errFiltered to end the copy.
func (w *wsConn) refuse(rule Rule, protocolErr error) error {
	if w.onMatch != nil {
		w.onMatch(rule, protocolErr)
	}
	code, reason := closePolicyViolation, "refused by the inbound filter"
	if protocolErr != nil {
		code, reason = 1002, "protocol error"
	}
	w.wmu.Lock()
	if !w.closed && w.wt.atBoundary() {
		frame := []byte{0x80 | opClose, byte(2 + len(reason))}
		frame = binary.BigEndian.AppendUint16(frame, uint16(code))
		frame = append(frame, reason...)
		if n, err := w.Conn.Write(frame); err == nil {
			w.outBytes.Add(int64(n))
		}
	}
	w.closed = true
	w.wmu.Unlock()
	w.held, w.text = nil, nil
	return errFiltered
}

// Write forwards the app's bytes to the client, tracking frame boundaries.
func (w *wsConn) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closed {
		return 0, net.ErrClosed
	}
	n, err := w.Conn.Write(p)
	w.wt.feed(p[:n])
	w.outBytes.Add(int64(n))
	return n, err
}

// Close closes the client connection once.
func (w *wsConn) Close() error {
	var err error
	w.closeOnce.Do(func() { err = w.Conn.Close() })
	return err
}

// CloseWrite lets the proxy half-close toward the client when the app is done.
func (w *wsConn) CloseWrite() error {
	if cw, ok := w.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// frameTracker follows frame boundaries in a byte stream without buffering
// payloads.
type frameTracker struct {
	hdr    [14]byte
	hn     int    // header bytes seen
	need   int    // header length, known once hn >= 2
	remain uint64 // payload bytes left in the current frame
}

func (t *frameTracker) atBoundary() bool { return t.hn == 0 && t.remain == 0 }

func (t *frameTracker) feed(p []byte) {
	for len(p) > 0 {
		if t.remain > 0 {
			k := min(t.remain, uint64(len(p)))
			t.remain -= k
			p = p[k:]
			continue
		}
		t.hdr[t.hn] = p[0]
		t.hn++
		p = p[1:]
		if t.hn == 2 {
			t.need = 2
			switch t.hdr[1] & 0x7F {
			case 126:
				t.need += 2
			case 127:
				t.need += 8
			}
			if t.hdr[1]&0x80 != 0 {
				t.need += 4
			}
		}
		if t.hn >= 2 && t.hn == t.need {
			switch l := t.hdr[1] & 0x7F; l {
			case 126:
				t.remain = uint64(binary.BigEndian.Uint16(t.hdr[2:4]))
			case 127:
				t.remain = binary.BigEndian.Uint64(t.hdr[2:10])
			default:
				t.remain = uint64(l)
			}
			t.hn = 0
		}
	}
}
