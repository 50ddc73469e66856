package firewall

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestBuildPlanLoopboundPacketsNeverLeave: a socket bound to a device
// (SO_BINDTODEVICE, or an IPv6 link-local scope) keeps that device when nat
// redirects it to loopback, so the redirected packet would leave the pod
// addressed to 127.0.0.1 or ::1. mangle POSTROUTING, which sees the final
// device, drops it; IPv6 link-local is not redirected at all (filter rejects it).
func TestBuildPlanLoopboundPacketsNeverLeave(t *testing.T) {
	for _, c := range []struct {
		fam      Family
		loopback string
	}{{IPv4, "127.0.0.0/8"}, {IPv6, "::1/128"}} {
		t.Run(c.fam.String(), func(t *testing.T) {
			p := BuildPlan(testSpec(), c.fam)
			if got := chainArgs(p, "mangle", ChainPost); !slices.Equal(got, []string{"-d " + c.loopback + " ! -o lo -j DROP"}) {
				t.Errorf("mangle %s = %q", ChainPost, got)
			}
			if !slices.ContainsFunc(p.Jumps, func(j Rule) bool {
				return j.Table == "mangle" && j.Chain == "POSTROUTING" && strings.Join(j.Args, " ") == "-j "+ChainPost
			}) {
				t.Errorf("no jump from mangle POSTROUTING to %s", ChainPost)
			}
			nat := chainArgs(p, "nat", ChainNAT)
			ll := indexOf(nat, "-d fe80::/10 -j RETURN")
			if c.fam == IPv6 && (ll < 0 || ll > indexOf(nat, "REDIRECT")) {
				t.Errorf("IPv6 link-local must be exempt from every redirect: %q", nat)
			}
			if c.fam == IPv4 && ll >= 0 {
				t.Errorf("an IPv6 rule in the IPv4 plan: %q", nat)
			}
		})
	}
}

// TestBuildPlanConntrackZone: panopticon's traffic with the outside lives in
// a conntrack zone of its own, so the app's packets never join its entries.
func TestBuildPlanConntrackZone(t *testing.T) {
	for _, fam := range []Family{IPv4, IPv6} {
		p := BuildPlan(testSpec(), fam)
		want := []string{"-o lo -j RETURN", "-m owner --uid-owner 1337 -j CT --zone 1337"}
		for _, port := range testSpec().InboundPorts {
			want = append(want, fmt.Sprintf("-p tcp --sport %d -j CT --zone 1337", port))
		}
		if got := chainArgs(p, "raw", ChainZoneOut); !slices.Equal(got, want) {
			t.Errorf("%s raw %s = %q", fam, ChainZoneOut, got)
		}
		if got := chainArgs(p, "raw", ChainZoneIn); !slices.Equal(got, []string{"-i lo -j RETURN", "-j CT --zone 1337"}) {
			t.Errorf("%s raw %s = %q", fam, ChainZoneIn, got)
		}
		for _, r := range chainArgs(p, "filter", ChainOut) {
			if strings.Contains(r, "ESTABLISHED") && !strings.Contains(r, "--ctdir REPLY") {
				t.Errorf("%s: %q accepts established packets in the original direction: the app could ride panopticon's connections", fam, r)
			}
		}
	}
	for _, c := range []struct {
		mark uint32
		zone int
	}{{0x1337, 0x1337}, {0x10000, 1}, {0x539, 1337}} {
		if got := ConntrackZone(c.mark); got != c.zone {
			t.Errorf("ConntrackZone(%#x) = %d, want %d", c.mark, got, c.zone)
		}
	}
}
