package egress

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// copyBufs are the buffers response bodies are copied with: without it,
// io.Copy would allocate a fresh 32 KiB buffer for every response.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pipelineAbove is the body length from which reading and writing overlap:
// smaller answers are copied in line (a goroutine would cost more than it
// saves).
const pipelineAbove = 64 << 10

// pipelineDepth is how many buffers a pipelined copy has in flight.
const pipelineDepth = 4

// ReadFrom copies a response body to the app through writePieces, so
// counting and flushing stay the same. goproxy's io.Copy lands here.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.flow != nil && (r.flow.respLength < 0 || r.flow.respLength > pipelineAbove) {
		return r.pipelinedCopy(src)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := r.writePieces(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// piece is one read of a pipelined copy.
type piece struct {
	buf *[]byte
	n   int
	err error
}

// pipelinedCopy reads src in its own goroutine while this one writes to the
// app, so that decrypting and scanning what comes in overlaps encrypting
// and sending what goes out (on a large body the two halves otherwise take
// turns on one core). What is ready when a write starts goes in one socket
// write. It returns only once the reader has stopped: src is never read
// after its caller may close it.
func (r *recorder) pipelinedCopy(src io.Reader) (int64, error) {
	free := make(chan *[]byte, pipelineDepth)
	full := make(chan piece, pipelineDepth) // never blocks: it holds every buffer
	for range pipelineDepth {
		free <- copyBufs.Get().(*[]byte)
	}
	var stop atomic.Bool
	go func() {
		defer close(full)
		for bp := range free {
			if stop.Load() {
				free <- bp
				return
			}
			n, err := readRecovering(src, *bp)
			full <- piece{bp, n, err}
			if err != nil {
				return
			}
		}
	}()
	var (
		total  int64
		result error
		batch  [pipelineDepth][]byte
		held   [pipelineDepth]*[]byte
	)
	for result == nil {
		p, ok := <-full
		if !ok {
			break
		}
		// Take what else is ready, up to the first error.
		k, readErr := 1, p.err
		batch[0], held[0] = (*p.buf)[:p.n], p.buf
	more:
		for readErr == nil && k < pipelineDepth {
			select {
			case q := <-full:
				batch[k], held[k], readErr = (*q.buf)[:q.n], q.buf, q.err
				k++
			default:
				break more
			}
		}
		w, werr := r.writePieces(batch[:k]...)
		total += int64(w)
		for i := range k {
			free <- held[i]
		}
		switch {
		case werr != nil:
			result = werr
		case readErr != nil:
			result = readErr
		}
	}
	// Stop the reader: it takes no more buffers, and a read blocked on the
	// upstream is cut by cancelling the upstream request.
	stop.Store(true)
	if result != io.EOF && r.cancelUpstream != nil {
		r.cancelUpstream()
	}
	for p := range full {
		free <- p.buf
	}
	for range pipelineDepth {
		copyBufs.Put(<-free)
	}
	if result == io.EOF {
		result = nil
	}
	return total, result
}

// readRecovering is src.Read, with a panic (in a decoder, say) turned into an
// error: off the handler's goroutine net/http cannot recover it, and it
// would end the process instead of one answer.
func readRecovering(src io.Reader, b []byte) (n int, err error) {
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, fmt.Errorf("reading the upstream body: panic: %v", v)
		}
	}()
	return src.Read(b)
}
