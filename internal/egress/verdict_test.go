package egress

import (
	"testing"

	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// TestDecide is the egress door's destination verdict as a table: what the
// connection verified and what the request claims, against one allowlist.
func TestDecide(t *testing.T) {
	list, err := policy.Parse([]byte("allowed.test\n*.wild.test\nalt.test:8443\n"), "allowlist.txt")
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.New(list, policy.NewGuard(nil))
	tls := func(sni, host string) requestFacts { return tlsFacts(sni, host, 443, "GET") }
	plain := func(host string) requestFacts { return requestFacts{Port: 80, Host: host, Method: "GET"} }
	with := func(f requestFacts, change func(*requestFacts)) requestFacts { change(&f); return f }

	cases := []struct {
		name     string
		facts    requestFacts
		audit    bool
		wantHost string
		want     string // the block reason, "" when let through
		wantRule string // the entry that allowed it
		wantLine int
		wouldBe  string // audit mode: the reason it would have been refused
	}{
		{"TLS, Host equals SNI", tls("allowed.test", "allowed.test"), false, "allowed.test", "", "allowed.test", 1, ""},
		{"TLS, Host differs only in case and dot", tls("allowed.test", "Allowed.Test."), false, "allowed.test", "", "allowed.test", 1, ""},
		{"TLS, Host with the connection's port", tls("allowed.test", "allowed.test:443"), false, "allowed.test", "", "allowed.test", 1, ""},
		{"TLS, no Host header (HTTP/1.0)", tls("allowed.test", ""), false, "allowed.test", "", "allowed.test", 1, ""},
		{"TLS, wildcard entry", tls("api.wild.test", "api.wild.test"), false, "api.wild.test", "", "*.wild.test", 2, ""},
		{"TLS, entry with its port", with(tls("alt.test", "alt.test:8443"), func(f *requestFacts) { f.Port = 8443 }), false, "alt.test", "", "alt.test:8443", 3, ""},

		{"TLS, Host names another site than SNI", tls("allowed.test", "denied.test"), false, "allowed.test", refusal.HostMismatch, "", 0, ""},
		{"TLS, Host port differs from the connection's", tls("allowed.test", "allowed.test:8443"), false, "allowed.test", refusal.HostMismatch, "", 0, ""},
		{"TLS without SNI to an IP", tls("", "203.0.113.10"), false, "203.0.113.10", refusal.IPLiteral, "", 0, ""},
		{"TLS without SNI and without Host", tls("", ""), false, "", refusal.IPLiteral, "", 0, ""},
		{"TLS with an IP as SNI, trailing dot", tls("203.0.113.10.", "203.0.113.10"), false, "203.0.113.10", refusal.IPLiteral, "", 0, ""},
		{"TLS without SNI, named Host", tls("", "allowed.test"), false, "allowed.test", refusal.NoSNI, "", 0, ""},
		{"TLS to a name not on the list", tls("denied.test", "denied.test"), false, "denied.test", refusal.NotAllowlisted, "", 0, ""},
		{"TLS to a listed name on another port", with(tls("alt.test", "alt.test"), func(f *requestFacts) { f.Port = 443 }), false, "alt.test", refusal.PortNotAllowed, "", 0, ""},
		{"CONNECT inside an intercepted connection", with(tls("allowed.test", "allowed.test:443"), func(f *requestFacts) { f.Method = "CONNECT" }), false, "allowed.test", refusal.Connect, "", 0, ""},
		{"CONNECT elsewhere is still CONNECT", with(tls("allowed.test", "evil.test:22"), func(f *requestFacts) { f.Method = "CONNECT" }), false, "evil.test", refusal.Connect, "", 0, ""},

		{"plain HTTP uses the Host header", plain("allowed.test"), false, "allowed.test", "", "allowed.test", 1, ""},
		{"plain HTTP without Host", plain(""), false, "", refusal.NoHost, "", 0, ""},
		{"plain HTTP, Host port differs", plain("allowed.test:443"), false, "allowed.test", refusal.HostMismatch, "", 0, ""},
		{"plain HTTP to an IP literal", plain("203.0.113.10"), false, "203.0.113.10", refusal.IPLiteral, "", 0, ""},
		{"plain HTTP to a decimal IP", plain("3405803786"), false, "3405803786", refusal.IPLiteral, "", 0, ""},

		{"audit: unlisted name goes, marked", tls("denied.test", "denied.test"), true, "denied.test", "", "", 0, refusal.NotAllowlisted},
		{"audit: wrong port goes, marked", with(tls("alt.test", "alt.test"), func(f *requestFacts) { f.Port = 443 }), true, "alt.test", "", "", 0, refusal.PortNotAllowed},
		{"audit: an IP literal is still refused", plain("203.0.113.10"), true, "203.0.113.10", refusal.IPLiteral, "", 0, ""},
		{"audit: Host games are still refused", tls("allowed.test", "denied.test"), true, "allowed.test", refusal.HostMismatch, "", 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			asked := 0
			v := decide(tc.facts, tc.audit, func(host policy.Host) policy.Decision {
				asked++
				return pol.DecideHost(host, tc.facts.Port)
			})
			got := ""
			if v.Block != nil {
				got = v.Block.Reason
				if v.Block.Message == "" {
					t.Error("a block without a message for the agent")
				}
			}
			if got != tc.want || v.Host != tc.wantHost || v.WouldBlock != tc.wouldBe {
				t.Fatalf("decide = host %q, block %q, would-block %q; want %q, %q, %q", v.Host, got, v.WouldBlock, tc.wantHost, tc.want, tc.wouldBe)
			}
			if v.Decision.Rule() != tc.wantRule || v.Decision.Entry.Line != tc.wantLine {
				t.Errorf("rule %q (line %d), want %q (line %d)", v.Decision.Rule(), v.Decision.Entry.Line, tc.wantRule, tc.wantLine)
			}
			if asked > 1 {
				t.Errorf("the policy was asked %d times", asked)
			}
		})
	}
}

// tlsFacts are the facts of a TLS request whose ClientHello named sni.
func tlsFacts(sni, host string, port int, method string) requestFacts {
	var m connMeta
	m.setSNI(sni)
	return requestFacts{TLS: true, SNI: m.sni, SNIHost: m.sniHost, SNIErr: m.sniErr, Port: port, Host: host, Method: method}
}
