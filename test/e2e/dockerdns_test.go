//go:build e2e

package e2e

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDockerEmbeddedResolverIsNotAWayOut stands up what Docker puts in a
// container's namespace — a resolver on 127.0.0.11 at a random port — and
// plays the agent asking it directly (the port is readable in
// /proc/net/udp). Such a resolver answers any name, so only panopticon may
// talk to it.
func TestDockerEmbeddedResolverIsNotAWayOut(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	var asked atomic.Int64
	var pc net.PacketConn
	if err := tb.inNetns(tb.Pod, func() (err error) {
		pc, err = net.ListenPacket("udp", "127.0.0.11:5300")
		return err
	}); err != nil {
		t.Fatalf("fake Docker resolver: %v", err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A " + AttackerIP)
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	// Without panopticon the agent reaches it (the control).
	app := tb.App(t)
	if r := app.Agent("dns", "127.0.0.11:5300", "denied.test", "A"); !r.OK {
		t.Fatalf("control: the fake resolver does not answer: %s", r)
	}
	before := asked.Load()

	tb.StartPanopticon(t, "allowed.test\n")
	r := app.Agent("dns", "127.0.0.11:5300", "denied.test", "A")
	if r.OK {
		t.Errorf("the agent resolved a denied name through Docker's resolver: %s", r)
	}
	assertFast(t, time.Duration(r.MS)*time.Millisecond)
	if n := asked.Load() - before; n != 0 {
		t.Errorf("the resolver on 127.0.0.11 got %d queries from the agent, want none", n)
	}
}
