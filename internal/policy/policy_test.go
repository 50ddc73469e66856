package policy

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// verdict is what a Decision says, in the terms an allowlist is written in.
type verdict struct {
	Allow        bool
	Rule, Reason string
}

func TestDecide(t *testing.T) {
	p := New(mustParse(t, `
example.com
*.github.com
alt.test:8443
bücher.example
`), NewGuard(nil))
	tests := []struct {
		host string
		port int
		want verdict
	}{
		{"example.com", 443, verdict{Allow: true, Rule: "example.com"}},
		{"EXAMPLE.com.", 80, verdict{Allow: true, Rule: "example.com"}},
		{"example.com", 0, verdict{Allow: true, Rule: "example.com"}},
		{"example.com", 22, verdict{Reason: refusal.PortNotAllowed}},
		{"example.com", -1, verdict{Reason: refusal.PortNotAllowed}},
		{"api.GitHub.com", 443, verdict{Allow: true, Rule: "*.github.com"}},
		{"github.com", 443, verdict{Allow: true, Rule: "*.github.com"}},
		{"alt.test", 8443, verdict{Allow: true, Rule: "alt.test:8443"}},
		{"alt.test", 443, verdict{Reason: refusal.PortNotAllowed}},
		{"bücher.example", 443, verdict{Allow: true, Rule: "xn--bcher-kva.example"}},
		{"XN--BCHER-KVA.example", 443, verdict{Allow: true, Rule: "xn--bcher-kva.example"}},
		{"evil.test", 443, verdict{Reason: refusal.NotAllowlisted}},
		{"evil.test", 0, verdict{Reason: refusal.NotAllowlisted}},
		{"notgithub.com", 443, verdict{Reason: refusal.NotAllowlisted}},

		{"10.0.0.1", 443, verdict{Reason: refusal.IPLiteral}},
		{"1.2.3.4.", 443, verdict{Reason: refusal.IPLiteral}},
		{"3232235777", 443, verdict{Reason: refusal.IPLiteral}},
		{"0xc0a80001", 443, verdict{Reason: refusal.IPLiteral}},
		{"0300.0250.0.1", 443, verdict{Reason: refusal.IPLiteral}},
		{"127.1", 443, verdict{Reason: refusal.IPLiteral}},
		{"10.1.1", 443, verdict{Reason: refusal.IPLiteral}},
		{"::1", 443, verdict{Reason: refusal.IPLiteral}},
		{"[::1]", 443, verdict{Reason: refusal.IPLiteral}},
		{"::ffff:10.0.0.1", 443, verdict{Reason: refusal.IPLiteral}},
		{"fe80::1%eth0", 443, verdict{Reason: refusal.IPLiteral}},
		{"１２７．０．０．１", 443, verdict{Reason: refusal.IPLiteral}},
		{"example.com.123", 443, verdict{Reason: refusal.IPLiteral}},

		{"", 443, verdict{Reason: refusal.BadHost}},
		{".", 443, verdict{Reason: refusal.BadHost}},
		{"example.com:443", 443, verdict{Reason: refusal.BadHost}},
		{`evil\.github.com`, 443, verdict{Reason: refusal.BadHost}},
		{"example.com\x00", 443, verdict{Reason: refusal.BadHost}},
		{"exa mple.com", 443, verdict{Reason: refusal.BadHost}},
		{"*.github.com", 443, verdict{Reason: refusal.BadHost}},
		{"\xff\xfe", 443, verdict{Reason: refusal.BadHost}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q:%d", tt.host, tt.port), func(t *testing.T) {
			d := p.Decide(tt.host, tt.port)
			if got := (verdict{Allow: d.Allow, Rule: d.Rule(), Reason: d.Reason}); got != tt.want {
				t.Fatalf("Decide(%q, %d) = %+v, want %+v", tt.host, tt.port, got, tt.want)
			}
		})
	}
}

func TestNewNilList(t *testing.T) {
	p := New(nil, NewGuard(nil))
	if p.Current() == nil {
		t.Fatal("Current() = nil, want an empty allowlist")
	}
	if d := p.Decide("example.com", 443); d != (Decision{Reason: refusal.NotAllowlisted}) {
		t.Fatalf("Decide on an empty policy = %+v, want not-allowlisted", d)
	}
	p.Swap(mustParse(t, "example.com"))
	if !p.Decide("example.com", 443).Allow {
		t.Fatal("Decide after Swap refused an allowlisted host")
	}
	p.Swap(nil)
	if p.Decide("example.com", 443).Allow {
		t.Fatal("Decide after Swap(nil) allowed a host")
	}
}

func TestPolicyGuard(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
	p := New(nil, NewGuard(allow))
	if err := p.Guard().Check(netip.MustParseAddr("10.9.1.1")); err != nil {
		t.Fatalf("Guard() lost the exemption: %v", err)
	}
	if err := p.Guard().Check(netip.MustParseAddr("10.8.1.1")); err == nil {
		t.Fatal("Guard() allowed a private address")
	}
}

// TestSwapConcurrent runs Decide while the list is swapped; with -race it
// checks that readers never see a torn list.
func TestSwapConcurrent(t *testing.T) {
	a := mustParse(t, "a.example\n")
	b := mustParse(t, "b.example\n")
	p := New(a, NewGuard(nil))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				da, db := p.Decide("a.example", 443), p.Decide("b.example", 443)
				if !da.Allow && !db.Allow {
					// Both refused can happen across a swap between the two
					// calls, but each must be a clean not-allowlisted.
					if da.Reason != refusal.NotAllowlisted || db.Reason != refusal.NotAllowlisted {
						t.Errorf("unexpected decisions %+v %+v", da, db)
						return
					}
				}
			}
		})
	}
	for i := range 2000 {
		if i%2 == 0 {
			p.Swap(b)
		} else {
			p.Swap(a)
		}
	}
	wg.Wait()
}

// BenchmarkDecide (by allowlist size) is in bench/, where make bench reports it.

func BenchmarkDecideIDN(b *testing.B) {
	p := New(mustParse(b, "bücher.example\n"), NewGuard(nil))
	b.ReportAllocs()
	for b.Loop() {
		p.Decide("www.bücher.example", 443)
	}
}

func BenchmarkParse100k(b *testing.B) {
	data := []byte(bigList(100_000))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "allowlist.txt"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRuntimeEntriesAllowAlongsideTheFile(t *testing.T) {
	file, err := Parse([]byte("allowed.test\n"), "allowlist.txt")
	if err != nil {
		t.Fatal(err)
	}
	p := New(file, NewGuard(nil))
	if d := p.Decide("added.test", 443); d.Allow {
		t.Fatalf("added.test allowed before it was added: %+v", d)
	}
	rt, err := Parse([]byte("added.test\n"), "runtime")
	if err != nil {
		t.Fatal(err)
	}
	p.SetRuntime(rt)
	if d := p.Decide("added.test", 443); !d.Allow || d.Rule() != "added.test" {
		t.Fatalf("runtime entry not honoured: %+v", d)
	}
	if d := p.Decide("allowed.test", 443); !d.Allow {
		t.Fatalf("file entry lost when the runtime list was set: %+v", d)
	}
	p.Swap(file) // a file reload keeps runtime entries
	if d := p.Decide("added.test", 443); !d.Allow {
		t.Fatalf("file reload dropped the runtime entries: %+v", d)
	}
	if d := p.Decide("added.test", 8443); d.Allow || d.Reason != refusal.PortNotAllowed {
		t.Fatalf("runtime entry allowed another port: %+v", d)
	}
	p.SetRuntime(nil)
	if d := p.Decide("added.test", 443); d.Allow {
		t.Fatalf("removed runtime entry still allows: %+v", d)
	}
}

// Within is what "*.zone" means: the zone and whole labels under it.
func TestHostWithin(t *testing.T) {
	h := func(s string) Host {
		t.Helper()
		x, err := ParseHost(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	zone := h("example.com")
	for name, want := range map[string]bool{
		"example.com": true, "a.example.com": true, "a.b.EXAMPLE.com.": true,
		"xexample.com": false, "example.com.evil.test": false, "com": false,
	} {
		if got := h(name).Within(zone); got != want {
			t.Errorf("%q within example.com = %v, want %v", name, got, want)
		}
	}
	if h("example.com").Within(Host{}) {
		t.Error("a name is within the zero Host")
	}
}
