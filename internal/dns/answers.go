package dns

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	miekg "github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

// What an upstream answer says: the addresses in it, for the rebinding
// guard and the flow log.

// privateAddress reports the first address in resp the guard refuses: A and
// AAAA records in any section, and the address hints of SVCB/HTTPS records.
func (s *Server) privateAddress(resp *miekg.Msg) (string, bool) {
	for _, section := range [][]miekg.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range section {
			for _, ip := range recordAddrs(rr) {
				if s.refuses(ip) {
					return ip.String(), true
				}
			}
		}
	}
	return "", false
}

// refuses reports whether the guard refuses ip. An IPv4-mapped IPv6 address is
// checked in both forms, so a guard that forgets to unmap still catches it.
func (s *Server) refuses(ip netip.Addr) bool {
	if s.Guard == nil || !ip.IsValid() {
		return true
	}
	if s.Guard.Check(ip) != nil {
		return true
	}
	return ip.Is4In6() && s.Guard.Check(ip.Unmap()) != nil
}

// recordAddrs returns the addresses rr would direct a client to. A malformed
// address comes back invalid, and the guard refuses it.
func recordAddrs(rr miekg.RR) []netip.Addr {
	switch v := rr.(type) {
	case *miekg.A:
		return []netip.Addr{addr4(v.A)}
	case *miekg.AAAA:
		return []netip.Addr{addr6(v.AAAA)}
	case *miekg.SVCB:
		return hintAddrs(v.Value)
	case *miekg.HTTPS:
		return hintAddrs(v.Value)
	}
	return nil
}

// addr4 converts an A record's address (4 or 16 bytes in memory).
func addr4(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

// addr6 converts an AAAA record's address, keeping an IPv4-mapped form as such.
func addr6(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To16())
	return a
}

func hintAddrs(kvs []miekg.SVCBKeyValue) []netip.Addr {
	var addrs []netip.Addr
	for _, kv := range kvs {
		switch h := kv.(type) {
		case *miekg.SVCBIPv4Hint:
			for _, ip := range h.Hint {
				addrs = append(addrs, addr4(ip))
			}
		case *miekg.SVCBIPv6Hint:
			for _, ip := range h.Hint {
				addrs = append(addrs, addr6(ip))
			}
		}
	}
	return addrs
}

// logAnswers puts the answer's addresses and CNAME chain into ev.Detail.
func logAnswers(resp *miekg.Msg, ev *flowlog.Event) {
	var answers, chain []string
	for _, rr := range resp.Answer {
		switch v := rr.(type) {
		case *miekg.A:
			answers = append(answers, addr4(v.A).String())
		case *miekg.AAAA:
			answers = append(answers, addr6(v.AAAA).String())
		case *miekg.CNAME:
			target := hostName(v.Target)
			answers = append(answers, target)
			if len(chain) == 0 {
				chain = append(chain, hostName(v.Hdr.Name))
			}
			chain = append(chain, target)
		}
	}
	if n := len(answers); n > maxLoggedAnswers {
		answers = append(answers[:maxLoggedAnswers], fmt.Sprintf("...(+%d)", n-maxLoggedAnswers))
	}
	if len(answers) > 0 {
		ev.Detail[DetailAnswers] = strings.Join(answers, ",")
	}
	if len(chain) > 0 {
		ev.Detail[DetailCNAMEs] = strings.Join(chain, ">")
	}
}
