//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// TestAuditMode runs panopticon with MODE=audit: what the allowlist would
// refuse goes through and is logged as would-block, while every guard that
// is not the allowlist (IP literals, Host ≠ SNI, other protocols) still holds.
func TestAuditMode(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.PreparePanopticon(t, "allowed.test\n")
	p.Env = append(p.Env, "MODE=audit")
	p.start(t)
	app := tb.App(t)

	t.Run("a name off the allowlist resolves and is reached, logged as would-block", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://denied.test/")
		if !r.Is(200) || !strings.Contains(r.Body, "hello from denied.test") {
			t.Fatalf("audit mode: denied.test = %s", r)
		}
		AssertSeen(t, m, tb.Host("denied.test"))
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "would-block", Reason: "not-allowlisted", Host: "denied.test"})
		p.WaitFlow(t, FlowMatch{Kind: "dns", Decision: "would-block", Host: "denied.test"})
	})

	t.Run("allowlisted names are plain allows", func(t *testing.T) {
		if r := app.Curl("https://allowed.test/"); !r.Is(200) {
			t.Fatalf("allowed.test = %s", r)
		}
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "allow", Host: "allowed.test"})
	})

	t.Run("IP literals are still blocked", func(t *testing.T) {
		m := tb.Mark()
		assertBlocked(t, app.Curl("https://203.0.113.20/", "-k"), "ip-literal")
		AssertUnseen(t, m, tb.Host("denied.test"))
	})

	t.Run("Host different from SNI is still blocked", func(t *testing.T) {
		m := tb.Mark()
		assertBlocked(t, app.Curl("https://allowed.test/", "-H", "Host: denied.test"), "host-mismatch")
		AssertUnseen(t, m, tb.Host("denied.test"))
	})

	t.Run("other protocols still have no way out", func(t *testing.T) {
		m := tb.Mark()
		r := app.Agent("udp", AttackerIP+":9999", "audit")
		if r.OK {
			t.Errorf("UDP left in audit mode: %s", r)
		}
		AssertUnseen(t, m, tb.Attacker)
	})
}
