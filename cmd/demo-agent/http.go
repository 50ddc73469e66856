package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// maxEchoBody bounds what /echo reads and returns.
const maxEchoBody = 1 << 20

// echoReply is what /echo answers: the request as the app saw it.
type echoReply struct {
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Query      string              `json:"query,omitempty"`
	Headers    map[string][]string `json:"headers"`
	Body       string              `json:"body"`
	RemoteAddr string              `json:"remote_addr"`
}

func httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "hello from the panopticon demo agent")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxEchoBody+1))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxEchoBody {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(echoReply{
			Method:     r.Method,
			Host:       r.Host,
			Path:       r.URL.Path,
			Query:      r.URL.RawQuery,
			Headers:    r.Header,
			Body:       string(body),
			RemoteAddr: r.RemoteAddr,
		})
	})
	return mux
}
