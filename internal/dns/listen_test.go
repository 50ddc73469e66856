package dns

import (
	"context"
	"net"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

func TestListenValidates(t *testing.T) {
	ok := func() *Server {
		return &Server{Policy: &fakePolicy{}, Guard: fakeGuard{}, Upstream: "192.0.2.53:53"}
	}
	tests := []struct {
		name  string
		srv   func() *Server
		addrs []string
	}{
		{"no policy", func() *Server { s := ok(); s.Policy = nil; return s }, []string{"127.0.0.1:0"}},
		{"no guard", func() *Server { s := ok(); s.Guard = nil; return s }, []string{"127.0.0.1:0"}},
		{"bad upstream", func() *Server { s := ok(); s.Upstream = "192.0.2.53"; return s }, []string{"127.0.0.1:0"}},
		{"no addresses", ok, nil},
		{"bad address", ok, []string{"not-an-address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ls, err := tt.srv().Listen(tt.addrs); err == nil {
				ls.Close()
				t.Fatal("Listen succeeded")
			}
		})
	}
}

func TestListenReportsBindErrors(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s := &Server{Policy: &fakePolicy{}, Guard: fakeGuard{}, Upstream: "192.0.2.53:53"}
	if ls, err := s.Listen([]string{"127.0.0.1:0", taken.LocalAddr().String()}); err == nil {
		ls.Close()
		t.Fatal("Listen on a taken port succeeded")
	}
}

func TestListenRefusesUpstreamLoop(t *testing.T) {
	probe := &Server{Policy: &fakePolicy{}, Guard: fakeGuard{}, Upstream: "192.0.2.53:53"}
	ls, err := probe.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := ls.Addrs()[0]
	ls.Close()

	s := &Server{Policy: &fakePolicy{}, Guard: fakeGuard{}, Upstream: addr}
	if ls, err := s.Listen([]string{addr}); err == nil {
		ls.Close()
		t.Fatalf("upstream %s equal to the listener was accepted", addr)
	}
}

func TestServeBothTransportsAndIPv6(t *testing.T) {
	up := startUpstream(t, testZone(t))
	s := &Server{Policy: &fakePolicy{exact: []string{"allowed.test"}}, Guard: fakeGuard{}, Upstream: up.addr}
	addrs := []string{"127.0.0.1:0"}
	if c, err := net.ListenPacket("udp", "[::1]:0"); err == nil {
		c.Close()
		addrs = append(addrs, "[::1]:0")
	}
	ls, err := s.Listen(addrs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ls.Serve(ctx) }()

	for _, addr := range ls.Addrs() {
		for _, netw := range []string{"udp", "tcp"} {
			c := &miekg.Client{Net: netw, Timeout: 2 * time.Second}
			r, _, err := c.Exchange(new(miekg.Msg).SetQuestion("allowed.test.", miekg.TypeA), addr)
			if err != nil || r.Rcode != miekg.RcodeSuccess {
				t.Errorf("%s %s: %v %v", netw, addr, err, r)
			}
		}
	}
	if err := ls.Serve(ctx); err == nil {
		t.Error("second Serve succeeded")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	// The sockets are released.
	for _, addr := range ls.Addrs() {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Errorf("port %s still bound after shutdown: %v", addr, err)
			continue
		}
		c.Close()
	}
}

func TestServeCancelledImmediately(t *testing.T) {
	s := &Server{Policy: &fakePolicy{}, Guard: fakeGuard{}, Upstream: "192.0.2.53:53"}
	ls, err := s.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- ls.Serve(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}
