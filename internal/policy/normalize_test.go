package policy

import (
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string // substring; empty means success
	}{
		{name: "plain", in: "example.com", want: "example.com"},
		{name: "upper case", in: "API.Example.COM", want: "api.example.com"},
		{name: "trailing dot", in: "example.com.", want: "example.com"},
		{name: "underscore", in: "_dmarc.example.com", want: "_dmarc.example.com"},
		{name: "double hyphen", in: "r3---sn-abc.googlevideo.com", want: "r3---sn-abc.googlevideo.com"},
		{name: "single label", in: "localhost", want: "localhost"},
		{name: "digits in labels", in: "1password.com", want: "1password.com"},
		{name: "unicode", in: "bücher.example", want: "xn--bcher-kva.example"},
		{name: "unicode upper", in: "BÜCHER.example", want: "xn--bcher-kva.example"},
		{name: "punycode", in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{name: "punycode upper", in: "XN--BCHER-KVA.example", want: "xn--bcher-kva.example"},
		{name: "sharp s non-transitional", in: "faß.de", want: "xn--fa-hia.de"},
		{name: "ideographic full stop", in: "example。com", want: "example.com"},
		{name: "63-char label", in: strings.Repeat("a", 63) + ".com", want: strings.Repeat("a", 63) + ".com"},

		{name: "empty", in: "", wantErr: "empty host name"},
		{name: "just a dot", in: ".", wantErr: "empty host name"},
		{name: "two trailing dots", in: "example.com..", wantErr: "empty label"},
		{name: "leading dot", in: ".example.com", wantErr: "empty label"},
		{name: "double dot", in: "a..example.com", wantErr: "empty label"},
		{name: "64-char label", in: strings.Repeat("a", 64) + ".com", wantErr: "limit is 63"},
		{name: "254-char name", in: strings.Repeat("a.", 127) + "co", wantErr: "limit is 253"},
		{name: "huge input", in: strings.Repeat("a", 5000), wantErr: "far too long"},
		{name: "space", in: "exa mple.com", wantErr: "not allowed"},
		{name: "dollar", in: "exa$mple.com", wantErr: `'$' is not allowed`},
		{name: "port", in: "example.com:443", wantErr: `':' is not allowed`},
		{name: "backslash escape", in: `evil\.example.com`, wantErr: "not allowed"},
		{name: "star", in: "*.example.com", wantErr: "not allowed"},
		{name: "leading hyphen", in: "-x.example.com", wantErr: "starts or ends"},
		{name: "trailing hyphen", in: "x-.example.com", wantErr: "starts or ends"},
		{name: "bad punycode", in: "xn--zz-.example", wantErr: "internationalised"},
		{name: "ascii punycode", in: "xn--example-.com", wantErr: "internationalised"},
		{name: "invalid utf8", in: "ex\xffample.com", wantErr: "UTF-8"},
		{name: "ip literal", in: "10.0.0.1", wantErr: "IP address"},
		{name: "full-width ip", in: "１２７．０．０．１", wantErr: "IP address"},
		{name: "numeric last label", in: "example.123", wantErr: "IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeHost(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("NormalizeHost(%q) = %q, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NormalizeHost(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeHost(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("NormalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := NormalizeHost(got)
			if err != nil || again != got {
				t.Fatalf("NormalizeHost not idempotent: %q -> %q -> %q, %v", tt.in, got, again, err)
			}
		})
	}
}

func TestIsIPLiteral(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"10.0.0.1", true},
		{"1.2.3.4.", true},
		{"3232235777", true},
		{"0xc0a80001", true},
		{"0XC0A80001", true},
		{"0300.0250.0.1", true},
		{"127.1", true},
		{"10.1.1", true},
		{"0x7f.1", true},
		{"0", true},
		{"::1", true},
		{"[::1]", true},
		{"[::1]:443", true},
		{"::ffff:10.0.0.1", true},
		{"[::ffff:10.0.0.1]", true},
		{"fe80::1%eth0", true},
		{"[fe80::1%25eth0]", true},
		{"2001:db8::1", true},
		{"10.0.0.1:80", true},
		{"example.123", true}, // clients parse a numeric last label as IPv4
		{"999.999.999.999", true},

		{"", false},
		{".", false},
		{"example.com", false},
		{"1password.com", false},
		{"10.0.0.1.example.com", false},
		{"0xdeadbeef.example", false},
		{"example.com:443", false},
		{"[example.com]", false},
		{"[::1", false},
		{"a.0xg", false},
		{"1e10", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := IsIPLiteral(tt.host); got != tt.want {
				t.Fatalf("IsIPLiteral(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}
