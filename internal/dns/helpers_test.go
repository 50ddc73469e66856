package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// fakePolicy allows exact names and "*.suffix" wildcards. Its matching is a
// deliberately naive suffix check, so the tests show the server's own defences.
type fakePolicy struct {
	exact    []string
	wildcard []string // "wild.test" allows wild.test and every name ending in ".wild.test"

	mu    sync.Mutex
	asked []string
}

func (p *fakePolicy) Decide(host string, port int) policy.Decision {
	p.mu.Lock()
	p.asked = append(p.asked, host)
	p.mu.Unlock()
	for _, e := range p.exact {
		if host == e {
			return policy.Decision{Allow: true, Entry: policy.Entry{Pattern: e}}
		}
	}
	for _, w := range p.wildcard {
		if host == w || strings.HasSuffix(host, "."+w) {
			return policy.Decision{Allow: true, Entry: policy.Entry{Pattern: "*." + w, Wildcard: true}}
		}
	}
	return policy.Decision{Reason: refusal.NotAllowlisted}
}

// fakeGuard refuses the usual private ranges, without unmapping IPv4-mapped
// addresses: the server must catch ::ffff:10.0.0.1 itself.
type fakeGuard struct{}

var errPrivate = errors.New("private address")

func (fakeGuard) Check(a netip.Addr) error {
	if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() {
		return errPrivate
	}
	return nil
}

// recorder collects flow events.
type recorder struct {
	mu     sync.Mutex
	events []flowlog.Event
}

func (r *recorder) Emit(e flowlog.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []flowlog.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flowlog.Event(nil), r.events...)
}

func (r *recorder) last(t *testing.T) flowlog.Event {
	t.Helper()
	ev := r.all()
	if len(ev) == 0 {
		t.Fatal("no flow event recorded")
	}
	return ev[len(ev)-1]
}

// seen is one question the fake upstream received.
type seen struct {
	name, net string
	qtype     uint16
	msg       *miekg.Msg // the whole query, as it arrived
}

// upstream is a fake resolver on loopback answering from a zone of records.
// Names in tcOverUDP answer with an empty truncated reply over UDP.
type upstream struct {
	addr string
	zone map[string][]miekg.RR // canonical name -> records (all types)

	mu        sync.Mutex
	questions []seen
	tcOverUDP map[string]bool
}

func (u *upstream) ServeDNS(w miekg.ResponseWriter, r *miekg.Msg) {
	q := r.Question[0]
	netw := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		netw = "tcp"
	}
	name := miekg.CanonicalName(q.Name)
	u.mu.Lock()
	u.questions = append(u.questions, seen{name: q.Name, net: netw, qtype: q.Qtype, msg: r.Copy()})
	tc := u.tcOverUDP[name] && netw == "udp"
	u.mu.Unlock()

	m := new(miekg.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	if tc {
		m.Truncated = true
		_ = w.WriteMsg(m)
		return
	}
	rrs, ok := u.zone[name]
	if !ok {
		m.Rcode = miekg.RcodeNameError
		if strings.HasSuffix(name, ".soa.wild.test.") {
			// A negative answer with its SOA: cacheable for min(TTL, MINIMUM) = 30 s.
			soa, _ := miekg.NewRR("wild.test. 300 IN SOA ns.wild.test. host.wild.test. 1 7200 900 86400 30")
			m.Ns = append(m.Ns, soa)
		}
	}
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == miekg.TypeCNAME {
			m.Answer = append(m.Answer, rr)
		}
	}
	if netw == "udp" {
		// Like a real resolver: fit the server's advertised buffer (compressing first).
		size := miekg.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

func (u *upstream) seen() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.questions...)
}

// startUpstream starts the fake resolver on 127.0.0.1, udp and tcp on one port.
func startUpstream(t *testing.T, zone map[string][]miekg.RR, tcOverUDP ...string) *upstream {
	t.Helper()
	pc, ln, err := bindPair("127.0.0.1:0")
	if err != nil {
		t.Fatalf("binding fake upstream: %v", err)
	}
	u := &upstream{addr: pc.LocalAddr().String(), zone: zone, tcOverUDP: map[string]bool{}}
	for _, name := range tcOverUDP {
		u.tcOverUDP[name] = true
	}
	for _, srv := range []*miekg.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

// rrs parses records in zone-file syntax.
func rrs(t *testing.T, lines ...string) []miekg.RR {
	t.Helper()
	var out []miekg.RR
	for _, l := range lines {
		rr, err := miekg.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

// testZone is what the fake upstream knows.
func testZone(t *testing.T) map[string][]miekg.RR {
	t.Helper()
	z := map[string][]miekg.RR{
		"allowed.test.":      rrs(t, "allowed.test. 60 IN A 198.51.100.7", "allowed.test. 60 IN AAAA 2001:db8::7", `allowed.test. 60 IN TXT "hello"`, "allowed.test. 60 IN MX 10 mx.allowed.test."),
		"www.wild.test.":     rrs(t, "www.wild.test. 60 IN CNAME edge.cdn.example.", "edge.cdn.example. 60 IN A 203.0.113.9"),
		"p10.wild.test.":     rrs(t, "p10.wild.test. 60 IN A 10.0.0.5"),
		"ploop.wild.test.":   rrs(t, "ploop.wild.test. 60 IN A 127.0.0.1"),
		"pmeta.wild.test.":   rrs(t, "pmeta.wild.test. 60 IN A 169.254.169.254"),
		"pmapped.wild.test.": rrs(t, "pmapped.wild.test. 60 IN AAAA ::ffff:10.0.0.1"),
		"pcname.wild.test.":  rrs(t, "pcname.wild.test. 60 IN CNAME internal.corp.example.", "internal.corp.example. 60 IN A 192.168.1.10"),
		"phint.wild.test.":   rrs(t, "phint.wild.test. 60 IN HTTPS 1 . alpn=h2 ipv4hint=10.1.2.3"),
		"tc.wild.test.":      rrs(t, "tc.wild.test. 60 IN A 198.51.100.99"),
		// Names that must never reach the upstream still get records, so a leak would resolve.
		"allowed.test.evil.": rrs(t, "allowed.test.evil. 60 IN A 198.51.100.66"),
		"evil.test.":         rrs(t, "evil.test. 60 IN A 198.51.100.66"),
	}
	var big []string
	for i := range 60 {
		big = append(big, "big.wild.test. 60 IN A 198.51.100."+strconv.Itoa(i+1))
	}
	z["big.wild.test."] = rrs(t, big...)
	return z
}

// harness is a Server listening on loopback in front of a fake upstream.
type harness struct {
	srv    *Server
	addr   string
	up     *upstream
	pol    *fakePolicy
	events *recorder
}

func newHarness(t *testing.T, tweak func(*Server)) *harness {
	t.Helper()
	h := &harness{
		up:     startUpstream(t, testZone(t), "tc.wild.test."),
		pol:    &fakePolicy{exact: []string{"allowed.test"}, wildcard: []string{"wild.test"}},
		events: &recorder{},
	}
	h.srv = &Server{
		Policy:   h.pol,
		Guard:    fakeGuard{},
		Upstream: h.up.addr,
		Log:      h.events,
		Timeout:  time.Second,
	}
	if tweak != nil {
		tweak(h.srv)
	}
	ls, err := h.srv.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	h.addr = ls.Addrs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ls.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return h
}

// query asks the server over netw ("udp" or "tcp"); edns 0 sends no OPT record.
func (h *harness) query(t *testing.T, netw, name string, qtype uint16, edns uint16) *miekg.Msg {
	t.Helper()
	m := new(miekg.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	return h.exchange(t, netw, m)
}

func (h *harness) exchange(t *testing.T, netw string, m *miekg.Msg) *miekg.Msg {
	t.Helper()
	c := &miekg.Client{Net: netw, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, h.addr)
	if err != nil {
		t.Fatalf("%s query for %s: %v", netw, m.Question[0].Name, err)
	}
	return r
}

// upstreamSaw reports whether the fake upstream received a question for name (any case).
func (h *harness) upstreamSaw(name string) bool {
	for _, s := range h.up.seen() {
		if miekg.CanonicalName(s.name) == miekg.CanonicalName(name) {
			return true
		}
	}
	return false
}

func answerAddrs(m *miekg.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *miekg.A:
			out = append(out, v.A.String())
		case *miekg.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	return out
}

// fakeWriter is a ResponseWriter that keeps what was written.
type fakeWriter struct {
	remote net.Addr
	msgs   []*miekg.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}
func (w *fakeWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *fakeWriter) WriteMsg(m *miekg.Msg) error { w.msgs = append(w.msgs, m); return nil }
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}
