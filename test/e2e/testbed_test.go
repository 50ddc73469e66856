//go:build e2e

package e2e

import (
	"slices"
	"strings"
	"testing"
)

// TestTestbed checks the testbed itself, with no panopticon: the app reaches
// the fake internet directly and every recorder notices. This is the positive
// control that makes "the attacker saw nothing" meaningful elsewhere.
func TestTestbed(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	app := tb.App(t)

	t.Run("app runs as uid 1000", func(t *testing.T) {
		if r := app.Agent("id"); r.Got != "uid=1000 gid=1000" {
			t.Fatalf("agent id: %s", r)
		}
	})
	t.Run("https to a named host, resolved through resolv.conf", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/")
		if !r.Is(200) || r.Body != "hello from allowed.test" {
			t.Fatalf("curl: %s", r)
		}
		AssertSeen(t, m, tb.Host("allowed.test"))
		if !tb.DNS.Asked(m, "allowed.test") {
			t.Errorf("DNS server did not see allowed.test: %v", tb.DNS.Since(m[&tb.DNS.recorder]))
		}
	})
	t.Run("plain http and alt port", func(t *testing.T) {
		if r := app.Curl("http://allowed.test/"); !r.Is(200) {
			t.Errorf("http: %s", r)
		}
		if r := app.Curl("https://alt.test:8443/"); !r.Is(200) || r.Body != "hello from alt.test" {
			t.Errorf("alt:8443: %s", r)
		}
	})
	t.Run("websocket echo", func(t *testing.T) {
		if r := app.Agent("ws", "wss://allowed.test/ws", "hello ws"); !r.OK || r.Got != "hello ws" {
			t.Fatalf("ws: %s", r)
		}
	})
	t.Run("sse events arrive spaced", func(t *testing.T) {
		r := app.Agent("sse", "https://allowed.test/sse")
		if !r.OK || len(r.Events) != 3 || r.Events[2]-r.Events[0] < 300 {
			t.Fatalf("sse: %s", r)
		}
	})
	t.Run("attacker tcp v4 and v6", func(t *testing.T) {
		for _, addr := range []string{AttackerIP + ":9999", "[" + AttackerIPv6 + "]:22"} {
			m := tb.Mark()
			r := app.Agent("tcp", addr)
			if !r.OK || !strings.Contains(r.Got, "ATTACKER") {
				t.Errorf("tcp %s: %s", addr, r)
			}
			AssertSeen(t, m, tb.Attacker)
		}
	})
	t.Run("attacker udp v4 and v6", func(t *testing.T) {
		for _, addr := range []string{AttackerIP + ":9999", "[" + AttackerIPv6 + "]:443"} {
			m := tb.Mark()
			r := app.Agent("udp", addr, "hi")
			if !r.OK || !strings.Contains(r.Got, "ATTACKER") {
				t.Errorf("udp %s: %s", addr, r)
			}
			AssertSeen(t, m, tb.Attacker)
		}
	})
	t.Run("attacker icmp v4 and v6", func(t *testing.T) {
		for _, addr := range []string{AttackerIP, AttackerIPv6} {
			m := tb.Mark()
			if r := app.Agent("ping", addr); !r.OK {
				t.Errorf("ping %s: %s", addr, r)
			}
			AssertSeen(t, m, tb.Attacker)
		}
	})
	t.Run("dns servers answer and record", func(t *testing.T) {
		m := tb.Mark()
		r := app.Agent("dns", UpstreamDNS, "Allowed.Test", "A")
		if r.Rcode != "NOERROR" || !slices.Equal(r.Answers, []string{"203.0.113.10"}) {
			t.Errorf("dns: %s", r)
		}
		if r := app.Agent("dns", UpstreamDNS, "nope.test", "A", "tcp"); r.Rcode != "NXDOMAIN" {
			t.Errorf("dns tcp nope.test: %s", r)
		}
		if r := app.Agent("dns", DirectDNSIP+":53", "denied.test", "A"); r.Rcode != "NOERROR" {
			t.Errorf("direct dns: %s", r)
		}
		if !tb.DNS.Asked(m, "allowed.test") || !tb.DNS.Asked(m, "nope.test") || !tb.DirectDNS.Asked(m, "denied.test") {
			t.Errorf("questions not recorded: upstream %v, direct %v", tb.DNS.Saw(), tb.DirectDNS.Saw())
		}
	})
	t.Run("uid 1337 gets out when nothing guards the pod", func(t *testing.T) {
		m := tb.Mark()
		if r := tb.AppAs(t, 1337, 1337).Agent("tcp", AttackerIP+":9999"); !r.OK {
			t.Errorf("tcp as 1337: %s", r)
		}
		AssertSeen(t, m, tb.Attacker)
	})
}
