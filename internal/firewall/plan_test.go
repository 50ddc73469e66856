package firewall

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden files")

// testSpec is the default deployment: inbound HTTPS, WSS and dashboard.
func testSpec() Spec {
	return Spec{
		ProxyUID:        1337,
		Mark:            0x539,
		TransparentPort: 8080,
		DNSPort:         5353,
		InboundPorts:    []int{443, 12000, 8081},
		DashboardPort:   8081,
	}
}

func TestBuildPlanGolden(t *testing.T) {
	restricted := testSpec()
	restricted.InboundPorts = []int{443, 8081}
	restricted.InboundAllow = []netip.Prefix{
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("203.0.113.7/32"),
	}
	noDashboard := testSpec()
	noDashboard.DashboardPort = 0
	noDashboard.InboundPorts = []int{443}
	cases := []struct {
		name string
		spec Spec
	}{
		{"defaults", testSpec()},
		{"inbound allowlist", restricted},
		{"no dashboard", noDashboard},
	}
	for _, fam := range []Family{IPv4, IPv6} {
		t.Run(fam.String(), func(t *testing.T) {
			var b strings.Builder
			for _, c := range cases {
				b.WriteString("## case: " + c.name + "\n")
				b.WriteString(BuildPlan(c.spec, fam).String())
				b.WriteString("\n")
			}
			checkGolden(t, filepath.Join("testdata", "golden", fam.String()+".rules"), b.String())
		})
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatalf("updating golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestBuildPlanInvariants(t *testing.T) {
	for _, fam := range []Family{IPv4, IPv6} {
		t.Run(fam.String(), func(t *testing.T) {
			p := BuildPlan(testSpec(), fam)
			nat := chainArgs(p, "nat", ChainNAT)
			if len(nat) == 0 || !strings.Contains(nat[0], "--uid-owner 1337 -m mark --mark 0x539 -j RETURN") {
				t.Errorf("first nat rule must exempt uid+mark, got %q", nat)
			}
			dns, lo := indexOf(nat, "--dport 53 -j REDIRECT"), indexOf(nat, "-o lo -j RETURN")
			if dns < 0 || lo < 0 || dns > lo {
				t.Errorf("DNS redirect (%d) must precede loopback exemption (%d)", dns, lo)
			}
			for _, c := range []string{ChainOut, ChainIn} {
				rules := chainArgs(p, "filter", c)
				last := rules[len(rules)-1]
				if !strings.HasPrefix(last, "-j REJECT") && last != "-j DROP" {
					t.Errorf("%s must end with a catch-all REJECT/DROP, ends with %q", c, last)
				}
			}
			for _, j := range p.Jumps {
				if !slices.Contains([]string{"INPUT", "OUTPUT", "POSTROUTING", "PREROUTING"}, j.Chain) || len(j.Args) != 2 {
					t.Errorf("jump %v is not a plain jump from a built-in chain", j)
				}
			}
		})
	}
}

func TestBuildPlanInboundAllowOtherFamilyClosed(t *testing.T) {
	s := testSpec()
	s.InboundAllow = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	for _, r := range chainArgs(BuildPlan(s, IPv6), "filter", ChainIn) {
		if strings.Contains(r, "--dport") {
			t.Errorf("IPv4-only allowlist opened an IPv6 port: %q", r)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(*Spec)
		wantErr string
	}{
		{"valid", func(*Spec) {}, ""},
		{"root uid", func(s *Spec) { s.ProxyUID = 0 }, "proxy uid 0"},
		{"zero mark", func(s *Spec) { s.Mark = 0 }, "mark must not be 0"},
		{"no transparent port", func(s *Spec) { s.TransparentPort = 0 }, "transparent port 0"},
		{"dns port too big", func(s *Spec) { s.DNSPort = 70000 }, "DNS port 70000"},
		{"bad inbound port", func(s *Spec) { s.InboundPorts = []int{-1} }, "inbound port -1"},
		{"bad dashboard port", func(s *Spec) { s.DashboardPort = 65536 }, "dashboard port 65536"},
		{"no dashboard is fine", func(s *Spec) { s.DashboardPort = 0 }, ""},
		{"invalid prefix", func(s *Spec) { s.InboundAllow = []netip.Prefix{{}} }, "is invalid"},
		{"mapped prefix", func(s *Spec) {
			s.InboundAllow = []netip.Prefix{netip.MustParsePrefix("::ffff:198.51.100.0/120")}
		}, "IPv4-mapped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := testSpec()
			c.edit(&s)
			err := s.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, c.wantErr)
			}
		})
	}
}

func chainArgs(p Plan, table, chain string) []string {
	var out []string
	for _, r := range p.Rules {
		if r.Table == table && r.Chain == chain {
			out = append(out, strings.Join(r.Args, " "))
		}
	}
	return out
}

func indexOf(rules []string, substr string) int {
	return slices.IndexFunc(rules, func(r string) bool { return strings.Contains(r, substr) })
}

func TestDashboardLocalUIDsAreAcceptedBeforeTheReject(t *testing.T) {
	s := testSpec()
	s.DashboardLocalUIDs = []int{0}
	for _, fam := range []Family{IPv4, IPv6} {
		rules := chainArgs(BuildPlan(s, fam), "filter", ChainOut)
		allow := indexOf(rules, "--dport 8081 -m owner --uid-owner 0 -j ACCEPT")
		reject := indexOf(rules, "--dport 8081 -j REJECT")
		if allow < 0 || reject < 0 || allow > reject {
			t.Fatalf("%s: uid 0 accept at %d, reject at %d:\n%s", fam, allow, reject, strings.Join(rules, "\n"))
		}
	}
	if idx := indexOf(chainArgs(BuildPlan(testSpec(), IPv4), "filter", ChainOut), "--uid-owner 0"); idx >= 0 {
		t.Fatal("uid 0 is let through without DashboardLocalUIDs")
	}
}
