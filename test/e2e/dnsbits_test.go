//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestDNSCarriesNoAgentBits plays an agent that uses DNS queries for an
// allowed name as a covert channel: the case of each letter (0x20), the query
// type, the class, header flags and EDNS options are all bits it chooses. It
// asserts on what the upstream resolver in the fake internet received: only
// canonical questions, and a repeated negative answer asked once.
func TestDNSCarriesNoAgentBits(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.PreparePanopticon(t, "allowed.test\n*.neg.test\n")
	p.start(t)
	app := tb.App(t)

	dig := func(t *testing.T, args ...string) string {
		t.Helper()
		r := app.Run(15*time.Second, append([]string{"dig", "+tries=1", "+time=3", "@" + NetIP}, args...)...)
		if r.Exit != 0 && !strings.Contains(r.Stdout, "status:") {
			t.Fatalf("dig %v: %s", args, r)
		}
		return r.Stdout
	}
	// upstreamSaw returns the lines the fake resolver recorded since m.
	upstreamSaw := func(m Marks) []string { return tb.DNS.Since(m[&tb.DNS.recorder]) }

	t.Run("the name goes upstream in lower case; the agent gets its own spelling back", func(t *testing.T) {
		m := tb.Mark()
		out := dig(t, "AlLoWeD.TeSt", "A")
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "AlLoWeD.TeSt.") {
			t.Fatalf("dig: %s", out)
		}
		saw := upstreamSaw(m)
		if len(saw) == 0 {
			t.Fatal("the upstream resolver saw no question")
		}
		for _, line := range saw {
			if f := strings.Fields(line); len(f) < 2 || f[1] != "allowed.test." {
				t.Errorf("upstream saw %q, want allowed.test. in lower case", line)
			}
		}
	})
	t.Run("header flags, the DO bit and EDNS options stay at the proxy", func(t *testing.T) {
		m := tb.Mark()
		out := dig(t, "+dnssec", "+cdflag", "+adflag", "+subnet=198.51.100.0/24", "+cookie=0102030405060708", "+ednsopt=65001:6578", "allowed.test", "TXT")
		if !strings.Contains(out, "status: NOERROR") {
			t.Fatalf("dig: %s", out)
		}
		saw := upstreamSaw(m)
		if len(saw) == 0 {
			t.Fatal("the upstream resolver saw no question (an empty TXT answer has no SOA, so it is not cached)")
		}
		for _, line := range saw {
			if !strings.Contains(line, "class=IN do=false opts=0 cd=false ad=false") {
				t.Errorf("upstream query carried agent bits: %q", line)
			}
		}
	})
	t.Run("unusual types and classes are answered locally and never forwarded", func(t *testing.T) {
		m := tb.Mark()
		for _, q := range [][]string{{"allowed.test", "TYPE65400"}, {"allowed.test", "TYPE300"}, {"allowed.test", "NULL"},
			{"-c", "CH", "allowed.test", "TXT"}, {"-c", "ANY", "allowed.test", "A"}} {
			if out := dig(t, q...); !strings.Contains(out, "status: NOTIMP") {
				t.Errorf("dig %v: want NOTIMP, got %s", q, clip(out, 300))
			}
		}
		if saw := upstreamSaw(m); len(saw) != 0 {
			t.Errorf("the upstream resolver received %v", saw)
		}
	})
	t.Run("a repeated negative answer is asked upstream once", func(t *testing.T) {
		m := tb.Mark()
		for range 3 {
			if out := dig(t, "nothing.neg.test", "A"); !strings.Contains(out, "status: NXDOMAIN") {
				t.Fatalf("want NXDOMAIN, got %s", clip(out, 300))
			}
		}
		n := 0
		for _, line := range upstreamSaw(m) {
			if strings.Contains(line, "nothing.neg.test.") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the upstream resolver was asked %d times, want once", n)
		}
	})
}
