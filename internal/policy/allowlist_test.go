package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// mustParse parses text as "allowlist.txt" or fails the test.
func mustParse(t testing.TB, text string) *Allowlist {
	t.Helper()
	a, err := Parse([]byte(text), "allowlist.txt")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return a
}

func TestParseEntries(t *testing.T) {
	text := "\ufeff# comment line\n" +
		"\n" +
		"Example.COM.\n" +
		"*.github.com   # trailing comment\n" +
		"  git.example.com:8443\r\n" +
		"*.Internal.Example:9000\n" +
		"bücher.example\n" +
		"\t\n" +
		"_acme.example.org\n"
	a := mustParse(t, text)
	want := []Entry{
		{Pattern: "example.com", Line: 3},
		{Pattern: "*.github.com", Wildcard: true, Line: 4},
		{Pattern: "git.example.com", Port: 8443, Line: 5},
		{Pattern: "*.internal.example", Port: 9000, Wildcard: true, Line: 6},
		{Pattern: "xn--bcher-kva.example", Line: 7},
		{Pattern: "_acme.example.org", Line: 9},
	}
	got := a.Entries()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		want[i].Source = "allowlist.txt"
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if a.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", a.Len(), len(want))
	}
}

func TestEntryString(t *testing.T) {
	tests := []struct {
		entry Entry
		want  string
	}{
		{Entry{Pattern: "example.com"}, "example.com"},
		{Entry{Pattern: "*.example.com", Wildcard: true}, "*.example.com"},
		{Entry{Pattern: "alt.test", Port: 8443}, "alt.test:8443"},
		{Entry{Pattern: "*.example.com", Port: 8443, Wildcard: true}, "*.example.com:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.entry.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		line string
		want string // the whole error, after "allowlist.txt:2: "
	}{
		{"bare star", "*", `"*" matches everything; list domains explicitly`},
		{"bare star with port", "*:443", `"*:443" matches everything; list domains explicitly`},
		{"star dot", "*.", `"*." matches everything; list domains explicitly`},
		{"tld wildcard", "*.com", `"*.com" covers a whole top-level domain; list the domains you need, e.g. "*.example.com"`},
		{"tld wildcard trailing dot", "*.COM.", `"*.COM." covers a whole top-level domain; list the domains you need, e.g. "*.example.com"`},
		{"double star", "**.example.com", `"**.example.com": a wildcard must be the whole leftmost label, e.g. "*.example.com"`},
		{"inner wildcard", "a.*.com", `"a.*.com": a wildcard must be the whole leftmost label, e.g. "*.example.com"`},
		{"two wildcards", "*.*.example.com", `"*.*.example.com": a wildcard must be the whole leftmost label, e.g. "*.example.com"`},
		{"partial wildcard", "*foo.example.com", `"*foo.example.com": a wildcard must be the whole leftmost label, e.g. "*.example.com"`},
		{"ipv4", "10.0.0.1", `"10.0.0.1" is an IP address; destinations are host names and IP literals are always refused, so list the name the app connects to`},
		{"ipv4 port", "10.0.0.1:443", `"10.0.0.1:443" is an IP address`},
		{"ipv6 bracket", "[::1]", `"[::1]" is an IP address`},
		{"ipv6 bracket port", "[::1]:8443", `"[::1]:8443" is an IP address`},
		{"ipv6 bare", "2001:db8::1", `"2001:db8::1" is an IP address`},
		{"decimal ip", "3232235777", `"3232235777" is an IP address`},
		{"hex ip", "0xc0a80001", `"0xc0a80001" is an IP address`},
		{"wildcard over numbers", "*.10.0.0", `"*.10.0.0" is an IP address`},
		{"full-width ip", "１０．０．０．１", `"１０．０．０．１" ends in a number, so clients read it as an IP address; list a host name instead`},
		{"port zero", "example.com:0", `"example.com:0": port 0 is out of range; use 1-65535`},
		{"port too big", "example.com:65536", `"example.com:65536": port 65536 is out of range; use 1-65535`},
		{"port huge", "example.com:99999999999999999999", `out of range; use 1-65535`},
		{"port not number", "example.com:https", `"example.com:https": port "https" is not a number; write host:port, e.g. "example.com:8443"`},
		{"negative port", "example.com:-1", `port "-1" is not a number`},
		{"empty port", "example.com:", `"example.com:": empty port after ":"`},
		{"only port", ":443", `":443": empty host name; write a name such as example.com`},
		{"empty label", "a..example.com", `"a..example.com": empty label (two dots in a row, or a leading dot); remove the extra dot`},
		{"long label", strings.Repeat("x", 64) + ".com", `is 64 characters, the limit is 63`},
		{"long name", strings.Repeat("abcdefghi.", 26) + "com", `name is 263 characters, the limit is 253`},
		{"bad char", "exa!mple.com", `"exa!mple.com": character '!' is not allowed in a host name (use letters, digits, "-" or "_")`},
		{"url", "https://example.com/", `"https://example.com/": write the host name only, e.g. "example.com" or "*.example.com:8443"`},
		{"path", "example.com/api", `write the host name only`},
		{"two patterns", "a.com b.com", `"a.com b.com": one pattern per line; put comments after "#"`},
		{"bad punycode", "xn--a.example", `not a valid internationalised name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte("ok.example\n"+tt.line+"\n"), "allowlist.txt")
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want error %q", tt.line, tt.want)
			}
			prefix := "allowlist.txt:2: "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) error:\n  %s\nwant %q followed by:\n  %s", tt.line, err, prefix, tt.want)
			}
		})
	}
}

func TestParseReportsEveryBadLine(t *testing.T) {
	_, err := Parse([]byte("*\nok.example\n10.0.0.1\n"), "list.txt")
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "list.txt:1: ") || !strings.HasPrefix(lines[1], "list.txt:3: ") {
		t.Fatalf("error = %q, want one line each for lines 1 and 3", err)
	}

	var many strings.Builder
	for range 50 {
		many.WriteString("*\n")
	}
	_, err = Parse([]byte(many.String()), "list.txt")
	if n := strings.Count(err.Error(), "\n") + 1; n != maxReportedErrors {
		t.Fatalf("got %d error lines, want at most %d", n, maxReportedErrors)
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "allowlist.txt")
	if err := os.WriteFile(path, []byte("example.com\n*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Fatalf("ParseFile error = %v, want it to start with %q", err, path+":2: ")
	}

	_, err = ParseFile(filepath.Join(dir, "missing.txt"))
	if err == nil || !strings.Contains(err.Error(), "ALLOWLIST_FILE") {
		t.Fatalf("ParseFile(missing) error = %v, want a hint about ALLOWLIST_FILE", err)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "\n\n", "# only comments\n  # more\n"} {
		a := mustParse(t, text)
		if a.Len() != 0 {
			t.Fatalf("Parse(%q) has %d entries, want 0", text, a.Len())
		}
		if _, ok := a.Match("example.com", 443); ok {
			t.Fatalf("empty list matched example.com")
		}
	}
}

func TestMatch(t *testing.T) {
	a := mustParse(t, `
example.com
*.github.com
git.example.com:8443
*.internal.example:9000
alt.test:8443
alt.test
*.deep.example.org
x.deep.example.org:7000
bücher.example
`)
	tests := []struct {
		host     string
		port     int
		wantRule string // empty: no match
	}{
		{"example.com", 443, "example.com"},
		{"example.com", 80, "example.com"},
		{"example.com", 0, "example.com"},
		{"example.com", 8443, ""},
		{"www.example.com", 443, ""}, // exact entries do not cover subdomains
		{"notexample.com", 443, ""},
		{"github.com", 443, "*.github.com"}, // a wildcard covers its own name
		{"api.github.com", 443, "*.github.com"},
		{"a.b.c.github.com", 80, "*.github.com"},
		{"evilgithub.com", 443, ""},
		{"github.com.evil.test", 443, ""},
		{"git.example.com", 8443, "git.example.com:8443"},
		{"git.example.com", 443, ""},
		{"git.example.com", 0, "git.example.com:8443"},
		{"svc.internal.example", 9000, "*.internal.example:9000"},
		{"svc.internal.example", 443, ""},
		{"alt.test", 8443, "alt.test:8443"},
		{"alt.test", 443, "alt.test"},
		{"alt.test", 0, "alt.test:8443"}, // first in file order
		{"x.deep.example.org", 7000, "x.deep.example.org:7000"},
		{"x.deep.example.org", 443, "*.deep.example.org"}, // exact misses the port, wildcard catches it
		{"xn--bcher-kva.example", 443, "xn--bcher-kva.example"},
		{"", 443, ""},
		{"com", 443, ""},
		{"org", 0, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s:%d", tt.host, tt.port), func(t *testing.T) {
			e, ok := a.Match(tt.host, tt.port)
			switch {
			case tt.wantRule == "" && ok:
				t.Fatalf("Match(%q, %d) = %q, want no match", tt.host, tt.port, e)
			case tt.wantRule != "" && !ok:
				t.Fatalf("Match(%q, %d) = no match, want %q", tt.host, tt.port, tt.wantRule)
			case ok && e.String() != tt.wantRule:
				t.Fatalf("Match(%q, %d) = %q, want %q", tt.host, tt.port, e, tt.wantRule)
			}
		})
	}
}

func TestMatchNilAllowlist(t *testing.T) {
	var a *Allowlist
	if _, ok := a.Match("example.com", 443); ok {
		t.Fatal("nil allowlist matched")
	}
	if a.Entries() != nil || a.Len() != 0 {
		t.Fatal("nil allowlist has entries")
	}
}

func TestEntriesIsACopy(t *testing.T) {
	a := mustParse(t, "example.com\n")
	a.Entries()[0].Pattern = "evil.test"
	if _, ok := a.Match("example.com", 443); !ok || a.Entries()[0].Pattern != "example.com" {
		t.Fatal("modifying Entries() changed the allowlist")
	}
}

// bigList returns an allowlist text of n distinct entries, a quarter of
// them wildcards.
func bigList(n int) string {
	var b strings.Builder
	for i := range n {
		if i%4 == 0 {
			fmt.Fprintf(&b, "*.svc%d.example-domain.com\n", i)
		} else {
			fmt.Fprintf(&b, "host%d.example-domain.com\n", i)
		}
	}
	return b.String()
}

func TestLargeListMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a 100,000-entry list")
	}
	const n = 100_000
	text := []byte(bigList(n))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	a, err := Parse(text, "allowlist.txt")
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per entry", perEntry)
	if perEntry > 200 {
		t.Errorf("allowlist uses %.0f bytes per entry, want < 200", perEntry)
	}
	if _, ok := a.Match("x.y.svc99996.example-domain.com", 443); !ok {
		t.Error("wildcard entry near the end did not match")
	}
	if _, ok := a.Match("host99999.example-domain.com", 443); !ok {
		t.Error("exact entry at the end did not match")
	}
	runtime.KeepAlive(a)
}
