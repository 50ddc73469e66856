package firewall

import (
	"fmt"
	"strings"
	"testing"
)

// dockerFake is a Fake holding Docker's embedded-DNS rules, which live in the
// same namespace and must survive everything we do.
func dockerFake(t *testing.T) *Fake {
	t.Helper()
	f := NewFake()
	mustDo(t, f.NewChain("nat", "DOCKER_OUTPUT"))
	mustDo(t, f.Append("nat", "DOCKER_OUTPUT", "-d", "127.0.0.11/32", "-p", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", "127.0.0.11:40000"))
	mustDo(t, f.Append("nat", "OUTPUT", "-d", "127.0.0.11/32", "-j", "DOCKER_OUTPUT"))
	mustDo(t, f.Append("filter", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"))
	return f
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestApplyIdempotentAndLeavesForeignRules(t *testing.T) {
	for _, fam := range []Family{IPv4, IPv6} {
		t.Run(fam.String(), func(t *testing.T) {
			f := dockerFake(t)
			p := BuildPlan(testSpec(), fam)
			mustDo(t, Apply(f, p))
			first := f.Dump()
			mustDo(t, Apply(f, p))
			if second := f.Dump(); second != first {
				t.Fatalf("second Apply changed state:\n--- first\n%s--- second\n%s", first, second)
			}
			mustDo(t, Check(f, p))

			for _, want := range []string{
				"-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp --dport 53 -j DNAT --to-destination 127.0.0.11:40000\n",
				"-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n",
				"-A OUTPUT -p tcp --dport 9 -j ACCEPT\n",
			} {
				if !strings.Contains(first, want) {
					t.Errorf("foreign rule %q lost:\n%s", want, first)
				}
			}
			for _, j := range p.Jumps {
				lines, err := f.List(j.Table, j.Chain)
				mustDo(t, err)
				if got, want := lines[1], "-A "+j.Chain+" "+strings.Join(j.Args, " "); got != want {
					t.Errorf("%s/%s rule 1 = %q, want our jump %q", j.Table, j.Chain, got, want)
				}
				if n := strings.Count(first, "-A "+j.Chain+" "+strings.Join(j.Args, " ")+"\n"); n != 1 {
					t.Errorf("jump %v present %d times, want 1", j, n)
				}
			}
		})
	}
}

func TestApplyReplacesChangedSpec(t *testing.T) {
	f := dockerFake(t)
	old := testSpec()
	old.InboundPorts = []int{443, 12000, 8081, 9999}
	mustDo(t, Apply(f, BuildPlan(old, IPv4)))
	mustDo(t, Apply(f, BuildPlan(testSpec(), IPv4)))

	fresh := dockerFake(t)
	mustDo(t, Apply(fresh, BuildPlan(testSpec(), IPv4)))
	if got, want := f.Dump(), fresh.Dump(); got != want {
		t.Fatalf("re-Apply with a new spec differs from a fresh Apply:\n--- got\n%s--- want\n%s", got, want)
	}
}

func TestApplyReplacesShorterChain(t *testing.T) {
	f := NewFake()
	mustDo(t, f.NewChain("filter", ChainOut))
	mustDo(t, f.Append("filter", ChainOut, "-j", "ACCEPT"))
	p := BuildPlan(testSpec(), IPv4)
	mustDo(t, Apply(f, p))
	mustDo(t, Check(f, p))
}

func TestCheckReportsMissing(t *testing.T) {
	p := BuildPlan(testSpec(), IPv4)
	n := len(chainArgs(p, "filter", ChainOut))
	cases := []struct {
		name   string
		mutate func(t *testing.T, f *Fake)
		want   []string
	}{
		{"nothing applied", func(*testing.T, *Fake) {}, []string{
			"chain nat/PANOPTICON_NAT is missing", "jump filter/OUTPUT -j PANOPTICON_OUT is missing",
		}},
		{"rule deleted", func(t *testing.T, f *Fake) {
			mustDo(t, Apply(f, p))
			mustDo(t, f.DeleteIfExists("filter", ChainOut, "-o", "lo", "-j", "ACCEPT"))
		}, []string{"rule filter/PANOPTICON_OUT -o lo -j ACCEPT is missing", fmt.Sprintf("has %d rules, want %d", n-1, n)}},
		{"jump deleted", func(t *testing.T, f *Fake) {
			mustDo(t, Apply(f, p))
			mustDo(t, f.DeleteIfExists("nat", "OUTPUT", "-j", ChainNAT))
		}, []string{"jump nat/OUTPUT -j PANOPTICON_NAT is missing"}},
		{"extra rule", func(t *testing.T, f *Fake) {
			mustDo(t, Apply(f, p))
			mustDo(t, f.Insert("filter", ChainOut, 1, "-j", "ACCEPT"))
		}, []string{fmt.Sprintf("has %d rules, want %d", n+1, n)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := NewFake()
			c.mutate(t, f)
			err := Check(f, p)
			if err == nil {
				t.Fatal("Check() = nil, want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check() error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestRemove(t *testing.T) {
	p := BuildPlan(testSpec(), IPv6)
	cases := []struct {
		name  string
		setup func(t *testing.T, f *Fake)
	}{
		{"applied", func(t *testing.T, f *Fake) { mustDo(t, Apply(f, p)) }},
		{"nothing to remove", func(*testing.T, *Fake) {}},
		{"duplicate jumps", func(t *testing.T, f *Fake) {
			mustDo(t, Apply(f, p))
			mustDo(t, f.Append("filter", "OUTPUT", "-j", ChainOut))
		}},
		{"jump gone, chain left", func(t *testing.T, f *Fake) {
			mustDo(t, Apply(f, p))
			mustDo(t, f.DeleteIfExists("filter", "INPUT", "-j", ChainIn))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, pristine := dockerFake(t), dockerFake(t).Dump()
			c.setup(t, f)
			mustDo(t, Remove(f, p))
			mustDo(t, Remove(f, p))
			if got := f.Dump(); got != pristine {
				t.Fatalf("after Remove:\n%s\nwant:\n%s", got, pristine)
			}
		})
	}
}
