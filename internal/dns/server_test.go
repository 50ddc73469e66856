package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

func TestAllowedNamesResolve(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name  string
		qname string
		qtype uint16
		want  []string
	}{
		{"A", "allowed.test.", miekg.TypeA, []string{"198.51.100.7"}},
		{"AAAA", "allowed.test.", miekg.TypeAAAA, []string{"2001:db8::7"}},
		{"mixed case", "AlLoWeD.TeSt.", miekg.TypeA, []string{"198.51.100.7"}},
		{"upper case wildcard", "WWW.WILD.TEST.", miekg.TypeA, []string{"203.0.113.9"}},
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+netw, func(t *testing.T) {
				r := h.query(t, netw, tt.qname, tt.qtype, 0)
				if r.Rcode != miekg.RcodeSuccess {
					t.Fatalf("rcode = %s, want NOERROR", miekg.RcodeToString[r.Rcode])
				}
				if got := answerAddrs(r); !slices.Equal(got, tt.want) {
					t.Errorf("answers = %v, want %v", got, tt.want)
				}
				if r.Question[0].Name != tt.qname {
					t.Errorf("question echoed as %q, want the client's spelling %q", r.Question[0].Name, tt.qname)
				}
				if !r.RecursionAvailable {
					t.Error("RA not set")
				}
			})
		}
	}
}

func TestOtherTypesForAllowedNames(t *testing.T) {
	h := newHarness(t, nil)
	r := h.query(t, "udp", "allowed.test.", miekg.TypeTXT, 1232)
	if len(r.Answer) != 1 || r.Answer[0].(*miekg.TXT).Txt[0] != "hello" {
		t.Errorf("TXT answer = %v", r.Answer)
	}
	if r.IsEdns0() == nil {
		t.Error("reply to an EDNS query has no OPT record")
	}
	r = h.query(t, "tcp", "allowed.test.", miekg.TypeMX, 0)
	if len(r.Answer) != 1 || r.Answer[0].(*miekg.MX).Mx != "mx.allowed.test." {
		t.Errorf("MX answer = %v", r.Answer)
	}
	if r.IsEdns0() != nil {
		t.Error("reply to a query without EDNS carries an OPT record")
	}
}

func TestDeniedNamesNeverReachUpstream(t *testing.T) {
	h := newHarness(t, nil)
	exfil := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + ".exfil.evil.test."
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		reason string
	}{
		{"not allowlisted", "evil.test.", miekg.TypeA, refusal.NotAllowlisted},
		{"allowlisted name as a prefix", "allowed.test.evil.", miekg.TypeA, refusal.NotAllowlisted},
		{"sibling of exact entry", "sub.allowed.test.", miekg.TypeA, refusal.NotAllowlisted},
		{"escaped dot in label", `evil\.wild.test.`, miekg.TypeA, refusal.BadHost},
		{"escaped dot exact", `evil\.allowed.test.`, miekg.TypeA, refusal.BadHost},
		{"escaped byte", `wild\000.wild.test.`, miekg.TypeA, refusal.BadHost},
		{"long-label TXT exfiltration", exfil, miekg.TypeTXT, refusal.NotAllowlisted},
		{"root", ".", miekg.TypeNS, refusal.BadHost},
		{"ANY for denied name", "evil.test.", miekg.TypeANY, refusal.NotAllowlisted},
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+netw, func(t *testing.T) {
				r := h.query(t, netw, tt.qname, tt.qtype, 0)
				if r.Rcode != miekg.RcodeNameError {
					t.Errorf("rcode = %s, want NXDOMAIN", miekg.RcodeToString[r.Rcode])
				}
				if r.Authoritative || !r.RecursionAvailable {
					t.Errorf("AA=%v RA=%v, want AA off, RA on", r.Authoritative, r.RecursionAvailable)
				}
				if h.upstreamSaw(tt.qname) {
					t.Errorf("upstream received %q", tt.qname)
				}
				ev := h.events.last(t)
				if ev.Decision != flowlog.Block || ev.Reason != tt.reason || ev.Detail[DetailRcode] != "NXDOMAIN" {
					t.Errorf("event decision=%q reason=%q rcode=%q, want block/%s/NXDOMAIN", ev.Decision, ev.Reason, ev.Detail[DetailRcode], tt.reason)
				}
			})
		}
	}
	if n := len(h.up.seen()); n != 0 {
		t.Errorf("upstream saw %d questions, want none: %v", n, h.up.seen())
	}
}

func TestPolicyAskedWithCanonicalName(t *testing.T) {
	s := &Server{Policy: &fakePolicy{exact: []string{"allowed.test"}}, Guard: fakeGuard{}, UDP: stubExchanger{}, TCP: stubExchanger{}}
	for _, name := range []string{"Allowed.Test.", "allowed.test", "ALLOWED.TEST"} {
		w := &fakeWriter{}
		m := new(miekg.Msg)
		m.SetQuestion(name, miekg.TypeA) // SetQuestion does not add the dot: a non-FQDN name reaches ServeDNS as is
		s.ServeDNS(w, m)
		if len(w.msgs) != 1 || w.msgs[0].Rcode != miekg.RcodeSuccess {
			t.Errorf("%q: reply %v, want NOERROR", name, w.msgs)
		}
	}
	asked := s.Policy.(*fakePolicy).asked
	for _, a := range asked {
		if a != "allowed.test" {
			t.Errorf("policy asked about %q, want %q", a, "allowed.test")
		}
	}
}

// stubExchanger answers every query with one public A record.
type stubExchanger struct{}

func (stubExchanger) ExchangeContext(_ context.Context, m *miekg.Msg, _ string) (*miekg.Msg, time.Duration, error) {
	r := new(miekg.Msg)
	r.SetReply(m)
	a, _ := miekg.NewRR(m.Question[0].Name + " 60 IN A 198.51.100.1")
	r.Answer = append(r.Answer, a)
	return r, 0, nil
}

func TestRebindingRefused(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		qname   string
		qtype   uint16
		private string
	}{
		{"p10.wild.test.", miekg.TypeA, "10.0.0.5"},
		{"ploop.wild.test.", miekg.TypeA, "127.0.0.1"},
		{"pmeta.wild.test.", miekg.TypeA, "169.254.169.254"},
		{"pmapped.wild.test.", miekg.TypeAAAA, "::ffff:10.0.0.1"},
		{"pcname.wild.test.", miekg.TypeA, "192.168.1.10"},
		{"phint.wild.test.", miekg.TypeHTTPS, "10.1.2.3"},
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(tt.qname+"/"+netw, func(t *testing.T) {
				r := h.query(t, netw, tt.qname, tt.qtype, 0)
				if r.Rcode != miekg.RcodeRefused {
					t.Errorf("rcode = %s, want REFUSED", miekg.RcodeToString[r.Rcode])
				}
				if len(r.Answer) != 0 {
					t.Errorf("refused reply carries answers: %v", r.Answer)
				}
				ev := h.events.last(t)
				if ev.Decision != flowlog.Block || ev.Reason != refusal.PrivateAddress || ev.Detail[DetailPrivate] != tt.private {
					t.Errorf("event = %+v, want block/private-address/%s", ev, tt.private)
				}
			})
		}
	}
}

func TestTruncation(t *testing.T) {
	h := newHarness(t, nil)

	r := h.query(t, "udp", "big.wild.test.", miekg.TypeA, 0)
	if !r.Truncated {
		t.Error("60 A records over UDP without EDNS: TC not set")
	}
	r.Compress = true // as it travelled
	if r.Len() > miekg.MinMsgSize {
		t.Errorf("UDP reply is %d bytes, want <= 512", r.Len())
	}

	r = h.query(t, "udp", "big.wild.test.", miekg.TypeA, 4096)
	if r.Truncated || len(r.Answer) != 60 {
		t.Errorf("UDP with EDNS 4096: TC=%v answers=%d, want all 60", r.Truncated, len(r.Answer))
	}

	r = h.query(t, "udp", "big.wild.test.", miekg.TypeA, 600)
	if !r.Truncated {
		t.Error("UDP with EDNS 600: TC not set")
	}

	r = h.query(t, "tcp", "big.wild.test.", miekg.TypeA, 0)
	if r.Truncated || len(r.Answer) != 60 {
		t.Errorf("TCP: TC=%v answers=%d, want all 60", r.Truncated, len(r.Answer))
	}
}

func TestTruncatedUpstreamRetriedOverTCP(t *testing.T) {
	h := newHarness(t, nil)
	r := h.query(t, "udp", "tc.wild.test.", miekg.TypeA, 0)
	if r.Truncated || !slices.Equal(answerAddrs(r), []string{"198.51.100.99"}) {
		t.Fatalf("TC=%v answers=%v, want 198.51.100.99 without TC", r.Truncated, answerAddrs(r))
	}
	var nets []string
	for _, s := range h.up.seen() {
		nets = append(nets, s.net)
	}
	if !slices.Equal(nets, []string{"udp", "tcp"}) {
		t.Errorf("upstream transports = %v, want [udp tcp]", nets)
	}
	if ev := h.events.last(t); ev.Detail[DetailUpstream] != "tcp" {
		t.Errorf("event detail = %v, want upstream=tcp", ev.Detail)
	}
}

func TestUpstreamFailureIsServfail(t *testing.T) {
	// A UDP socket that reads and never answers, and a closed port.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.LocalAddr().String()
	closed.Close()

	for name, addr := range map[string]string{"silent": silent.LocalAddr().String(), "unreachable": closedAddr} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(s *Server) { s.Upstream = addr; s.Timeout = 300 * time.Millisecond })
			for _, netw := range []string{"udp", "tcp"} {
				start := time.Now()
				r := h.query(t, netw, "allowed.test.", miekg.TypeA, 0)
				if r.Rcode != miekg.RcodeServerFailure {
					t.Errorf("%s: rcode = %s, want SERVFAIL", netw, miekg.RcodeToString[r.Rcode])
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("%s: SERVFAIL took %v", netw, d)
				}
				ev := h.events.last(t)
				if ev.Detail[DetailError] == "" || ev.Detail[DetailRcode] != "SERVFAIL" {
					t.Errorf("%s: event detail = %v, want an error and SERVFAIL", netw, ev.Detail)
				}
			}
		})
	}
}

func TestUnsupportedQueries(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name  string
		msg   func() *miekg.Msg
		rcode int
	}{
		{"ANY", func() *miekg.Msg { return new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeANY) }, miekg.RcodeNotImplemented},
		{"AXFR", func() *miekg.Msg { return new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeAXFR) }, miekg.RcodeNotImplemented},
		{"CHAOS class", func() *miekg.Msg {
			m := new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeTXT)
			m.Question[0].Qclass = miekg.ClassCHAOS
			return m
		}, miekg.RcodeNotImplemented},
		{"NOTIFY", func() *miekg.Msg { return new(miekg.Msg).SetNotify("allowed.test.") }, miekg.RcodeNotImplemented},
		{"UPDATE", func() *miekg.Msg { return new(miekg.Msg).SetUpdate("allowed.test.") }, miekg.RcodeNotImplemented},
		{"no question", func() *miekg.Msg { m := new(miekg.Msg); m.Id = miekg.Id(); return m }, miekg.RcodeFormatError},
		{"two OPT records", func() *miekg.Msg {
			return new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeA).SetEdns0(1232, false).SetEdns0(4096, false)
		}, miekg.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.exchangeRaw(t, "udp", tt.msg())
			if r.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", miekg.RcodeToString[r.Rcode], miekg.RcodeToString[tt.rcode])
			}
		})
	}
	if n := len(h.up.seen()); n != 0 {
		t.Errorf("upstream saw %d questions, want none", n)
	}
}

func TestBadEDNSVersion(t *testing.T) {
	h := newHarness(t, nil)
	m := new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeA).SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r := h.exchangeRaw(t, "udp", m)
	if r.Rcode != miekg.RcodeBadVers || r.IsEdns0() == nil {
		t.Errorf("rcode = %d OPT=%v, want BADVERS with OPT", r.Rcode, r.IsEdns0())
	}
}

// exchangeRaw is exchange without the Client's packing checks getting in the way.
func (h *harness) exchangeRaw(t *testing.T, netw string, m *miekg.Msg) *miekg.Msg {
	t.Helper()
	buf, err := m.Pack()
	if err != nil {
		t.Fatalf("packing query: %v", err)
	}
	c, err := net.DialTimeout(netw, h.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if netw == "tcp" {
		buf = append(binary.BigEndian.AppendUint16(nil, uint16(len(buf))), buf...)
	}
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 65536)
	n, err := c.Read(resp)
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	resp = resp[:n]
	if netw == "tcp" {
		resp = resp[2:]
	}
	r := new(miekg.Msg)
	if err := r.Unpack(resp); err != nil {
		t.Fatalf("unpacking reply: %v", err)
	}
	if r.Id != m.Id {
		t.Errorf("reply ID %d, want %d", r.Id, m.Id)
	}
	return r
}

func TestGarbageDoesNotKillServer(t *testing.T) {
	h := newHarness(t, nil)
	garbage := [][]byte{
		nil,
		{0x00},
		[]byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"),
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},                                     // one question promised, none sent
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01}, // pointer loop
		append([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0}, make([]byte, 3000)...),
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for _, g := range garbage {
		c, err := net.Dial("udp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(g)
		c.Close()
	}
	// TCP: a bogus length prefix, then a short body, then a hang-up.
	if c, err := net.Dial("tcp", h.addr); err == nil {
		_, _ = c.Write([]byte{0xff, 0xff, 0x01, 0x02})
		c.Close()
	}
	for _, netw := range []string{"udp", "tcp"} {
		r := h.query(t, netw, "allowed.test.", miekg.TypeA, 0)
		if r.Rcode != miekg.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s after garbage: rcode %s answers %v", netw, miekg.RcodeToString[r.Rcode], r.Answer)
		}
	}
}

func TestFlowEvents(t *testing.T) {
	h := newHarness(t, nil)

	h.query(t, "udp", "www.wild.test.", miekg.TypeA, 0)
	ev := h.events.last(t)
	want := map[string]string{
		DetailQType: "A", DetailRcode: "NOERROR", DetailTransport: "udp",
		DetailAnswers: "edge.cdn.example,203.0.113.9", DetailCNAMEs: "www.wild.test>edge.cdn.example",
	}
	checkEvent(t, ev, flowlog.Allow, "allowlisted:*.wild.test", "www.wild.test", want)
	if ev.Rule != "*.wild.test" {
		t.Errorf("rule %q, want the entry that allowed the name", ev.Rule)
	}

	h.query(t, "tcp", "evil.test.", miekg.TypeTXT, 0)
	ev = h.events.last(t)
	checkEvent(t, ev, flowlog.Block, refusal.NotAllowlisted, "evil.test",
		map[string]string{DetailQType: "TXT", DetailRcode: "NXDOMAIN", DetailTransport: "tcp"})

	h.query(t, "udp", "allowed.test.", miekg.TypeAAAA, 0)
	ev = h.events.last(t)
	checkEvent(t, ev, flowlog.Allow, "allowlisted:allowed.test", "allowed.test",
		map[string]string{DetailQType: "AAAA", DetailRcode: "NOERROR", DetailAnswers: "2001:db8::7"})
	if ev.BytesIn == 0 || ev.BytesOut == 0 {
		t.Errorf("bytes in/out = %d/%d, want both set", ev.BytesIn, ev.BytesOut)
	}

	if n := len(h.events.all()); n != 3 {
		t.Errorf("%d events for 3 queries", n)
	}
}

func checkEvent(t *testing.T, ev flowlog.Event, decision, reason, host string, detail map[string]string) {
	t.Helper()
	if ev.Kind != flowlog.KindDNS || ev.Decision != decision || ev.Reason != reason || ev.Host != host {
		t.Errorf("event kind=%q decision=%q reason=%q host=%q, want dns/%s/%s/%s", ev.Kind, ev.Decision, ev.Reason, ev.Host, decision, reason, host)
	}
	if _, _, err := net.SplitHostPort(ev.Client); err != nil || !strings.HasPrefix(ev.Client, "127.0.0.1:") {
		t.Errorf("event client = %q, want 127.0.0.1:port", ev.Client)
	}
	if ev.Time.IsZero() || ev.DurationMS < 0 {
		t.Errorf("event time=%v duration=%d", ev.Time, ev.DurationMS)
	}
	for k, v := range detail {
		if ev.Detail[k] != v {
			t.Errorf("event detail %s = %q, want %q", k, ev.Detail[k], v)
		}
	}
}

// scripted is an upstream transport that returns a canned reply to whatever it is asked.
type scripted struct {
	reply func(q *miekg.Msg) (*miekg.Msg, error)
	calls int
}

func (s *scripted) ExchangeContext(_ context.Context, m *miekg.Msg, _ string) (*miekg.Msg, time.Duration, error) {
	s.calls++
	r, err := s.reply(m)
	return r, 0, err
}

func TestUpstreamReplyHandling(t *testing.T) {
	answer := func(records ...string) func(q *miekg.Msg) (*miekg.Msg, error) {
		return func(q *miekg.Msg) (*miekg.Msg, error) {
			r := new(miekg.Msg).SetReply(q)
			for _, s := range records {
				rr, err := miekg.NewRR(s)
				if err != nil {
					return nil, err
				}
				r.Answer = append(r.Answer, rr)
			}
			return r, nil
		}
	}
	tests := []struct {
		name      string
		udp, tcp  func(q *miekg.Msg) (*miekg.Msg, error)
		edns      bool
		rcode     int
		tcpCalled bool
	}{
		{
			name: "reply to another question",
			udp: func(q *miekg.Msg) (*miekg.Msg, error) {
				return new(miekg.Msg).SetReply(new(miekg.Msg).SetQuestion("evil.test.", miekg.TypeA)), nil
			},
			rcode: miekg.RcodeServerFailure,
		},
		{
			name: "reply with another ID",
			udp: func(q *miekg.Msg) (*miekg.Msg, error) {
				r := new(miekg.Msg).SetReply(q)
				r.Id++
				return r, nil
			},
			rcode: miekg.RcodeServerFailure,
		},
		{
			name: "extended rcode to a client without EDNS",
			udp: func(q *miekg.Msg) (*miekg.Msg, error) {
				r := new(miekg.Msg).SetReply(q).SetEdns0(1232, false)
				r.Rcode = miekg.RcodeBadCookie
				return r, nil
			},
			rcode: miekg.RcodeServerFailure,
		},
		{
			name: "extended rcode to an EDNS client",
			udp: func(q *miekg.Msg) (*miekg.Msg, error) {
				r := new(miekg.Msg).SetReply(q).SetEdns0(1232, false)
				r.Rcode = miekg.RcodeBadCookie
				return r, nil
			},
			edns:  true,
			rcode: miekg.RcodeBadCookie,
		},
		{
			name: "private glue in the additional section",
			udp: func(q *miekg.Msg) (*miekg.Msg, error) {
				r, err := answer("allowed.test. 60 IN A 198.51.100.1")(q)
				glue, _ := miekg.NewRR("ns.allowed.test. 60 IN A 192.168.0.1")
				r.Extra = append(r.Extra, glue)
				return r, err
			},
			rcode: miekg.RcodeRefused,
		},
		{
			name: "oversized datagram without TC is retried over TCP",
			udp: func(q *miekg.Msg) (*miekg.Msg, error) {
				return new(miekg.Msg).SetReply(q), errors.New("dns: overflow unpacking uint16")
			},
			tcp:       answer("allowed.test. 60 IN A 198.51.100.1"),
			rcode:     miekg.RcodeSuccess,
			tcpCalled: true,
		},
		{
			name: "truncated over TCP too",
			udp: func(q *miekg.Msg) (*miekg.Msg, error) {
				r := new(miekg.Msg).SetReply(q)
				r.Truncated = true
				return r, nil
			},
			rcode:     miekg.RcodeServerFailure,
			tcpCalled: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			udp := &scripted{reply: tt.udp}
			tcp := &scripted{reply: tt.tcp}
			if tt.tcp == nil {
				tcp.reply = tt.udp
			}
			s := &Server{Policy: &fakePolicy{exact: []string{"allowed.test"}}, Guard: fakeGuard{}, Upstream: "192.0.2.53:53", UDP: udp, TCP: tcp}
			q := new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeA)
			if tt.edns {
				q.SetEdns0(1232, false)
			}
			w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
			s.ServeDNS(w, q)
			if len(w.msgs) != 1 {
				t.Fatalf("%d replies", len(w.msgs))
			}
			if got := w.msgs[0].Rcode; got != tt.rcode {
				t.Errorf("rcode = %s, want %s", rcodeName(got), rcodeName(tt.rcode))
			}
			if _, err := w.msgs[0].Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
			if (tcp.calls > 0) != tt.tcpCalled {
				t.Errorf("TCP called %d times, want called=%v", tcp.calls, tt.tcpCalled)
			}
		})
	}
}

func TestPanicCostsOneQuery(t *testing.T) {
	s := &Server{Policy: panicPolicy{}, Guard: fakeGuard{}}
	w := &fakeWriter{}
	s.ServeDNS(w, new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeA))
	if len(w.msgs) != 1 || w.msgs[0].Rcode != miekg.RcodeServerFailure {
		t.Errorf("replies %v, want one SERVFAIL", w.msgs)
	}
}

type panicPolicy struct{}

func (panicPolicy) Decide(string, int) policy.Decision { panic("unimplemented") }

// TestForwardedQuestionCarriesNoAgentBits plays an agent that tries to hide
// data in what our resolver asks upstream: the case of the name, the type,
// the class, header bits and EDNS. Only a canonical question may leave.
func TestForwardedQuestionCarriesNoAgentBits(t *testing.T) {
	t.Run("the name goes upstream in lower case and comes back in the agent's case", func(t *testing.T) {
		h := newHarness(t, nil)
		r := h.query(t, "udp", "AlLoWeD.TeSt.", miekg.TypeA, 1232)
		if r.Rcode != miekg.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("reply %v", r)
		}
		if r.Question[0].Name != "AlLoWeD.TeSt." || r.Answer[0].Header().Name != "AlLoWeD.TeSt." {
			t.Errorf("reply spells %q / %q, want the agent's case", r.Question[0].Name, r.Answer[0].Header().Name)
		}
		for _, s := range h.up.seen() {
			if s.name != "allowed.test." {
				t.Errorf("upstream saw %q, want allowed.test.", s.name)
			}
		}
	})
	t.Run("the agent's choice of transport does not travel: TCP questions go upstream over UDP", func(t *testing.T) {
		h := newHarness(t, nil)
		for i, netw := range []string{"tcp", "udp", "tcp"} {
			qt := []uint16{miekg.TypeA, miekg.TypeAAAA, miekg.TypeTXT}[i] // not answered from the cache
			if r := h.query(t, netw, "allowed.test.", qt, 0); r.Rcode != miekg.RcodeSuccess {
				t.Fatalf("%s: rcode %s", netw, miekg.RcodeToString[r.Rcode])
			}
		}
		if len(h.up.seen()) != 3 {
			t.Fatalf("upstream saw %d questions, want 3", len(h.up.seen()))
		}
		for _, s := range h.up.seen() {
			if s.net != "udp" {
				t.Errorf("upstream saw a question over %s", s.net)
			}
		}
	})
	t.Run("unusual types and classes are answered here and never forwarded", func(t *testing.T) {
		h := newHarness(t, nil)
		for _, c := range []struct {
			name          string
			qtype, qclass uint16
		}{
			{"private-use type 65400", 65400, miekg.ClassINET},
			{"unassigned type 300", 300, miekg.ClassINET},
			{"NULL", miekg.TypeNULL, miekg.ClassINET},
			{"ANY", miekg.TypeANY, miekg.ClassINET},
			{"class CHAOS", miekg.TypeTXT, miekg.ClassCHAOS},
			{"class ANY", miekg.TypeA, miekg.ClassANY},
		} {
			m := new(miekg.Msg)
			m.SetQuestion("allowed.test.", c.qtype)
			m.Question[0].Qclass = c.qclass
			if r := h.exchange(t, "udp", m); r.Rcode != miekg.RcodeNotImplemented {
				t.Errorf("%s: rcode %s, want NOTIMP", c.name, miekg.RcodeToString[r.Rcode])
			}
		}
		if n := len(h.up.seen()); n != 0 {
			t.Errorf("upstream saw %d questions, want none: %v", n, h.up.seen())
		}
	})
	t.Run("ordinary types are forwarded", func(t *testing.T) {
		h := newHarness(t, nil)
		for _, qt := range []uint16{miekg.TypeA, miekg.TypeAAAA, miekg.TypeCNAME, miekg.TypeHTTPS, miekg.TypeSVCB, miekg.TypeMX,
			miekg.TypeTXT, miekg.TypeSRV, miekg.TypeCAA, miekg.TypeNS, miekg.TypeSOA, miekg.TypePTR} {
			if r := h.query(t, "udp", "allowed.test.", qt, 0); r.Rcode == miekg.RcodeNotImplemented {
				t.Errorf("%s refused", miekg.TypeToString[qt])
			}
		}
		if n := len(h.up.seen()); n != 12 {
			t.Errorf("upstream saw %d questions, want 12", n)
		}
	})
	t.Run("header bits, the DO bit and EDNS options stay here", func(t *testing.T) {
		h := newHarness(t, nil)
		m := new(miekg.Msg)
		m.SetQuestion("allowed.test.", miekg.TypeTXT)
		m.Id = 0x5EC2
		m.CheckingDisabled, m.AuthenticatedData = true, true
		m.SetEdns0(4000, true)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option,
			&miekg.EDNS0_SUBNET{Code: miekg.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("198.51.100.0").To4()},
			&miekg.EDNS0_COOKIE{Code: miekg.EDNS0COOKIE, Cookie: "0102030405060708"},
			&miekg.EDNS0_LOCAL{Code: 65001, Data: []byte("exfiltrated")})
		if r := h.exchange(t, "udp", m); r.Rcode != miekg.RcodeSuccess {
			t.Fatalf("rcode %s", miekg.RcodeToString[r.Rcode])
		}
		seen := h.up.seen()
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d queries", len(seen))
		}
		up := seen[0].msg
		if up.Id == m.Id || up.CheckingDisabled || up.AuthenticatedData || len(up.Extra) != 1 {
			t.Errorf("upstream query copied agent bits: id %#x cd %v ad %v extra %v", up.Id, up.CheckingDisabled, up.AuthenticatedData, up.Extra)
		}
		uo := up.IsEdns0()
		if uo == nil || uo.Do() || len(uo.Option) != 0 || uo.UDPSize() != ednsSize {
			t.Errorf("upstream OPT = %v, want ours: no DO, no options, size %d", uo, ednsSize)
		}
	})
	t.Run("a negative answer is cached for its SOA minimum, so a repeat stays here", func(t *testing.T) {
		h := newHarness(t, nil)
		for range 3 {
			if r := h.query(t, "udp", "nothing.soa.wild.test.", miekg.TypeA, 0); r.Rcode != miekg.RcodeNameError {
				t.Fatalf("rcode %s, want NXDOMAIN", miekg.RcodeToString[r.Rcode])
			}
		}
		if n := len(h.up.seen()); n != 1 {
			t.Errorf("upstream asked %d times, want once", n)
		}
	})
}

func TestNegativeTTLIsTheSOAMinimum(t *testing.T) {
	soa := func(ttl, minimum uint32) miekg.RR {
		return &miekg.SOA{Hdr: miekg.RR_Header{Name: "test.", Rrtype: miekg.TypeSOA, Class: miekg.ClassINET, Ttl: ttl}, Ns: "ns.test.", Mbox: "h.test.", Minttl: minimum}
	}
	a, _ := miekg.NewRR("x.test. 60 IN A 198.51.100.1")
	for _, c := range []struct {
		name  string
		msg   *miekg.Msg
		ttl   uint32
		cache bool
	}{
		{"NXDOMAIN: the SOA's MINIMUM when smaller", &miekg.Msg{MsgHdr: miekg.MsgHdr{Rcode: miekg.RcodeNameError}, Ns: []miekg.RR{soa(300, 30)}}, 30, true},
		{"NXDOMAIN: the SOA's TTL when smaller", &miekg.Msg{MsgHdr: miekg.MsgHdr{Rcode: miekg.RcodeNameError}, Ns: []miekg.RR{soa(10, 30)}}, 10, true},
		{"NODATA: the SOA as well", &miekg.Msg{Ns: []miekg.RR{soa(300, 45)}}, 45, true},
		{"a negative answer without SOA is not cached", &miekg.Msg{MsgHdr: miekg.MsgHdr{Rcode: miekg.RcodeNameError}}, 0, false},
		{"an answer: its smallest TTL", &miekg.Msg{Answer: []miekg.RR{a}}, 60, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ttl, ok := minTTL(c.msg)
			if ttl != c.ttl || ok != c.cache {
				t.Errorf("minTTL = %d, %v; want %d, %v", ttl, ok, c.ttl, c.cache)
			}
		})
	}
}
