package dashboard

import "github.com/panopticon-dev/panopticon/internal/flowlog"

// Flow is a flow event as the dashboard serves it: with a sequence number,
// so the browser can resume a stream (Last-Event-ID) and tell duplicates.
type Flow struct {
	ID uint64 `json:"id"`
	flowlog.Event
	// Headers as the agent sent them and as it received them (placeholders
	// only, real values redacted); kept in memory, never in the log file.
	RequestHeaders  map[string][]string `json:"request_headers,omitempty"`
	ResponseHeaders map[string][]string `json:"response_headers,omitempty"`
}

// ring keeps the newest flows, at most cap(buf). Not safe for concurrent use.
type ring struct {
	buf  []Flow
	next int // where the next flow goes
	full bool
}

func newRing(size int) *ring {
	return &ring{buf: make([]Flow, size)}
}

func (r *ring) push(f Flow) {
	r.buf[r.next] = f
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

func (r *ring) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// since returns the flows with ID > id, oldest first.
func (r *ring) since(id uint64) []Flow {
	n := r.len()
	out := make([]Flow, 0, n)
	start := 0
	if r.full {
		start = r.next
	}
	for i := range n {
		f := r.buf[(start+i)%len(r.buf)]
		if f.ID > id {
			out = append(out, f)
		}
	}
	return out
}
