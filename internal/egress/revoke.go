package egress

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// Generational is implemented by a Decider whose answers can change
// (*policy.Policy: every reload bumps the generation).
type Generational interface {
	Generation() uint64
}

// revalidateEvery is how often the policy generation is compared; a reload
// cuts what it revokes within this, plus the time to walk the open
// connections.
const revalidateEvery = 250 * time.Millisecond

// liveConns are the client connections being served, so that a reload can
// close those whose destination is no longer allowed (policy applies to what
// is open, not only to what opens next). Bounded by MaxConns.
type liveConns struct {
	mu sync.Mutex
	m  map[*connMeta]struct{}
}

func (l *liveConns) add(m *connMeta) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[*connMeta]struct{}{}
	}
	l.m[m] = struct{}{}
	l.mu.Unlock()
}

func (l *liveConns) remove(m *connMeta) {
	l.mu.Lock()
	delete(l.m, m)
	l.mu.Unlock()
}

func (l *liveConns) snapshot() []*connMeta {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*connMeta, 0, len(l.m))
	for m := range l.m {
		out = append(out, m)
	}
	return out
}

// allowed records that a request on this connection was let through to
// host: from now on the connection is held to that host's place on the list.
func (m *connMeta) allowed(host policy.Host) {
	if m.state == nil {
		return
	}
	m.state.mu.Lock()
	m.state.host = host
	m.state.mu.Unlock()
}

// decideHeld decides a request to host on m's connection and, when it is
// allowed, holds the connection to host from then on. A reload that lands
// between the decision and the hold (so that a revalidation pass may have
// seen nothing to hold) is caught by deciding again.
func (p *Proxy) decideHeld(m *connMeta, host policy.Host) policy.Decision {
	port := int(m.dst.Port())
	g, _ := p.cfg.Policy.(Generational)
	var gen uint64
	if g != nil {
		gen = g.Generation()
	}
	d := p.cfg.Policy.DecideHost(host, port)
	if !d.Allow {
		return d
	}
	m.allowed(host)
	if g != nil && g.Generation() != gen {
		d = p.cfg.Policy.DecideHost(host, port)
	}
	return d
}

// watchPolicy re-checks open connections whenever the policy changes.
func (p *Proxy) watchPolicy(ctx context.Context) {
	g, ok := p.cfg.Policy.(Generational)
	if !ok {
		return
	}
	last := g.Generation()
	t := time.NewTicker(revalidateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if gen := g.Generation(); gen != last {
				last = gen
				p.Revalidate()
			}
		}
	}
}

// Revalidate closes every open connection whose destination the policy no
// longer allows, with one revoked event each, and reports how many it closed.
// Audit mode cuts nothing: there the allowlist is learnt, not enforced.
func (p *Proxy) Revalidate() int {
	if p.cfg.Audit {
		return 0
	}
	n := 0
	for _, m := range p.live.snapshot() {
		st := m.state
		st.mu.Lock()
		host, done := st.host, st.revoked
		st.mu.Unlock()
		if host.IsZero() || done {
			continue // nothing let through yet: its first request is decided as usual
		}
		d := p.cfg.Policy.DecideHost(host, int(m.dst.Port()))
		if d.Allow || (d.Reason != refusal.NotAllowlisted && d.Reason != refusal.PortNotAllowed) {
			continue
		}
		st.mu.Lock()
		st.revoked = true
		st.mu.Unlock()
		// Closing the socket ends every stream on it, keep-alive, HTTP/2 and
		// hijacked WebSocket relays alike (goproxy then closes the upstream).
		_ = m.raw.Close()
		n++
		p.emit(flowlog.Event{
			Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: refusal.Revoked,
			Client: m.client, Host: host.String(), Port: int(m.dst.Port()),
			DurationMS: time.Since(m.start).Milliseconds(),
			Detail:     map[string]string{"dst": m.dst.String(), "policy": d.Reason},
		})
		p.cfg.Logger.Info("open connection revoked", "host", host, "port", m.dst.Port(), "client", m.client, "policy", d.Reason)
	}
	return n
}

var _ Generational = (*policy.Policy)(nil)
var _ net.Conn = (*conn)(nil)
