package policy

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

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
		want Decision
	}{
		{"example.com", 443, Decision{Allow: true, Rule: "example.com"}},
		{"EXAMPLE.com.", 80, Decision{Allow: true, Rule: "example.com"}},
		{"example.com", 0, Decision{Allow: true, Rule: "example.com"}},
		{"example.com", 22, Decision{Reason: ReasonPortNotAllowed}},
		{"example.com", -1, Decision{Reason: ReasonPortNotAllowed}},
		{"api.GitHub.com", 443, Decision{Allow: true, Rule: "*.github.com"}},
		{"github.com", 443, Decision{Allow: true, Rule: "*.github.com"}},
		{"alt.test", 8443, Decision{Allow: true, Rule: "alt.test:8443"}},
		{"alt.test", 443, Decision{Reason: ReasonPortNotAllowed}},
		{"bücher.example", 443, Decision{Allow: true, Rule: "xn--bcher-kva.example"}},
		{"XN--BCHER-KVA.example", 443, Decision{Allow: true, Rule: "xn--bcher-kva.example"}},
		{"evil.test", 443, Decision{Reason: ReasonNotAllowlisted}},
		{"evil.test", 0, Decision{Reason: ReasonNotAllowlisted}},
		{"notgithub.com", 443, Decision{Reason: ReasonNotAllowlisted}},

		{"10.0.0.1", 443, Decision{Reason: ReasonIPLiteral}},
		{"1.2.3.4.", 443, Decision{Reason: ReasonIPLiteral}},
		{"3232235777", 443, Decision{Reason: ReasonIPLiteral}},
		{"0xc0a80001", 443, Decision{Reason: ReasonIPLiteral}},
		{"0300.0250.0.1", 443, Decision{Reason: ReasonIPLiteral}},
		{"127.1", 443, Decision{Reason: ReasonIPLiteral}},
		{"10.1.1", 443, Decision{Reason: ReasonIPLiteral}},
		{"::1", 443, Decision{Reason: ReasonIPLiteral}},
		{"[::1]", 443, Decision{Reason: ReasonIPLiteral}},
		{"::ffff:10.0.0.1", 443, Decision{Reason: ReasonIPLiteral}},
		{"fe80::1%eth0", 443, Decision{Reason: ReasonIPLiteral}},
		{"１２７．０．０．１", 443, Decision{Reason: ReasonIPLiteral}},
		{"example.com.123", 443, Decision{Reason: ReasonIPLiteral}},

		{"", 443, Decision{Reason: ReasonBadHost}},
		{".", 443, Decision{Reason: ReasonBadHost}},
		{"example.com:443", 443, Decision{Reason: ReasonBadHost}},
		{`evil\.github.com`, 443, Decision{Reason: ReasonBadHost}},
		{"example.com\x00", 443, Decision{Reason: ReasonBadHost}},
		{"exa mple.com", 443, Decision{Reason: ReasonBadHost}},
		{"*.github.com", 443, Decision{Reason: ReasonBadHost}},
		{"\xff\xfe", 443, Decision{Reason: ReasonBadHost}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q:%d", tt.host, tt.port), func(t *testing.T) {
			if got := p.Decide(tt.host, tt.port); got != tt.want {
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
	if d := p.Decide("example.com", 443); d != (Decision{Reason: ReasonNotAllowlisted}) {
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
					if da.Reason != ReasonNotAllowlisted || db.Reason != ReasonNotAllowlisted {
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

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		list, err := Parse([]byte(bigList(n)), "allowlist.txt")
		if err != nil {
			b.Fatal(err)
		}
		p := New(list, NewGuard(nil))
		hosts := []string{
			fmt.Sprintf("host%d.example-domain.com", n-1),            // exact
			fmt.Sprintf("a.b.c.svc%d.example-domain.com", (n-1)/4*4), // wildcard, deep
			"api.not-listed.example",                                 // miss
			"API.Example-Domain.COM.",                                // miss, needs lower-casing
		}
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Decide(hosts[i%len(hosts)], 443)
				i++
			}
		})
	}
}

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
	if d := p.Decide("added.test", 443); !d.Allow || d.Rule != "added.test" {
		t.Fatalf("runtime entry not honoured: %+v", d)
	}
	if d := p.Decide("allowed.test", 443); !d.Allow {
		t.Fatalf("file entry lost when the runtime list was set: %+v", d)
	}
	p.Swap(file) // a file reload keeps runtime entries
	if d := p.Decide("added.test", 443); !d.Allow {
		t.Fatalf("file reload dropped the runtime entries: %+v", d)
	}
	if d := p.Decide("added.test", 8443); d.Allow || d.Reason != ReasonPortNotAllowed {
		t.Fatalf("runtime entry allowed another port: %+v", d)
	}
	p.SetRuntime(nil)
	if d := p.Decide("added.test", 443); d.Allow {
		t.Fatalf("removed runtime entry still allows: %+v", d)
	}
}
