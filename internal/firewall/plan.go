package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Family selects IPv4 (iptables) or IPv6 (ip6tables).
type Family int

const (
	IPv4 Family = iota
	IPv6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	default:
		return "family(" + strconv.Itoa(int(f)) + ")"
	}
}

// Chain names owned by panopticon. Nothing outside these is ever flushed.
const (
	ChainNAT = "PANOPTICON_NAT" // nat, jumped to from nat OUTPUT
	ChainOut = "PANOPTICON_OUT" // filter, jumped to from filter OUTPUT
	ChainIn  = "PANOPTICON_IN"  // filter, jumped to from filter INPUT
	// ChainPost (mangle, jumped to from mangle POSTROUTING) drops packets
	// bound for loopback that are about to leave through another device.
	ChainPost = "PANOPTICON_POST"
	// ChainZoneOut and ChainZoneIn (raw, from OUTPUT and PREROUTING) put
	// every connection panopticon has with the outside into a conntrack
	// zone of its own (see ConntrackZone).
	ChainZoneOut = "PANOPTICON_ZONE_OUT"
	ChainZoneIn  = "PANOPTICON_ZONE_IN"
)

// ConntrackZone is the conntrack zone of panopticon's traffic with the
// outside, derived from the mark (never 0, the default zone).
//
// The app and panopticon share one conntrack table and one port space. A
// connection entry outlives its socket (a UDP one 30 s and more), so the
// app's next socket may get the very tuple panopticon just used — say
// pod:40123 → resolver:53. Its packet then belongs to panopticon's entry:
// it is not NEW, so nat does not redirect it, and it either leaks (when
// "established" is accepted) or is refused. The reverse sends panopticon
// into an entry the app's redirect made, and back to itself. Separate zones
// keep the two tables apart.
func ConntrackZone(mark uint32) int {
	if z := int(mark & 0xffff); z != 0 {
		return z
	}
	return 1
}

// dockerResolver is Docker's embedded DNS server inside a container's namespace.
const dockerResolver = "127.0.0.11/32"

// Spec is what the firewall needs to know about panopticon.
type Spec struct {
	ProxyUID        int            // uid panopticon runs as after the privilege drop
	Mark            uint32         // SO_MARK on panopticon's upstream sockets; must not be 0
	TransparentPort int            // where redirected TCP lands
	DNSPort         int            // where redirected DNS (udp+tcp 53) lands
	InboundPorts    []int          // TCP ports open to the outside
	InboundAllow    []netip.Prefix // sources allowed on InboundPorts; empty = everyone
	DashboardPort   int            // 0 = none; over loopback only uid+mark may connect
	// DashboardLocalUIDs may also reach the dashboard from inside the
	// namespace (e.g. 0 for kubectl port-forward, which the container
	// runtime dials from inside the pod). Opt-in: only where the app cannot
	// run as one of these uids.
	DashboardLocalUIDs []int
}

// Validate reports the first setting that would make the rules wrong or
// open. BuildPlan assumes a valid Spec.
func (s Spec) Validate() error {
	var errs []error
	if s.ProxyUID <= 0 {
		// uid 0 would let any root process in the app leave.
		errs = append(errs, fmt.Errorf("firewall: proxy uid %d must be > 0", s.ProxyUID))
	}
	if s.Mark == 0 {
		// Every unmarked socket carries mark 0, so "--mark 0" would match the app.
		errs = append(errs, errors.New("firewall: socket mark must not be 0"))
	}
	port := func(name string, p int) {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("firewall: %s %d is not a port in 1-65535", name, p))
		}
	}
	port("transparent port", s.TransparentPort)
	port("DNS port", s.DNSPort)
	for _, p := range s.InboundPorts {
		port("inbound port", p)
	}
	if s.DashboardPort != 0 {
		port("dashboard port", s.DashboardPort)
	}
	for _, p := range s.InboundAllow {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("firewall: inbound allow prefix %v is invalid", p))
		} else if p.Addr().Is4In6() {
			errs = append(errs, fmt.Errorf("firewall: inbound allow prefix %v is IPv4-mapped IPv6; write it as IPv4", p))
		}
	}
	return errors.Join(errs...)
}

// Rule is one iptables rule spec in Table/Chain.
type Rule struct {
	Table, Chain string
	Args         []string
}

func (r Rule) String() string { return r.Chain + " " + strings.Join(r.Args, " ") }

// ChainRef names a chain we own.
type ChainRef struct{ Table, Name string }

// Plan is the complete rule set for one family.
type Plan struct {
	Family Family
	Chains []ChainRef // our chains
	Rules  []Rule     // rules in our chains, in order
	Jumps  []Rule     // one jump per built-in chain, inserted at position 1
}

// BuildPlan computes the rules for family f. It is pure.
func BuildPlan(s Spec, f Family) Plan {
	v6 := f == IPv6
	loopback := "127.0.0.0/8"
	if v6 {
		loopback = "::1/128"
	}
	uid := strconv.Itoa(s.ProxyUID)
	mark := fmt.Sprintf("%#x", s.Mark) // iptables prints marks in hex
	self := []string{"-m", "owner", "--uid-owner", uid, "-m", "mark", "--mark", mark}
	itoa := strconv.Itoa

	p := Plan{
		Family: f,
		Chains: []ChainRef{{"nat", ChainNAT}, {"filter", ChainOut}, {"filter", ChainIn}, {"mangle", ChainPost},
			{"raw", ChainZoneOut}, {"raw", ChainZoneIn}},
		// Close first (filter, mangle), then zones (raw), redirect last (nat).
		Jumps: []Rule{
			{"filter", "OUTPUT", []string{"-j", ChainOut}},
			{"filter", "INPUT", []string{"-j", ChainIn}},
			{"mangle", "POSTROUTING", []string{"-j", ChainPost}},
			{"raw", "OUTPUT", []string{"-j", ChainZoneOut}},
			{"raw", "PREROUTING", []string{"-j", ChainZoneIn}},
			{"nat", "OUTPUT", []string{"-j", ChainNAT}},
		},
	}
	add := func(table, chain string, args ...string) {
		p.Rules = append(p.Rules, Rule{table, chain, args})
	}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, x := range parts {
			out = append(out, x...)
		}
		return out
	}

	// nat: panopticon's own sockets pass; DNS is redirected before the
	// loopback exemption so the app cannot use Docker's 127.0.0.11 directly.
	add("nat", ChainNAT, cat(self, []string{"-j", "RETURN"})...)
	if v6 {
		// Link-local is never redirected: a socket scoped to an interface
		// would carry the redirected packet (now bound for ::1) out of that
		// interface. Unredirected, filter rejects it at once.
		add("nat", ChainNAT, "-d", "fe80::/10", "-j", "RETURN")
	}
	add("nat", ChainNAT, "-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", itoa(s.DNSPort))
	add("nat", ChainNAT, "-p", "tcp", "--dport", "53", "-j", "REDIRECT", "--to-ports", itoa(s.DNSPort))
	add("nat", ChainNAT, "-o", "lo", "-j", "RETURN")
	add("nat", ChainNAT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", itoa(s.TransparentPort))

	// filter OUTPUT.
	if s.DashboardPort != 0 {
		// "not (uid and mark)" as first-match: accept uid+mark, reject the
		// rest. No "-o lo": after nat the port is the real one, and only a
		// local connection (or one of ours, redirected anyway) can carry it.
		dash := []string{"-p", "tcp", "--dport", itoa(s.DashboardPort)}
		add("filter", ChainOut, cat(dash, self, []string{"-j", "ACCEPT"})...)
		for _, uid := range s.DashboardLocalUIDs {
			add("filter", ChainOut, cat(dash, []string{"-m", "owner", "--uid-owner", itoa(uid), "-j", "ACCEPT"})...)
		}
		add("filter", ChainOut, cat(dash, []string{"-j", "REJECT", "--reject-with", "tcp-reset"})...)
	}
	if !v6 {
		// Docker's embedded resolver listens on 127.0.0.11 at a random port
		// (its nat rule maps :53 there, after ours). Queries to :53 are
		// redirected to us before they get there, but the app can read the
		// real port from /proc/net/udp and ask it directly; it would resolve
		// any name. Only panopticon may talk to it.
		add("filter", ChainOut, cat([]string{"-d", dockerResolver}, self, []string{"-j", "ACCEPT"})...)
		add("filter", ChainOut, "-d", dockerResolver, "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
	}
	add("filter", ChainOut, "-o", "lo", "-j", "ACCEPT")
	// A packet REDIRECTed by nat OUTPUT is still seen here with its
	// original out interface (the hook's device is fixed before nat
	// reroutes it), so "-o lo" misses it; its new destination is loopback,
	// which never leaves the host.
	add("filter", ChainOut, "-d", loopback, "-j", "ACCEPT")
	// Only replies: packets of connections that came in (the inbound
	// proxies' answers). Panopticon's own outbound packets pass by uid+mark
	// below. A packet of the app that reuses the tuple of one of
	// panopticon's recent connections (bind to the port it just used) is
	// "established" in the original direction, is not NEW so nat never
	// redirects it — and without --ctdir it would leave straight for the
	// upstream (e.g. a DNS query to the real resolver).
	add("filter", ChainOut, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "--ctdir", "REPLY", "-j", "ACCEPT")
	add("filter", ChainOut, cat(self, []string{"-j", "ACCEPT"})...)
	if v6 {
		// Kernel-generated NDP has no socket owner; without it IPv6 breaks
		// for panopticon itself.
		for _, t := range ndpTypes {
			add("filter", ChainOut, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", t, "-j", "ACCEPT")
		}
	}
	// Reject, not drop: a blocked attempt fails in milliseconds.
	add("filter", ChainOut, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
	if v6 {
		add("filter", ChainOut, "-p", "udp", "-j", "REJECT", "--reject-with", "icmp6-port-unreachable")
		add("filter", ChainOut, "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited")
	} else {
		add("filter", ChainOut, "-p", "udp", "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
		add("filter", ChainOut, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
	}

	// filter INPUT.
	add("filter", ChainIn, "-i", "lo", "-j", "ACCEPT")
	add("filter", ChainIn, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
	if v6 {
		for _, t := range ndpTypes {
			add("filter", ChainIn, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", t, "-j", "ACCEPT")
		}
	}
	var allow []netip.Prefix
	for _, pfx := range s.InboundAllow {
		if pfx.Addr().Is6() == v6 {
			allow = append(allow, pfx.Masked())
		}
	}
	for _, port := range s.InboundPorts {
		switch {
		case len(s.InboundAllow) == 0:
			add("filter", ChainIn, "-p", "tcp", "--dport", itoa(port), "-j", "ACCEPT")
		default:
			// A list with no prefix of this family closes the family: an
			// IPv4-only allowlist must not leave IPv6 open to everyone.
			for _, pfx := range allow {
				add("filter", ChainIn, "-s", pfx.String(), "-p", "tcp", "--dport", itoa(port), "-j", "ACCEPT")
			}
		}
	}
	add("filter", ChainIn, "-j", "DROP")

	// mangle POSTROUTING sees the final out device. A socket bound to a
	// device (SO_BINDTODEVICE needs no privilege) keeps that device when nat
	// redirects it to loopback, so the packet — payload and all — would
	// leave the pod addressed to 127.0.0.1 or ::1; filter OUTPUT, which
	// accepts redirected packets by their loopback destination, cannot tell.
	add("mangle", ChainPost, "-d", loopback, "!", "-o", "lo", "-j", "DROP")

	// raw: panopticon's connections with the outside — its upstream sockets
	// (created after the drop: uid 1337) and its inbound listeners' answers
	// (bound as root before the drop, so matched by source port; the app
	// cannot bind a port panopticon listens on) — and everything arriving
	// from outside live in their own conntrack zone. Loopback stays in the
	// default zone with the app (the redirected connections, Docker's DNS
	// at 127.0.0.11).
	zone := strconv.Itoa(ConntrackZone(s.Mark))
	add("raw", ChainZoneOut, "-o", "lo", "-j", "RETURN")
	add("raw", ChainZoneOut, "-m", "owner", "--uid-owner", uid, "-j", "CT", "--zone", zone)
	for _, port := range s.InboundPorts {
		add("raw", ChainZoneOut, "-p", "tcp", "--sport", itoa(port), "-j", "CT", "--zone", zone)
	}
	add("raw", ChainZoneIn, "-i", "lo", "-j", "RETURN")
	add("raw", ChainZoneIn, "-j", "CT", "--zone", zone)
	return p
}

// ndpTypes are the ICMPv6 router/neighbour solicitation and advertisement
// types, as ip6tables-save prints them.
var ndpTypes = []string{"133", "134", "135", "136"}

// String renders the plan like iptables-save, with jumps as "-I CHAIN 1".
// It is meant for golden files and logs, not for iptables-restore.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# panopticon %s\n", p.Family)
	var tables []string
	for _, c := range p.Chains {
		if !slices.Contains(tables, c.Table) {
			tables = append(tables, c.Table)
		}
	}
	for _, t := range tables {
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range p.Chains {
			if c.Table == t {
				fmt.Fprintf(&b, ":%s - [0:0]\n", c.Name)
			}
		}
		for _, j := range p.Jumps {
			if j.Table == t {
				fmt.Fprintf(&b, "-I %s 1 %s\n", j.Chain, strings.Join(j.Args, " "))
			}
		}
		for _, r := range p.Rules {
			if r.Table == t {
				fmt.Fprintf(&b, "-A %s %s\n", r.Chain, strings.Join(r.Args, " "))
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}
