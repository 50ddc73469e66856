package inbound

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// hijackedConn wraps the client connection of an upgraded request: a
// WebSocket goes through the frame reader (which counts bytes, and checks
// text messages when inspectWS), and every session is tracked so shutdown
// can close it.
func (h *Handler) hijackedConn(rec *recorder, c net.Conn, brw *bufio.ReadWriter) net.Conn {
	var out net.Conn = c
	if isWebSocket(rec.r) {
		// Bytes the server had already buffered come first.
		var src io.Reader = c
		if n := brw.Reader.Buffered(); n > 0 {
			buf, _ := brw.Reader.Peek(n)
			src = io.MultiReader(bytes.NewReader(bytes.Clone(buf)), c)
		}
		st := rec.st
		limit := 0
		if h.inspectWS() {
			limit = h.p.cfg.FilterBytes
		}
		ws := newWSConn(c, bufio.NewReader(src), limit,
			func(text []byte) (Rule, bool) {
				// Read the rules in force now, so a reload applies to open sessions.
				return h.p.cfg.Filter.Rules().matchBytes(text)
			},
			func(rule Rule, protoErr error) {
				if protoErr != nil {
					st.block(0, refusal.WSProtocol)
					st.setDetail("error", protoErr.Error())
					return
				}
				st.block(0, rule.Reason())
				st.setDetail("matched", "websocket message")
				h.p.cfg.Logger.Warn("inbound websocket message refused by filter", "rule", rule.Reason(), "client", rec.r.RemoteAddr)
			})
		rec.ws = ws
		out = ws
	}
	h.mu.Lock()
	h.hijacked[out] = struct{}{}
	h.mu.Unlock()
	return &trackedConn{Conn: out, release: func() {
		h.mu.Lock()
		delete(h.hijacked, out)
		h.mu.Unlock()
	}}
}

// inspectWS reports whether WebSocket text messages are checked. It holds
// for a whole session, whose checks use the rules in force at each message,
// so a reload that adds rules applies to open sessions too.
func (h *Handler) inspectWS() bool { return h.p.cfg.Filter != nil && h.p.cfg.FilterBytes > 0 }

// closeHijacked closes every live WebSocket session (on shutdown).
func (h *Handler) closeHijacked() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.hijacked {
		c.Close()
	}
}

// trackedConn forgets itself on Close.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (t *trackedConn) Close() error {
	t.once.Do(t.release)
	return t.Conn.Close()
}

// CloseWrite passes the half-close through to the wrapped connection.
func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// upgradeType is the Upgrade header when Connection asks for an upgrade.
func upgradeType(hdr http.Header) string {
	if httpguts.HeaderValuesContainsToken(hdr["Connection"], "upgrade") {
		return hdr.Get("Upgrade")
	}
	return ""
}

func isWebSocket(r *http.Request) bool { return strings.EqualFold(upgradeType(r.Header), "websocket") }
