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
	TLS     bool
	SNI     string      // the ClientHello's server name; "" when it had none
	SNIHost policy.Host // the SNI parsed once per connection (zero when it did not parse)
	SNIErr  error       // why the SNI is not a host name
	Port    int         // the port the app connected to
	Host    string      // the Host header (HTTP/2: :authority) as sent
	Method  string
}

func factsOf(m *connMeta, r *http.Request) requestFacts {
	return requestFacts{TLS: m.tls, SNI: m.sni, SNIHost: m.sniHost, SNIErr: m.sniErr, Port: int(m.dst.Port()), Host: r.Host, Method: r.Method}
}

// verdict is the egress door's answer to one request's destination.
type verdict struct {
	Host string      // the name the request goes to (or would have), for the log and the agent
	Name policy.Host // Host, parsed: set whenever the policy was asked
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
func decide(f requestFacts, audit bool, ask func(host policy.Host) policy.Decision) verdict {
	name, host, blk := destination(f)
	if f.Method == http.MethodConnect { // whatever its target says
		blk = &Block{Reason: refusal.Connect,
			Message: "CONNECT is not supported: connect to the destination directly; panopticon intercepts it"}
	}
	if blk != nil {
		return verdict{Host: host, Block: blk}
	}
	d := ask(name)
	v := verdict{Host: host, Name: name, Decision: d}
	switch {
	case d.Allow:
	case audit && (d.Reason == refusal.NotAllowlisted || d.Reason == refusal.PortNotAllowed):
		v.WouldBlock = d.Reason
	default:
		v.Block = &Block{Reason: d.Reason, Message: policyMessage(host, f.Port, d.Reason)}
	}
	return v
}

// destination returns the name a request may go to, parsed once (it is
// what we connect to and bind secrets to, never another spelling) and as
// shown, or why it may not go anywhere.
func destination(f requestFacts) (policy.Host, string, *Block) {
	hostHdr, portHdr := splitHostPort(f.Host)
	if portHdr != "" && portHdr != strconv.Itoa(f.Port) {
		return policy.Host{}, hostHdr, &Block{Reason: refusal.HostMismatch, Message: fmt.Sprintf("Host port %s differs from the connection's port %d", portHdr, f.Port)}
	}
	if !f.TLS {
		if hostHdr == "" {
			return policy.Host{}, "", &Block{Reason: refusal.NoHost, Message: "HTTP request without a Host header"}
		}
		name, err := policy.ParseHost(hostHdr)
		if err != nil {
			return name, strings.ToLower(strings.TrimSuffix(hostHdr, ".")), hostBlock(hostHdr, f.Port, err)
		}
		return name, name.String(), nil
	}
	if f.SNI == "" {
		reason := refusal.NoSNI
		if hostHdr == "" || policy.IsIPLiteral(hostHdr) {
			reason = refusal.IPLiteral
		}
		return policy.Host{}, hostHdr, &Block{Reason: reason, Message: "TLS without a server name (SNI); use a host name, not an IP address"}
	}
	if hostHdr != "" {
		h, err := policy.ParseHost(hostHdr)
		if same := err == nil && h == f.SNIHost || err != nil && f.SNIErr != nil && strings.EqualFold(strings.TrimSuffix(hostHdr, "."), strings.TrimSuffix(f.SNI, ".")); !same {
			return policy.Host{}, f.SNI, &Block{Reason: refusal.HostMismatch, Message: fmt.Sprintf("Host %q differs from the TLS server name %q", hostHdr, f.SNI)}
		}
	}
	if f.SNIErr != nil {
		return policy.Host{}, strings.ToLower(strings.TrimSuffix(f.SNI, ".")), hostBlock(f.SNI, f.Port, f.SNIErr)
	}
	return f.SNIHost, f.SNI, nil
}

// hostBlock refuses a name that is not a host name, as the policy would.
func hostBlock(name string, port int, err error) *Block {
	reason := policy.HostRefusal(err)
	return &Block{Reason: reason, Message: policyMessage(strings.ToLower(strings.TrimSuffix(name, ".")), port, reason)}
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
