package egress

import "sync"

// maxCorked bounds what a corked connection holds back: a little more than
// one copy buffer's worth of TLS records and chunk framing.
const maxCorked = 64 << 10

// corkedBufs are the buffers corked writes gather in, only while corked.
var corkedBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxCorked); return &b }}

// cork gathers what is written to a client connection between cork and
// uncork into one write. An HTTP/1 chunked answer otherwise costs three
// socket writes (and three TLS records) per piece of body: the chunk header
// with the start of the data, the rest of the data, and the CRLF that the
// flush pushes out on its own.
type cork struct {
	mu     sync.Mutex
	on     bool
	buf    *[]byte
	err    error // sticky: a failed write fails every later one
	direct func([]byte) (int, error)
}

// write is the connection's Write while cork is in the path.
func (k *cork) write(b []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return 0, k.err
	}
	if k.on {
		if k.buf == nil {
			k.buf = corkedBufs.Get().(*[]byte)
		}
		if len(*k.buf)+len(b) <= maxCorked {
			*k.buf = append(*k.buf, b...)
			return len(b), nil
		}
		if err := k.flushLocked(); err != nil {
			return 0, err
		}
	}
	n, err := k.direct(b)
	if err != nil {
		k.err = err
	}
	return n, err
}

// set corks (true) or uncorks (false) the connection; uncorking writes what
// was gathered.
func (k *cork) set(on bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.on = on
	if on {
		return k.err
	}
	err := k.flushLocked()
	if k.buf != nil {
		*k.buf = (*k.buf)[:0]
		corkedBufs.Put(k.buf)
		k.buf = nil
	}
	return err
}

func (k *cork) flushLocked() error {
	if k.err != nil {
		return k.err
	}
	if k.buf == nil || len(*k.buf) == 0 {
		return nil
	}
	_, err := k.direct(*k.buf)
	*k.buf = (*k.buf)[:0]
	if err != nil {
		k.err = err
	}
	return err
}
