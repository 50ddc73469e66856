//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// subcommand runs `panopticon NAME` in the pod with panopticon's environment.
func (p *Panopticon) subcommand(name string, timeout time.Duration) RunResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", p.tb.Pod, panopticonBin, name)
	cmd.Env = p.Env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := RunResult{Stdout: stdout.String(), Stderr: stderr.String(), Dur: time.Since(start), Exit: -1}
	if ee, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
		r.Exit = ee.ExitCode()
	} else if err == nil {
		r.Exit = 0
	}
	return r
}

// TestSelftest: `panopticon selftest` passes while panopticon runs, the
// healthcheck's quiet variant leaves no flow events, and with our chains
// flushed (a throwaway testbed) the self-test fails, naming what got out.
func TestSelftest(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.StartPanopticon(t, "allowed.test\n")

	r := p.subcommand("selftest", 15*time.Second)
	if r.Exit != 0 || !strings.Contains(r.Stdout, "selftest passed") {
		t.Fatalf("selftest with panopticon running: %s", r)
	}
	for _, probe := range []string{"udp", "ipv6-udp", "ipv6-tcp", "dns", "direct-ip"} {
		if !strings.Contains(r.Stdout, probe) {
			t.Errorf("selftest output does not mention probe %s:\n%s", probe, r.Stdout)
		}
	}
	t.Logf("selftest took %v:\n%s", r.Dur.Round(time.Millisecond), r.Stdout)
	p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "block", Reason: "ip-literal", Host: "192.0.2.1"})

	// The healthcheck (which ran during start-up) uses the quiet probes.
	if out, err := p.Healthcheck(); err != nil {
		t.Errorf("healthcheck: %v: %s", err, out)
	}
	n := 0
	for _, f := range p.Flows(t) {
		if f.Host == "192.0.2.1" || strings.Contains(f.Host, "healthcheck") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d flow events from self-test probes, want exactly the one of the full selftest", n)
	}

	// Now take the firewall away: the self-test must notice, loudly.
	for _, cmd := range [][]string{
		{"iptables", "-t", "nat", "-F", "PANOPTICON_NAT"},
		{"iptables", "-F", "PANOPTICON_OUT"},
		{"ip6tables", "-t", "nat", "-F", "PANOPTICON_NAT"},
		{"ip6tables", "-F", "PANOPTICON_OUT"},
	} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", tb.Pod}, cmd...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	r = p.subcommand("selftest", 15*time.Second)
	if r.Exit == 0 || !strings.Contains(r.Stderr, "SELFTEST FAILED") {
		t.Fatalf("selftest without the firewall: %s; want a loud failure", r)
	}
	for _, probe := range []string{"udp", "ipv6-udp", "ipv6-tcp", "dns", "direct-ip"} {
		if !strings.Contains(r.Stderr, probe+" (") {
			t.Errorf("the failure does not name probe %s:\n%s", probe, r.Stderr)
		}
	}
	t.Logf("selftest without the firewall (%v):\n%s", r.Dur.Round(time.Millisecond), r.Stderr)
	if out, err := p.Healthcheck(); err == nil {
		t.Errorf("healthcheck passed without the firewall: %s", out)
	}
}
