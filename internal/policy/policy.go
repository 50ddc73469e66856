// Package policy decides whether a destination may be reached, and says why.
//
// It exists so that the egress door, the DNS door and the dashboard give one
// answer for one name. It is pure: it parses the allowlist, normalises host
// names, matches them and guards against private upstream addresses, but it
// never opens a socket. A Decision carries the Entry that allowed (with its
// file and line) or a refusal token (internal/refusal). Host is the one
// normalised spelling of a name: a door parses what the client sent once
// (ParseHost) and passes the Host on (DecideHost, the secret rules).
// Host.Within is what "*.x" means, in the allowlist and in
// INBOUND_HOSTNAMES alike.
//
//	list, err := policy.ParseFile("/etc/panopticon/allowlist.txt")
//	p := policy.New(list, policy.NewGuard(nil))
//	d := p.Decide("api.openai.com", 443) // d.Allow, d.Entry, d.Reason
//
//	file, err := filewatch.Open("allowlist", func() (*policy.Allowlist, error) { return policy.ParseFile(path) }, path)
//	go file.Watch(ctx, time.Second, p.Swap, logIt) // hot reload
//	if err := p.Guard().Check(addr); err != nil { /* refusal.PrivateAddress */ }
//
// Matching costs O(labels of the host) whatever the size of the list, so lists
// of 100,000 entries are fine. Host names are normalised by one function,
// NormalizeHost (behind ParseHost), at load time and at run time alike.
//
// Non-goals: resolving names, reading certificates, logging, public-suffix
// knowledge beyond refusing wildcards over a single label ("*.com").
package policy

import (
	"strconv"
	"sync/atomic"
)

// Decision is the answer to "may this host:port be reached".
type Decision struct {
	Allow  bool
	Entry  Entry  // the matching entry, with its file and line (when allowed)
	Reason string // a refusal token (internal/refusal) when refused; empty when allowed
}

// Rule is the matching entry as written, e.g. "*.example.com:8443" ("" when refused).
func (d Decision) Rule() string {
	if !d.Allow {
		return ""
	}
	return d.Entry.String()
}

// RuleSource is where the matching entry was written, "allowlist.txt:7"
// ("" when refused).
func (d Decision) RuleSource() string {
	if !d.Allow || d.Entry.Source == "" {
		return ""
	}
	return d.Entry.Source + ":" + strconv.Itoa(d.Entry.Line)
}

// Policy is the live policy every door asks. Safe for concurrent use.
type Policy struct {
	list    atomic.Pointer[Allowlist]
	runtime atomic.Pointer[Allowlist] // entries added at run time (dashboard), kept apart from the file
	guard   Guard
	gen     atomic.Uint64 // bumped by every Swap and SetRuntime
}

// emptyList stands in for a nil list: it matches nothing.
var emptyList = newAllowlist(nil)

// New returns a Policy serving list.
func New(list *Allowlist, guard Guard) *Policy {
	p := &Policy{guard: guard}
	p.Swap(list)
	p.SetRuntime(nil)
	return p
}

// SetRuntime replaces the runtime allowlist: entries added while running (from
// the dashboard), consulted after the file's and never written into it.
func (p *Policy) SetRuntime(list *Allowlist) {
	if list == nil {
		list = emptyList
	}
	p.runtime.Store(list)
	p.gen.Add(1)
}

// Generation changes whenever either allowlist is replaced, so doors can
// re-check what they already let through (revocation).
func (p *Policy) Generation() uint64 { return p.gen.Load() }

// Runtime returns the runtime allowlist in force.
func (p *Policy) Runtime() *Allowlist { return p.runtime.Load() }

// Swap replaces the allowlist atomically (hot reload). A nil list is empty:
// everything is refused.
func (p *Policy) Swap(list *Allowlist) {
	if list == nil {
		list = emptyList
	}
	p.list.Store(list)
	p.gen.Add(1)
}

// Current returns the allowlist in force (never nil).
func (p *Policy) Current() *Allowlist { return p.list.Load() }

// Guard returns the private-address guard.
func (p *Policy) Guard() Guard { return p.guard }

// Decide answers whether host:port may be reached. host is as the client sent it
// (SNI or Host header, any case, maybe a trailing dot or an IP literal); port 0
// means "any port" (used by DNS). Never panics on hostile input.
func (p *Policy) Decide(host string, port int) Decision {
	h, err := ParseHost(host)
	if err != nil {
		return Decision{Reason: HostRefusal(err)}
	}
	return p.DecideHost(h, port)
}
