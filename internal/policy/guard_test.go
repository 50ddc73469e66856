package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestGuardCheck(t *testing.T) {
	tests := []struct {
		ip      string
		wantErr string // substring; empty means allowed
	}{
		{"10.1.2.3", "10.1.2.3 is in a private range (RFC 1918 10.0.0.0/8)"},
		{"172.16.0.1", "RFC 1918 172.16.0.0/12"},
		{"172.31.255.255", "RFC 1918 172.16.0.0/12"},
		{"192.168.1.1", "RFC 1918 192.168.0.0/16"},
		{"127.0.0.1", "loopback 127.0.0.0/8"},
		{"127.255.0.9", "loopback 127.0.0.0/8"},
		{"100.64.0.1", "carrier-grade NAT 100.64.0.0/10"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"169.254.169.254", "link-local 169.254.0.0/16"},
		{"169.254.1.1", "link-local 169.254.0.0/16"},
		{"0.0.0.0", "0.0.0.0/8"},
		{"0.1.2.3", "0.0.0.0/8"},
		{"224.0.0.1", "multicast 224.0.0.0/4"},
		{"239.255.255.250", "multicast 224.0.0.0/4"},
		{"255.255.255.255", "broadcast 255.255.255.255"},
		{"240.0.0.1", "reserved 240.0.0.0/4"},
		{"::1", "loopback ::1"},
		{"::", "unspecified ::"},
		{"fe80::1", "link-local fe80::/10"},
		{"fe80::1%eth0", "link-local fe80::/10"},
		{"fc00::1", "unique local fc00::/7"},
		{"fd12:3456::1", "unique local fc00::/7"},
		{"fec0::1", "site-local fec0::/10"},
		{"ff02::1", "multicast ff00::/8"},
		{"::ffff:10.0.0.1", "::ffff:10.0.0.1 is in a private range (RFC 1918 10.0.0.0/8)"},
		{"::ffff:127.0.0.1", "loopback 127.0.0.0/8"},
		{"::ffff:169.254.169.254", "link-local"},
		{"64:ff9b::a00:1", "NAT64 64:ff9b::/96 embedding 10.0.0.1, RFC 1918 10.0.0.0/8"},
		{"64:ff9b::7f00:1", "NAT64 64:ff9b::/96 embedding 127.0.0.1, loopback"},
		{"2002:a9fe:a9fe::1", "6to4 2002::/16 embedding 169.254.169.254"},

		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"192.0.2.10", ""},
		{"198.51.100.7", ""},
		{"203.0.113.200", ""},
		{"2001:db8::1", ""},
		{"2606:4700::1111", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of a public address
		{"2002:808:808::1", ""},
	}
	g := NewGuard(nil)
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			err := g.Check(netip.MustParseAddr(tt.ip))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tt.ip, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check(%s) allowed, want error containing %q", tt.ip, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check(%s) = %q, want it to contain %q", tt.ip, err, tt.wantErr)
			}
			if !errors.Is(err, ErrPrivateAddress) {
				t.Fatalf("Check(%s) error does not match ErrPrivateAddress", tt.ip)
			}
		})
	}
}

func TestGuardAllow(t *testing.T) {
	g := NewGuard([]netip.Prefix{
		netip.MustParsePrefix("10.20.0.0/16"),
		netip.MustParsePrefix("fd00:1::/64"),
		netip.MustParsePrefix("169.254.169.254/32"),
	})
	tests := []struct {
		ip    string
		allow bool
	}{
		{"10.20.3.4", true},
		{"::ffff:10.20.3.4", true}, // mapped form of an exempt address
		{"64:ff9b::a14:304", true}, // NAT64 form of an exempt address
		{"10.21.0.1", false},
		{"fd00:1::5", true},
		{"fd00:2::5", false},
		{"169.254.169.254", true},
		{"169.254.169.253", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			err := g.Check(netip.MustParseAddr(tt.ip))
			if (err == nil) != tt.allow {
				t.Fatalf("Check(%s) = %v, want allow=%v", tt.ip, err, tt.allow)
			}
		})
	}
}

func TestGuardZeroAddr(t *testing.T) {
	if err := NewGuard(nil).Check(netip.Addr{}); err == nil {
		t.Fatal("Check(zero Addr) allowed it")
	}
}
