package policy

import (
	"errors"
	"fmt"

	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// Host is a destination name in the one spelling every door and every check
// uses: lower case, without the trailing dot, IDNs in ASCII (punycode),
// checked as a DNS name and never an IP address. A door makes one with
// ParseHost from what the client sent, once; everything after (the policy,
// the secret rules, the upstream dial, the flow log) takes the Host and
// never normalises it again. The zero Host is no name.
type Host struct{ name string }

// ParseHost normalises s (see NormalizeHost). Its error says why s is not a
// host name; HostRefusal turns it into the refusal reason.
func ParseHost(s string) (Host, error) {
	if IsIPLiteral(s) {
		return Host{}, fmt.Errorf("%q is an IP address: %w", clip(s), errIPLiteral)
	}
	name, err := NormalizeHost(s)
	if err != nil {
		return Host{}, err
	}
	return Host{name}, nil
}

// String is the normalised name.
func (h Host) String() string { return h.name }

// IsZero reports whether h is no name.
func (h Host) IsZero() bool { return h.name == "" }

// Within reports whether h is zone or a name under it: what "*.zone" means
// wherever a pattern is written (the allowlist, INBOUND_HOSTNAMES).
func (h Host) Within(zone Host) bool {
	return !zone.IsZero() && (h.name == zone.name ||
		len(h.name) > len(zone.name) && h.name[len(h.name)-len(zone.name)-1] == '.' && h.name[len(h.name)-len(zone.name):] == zone.name)
}

// HostRefusal is the refusal reason of a ParseHost error: ip-literal for an
// address (in any spelling clients accept), bad-host for anything else.
func HostRefusal(err error) string {
	if errors.Is(err, errIPLiteral) {
		return refusal.IPLiteral
	}
	return refusal.BadHost
}

// DecideHost answers whether h:port may be reached (see Decide).
func (p *Policy) DecideHost(h Host, port int) Decision {
	if h.IsZero() {
		return Decision{Reason: refusal.BadHost}
	}
	lists := [2]*Allowlist{p.Current(), p.Runtime()}
	for _, list := range lists {
		if e, ok := list.Match(h.name, port); ok {
			return Decision{Allow: true, Entry: e}
		}
	}
	if port != 0 {
		for _, list := range lists {
			if _, ok := list.Match(h.name, 0); ok {
				return Decision{Reason: refusal.PortNotAllowed}
			}
		}
	}
	return Decision{Reason: refusal.NotAllowlisted}
}
