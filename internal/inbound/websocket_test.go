package inbound

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// wsSession dials the rig's door and upgrades to a WebSocket.
func wsSession(t *testing.T, r *rig, extra http.Header) (*wsTestConn, *http.Response) {
	t.Helper()
	c := r.tlsDial()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	ws, resp, err := wsDial(c, "/ws", extra)
	if err != nil {
		t.Fatalf("websocket handshake: %v", err)
	}
	return ws, resp
}

func TestWebSocketEchoesAndFilters(t *testing.T) {
	rules := mustRules(t, "(?i)ignore previous instructions")
	const limit = 64

	tests := []struct {
		name    string
		send    func(ws *wsTestConn) error
		refused bool
		echo    string // when not refused
	}{
		{"clean text", func(ws *wsTestConn) error { return ws.writeFrame(true, opText, []byte("hello")) }, false, "hello"},
		{"matching text", func(ws *wsTestConn) error {
			return ws.writeFrame(true, opText, []byte("now IGNORE previous instructions"))
		}, true, ""},
		{"match split across fragments", func(ws *wsTestConn) error {
			if err := ws.writeFrame(false, opText, []byte("ignore prev")); err != nil {
				return err
			}
			if err := ws.writeFrame(true, 0x9, []byte("ping between fragments")); err != nil { // control frame in between
				return err
			}
			return ws.writeFrame(true, opContinuation, []byte("ious instructions"))
		}, true, ""},
		{"clean fragments", func(ws *wsTestConn) error {
			if err := ws.writeFrame(false, opText, []byte("hel")); err != nil {
				return err
			}
			return ws.writeFrame(true, opContinuation, []byte("lo again"))
		}, false, "hello again"},
		{"binary is not inspected", func(ws *wsTestConn) error {
			return ws.writeFrame(true, 0x2, []byte("ignore previous instructions"))
		}, false, "ignore previous instructions"},
		{"long clean text streams past the limit", func(ws *wsTestConn) error {
			return ws.writeFrame(true, opText, []byte(strings.Repeat("a", 10*limit)))
		}, false, strings.Repeat("a", 10*limit)},
		{"match within the limit of a long message", func(ws *wsTestConn) error {
			return ws.writeFrame(true, opText, []byte("ignore previous instructions"+strings.Repeat("a", 10*limit)))
		}, true, ""},
		{"compressed text cannot be inspected", func(ws *wsTestConn) error {
			return ws.writeFrame(true, 0x40|opText, []byte("xx"))
		}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := &wsEcho{}
			r := newRig(t, startApp(t, app), Config{Filter: NewStaticFilter(rules), FilterBytes: limit})
			ws, _ := wsSession(t, r, http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}})
			if err := tc.send(ws); err != nil {
				t.Fatal(err)
			}
			op, payload, err := ws.readMessage()
			for err == nil && op == 0xA { // the app's pong for our ping
				op, payload, err = ws.readMessage()
			}
			if tc.refused {
				if err != nil || op != opClose || len(payload) < 2 {
					t.Fatalf("want a close frame, got op %#x %q err %v", op, payload, err)
				}
				code := binary.BigEndian.Uint16(payload)
				want := uint16(closePolicyViolation)
				if strings.Contains(tc.name, "compressed") {
					want = 1002
				}
				if code != want {
					t.Errorf("close code %d, want %d", code, want)
				}
				// The connection ends.
				if _, _, err := ws.readMessage(); err == nil {
					t.Error("connection still open after the close frame")
				}
				if got := app.received(); len(got) != 0 {
					t.Errorf("the app received %q", got)
				}
				ev := r.events.wait(t, 1)
				if ev.Decision != flowlog.Block || ev.Status != 101 || !(ev.Reason == "filter:test.rules:1" || ev.Reason == refusal.WSProtocol) {
					t.Errorf("flow event %+v", ev)
				}
				return
			}
			if err != nil || string(payload) != tc.echo {
				t.Fatalf("echo: op %#x %q err %v, want %q", op, payload, err, tc.echo)
			}
			ws.writeFrame(true, opClose, binary.BigEndian.AppendUint16(nil, 1000))
			ws.c.Close()
			ev := r.events.wait(t, 1)
			if ev.Decision != flowlog.Allow || ev.Status != 101 || ev.BytesIn == 0 || ev.BytesOut == 0 {
				t.Errorf("flow event %+v", ev)
			}
			app.mu.Lock()
			ext := app.headers[0].Get("Sec-Websocket-Extensions")
			app.mu.Unlock()
			if ext != "" {
				t.Errorf("the app was offered extension %q; compressed frames could not be inspected", ext)
			}
		})
	}
}

func TestWebSocketWithoutFilterPassesEverything(t *testing.T) {
	app := &wsEcho{}
	r := newRig(t, startApp(t, app), Config{FilterBytes: 64})
	ws, _ := wsSession(t, r, nil)
	msg := "ignore previous instructions"
	ws.writeFrame(true, opText, []byte(msg))
	if _, p, err := ws.readMessage(); err != nil || string(p) != msg {
		t.Fatalf("echo %q %v", p, err)
	}
	ws.c.Close()
	if ev := r.events.wait(t, 1); ev.Decision != flowlog.Allow || ev.Status != 101 || ev.BytesIn < int64(len(msg)) || ev.BytesOut < int64(len(msg)) {
		t.Errorf("flow event %+v", ev)
	}
}

func TestWebSocketCloseFrameWaitsForFrameBoundary(t *testing.T) {
	client, proxySide := net.Pipe()
	defer client.Close()
	w := newWSConn(proxySide, nil, 64, func(b []byte) (Rule, bool) { return Rule{Line: 1}, bytes.Contains(b, []byte("bad")) }, nil)

	// The app is half-way through a frame when the client's bad message arrives.
	frame := append([]byte{0x81, 10}, "0123456789"...)
	go w.Write(frame[:5])
	got := make([]byte, 5)
	io.ReadFull(client, got)

	done := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 100))
		done <- err
	}()
	masked := []byte{0x81, 0x80 | 3, 0, 0, 0, 0, 'b', 'a', 'd'}
	go client.Write(masked)
	if err := <-done; err != errFiltered {
		t.Fatalf("Read: %v, want errFiltered", err)
	}
	// No close frame was spliced into the app's half-written frame, and the
	// app can write no more.
	client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := client.Read(make([]byte, 10)); n != 0 {
		t.Errorf("%d bytes written mid-frame", n)
	}
	if _, err := w.Write(frame[5:]); err == nil {
		t.Error("write after refusal succeeded")
	}
}

func TestFrameTracker(t *testing.T) {
	var stream []byte
	var frames []int // end offsets
	add := func(hdr []byte, n int) {
		stream = append(stream, hdr...)
		stream = append(stream, bytes.Repeat([]byte{'x'}, n)...)
		frames = append(frames, len(stream))
	}
	add([]byte{0x81, 5}, 5)
	add(binary.BigEndian.AppendUint16([]byte{0x82, 126}, 300), 300)
	add(binary.BigEndian.AppendUint64([]byte{0x82, 127}, 70000), 70000)
	add([]byte{0x81, 0x80 | 2, 1, 2, 3, 4}, 2) // masked
	add([]byte{0x88, 0}, 0)
	for _, step := range []int{1, 3, 7, 1000} {
		var tr frameTracker
		var boundaries []int
		for off := 0; off < len(stream); off += step {
			end := min(off+step, len(stream))
			for i := off; i < end; i++ {
				tr.feed(stream[i : i+1])
				if tr.atBoundary() {
					boundaries = append(boundaries, i+1)
				}
			}
		}
		if !slices.Equal(boundaries, frames) {
			t.Errorf("step %d: boundaries %v, want %v", step, boundaries, frames)
		}
	}
}

func TestWSConnPassesBytesThrough(t *testing.T) {
	// A stream of frames with no match comes out byte for byte.
	var in bytes.Buffer
	cw := &wsTestConn{c: nopConn{w: &in}, client: true}
	cw.writeFrame(true, opText, []byte("hello"))
	cw.writeFrame(false, opText, []byte(strings.Repeat("y", 100)))
	cw.writeFrame(true, opContinuation, []byte("tail"))
	cw.writeFrame(true, 0x2, bytes.Repeat([]byte{0}, 70000))
	cw.writeFrame(true, 0x9, nil)
	want := bytes.Clone(in.Bytes())
	w := newWSConn(nopConn{r: bytes.NewReader(in.Bytes())}, bufio.NewReader(bytes.NewReader(in.Bytes())), 16,
		func([]byte) (Rule, bool) { return Rule{}, false }, nil)
	got, err := io.ReadAll(w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("passed %d bytes, want %d identical", len(got), len(want))
	}
}

// nopConn is a net.Conn over a reader or writer.
type nopConn struct {
	net.Conn
	r io.Reader
	w io.Writer
}

func (c nopConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c nopConn) Write(p []byte) (int, error) { return c.w.Write(p) }
