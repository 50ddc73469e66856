package dashboard

import (
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/panopticon-dev/panopticon/internal/metrics"
	"github.com/panopticon-dev/panopticon/internal/policy"
)

//go:embed ui
var uiFiles embed.FS

// Handler returns the dashboard's routes, every one behind the token:
//
//	GET  /                     the UI (and /static/…)
//	GET  /api/events           server-sent events: "flow", newest last
//	GET  /api/flows            the ring, newest first (JSON)
//	GET  /api/state            mode, hosts, blocked, would-block, allowlist with hit counts
//	POST /api/allow            {"patterns": ["example.com", …]} → runtime allowlist
//	POST /api/dismiss          {"host": …, "reason": …} → drop a blocked group
//	POST /api/runtime/remove   {"pattern": …}
//	GET  /metrics              Prometheus text format
func (s *Server) Handler() http.Handler {
	static, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(static)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/flows", s.flows)
	mux.HandleFunc("GET /api/state", s.state)
	mux.HandleFunc("/api/allow", s.mutation(s.allow))
	mux.HandleFunc("/api/dismiss", s.mutation(s.dismiss))
	mux.HandleFunc("/api/runtime/remove", s.mutation(s.removeRuntime))
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	return s.requireToken(mux)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := s.ring.since(0)
	s.mu.Unlock()
	slices.Reverse(out)
	writeJSON(w, http.StatusOK, out)
}

// Entry is one allowlist entry as the dashboard shows it.
type Entry struct {
	Pattern string `json:"pattern"`
	Source  string `json:"source"`
	Line    int    `json:"line"`
	Hits    uint64 `json:"hits"`
}

// State is GET /api/state.
type State struct {
	Mode       string       `json:"mode"`
	FlowBuffer int          `json:"flow_buffer"`
	Flows      uint64       `json:"flows"` // seen since start-up, history included
	Hosts      []HostStat   `json:"hosts"`
	Blocked    []BlockGroup `json:"blocked"`
	WouldBlock []BlockGroup `json:"would_block"`
	Allowlist  struct {
		File     []Entry `json:"file"`
		Runtime  []Entry `json:"runtime"`
		Editable bool    `json:"editable"`
	} `json:"allowlist"`
	Time time.Time `json:"time"`
	// Selftest is the last self-test verdict ({time, ok, probes}), if any.
	Selftest json.RawMessage `json:"selftest,omitempty"`
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.snapshot())
}

func (s *Server) snapshot() State {
	var st State
	st.Mode, st.FlowBuffer, st.Time = s.opts.Mode, s.opts.BufferSize, time.Now().UTC()
	st.Allowlist.Editable = s.opts.Runtime != nil
	if s.opts.SelftestFile != "" {
		if b, err := os.ReadFile(s.opts.SelftestFile); err == nil && len(b) < 64<<10 && json.Valid(b) {
			st.Selftest = b
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Flows = s.lastID
	st.Hosts = s.sum.topHosts()
	st.Blocked = groups(s.sum.blocked)
	st.WouldBlock = groups(s.sum.would)
	entries := func(list *policy.Allowlist) []Entry {
		out := []Entry{}
		for _, e := range list.Entries() {
			out = append(out, Entry{Pattern: e.String(), Source: e.Source, Line: e.Line, Hits: s.sum.hits[e.String()]})
		}
		return out
	}
	st.Allowlist.File = entries(s.opts.Policy.Current())
	st.Allowlist.Runtime = entries(s.opts.Policy.Runtime())
	return st
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("body: want a JSON object: " + err.Error())
	}
	return nil
}

var errReadOnly = errors.New("the runtime allowlist is disabled")

func (s *Server) allow(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Patterns []string `json:"patterns"`
	}
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if len(req.Patterns) == 0 || len(req.Patterns) > 1000 {
		writeError(w, http.StatusBadRequest, errors.New("patterns: give 1 to 1000 host name patterns"))
		return
	}
	if s.opts.Runtime == nil {
		writeError(w, http.StatusConflict, errReadOnly)
		return
	}
	added, err := s.opts.Runtime.Add(req.Patterns...)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.mu.Lock()
	s.sum.forget(s.opts.Policy)
	s.mu.Unlock()
	if len(added) > 0 {
		s.opts.Logger.Info("dashboard: runtime allowlist entries added", "patterns", added, "file", s.opts.Runtime.Path())
	}
	writeJSON(w, http.StatusOK, map[string]any{"added": nonNil(added), "runtime": s.opts.Runtime.Patterns()})
}

func (s *Server) dismiss(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Host   string `json:"host"`
		Reason string `json:"reason"`
		Audit  bool   `json:"audit"` // a would-block group
	}
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.mu.Lock()
	m := s.sum.blocked
	if req.Audit {
		m = s.sum.would
	}
	k := groupKey{req.Host, req.Reason}
	_, found := m[k]
	delete(m, k)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]bool{"dismissed": found})
}

func (s *Server) removeRuntime(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Pattern string `json:"pattern"`
	}
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if s.opts.Runtime == nil {
		writeError(w, http.StatusConflict, errReadOnly)
		return
	}
	removed, err := s.opts.Runtime.Remove(req.Pattern)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !removed {
		writeError(w, http.StatusNotFound, errors.New("no such runtime allowlist entry"))
		return
	}
	s.opts.Logger.Info("dashboard: runtime allowlist entry removed", "pattern", req.Pattern, "file", s.opts.Runtime.Path())
	writeJSON(w, http.StatusOK, map[string]any{"removed": req.Pattern, "runtime": s.opts.Runtime.Patterns()})
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", metrics.ContentType)
	s.metrics.WriteTo(w, s.opts.Sources)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
