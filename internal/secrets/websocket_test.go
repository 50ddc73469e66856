package secrets

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type wsFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// encodeFrames builds frames, masked when masked is set.
func encodeFrames(masked bool, frames ...wsFrame) []byte {
	var out []byte
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, f := range frames {
		b0 := f.op
		if f.fin {
			b0 |= 0x80
		}
		var m byte
		if masked {
			m = 0x80
		}
		n := len(f.payload)
		switch {
		case n <= 125:
			out = append(out, b0, m|byte(n))
		case n <= 0xffff:
			out = append(out, b0, m|126)
			out = binary.BigEndian.AppendUint16(out, uint16(n))
		default:
			out = append(out, b0, m|127)
			out = binary.BigEndian.AppendUint64(out, uint64(n))
		}
		p := bytes.Clone(f.payload)
		if masked {
			out = append(out, key[:]...)
			maskBytes(p, key, 0)
		}
		out = append(out, p...)
	}
	return out
}

// decodeFrames parses frames and checks masking.
func decodeFrames(t *testing.T, masked bool, b []byte) []wsFrame {
	t.Helper()
	w := &wsReader{src: bufioReader(b), masked: masked}
	var frames []wsFrame
	for {
		h, err := w.readHeader()
		if err == io.EOF {
			return frames
		}
		if err != nil {
			t.Fatalf("output is not valid frames: %v", err)
		}
		p := make([]byte, h.length)
		if _, err := io.ReadFull(w.src, p); err != nil {
			t.Fatal(err)
		}
		if h.masked {
			maskBytes(p, h.key, 0)
		}
		frames = append(frames, wsFrame{h.fin, h.op, p})
	}
}

// messages joins data frames into messages and lists control opcodes.
func messages(t *testing.T, frames []wsFrame) (msgs []string, ctrl []byte) {
	t.Helper()
	var cur []byte
	in := false
	for _, f := range frames {
		if f.op >= 8 {
			ctrl = append(ctrl, f.op)
			continue
		}
		if (f.op == 0) != in {
			t.Fatalf("bad fragmentation: opcode %d, in message %v", f.op, in)
		}
		cur = append(cur, f.payload...)
		in = !f.fin
		if f.fin {
			msgs = append(msgs, string(cur))
			cur = nil
		}
	}
	return msgs, ctrl
}

func TestRewriterWebSocket(t *testing.T) {
	tab := testTable(t)
	big := strings.Repeat("a", 70000)
	mid := strings.Repeat("m", 300)
	tests := []struct {
		name   string
		frames []wsFrame
		want   []string
		ctrl   []byte
	}{
		{name: "a text frame is swapped and re-framed with its new length",
			frames: []wsFrame{{true, wsText, []byte(`{"k":"` + openaiPH + `"}`)}},
			want:   []string{`{"k":"` + openaiValue + `"}`}},
		{name: "a 126 extended-length frame is swapped",
			frames: []wsFrame{{true, wsBinary, []byte(mid + openaiPH)}},
			want:   []string{mid + openaiValue}},
		{name: "a 127 extended-length frame is swapped",
			frames: []wsFrame{{true, wsText, []byte(big + openaiPH + big)}},
			want:   []string{big + openaiValue + big}},
		{name: "a fragmented message is swapped in each fragment",
			frames: []wsFrame{{false, wsText, []byte("a " + openaiPH)}, {false, 0, []byte(" b " + openaiPH)}, {true, 0, []byte(" c")}},
			want:   []string{"a " + openaiValue + " b " + openaiValue + " c"}},
		{name: "a placeholder split across two frames is found",
			frames: []wsFrame{{false, wsText, []byte("x PLACEHOLDER_SECRET_VAL")}, {true, 0, []byte("UE_OPENAI y")}},
			want:   []string{"x " + openaiValue + " y"}},
		{name: "control frames between fragments pass through",
			frames: []wsFrame{{false, wsText, []byte("a")}, {true, 0x9, []byte("ping")}, {true, 0, []byte(openaiPH)}, {true, 0xA, nil}},
			want:   []string{"a" + openaiValue}, ctrl: []byte{0x9, 0xA}},
		{name: "several messages keep their order",
			frames: []wsFrame{{true, wsText, []byte("one")}, {true, wsBinary, []byte(openaiPH)}, {true, 0x8, []byte{3, 232}}},
			want:   []string{"one", openaiValue}, ctrl: []byte{0x8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := encodeFrames(true, tt.frames...)
			for _, src := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
				out, err := io.ReadAll(tab.Rewriter("api.openai.test", true).WebSocket(src))
				if err != nil {
					t.Fatal(err)
				}
				msgs, ctrl := messages(t, decodeFrames(t, true, out))
				if strings.Join(msgs, "|") != strings.Join(tt.want, "|") || !bytes.Equal(ctrl, tt.ctrl) {
					t.Fatalf("messages %.80q ctrl %v, want %.80q ctrl %v", msgs, ctrl, tt.want, tt.ctrl)
				}
			}
		})
	}
}

func TestRewriterWebSocketRefuses(t *testing.T) {
	tab := testTable(t)
	tests := []struct {
		name   string
		host   string
		masked bool
		frames []wsFrame
		raw    []byte
		kind   error
	}{
		{name: "a placeholder for another host", host: "evil.test", masked: true,
			frames: []wsFrame{{true, wsText, []byte(openaiPH)}}, kind: ErrUnauthorized},
		{name: "a placeholder split across frames for another host", host: "evil.test", masked: true,
			frames: []wsFrame{{false, wsText, []byte("PLACEHOLDER_SECRET_VALUE_OP")}, {true, 0, []byte("ENAI")}}, kind: ErrUnauthorized},
		{name: "a real value in a ping", host: "api.openai.test", masked: true,
			frames: []wsFrame{{true, 0x9, []byte(openaiValue)}}, kind: ErrLeak},
		{name: "unmasked client frames", host: "api.openai.test", masked: false,
			frames: []wsFrame{{true, wsText, []byte("x")}}, kind: ErrWebSocketProtocol},
		{name: "compressed frames (RSV1)", host: "api.openai.test",
			raw: []byte{0xC1, 0x80, 0, 0, 0, 0}, kind: ErrWebSocketProtocol},
		{name: "a continuation without a message", host: "api.openai.test", masked: true,
			frames: []wsFrame{{true, 0, []byte("x")}}, kind: ErrWebSocketProtocol},
		{name: "a truncated frame", host: "api.openai.test",
			raw: []byte{0x81, 0x85, 1, 2, 3, 4, 'a'}, kind: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is an error", func(t *testing.T) {
			in := tt.raw
			if in == nil {
				in = encodeFrames(tt.masked, tt.frames...)
			}
			out, err := io.ReadAll(tab.Rewriter(tt.host, true).WebSocket(bytes.NewReader(in)))
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			assertNoValue(t, "output", out)
		})
	}
}

func TestRedactorWebSocket(t *testing.T) {
	tab := testTable(t)
	in := encodeFrames(false,
		wsFrame{false, wsText, []byte("echo sk-test-FA")}, wsFrame{true, 0, []byte("KE-0000 done")},
		wsFrame{true, 0x8, append([]byte{3, 232}, openaiValue...)})
	out, err := io.ReadAll(tab.Redactor([]string{openaiPH}).WebSocket(iotest.OneByteReader(bytes.NewReader(in))))
	if err != nil {
		t.Fatal(err)
	}
	assertNoValue(t, "redacted websocket", out)
	msgs, ctrl := messages(t, decodeFrames(t, false, out))
	if len(msgs) != 1 || msgs[0] != "echo "+openaiPH+" done" || !bytes.Equal(ctrl, []byte{8}) {
		t.Fatalf("msgs %q ctrl %v", msgs, ctrl)
	}
}
