package dashboard

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Limits of the event stream.
const (
	maxStreams      = 32
	streamBuffer    = 512
	keepalivePeriod = 15 * time.Second
)

type client struct{ ch chan Flow }

// events streams flows as server-sent events ("event: flow", id = Flow.ID).
// A new stream starts with the ring's contents; a resumed one (Last-Event-ID)
// with what it missed that the ring still holds.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		since, _ = strconv.ParseUint(v, 10, 64)
	}
	c := &client{ch: make(chan Flow, streamBuffer)}
	s.mu.Lock()
	if len(s.clients) >= maxStreams {
		s.mu.Unlock()
		http.Error(w, "503 too many dashboard streams", http.StatusServiceUnavailable)
		return
	}
	if since > s.lastID {
		since = 0 // a stream from before a restart
	}
	backlog := s.ring.since(since)
	s.clients[c] = struct{}{}
	s.mu.Unlock()
	defer s.dropClient(c)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	for _, f := range backlog {
		if writeFlow(w, f) != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(keepalivePeriod)
	defer tick.Stop()
	for {
		var batch []Flow
		select {
		case <-r.Context().Done():
			return
		case f, ok := <-c.ch:
			if !ok {
				return
			}
			batch = drain(c.ch, append(batch, f))
		case <-tick.C:
		}
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if len(batch) == 0 {
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
		}
		for _, f := range batch {
			if writeFlow(w, f) != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// drain appends what is waiting in ch without blocking (a closed channel is
// noticed by the next receive).
func drain(ch chan Flow, batch []Flow) []Flow {
	for len(batch) < streamBuffer {
		select {
		case f, ok := <-ch:
			if !ok {
				return batch
			}
			batch = append(batch, f)
		default:
			return batch
		}
	}
	return batch
}

func writeFlow(w http.ResponseWriter, f Flow) error {
	data, err := json.Marshal(f)
	if err != nil {
		return nil // skip an event that does not encode
	}
	_, err = w.Write([]byte("id: " + strconv.FormatUint(f.ID, 10) + "\nevent: flow\ndata: " + string(data) + "\n\n"))
	return err
}

func (s *Server) dropClient(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[c]; ok {
		delete(s.clients, c)
		close(c.ch)
	}
}

// closeStreams ends every event stream (at shutdown).
func (s *Server) closeStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		delete(s.clients, c)
		close(c.ch)
	}
}
