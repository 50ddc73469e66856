package secrets

import (
	"fmt"
	"io"
	"unsafe"
)

// chunkSize is how much one read from the source asks for.
const chunkSize = 32 << 10

// maxZeroReads bounds how often a source may return (0, nil) in a row.
const maxZeroReads = 100

// stepFunc transforms win[start:limit] (and possibly a match crossing limit)
// and appends the result to dst. Every match that begins before limit lies
// entirely inside win, because the stream holds back enough lookahead. It
// returns the index up to which win is consumed. win[:start] is history,
// already consumed, kept for scans that look back (the leak guard).
type stepFunc func(dst, win []byte, start, limit int) ([]byte, int, error)

// stream runs a stepFunc over a reader in bounded memory: the window holds at
// most keep bytes of history, hold bytes of lookahead and one chunk.
type stream struct {
	src  io.Reader
	step stepFunc
	hold int // longest match - 1: bytes that may not be decided yet
	keep int // history retained before start

	win    []byte
	start  int
	eof    bool
	srcErr error
	err    error
	out    []byte
	zero   int
	zeroOK bool // the source may return (0, nil) at will (WebSocket control frames)
	// tail, when set, says how much of the undecided end of the window
	// (win[start:], its last hold bytes looked at) must wait for more
	// input: at most hold, often nothing. Without it all hold bytes wait,
	// and a streamed event shorter than hold would sit until the next.
	tail func(undecided []byte) int
}

func newStream(src io.Reader, step stepFunc, hold, keep int) *stream {
	return &stream{src: src, step: step, hold: max(hold, 0), keep: max(keep, 0)}
}

// next reads once from the source and transforms what can be decided. It
// returns the output (valid until the next call) and io.EOF once everything is
// out. On a violation it returns no output at all, so no byte of the offending
// text is ever emitted.
func (s *stream) next() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.eof && s.start >= len(s.win) {
		s.err = io.EOF
		if s.srcErr != nil {
			s.err = s.srcErr
		}
		return nil, s.err
	}
	// Drop what is neither undecided nor needed as history.
	if from := min(s.start, max(0, len(s.win)-s.keep)); from > 0 {
		n := copy(s.win, s.win[from:])
		s.win = s.win[:n]
		s.start -= from
	}
	if !s.eof {
		if cap(s.win)-len(s.win) < chunkSize {
			w := make([]byte, len(s.win), len(s.win)+chunkSize+s.hold+s.keep)
			copy(w, s.win)
			s.win = w
		}
		n, err := s.src.Read(s.win[len(s.win) : len(s.win)+chunkSize])
		s.win = s.win[:len(s.win)+n]
		switch {
		case err == io.EOF:
			s.eof = true
		case err != nil:
			s.eof, s.srcErr = true, err
		case n == 0 && !s.zeroOK:
			if s.zero++; s.zero >= maxZeroReads {
				s.eof, s.srcErr = true, io.ErrNoProgress
			}
		default:
			s.zero = 0
		}
	}
	limit := len(s.win)
	switch {
	case s.srcErr != nil:
		limit -= s.hold // a broken source never flushes its undecided tail
	case !s.eof && s.tail != nil:
		limit -= s.tail(s.win[s.start:])
	case !s.eof:
		limit -= s.hold
	}
	out := s.out[:0]
	if limit > s.start {
		var err error
		out, s.start, err = s.step(out, s.win, s.start, limit)
		if err != nil {
			s.err = err
			return nil, err
		}
	}
	if len(out) > 0 && !aliases(out, s.win) {
		s.out = out // keep the output buffer; a step may also hand back part of win, never kept
	}
	if s.srcErr != nil {
		s.start = len(s.win)
	}
	return out, nil
}

// aliases reports whether a lies inside b's backing array.
func aliases(a, b []byte) bool {
	if cap(a) == 0 || cap(b) == 0 {
		return false
	}
	a0, b0 := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return a0 >= b0 && a0 < b0+uintptr(cap(b))
}

// streamReader adapts a stream to io.Reader.
type streamReader struct {
	s   *stream
	out []byte
	err error
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.out, r.err = r.s.next()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// The window holds real values: print nothing of it.

func (r *streamReader) String() string                { return "secrets.streamReader{…}" }
func (r *streamReader) GoString() string              { return r.String() }
func (r *streamReader) Format(f fmt.State, verb rune) { formatRedacted(f, verb, r.String()) }
func (s *stream) Format(f fmt.State, verb rune)       { formatRedacted(f, verb, "secrets.stream{…}") }
func (d *readCloser) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, "secrets.readCloser{…}")
}
func (p *pipeBody) Format(f fmt.State, verb rune) { formatRedacted(f, verb, "secrets.pipeBody{…}") }
func (w *wsReader) Format(f fmt.State, verb rune) { formatRedacted(f, verb, "secrets.wsReader{…}") }
