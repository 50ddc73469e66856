package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS answers A queries from zone and counts the questions it gets.
type fakeDNS struct {
	zone  map[string]string // canonical name → IPv4
	asked atomic.Int64
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	f.asked.Add(1)
	m := new(dns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	if ip, ok := f.zone[q.Name]; ok && q.Qtype == dns.TypeA {
		rr, _ := dns.NewRR(q.Name + " 60 IN A " + ip)
		m.Answer = append(m.Answer, rr)
	} else if !ok {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func startDNS(t *testing.T, zone map[string]string) (*fakeDNS, string) {
	t.Helper()
	f := &fakeDNS{zone: zone}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: f}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f, pc.LocalAddr().String()
}

// refuseLoopback is a guard that refuses 127.0.0.0/8 (policy.Guard's job in production).
type refuseLoopback struct{}

func (refuseLoopback) Check(ip netip.Addr) error {
	if ip.IsLoopback() {
		return errors.New("loopback")
	}
	return nil
}

func TestResolverCachesWithinTTL(t *testing.T) {
	f, addr := startDNS(t, map[string]string{"api.test.": "203.0.113.5"})
	r := NewResolver(addr, 0)
	for i := 0; i < 3; i++ {
		got, err := r.LookupHost(context.Background(), "API.test")
		if err != nil || len(got) != 1 || got[0].String() != "203.0.113.5" {
			t.Fatalf("lookup %d: %v %v", i, got, err)
		}
	}
	if n := f.asked.Load(); n != 2 { // one A and one AAAA question
		t.Fatalf("server asked %d times, want 2 (then cached)", n)
	}
}

func TestResolverReportsUnknownNames(t *testing.T) {
	_, addr := startDNS(t, nil)
	if _, err := NewResolver(addr, 0).LookupHost(context.Background(), "nope.test"); err == nil {
		t.Fatal("NXDOMAIN resolved")
	}
}

func TestDialerConnectsOnlyToWhatItResolved(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	_, addr := startDNS(t, map[string]string{"local.test.": "127.0.0.1"})

	t.Run("a name resolving to an allowed address is dialled", func(t *testing.T) {
		d := &Dialer{Resolver: NewResolver(addr, 0), Timeout: time.Second}
		c, err := d.DialContext(context.Background(), "tcp", "local.test:"+port)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("a name resolving into a guarded range is refused with a GuardError", func(t *testing.T) {
		d := &Dialer{Resolver: NewResolver(addr, 0), Guard: refuseLoopback{}, Timeout: time.Second}
		_, err := d.DialContext(context.Background(), "tcp", "local.test:"+port)
		var ge *GuardError
		if !errors.As(err, &ge) || ge.Host != "local.test" {
			t.Fatalf("err = %v, want a GuardError for local.test", err)
		}
	})
	t.Run("an IP literal is never dialled", func(t *testing.T) {
		d := &Dialer{Resolver: NewResolver(addr, 0), Timeout: time.Second}
		_, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
		if err == nil || !strings.Contains(err.Error(), "IP literal") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("panopticon's own configuration may name an IP literal, still guarded", func(t *testing.T) {
		d := &Dialer{Resolver: NewResolver(addr, 0), Timeout: time.Second, Literals: true}
		c, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		d.Guard = refuseLoopback{}
		var ge *GuardError
		if _, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:"+port); !errors.As(err, &ge) {
			t.Fatalf("err = %v, want a GuardError", err)
		}
	})
}
