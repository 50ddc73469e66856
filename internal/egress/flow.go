package egress

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/secrets"
)

// flow is the one state of one request, from the verdict to the flow event:
// the handler, goproxy's hooks (through the request's context) and the
// recorder all read and write this value.
type flow struct {
	Host  string      // the verified destination name (the SNI for TLS), as logged
	Name  policy.Host // Host, parsed once at the door
	Port  int
	TLS   bool
	Event *flowlog.Event
	start time.Time

	verdict     verdict
	secrets     *secretState
	sent        atomic.Int64 // request body bytes read by the transport
	upstreamErr error        // no answer from the upstream, or one withheld
	// respLength is the exact length of the body passed on, or -1; bodyErr
	// is how the upstream's body broke off, if it did.
	respLength int64
	bodyErr    error
}

type flowKey struct{}

// flowOf is the flow a proxied request belongs to (nil for one that is not ours).
func flowOf(r *http.Request) *flow {
	if r == nil {
		return nil
	}
	f, _ := r.Context().Value(flowKey{}).(*flow)
	return f
}

// newFlow starts the flow of r, with its event as the agent sent it.
func (p *Proxy) newFlow(meta *connMeta, r *http.Request) *flow {
	ev := &flowlog.Event{
		Kind:   flowlog.KindEgress,
		Client: meta.client,
		Port:   int(meta.dst.Port()),
		Method: r.Method,
		Path:   r.URL.RequestURI(),
		Detail: map[string]string{"dst": meta.dst.Addr().String()},
	}
	if r.ProtoMajor == 2 {
		ev.Detail["proto"] = "h2"
	}
	ev.RequestHeaders = p.headerSnapshot(r.Header) // as the agent sent them: placeholders only
	return &flow{Port: int(meta.dst.Port()), TLS: meta.tls, Event: ev, start: time.Now(), respLength: -1}
}

// decided records the verdict.
func (f *flow) decided(v verdict) {
	f.verdict, f.Host, f.Name, f.Event.Host = v, v.Host, v.Name, v.Host
	if d := v.Decision; d.Allow {
		rule := d.Rule()
		f.Event.Reason, f.Event.Rule, f.Event.RuleSource = rule, rule, d.RuleSource()
	}
}

// settle completes the event of a proxied request from what the recorder
// saw, and reports whether the app must see the answer aborted (the
// upstream's body broke off, or was cut at a real value).
func (p *Proxy) settle(f *flow, rec *recorder) (abort bool) {
	ev := f.Event
	if f.secrets != nil {
		ev.Secrets = f.secrets.rw.Used()
	}
	ev.Decision = flowlog.Allow
	if f.verdict.WouldBlock != "" {
		ev.Decision, ev.Reason = flowlog.WouldBlock, f.verdict.WouldBlock
	}
	ev.Status = rec.status
	ev.BytesIn = rec.written + rec.hijackedIn.Load()
	ev.BytesOut = f.sent.Load() + rec.hijackedOut.Load()
	if f.upstreamErr != nil {
		// The answer came from us, not the upstream.
		ev.Decision = flowlog.Block
		ev.Reason = upstreamReason(f.upstreamErr)
		ev.Detail["error"] = f.upstreamErr.Error()
	}
	switch {
	case rec.writeErr != nil:
		// The app went away (the upstream read was then cancelled).
		ev.Detail["error"] = "writing to the app: " + p.redactedText(rec.writeErr.Error())
	case f.bodyErr != nil && rec.hijacked == nil:
		if errors.Is(f.bodyErr, secrets.ErrCutAtValue) {
			ev.Detail["redaction"] = f.bodyErr.Error()
			p.cfg.Logger.Warn("response cut at a real secret value", "host", f.Host)
		} else {
			ev.Detail["error"] = "the upstream's body broke off: " + p.redactedText(f.bodyErr.Error())
		}
		return true
	}
	return false
}

// emitFlow sends the flow's event, with the answer's headers as the app got them.
func (p *Proxy) emitFlow(f *flow, w http.ResponseWriter) {
	f.Event.ResponseHeaders = p.headerSnapshot(w.Header())
	f.Event.DurationMS = time.Since(f.start).Milliseconds()
	p.emit(*f.Event)
}
