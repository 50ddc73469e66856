// Package policy decides whether a destination may be reached, and says why.
//
// It is pure: it parses the allowlist, normalises host names, matches them and
// guards against private upstream addresses, but it never opens a socket. Every
// door (transparent egress, DNS, inbound) asks the same *Policy.
//
//	list, err := policy.ParseFile("/etc/panopticon/allowlist.txt")
//	p := policy.New(list, policy.NewGuard(nil))
//	d := p.Decide("api.openai.com", 443) // d.Allow, d.Rule, d.Reason
//
// Non-goals: resolving names, reading certificates, logging.
package policy

import (
	"net/netip"
)

// Reasons a destination is refused. They appear verbatim in flow events.
const (
	ReasonNotAllowlisted = "not-allowlisted"  // no entry matches the host
	ReasonPortNotAllowed = "port-not-allowed" // an entry matches the host, but not on this port
	ReasonIPLiteral      = "ip-literal"       // destinations are names, never addresses
	ReasonBadHost        = "bad-host"         // empty or malformed host name
	ReasonPrivateAddress = "private-address"  // the name resolved into a guarded range
)

// Decision is the answer to "may this host:port be reached".
type Decision struct {
	Allow  bool
	Rule   string // the matching entry as written, e.g. "*.example.com" (when allowed)
	Reason string // one of the Reason constants (when refused); empty when allowed
}

// Entry is one allowlist line after normalisation.
type Entry struct {
	Pattern  string // normalised: "example.com" or "*.example.com"
	Port     int    // 0 means the default ports 443 and 80
	Wildcard bool
	Line     int    // 1-based line in Source
	Source   string // file name the entry came from
}

// String renders the entry as it would be written in the file, e.g. "*.example.com:8443".
func (e Entry) String() string { panic("unimplemented") }

// Allowlist is an immutable, parsed allowlist. Share it freely; replace it by swapping.
type Allowlist struct {
	// unexported fields: exact-name map, wildcard suffix map, entries
}

// Parse reads an allowlist. source names the input in errors ("allowlist.txt:7: ...").
// Syntax: one pattern per line; "#" starts a comment (whole line or trailing);
// blank lines ignored; case and trailing dots ignored; IDNs normalised to ASCII;
// "example.com", "*.example.com" (every subdomain and example.com itself),
// optionally ":port". IP literals, bare "*", "*.com"-style wildcards over a
// single label, and malformed names are errors that suggest the fix.
func Parse(data []byte, source string) (*Allowlist, error) { panic("unimplemented") }

// ParseFile reads and parses path.
func ParseFile(path string) (*Allowlist, error) { panic("unimplemented") }

// Entries returns the entries in file order.
func (a *Allowlist) Entries() []Entry { panic("unimplemented") }

// Match returns the entry that allows host on port (port 0: any port, for DNS).
// host must already be normalised.
func (a *Allowlist) Match(host string, port int) (Entry, bool) { panic("unimplemented") }

// NormalizeHost lower-cases, strips one trailing dot, converts IDNs to ASCII
// (punycode) and validates the result as a DNS name. The same function serves
// validation at load time and matching at run time.
func NormalizeHost(host string) (string, error) { panic("unimplemented") }

// IsIPLiteral reports whether host spells an IP address in any form a client
// might accept: dotted quad, bracketed or bare IPv6, IPv4-mapped IPv6, and the
// legacy inet_aton forms (decimal "3232235777", hex "0xc0a80001", octal
// "0300.0250.0.1", short "127.1"), with or without a trailing dot.
func IsIPLiteral(host string) bool { panic("unimplemented") }

// Guard refuses upstream addresses in private ranges: loopback, RFC 1918,
// CGNAT 100.64.0.0/10, link-local (169.254.0.0/16 incl. metadata, fe80::/10),
// IPv6 ULA fc00::/7, unspecified, multicast, broadcast, IPv4-mapped forms of
// those — unless a prefix in allow contains the address.
type Guard struct {
	allow []netip.Prefix
}

// NewGuard returns a guard exempting allow (ALLOW_PRIVATE_CIDRS).
func NewGuard(allow []netip.Prefix) Guard { return Guard{allow: allow} }

// Check returns nil when ip may be dialled, or an error naming the range.
func (g Guard) Check(ip netip.Addr) error { panic("unimplemented") }

// Policy is the live policy every door asks. Safe for concurrent use.
type Policy struct {
	// list atomic.Pointer[Allowlist]; guard Guard
}

// New returns a Policy serving list.
func New(list *Allowlist, guard Guard) *Policy { panic("unimplemented") }

// Swap replaces the allowlist atomically (hot reload).
func (p *Policy) Swap(list *Allowlist) { panic("unimplemented") }

// Current returns the allowlist in force.
func (p *Policy) Current() *Allowlist { panic("unimplemented") }

// Guard returns the private-address guard.
func (p *Policy) Guard() Guard { panic("unimplemented") }

// Decide answers whether host:port may be reached. host is as the client sent it
// (SNI or Host header, any case, maybe a trailing dot or an IP literal); port 0
// means "any port" (used by DNS). Never panics on hostile input.
func (p *Policy) Decide(host string, port int) Decision { panic("unimplemented") }
