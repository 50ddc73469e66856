package policy

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrPrivateAddress is wrapped by every error Guard.Check returns, so a door
// can map it to refusal.PrivateAddress with errors.Is.
var ErrPrivateAddress = errors.New("private address")

// Guard refuses upstream addresses in private ranges: loopback, RFC 1918,
// CGNAT 100.64.0.0/10, link-local (169.254.0.0/16 incl. metadata, fe80::/10),
// IPv6 ULA fc00::/7, unspecified, multicast, broadcast, IPv4-mapped forms of
// those — unless a prefix in allow contains the address.
//
// It also refuses 240.0.0.0/4 (reserved), IPv6 site-local fec0::/10, and
// NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses that embed a guarded
// IPv4 address. The documentation ranges (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24, 2001:db8::/32) are ordinary addresses to the guard.
type Guard struct {
	allow []netip.Prefix
}

// NewGuard returns a guard exempting allow (ALLOW_PRIVATE_CIDRS).
func NewGuard(allow []netip.Prefix) Guard { return Guard{allow: allow} }

// guardedRange is one refused range and how errors name it.
type guardedRange struct {
	prefix netip.Prefix
	name   string
}

// The first matching range names the error, so more specific ranges
// (255.255.255.255 inside 240.0.0.0/4) come first.
var (
	guardedV4 = []guardedRange{
		{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" 0.0.0.0/8"},
		{netip.MustParsePrefix("10.0.0.0/8"), "RFC 1918 10.0.0.0/8"},
		{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT 100.64.0.0/10"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback 127.0.0.0/8"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local 169.254.0.0/16, incl. cloud metadata"},
		{netip.MustParsePrefix("172.16.0.0/12"), "RFC 1918 172.16.0.0/12"},
		{netip.MustParsePrefix("192.168.0.0/16"), "RFC 1918 192.168.0.0/16"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast 224.0.0.0/4"},
		{netip.MustParsePrefix("255.255.255.255/32"), "broadcast 255.255.255.255"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved 240.0.0.0/4"},
	}
	guardedV6 = []guardedRange{
		{netip.MustParsePrefix("::/128"), "unspecified ::"},
		{netip.MustParsePrefix("::1/128"), "loopback ::1"},
		{netip.MustParsePrefix("fe80::/10"), "link-local fe80::/10"},
		{netip.MustParsePrefix("fec0::/10"), "site-local fec0::/10"},
		{netip.MustParsePrefix("fc00::/7"), "unique local fc00::/7"},
		{netip.MustParsePrefix("ff00::/8"), "multicast ff00::/8"},
	}
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// Check returns nil when ip may be dialled, or an error naming the range.
func (g Guard) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return guardError("refusing an invalid (zero) address; resolve the name first")
	}
	ip = ip.WithZone("")
	v := ip.Unmap()
	if g.allowed(ip) || g.allowed(v) {
		return nil
	}
	if name, ok := guardedRangeOf(v); ok {
		return g.refuse(ip, name)
	}
	if v.Is6() {
		var embedded netip.Addr
		var via string
		b := v.As16()
		switch {
		case nat64Prefix.Contains(v):
			embedded, via = netip.AddrFrom4([4]byte(b[12:16])), "NAT64 64:ff9b::/96"
		case sixToFour.Contains(v):
			embedded, via = netip.AddrFrom4([4]byte(b[2:6])), "6to4 2002::/16"
		}
		if embedded.IsValid() && !g.allowed(embedded) {
			if name, ok := guardedRangeOf(embedded); ok {
				return g.refuse(ip, fmt.Sprintf("%s embedding %s, %s", via, embedded, name))
			}
		}
	}
	return nil
}

func (g Guard) refuse(ip netip.Addr, name string) error {
	return guardError(fmt.Sprintf("%s is in a private range (%s); add a CIDR to ALLOW_PRIVATE_CIDRS if it must be reached", ip, name))
}

// guardError is a refusal that matches ErrPrivateAddress under errors.Is.
type guardError string

func (e guardError) Error() string        { return string(e) }
func (e guardError) Is(target error) bool { return target == ErrPrivateAddress }

func (g Guard) allowed(ip netip.Addr) bool {
	for _, p := range g.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// guardedRangeOf names the guarded range holding ip (already unmapped).
func guardedRangeOf(ip netip.Addr) (string, bool) {
	ranges := guardedV6
	if ip.Is4() {
		ranges = guardedV4
	}
	for _, r := range ranges {
		if r.prefix.Contains(ip) {
			return r.name, true
		}
	}
	return "", false
}
