package egress

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

type events struct {
	mu sync.Mutex
	ev []flowlog.Event
}

func (e *events) Emit(ev flowlog.Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }

func mustList(t *testing.T, text string) *policy.Allowlist {
	t.Helper()
	l, err := policy.Parse([]byte(text), "test")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// openConn registers a live connection to host:port that a request was
// allowed on, and returns the far end of its socket.
func openConn(p *Proxy, host string, port uint16) (*connMeta, net.Conn) {
	near, far := net.Pipe()
	m := &connMeta{client: "192.0.2.1:5000", dst: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), port),
		raw: near, start: time.Now(), state: &connState{}}
	m.allowed(mustHost(host))
	p.live.add(m)
	return m, far
}

func closed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF || err == io.ErrClosedPipe
}

func TestRevalidateCutsOnlyWhatTheNewListRefuses(t *testing.T) {
	pol := policy.New(mustList(t, "a.test\n*.wild.test\nport.test:8443\nkept.test\n"), policy.NewGuard(nil))
	ev := &events{}
	p := New(Config{Policy: pol, Log: ev, Logger: slog.New(slog.DiscardHandler)})
	type open struct {
		host   string
		port   uint16
		revoke bool
	}
	conns := map[string]open{
		"a host taken off the list is cut":              {"a.test", 443, true},
		"a subdomain of a removed wildcard is cut":      {"x.wild.test", 443, true},
		"a port no longer allowed is cut":               {"port.test", 8443, true},
		"a host still on the list keeps its connection": {"kept.test", 443, false},
		"a host allowed by the new wildcard is not cut": {"new.other.test", 443, false},
	}
	fars := map[string]net.Conn{}
	for name, c := range conns {
		_, far := openConn(p, c.host, c.port)
		fars[name] = far
	}
	// A connection whose first request has not been allowed yet is left to
	// the usual per-request decision.
	near, undecided := net.Pipe()
	p.live.add(&connMeta{raw: near, dst: netip.MustParseAddrPort("203.0.113.1:443"), state: &connState{}})

	pol.Swap(mustList(t, "kept.test\nport.test:443\n*.other.test\n"))
	if n := p.Revalidate(); n != 3 {
		t.Errorf("Revalidate closed %d connections, want 3", n)
	}
	for name, c := range conns {
		t.Run(name, func(t *testing.T) {
			if got := closed(fars[name]); got != c.revoke {
				t.Errorf("closed = %v, want %v", got, c.revoke)
			}
		})
	}
	t.Run("the undecided connection stays open", func(t *testing.T) {
		if closed(undecided) {
			t.Error("closed")
		}
	})
	t.Run("one revoked event per cut connection, and none again on the next pass", func(t *testing.T) {
		p.Revalidate()
		ev.mu.Lock()
		defer ev.mu.Unlock()
		hosts := map[string]int{}
		for _, e := range ev.ev {
			if e.Reason != refusal.Revoked || e.Decision != flowlog.Block || e.Kind != flowlog.KindEgress {
				t.Errorf("event %+v", e)
			}
			hosts[e.Host]++
		}
		for _, h := range []string{"a.test", "x.wild.test", "port.test"} {
			if hosts[h] != 1 {
				t.Errorf("%s: %d revoked events, want 1", h, hosts[h])
			}
		}
		if len(ev.ev) != 3 {
			t.Errorf("%d events, want 3", len(ev.ev))
		}
	})
}

func TestAuditModeRevokesNothing(t *testing.T) {
	pol := policy.New(mustList(t, "a.test\n"), policy.NewGuard(nil))
	p := New(Config{Policy: pol, Log: &events{}, Logger: slog.New(slog.DiscardHandler), Audit: true})
	_, far := openConn(p, "a.test", 443)
	pol.Swap(mustList(t, "b.test\n"))
	if n := p.Revalidate(); n != 0 || closed(far) {
		t.Errorf("audit mode cut %d connections", n)
	}
}

func TestAReloadTriggersRevalidation(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the watcher's tick")
	}
	pol := policy.New(mustList(t, "a.test\n"), policy.NewGuard(nil))
	pol.SetRuntime(mustList(t, "r.test\n"))
	p := New(Config{Policy: pol, Log: &events{}, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.watchPolicy(ctx)
	cutWithin2s := func(t *testing.T, far net.Conn) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !closed(far) {
			if time.Now().After(deadline) {
				t.Fatal("not cut within 2 s of the change")
			}
		}
	}
	t.Run("the file's list is swapped", func(t *testing.T) {
		_, far := openConn(p, "a.test", 443)
		time.Sleep(2 * revalidateEvery) // the watcher has read the current generation
		pol.Swap(mustList(t, "b.test\n"))
		cutWithin2s(t, far)
	})
	t.Run("an entry is taken off the runtime list (the dashboard)", func(t *testing.T) {
		_, far := openConn(p, "r.test", 443)
		time.Sleep(2 * revalidateEvery)
		pol.SetRuntime(nil)
		cutWithin2s(t, far)
	})
}

// reloadDuring swaps the list right after its first decision and runs a
// revalidation pass then, before the handler can hold the connection: the
// narrowest window a reload can land in.
type reloadDuring struct {
	*policy.Policy
	next  *policy.Allowlist
	proxy *Proxy
	once  sync.Once
}

func (r *reloadDuring) DecideHost(host policy.Host, port int) policy.Decision {
	d := r.Policy.DecideHost(host, port)
	r.once.Do(func() {
		r.Swap(r.next)
		r.proxy.Revalidate()
	})
	return d
}

func TestAReloadBetweenDecisionAndHoldIsNotMissed(t *testing.T) {
	pol := &reloadDuring{Policy: policy.New(mustList(t, "a.test\n"), policy.NewGuard(nil)), next: mustList(t, "b.test\n")}
	p := New(Config{Policy: pol, Log: &events{}, Logger: slog.New(slog.DiscardHandler)})
	pol.proxy = p
	near, far := net.Pipe()
	defer far.Close()
	m := &connMeta{client: "192.0.2.1:5000", dst: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), 443),
		raw: near, start: time.Now(), state: &connState{}}
	p.live.add(m)
	if d := p.decideHeld(m, mustHost("a.test")); d.Allow {
		t.Fatal("a request was allowed to a host the list had dropped by the time the connection was held; the revalidation pass had seen nothing to cut")
	}
}

func mustHost(s string) policy.Host {
	h, err := policy.ParseHost(s)
	if err != nil {
		panic(err)
	}
	return h
}
