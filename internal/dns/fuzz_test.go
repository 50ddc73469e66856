package dns

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// fuzzExchanger plays an upstream whose reply is fuzzer-chosen bytes.
type fuzzExchanger struct {
	reply []byte
	asked []string
}

func (f *fuzzExchanger) ExchangeContext(_ context.Context, m *miekg.Msg, _ string) (*miekg.Msg, time.Duration, error) {
	f.asked = append(f.asked, m.Question[0].Name)
	if len(f.reply) < 12 {
		return nil, 0, errors.New("no reply")
	}
	r := new(miekg.Msg)
	err := r.Unpack(f.reply)
	r.Id = m.Id // the fuzzer cannot guess our random ID; don't make it try
	return r, 0, err
}

func FuzzServeDNS(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed.query, seed.reply, seed.tcp)
	}
	f.Fuzz(func(t *testing.T, query, reply []byte, tcp bool) {
		r := new(miekg.Msg)
		if err := r.Unpack(query); err != nil {
			return // miekg drops (or FORMERRs) what it cannot unpack before ServeDNS
		}
		ex := &fuzzExchanger{reply: reply}
		pol := &fakePolicy{exact: []string{"allowed.test"}, wildcard: []string{"wild.test"}}
		s := &Server{Policy: pol, Guard: fakeGuard{}, Upstream: "192.0.2.53:53", UDP: ex, TCP: ex, Log: &recorder{}}
		w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
		if tcp {
			w.remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
		}

		s.ServeDNS(w, r)

		for _, name := range ex.asked {
			host := hostName(name)
			if strings.ContainsRune(host, '\\') || !pol.Decide(host, 0).Allow {
				t.Fatalf("denied name %q was sent upstream", name)
			}
		}
		if r.Response {
			if len(w.msgs) != 0 {
				t.Fatal("answered a response")
			}
			return
		}
		if len(w.msgs) != 1 {
			t.Fatalf("%d replies to one query", len(w.msgs))
		}
		out := w.msgs[0]
		wire, err := out.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, out)
		}
		if out.Id != r.Id || !out.Response {
			t.Fatalf("reply ID %d response=%v, want ID %d and a response", out.Id, out.Response, r.Id)
		}
		if opt, err := clientEDNS(r); !tcp && err == nil {
			limit := miekg.MinMsgSize
			if opt != nil && int(opt.UDPSize()) > limit {
				limit = int(opt.UDPSize())
			}
			if len(wire) > limit {
				t.Fatalf("UDP reply is %d bytes, client accepts %d", len(wire), limit)
			}
		}
		for _, section := range [][]miekg.RR{out.Answer, out.Ns, out.Extra} {
			for _, rr := range section {
				for _, ip := range recordAddrs(rr) {
					if ip.IsValid() && (fakeGuard{}.Check(ip) != nil || fakeGuard{}.Check(ip.Unmap()) != nil) {
						t.Fatalf("private address %v reached the client", ip)
					}
				}
			}
		}
	})
}

type fuzzSeed struct {
	query, reply []byte
	tcp          bool
}

// fuzzSeeds are well-formed exchanges to start from; testdata/fuzz/FuzzServeDNS
// holds more (odd EDNS, truncated and private replies).
func fuzzSeeds(f *testing.F) []fuzzSeed {
	pack := func(m *miekg.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			f.Fatalf("packing seed: %v", err)
		}
		return b
	}
	answer := func(q *miekg.Msg, records ...string) []byte {
		r := new(miekg.Msg).SetReply(q)
		for _, s := range records {
			rr, err := miekg.NewRR(s)
			if err != nil {
				f.Fatalf("seed record %q: %v", s, err)
			}
			r.Answer = append(r.Answer, rr)
		}
		return pack(r)
	}
	a := new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeA)
	aaaa := new(miekg.Msg).SetQuestion("www.wild.test.", miekg.TypeAAAA).SetEdns0(1232, true)
	denied := new(miekg.Msg).SetQuestion("evil.test.", miekg.TypeTXT)
	escaped := new(miekg.Msg).SetQuestion(`evil\.wild.test.`, miekg.TypeA)
	return []fuzzSeed{
		{pack(a), answer(a, "allowed.test. 60 IN A 198.51.100.7"), false},
		{pack(a), answer(a, "allowed.test. 60 IN A 10.0.0.5"), true},
		{pack(aaaa), answer(aaaa, "www.wild.test. 60 IN CNAME x.example.", "x.example. 60 IN AAAA ::ffff:127.0.0.1"), false},
		{pack(aaaa), answer(aaaa, "www.wild.test. 60 IN AAAA 2001:db8::1"), false},
		{pack(denied), nil, false},
		{pack(escaped), nil, true},
	}
}
