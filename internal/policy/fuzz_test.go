package policy

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// round-trips: each entry, written back with String, parses to itself and
// matches its own name.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"example.com\n*.github.com # code\nalt.test:8443\n",
		"bücher.example\n*.xn--bcher-kva.example:443\n",
		"*\n*.com\n10.0.0.1\n[::1]:443\n",
		"\ufeff# c\r\n\r\n_x.example\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(data, "fuzz.txt")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.txt:") {
				t.Fatalf("error %q does not name the source", err)
			}
			return
		}
		for _, e := range a.Entries() {
			b, err := Parse([]byte(e.String()), "again.txt")
			if err != nil {
				t.Fatalf("entry %q from %q does not parse again: %v", e, data, err)
			}
			again := b.Entries()
			if len(again) != 1 || again[0].Pattern != e.Pattern || again[0].Port != e.Port || again[0].Wildcard != e.Wildcard {
				t.Fatalf("entry %q parses again as %v", e, again)
			}
			if _, ok := a.Match(e.name(), e.Port); !ok {
				t.Fatalf("entry %q does not match its own name", e)
			}
			if IsIPLiteral(e.name()) {
				t.Fatalf("entry %q is an IP literal", e)
			}
		}
	})
}

// FuzzDecide checks that Decide never panics on hostile hosts, that an
// allowed host is a normalised name matched by the rule it reports, and
// that NormalizeHost is idempotent.
func FuzzDecide(f *testing.F) {
	list := mustParse(f, "example.com\n*.github.com\nalt.test:8443\nbücher.example\n")
	p := New(list, NewGuard(nil))
	for _, s := range []struct {
		host string
		port int
	}{
		{"example.com", 443},
		{"API.GITHUB.COM.", 80},
		{"alt.test", 8443},
		{"bücher.example", 0},
		{"0xc0a80001", 443},
		{"[::ffff:10.0.0.1]:443", 443},
		{"fe80::1%eth0", 443},
		{"１２７．０．０．１", 443},
		{"evil\\.github.com", 443},
		{"xn--zz-.example", 443},
		{"", -1},
	} {
		f.Add(s.host, s.port)
	}
	f.Fuzz(func(t *testing.T, host string, port int) {
		d := p.Decide(host, port)
		if d.Allow == (d.Reason != "") {
			t.Fatalf("Decide(%q, %d) = %+v: exactly one of Allow and Reason must be set", host, port, d)
		}
		name, err := NormalizeHost(host)
		if err == nil {
			again, err := NormalizeHost(name)
			if err != nil || again != name {
				t.Fatalf("NormalizeHost not idempotent: %q -> %q -> %q, %v", host, name, again, err)
			}
		}
		if !d.Allow {
			return
		}
		if err != nil {
			t.Fatalf("Decide(%q) allowed a host NormalizeHost rejects: %v", host, err)
		}
		if IsIPLiteral(host) || IsIPLiteral(name) {
			t.Fatalf("Decide(%q) allowed an IP literal", host)
		}
		e, ok := list.Match(name, port)
		if !ok || e.String() != d.Rule() {
			t.Fatalf("Decide(%q, %d) rule %q, but Match gives %q, %v", host, port, d.Rule(), e, ok)
		}
	})
}
