package egress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// failingWriter is a ResponseWriter whose writes fail after limit bytes.
type failingWriter struct {
	*httptest.ResponseRecorder
	limit int
}

func (f *failingWriter) Write(b []byte) (int, error) {
	if f.Body.Len()+len(b) > f.limit {
		return 0, errors.New("the app went away")
	}
	return f.ResponseRecorder.Write(b)
}

// blockingBody serves data, then blocks until its context is cancelled,
// as an upstream that stalls mid-body; it records reads after Close.
type blockingBody struct {
	data       *bytes.Reader
	ctx        context.Context
	closed     atomic.Bool
	readsAfter atomic.Int32
}

func (b *blockingBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		b.readsAfter.Add(1)
	}
	if b.data.Len() > 0 {
		return b.data.Read(p)
	}
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func (b *blockingBody) Close() error { b.closed.Store(true); return nil }

func TestPipelinedCopyDeliversTheWholeBodyInOrder(t *testing.T) {
	body := make([]byte, 3<<20+17)
	for i := range body {
		body[i] = byte(i * 7 / 5)
	}
	for name, length := range map[string]int64{"unknown length": -1, "large known length": int64(len(body))} {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			rec := &recorder{ResponseWriter: w, flow: &flow{respLength: length}}
			// Short, uneven reads, as TLS records arrive.
			n, err := rec.ReadFrom(iotest.HalfReader(bytes.NewReader(body)))
			if err != nil || n != int64(len(body)) || rec.written != n {
				t.Fatalf("ReadFrom = %d, %v (written %d); want %d, nil", n, err, rec.written, len(body))
			}
			if !bytes.Equal(w.Body.Bytes(), body) {
				t.Fatal("the body arrived changed or out of order")
			}
		})
	}
}

func TestPipelinedCopyPassesTheReadError(t *testing.T) {
	reset := errors.New("connection reset by peer")
	src := io.MultiReader(bytes.NewReader(make([]byte, 200<<10)), iotest.ErrReader(reset))
	w := httptest.NewRecorder()
	rec := &recorder{ResponseWriter: w, flow: &flow{respLength: -1}}
	n, err := rec.ReadFrom(src)
	if !errors.Is(err, reset) || n != 200<<10 {
		t.Fatalf("ReadFrom = %d, %v; want everything before the reset, then the reset", n, err)
	}
}

func TestAFailedWriteStopsTheUpstreamReadBeforeReturning(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &blockingBody{data: bytes.NewReader(make([]byte, 1<<20)), ctx: ctx}
	w := &failingWriter{ResponseRecorder: httptest.NewRecorder(), limit: 100 << 10}
	rec := &recorder{ResponseWriter: w, flow: &flow{respLength: -1}, cancelUpstream: cancel}
	done := make(chan error, 1)
	go func() {
		_, err := rec.ReadFrom(src)
		src.Close() // what goproxy does next
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ReadFrom reported success after the app went away")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom hangs on a stalled upstream after the write failed")
	}
	if ctx.Err() == nil {
		t.Error("the upstream request was not cancelled")
	}
	time.Sleep(50 * time.Millisecond)
	if n := src.readsAfter.Load(); n > 0 {
		t.Errorf("the body was read %d times after it was closed", n)
	}
}

func TestCorkSendsWhatAWriteProducesInOneSocketWrite(t *testing.T) {
	var writes [][]byte
	k := &cork{direct: func(b []byte) (int, error) { writes = append(writes, bytes.Clone(b)); return len(b), nil }}
	if err := k.set(true); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"4000\r\n", "data", "\r\n"} {
		if _, err := k.write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if len(writes) != 0 {
		t.Fatalf("corked writes went out early: %q", writes)
	}
	if err := k.set(false); err != nil {
		t.Fatal(err)
	}
	if len(writes) != 1 || string(writes[0]) != "4000\r\ndata\r\n" {
		t.Fatalf("socket writes %q; want one holding everything, in order", writes)
	}
	if _, err := k.write([]byte("later")); err != nil || len(writes) != 2 {
		t.Fatalf("an uncorked write did not go straight out: %q, %v", writes, err)
	}
	t.Run("more than it holds goes out in order", func(t *testing.T) {
		writes = nil
		_ = k.set(true)
		big := bytes.Repeat([]byte("x"), maxCorked)
		_, _ = k.write([]byte("head"))
		_, _ = k.write(big)
		_ = k.set(false)
		if got := bytes.Join(writes, nil); !bytes.Equal(got, append([]byte("head"), big...)) {
			t.Fatalf("got %d bytes in %d writes, out of order or lost", len(got), len(writes))
		}
	})
	t.Run("a failed socket write fails every later one", func(t *testing.T) {
		bad := &cork{direct: func(b []byte) (int, error) { return 0, errors.New("broken pipe") }}
		_ = bad.set(true)
		_, _ = bad.write([]byte("x"))
		if err := bad.set(false); err == nil {
			t.Fatal("uncorking hid the failed write")
		}
		if _, err := bad.write([]byte("y")); err == nil {
			t.Fatal("a write after the failure succeeded")
		}
	})
}

var _ http.ResponseWriter = (*failingWriter)(nil)

type panickingReader struct{ n int }

func (p *panickingReader) Read(b []byte) (int, error) {
	if p.n++; p.n > 2 {
		panic("a decoder bug")
	}
	return copy(b, "some bytes"), nil
}

func TestAPanicReadingABodyCostsTheAnswerNotTheProcess(t *testing.T) {
	w := httptest.NewRecorder()
	rec := &recorder{ResponseWriter: w, flow: &flow{respLength: -1}}
	_, err := rec.ReadFrom(&panickingReader{}) // off the handler goroutine: unrecovered, this would end the test binary
	if err == nil {
		t.Fatal("a body whose read panicked was reported whole")
	}
}
