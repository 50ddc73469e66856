package egress

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// requestFacts is what the egress verdict knows about one request: what the
// connection established (port, TLS, the SNI read from the ClientHello) and
// what the request claims (method, Host).
type requestFacts struct {
	TLS    bool
	SNI    string // normalised once per connection; "" when the ClientHello had none
	Port   int    // the port the app connected to
	Host   string // the Host header (HTTP/2: :authority) as sent
	Method string
}

func factsOf(m *connMeta, r *http.Request) requestFacts {
	return requestFacts{TLS: m.tls, SNI: m.sni, Port: int(m.dst.Port()), Host: r.Host, Method: r.Method}
}

// verdict is the egress door's answer to one request's destination.
type verdict struct {
	Host string // the name the request goes to (or would have), normalised
	// Block refuses the request; nil lets it through.
	Block *Block
	// Decision is the policy's answer, when it was asked (it carries the
	// entry that allowed the name).
	Decision policy.Decision
	// WouldBlock is, in audit mode, the reason the allowlist would have
	// refused a request that is let through.
	WouldBlock string
}

// decide is the whole destination verdict for a request: which name it
// goes to, and whether it may. It is pure but for ask, the policy (asked at
// most once, only for a name the request may go to at all).
//
// For TLS the name is the SNI, and the Host header must agree with it
// (goproxy would otherwise dial the Host); for plain HTTP it is the Host
// header. A port in the Host header must be the port the app connected to.
// CONNECT is refused: inside an intercepted connection it would open a raw
// tunnel out of sight of every request check. In audit mode, what the
// allowlist refuses (not-allowlisted, port-not-allowed) is let through and
// marked; every other guard holds.
func decide(f requestFacts, audit bool, ask func(host string) policy.Decision) verdict {
	host, blk := destination(f)
	if f.Method == http.MethodConnect { // whatever its target says
		blk = &Block{Reason: refusal.Connect,
			Message: "CONNECT is not supported: connect to the destination directly; panopticon intercepts it"}
	}
	if blk != nil {
		return verdict{Host: host, Block: blk}
	}
	d := ask(host)
	v := verdict{Host: host, Decision: d}
	switch {
	case d.Allow:
	case audit && (d.Reason == refusal.NotAllowlisted || d.Reason == refusal.PortNotAllowed):
		v.WouldBlock = d.Reason
	default:
		v.Block = &Block{Reason: d.Reason, Message: policyMessage(host, f.Port, d.Reason)}
	}
	return v
}

// destination returns the name a request may go to, normalised (it is what
// we connect to and bind secrets to, never another spelling), or why it may
// not go anywhere.
func destination(f requestFacts) (string, *Block) {
	hostHdr, portHdr := splitHostPort(f.Host)
	if portHdr != "" && portHdr != strconv.Itoa(f.Port) {
		return hostHdr, &Block{Reason: refusal.HostMismatch, Message: fmt.Sprintf("Host port %s differs from the connection's port %d", portHdr, f.Port)}
	}
	if f.TLS {
		if f.SNI == "" {
			reason := refusal.NoSNI
			if hostHdr == "" || policy.IsIPLiteral(hostHdr) {
				reason = refusal.IPLiteral
			}
			return hostHdr, &Block{Reason: reason, Message: "TLS without a server name (SNI); use a host name, not an IP address"}
		}
		if hostHdr != "" && normalized(hostHdr) != f.SNI {
			return f.SNI, &Block{Reason: refusal.HostMismatch, Message: fmt.Sprintf("Host %q differs from the TLS server name %q", hostHdr, f.SNI)}
		}
		return f.SNI, nil
	}
	if hostHdr == "" {
		return "", &Block{Reason: refusal.NoHost, Message: "HTTP request without a Host header"}
	}
	return normalized(hostHdr), nil
}

// normalized is policy.NormalizeHost, or for what it refuses (IP literals,
// malformed names — the policy decides about those) the lower-cased name
// without a trailing dot.
func normalized(host string) string {
	if n, err := policy.NormalizeHost(host); err == nil {
		return n
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func splitHostPort(hp string) (string, string) {
	if h, p, err := net.SplitHostPort(hp); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), ""
}

func policyMessage(host string, port int, reason string) string {
	switch reason {
	case refusal.NotAllowlisted:
		return fmt.Sprintf("%s is not on the allowlist; add it to allowlist.txt to allow it", host)
	case refusal.PortNotAllowed:
		return fmt.Sprintf("%s is allowlisted, but not on port %d; add %s:%d to allow it", host, port, host, port)
	case refusal.IPLiteral:
		return fmt.Sprintf("%s is an IP address; destinations must be host names on the allowlist", host)
	default:
		return fmt.Sprintf("%s:%d refused (%s)", host, port, reason)
	}
}
