package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits from RFC 1035 (a name is at most 253 characters without the root
// dot; a label at most 63). maxHostInput bounds the work done on hostile
// input before IDNA mapping, which can only shorten a name by dropping
// ignorable runes.
const (
	maxNameLen   = 253
	maxLabelLen  = 63
	maxHostInput = 1024
)

// errIPLiteral marks a host that spells an address rather than a name.
var errIPLiteral = errors.New("is an IP address, not a host name")

// idnaProfile is UTS #46 lookup processing (non-transitional, Bidi and joiner
// rules, punycode labels validated) with two relaxations that match browsers
// and real-world hosts: "_" is allowed (StrictDomainName off; validateName
// below enforces letters, digits, "-" and "_") and "--" in the third and
// fourth position is allowed ("r3---sn-abc.googlevideo.com").
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.StrictDomainName(false),
	idna.CheckHyphens(false),
)

// NormalizeHost lower-cases, strips one trailing dot, converts IDNs to ASCII
// (punycode) and validates the result as a DNS name. The same function serves
// validation at load time and matching at run time.
func NormalizeHost(host string) (string, error) {
	name, err := normalizeHost(host)
	if err != nil {
		return "", fmt.Errorf("normalizing host %q: %w", clip(host), err)
	}
	return name, nil
}

// normalizeHost is NormalizeHost without the host in the error, so callers
// can place it themselves ("allowlist.txt:3: \"a..b\": empty label ...").
func normalizeHost(host string) (string, error) {
	if host == "" {
		return "", errors.New("empty host name; write a name such as example.com")
	}
	if len(host) > maxHostInput {
		return "", fmt.Errorf("%d bytes is far too long for a host name (the limit is %d characters)", len(host), maxNameLen)
	}
	name := host
	if needsIDNA(name) {
		if !utf8.ValidString(name) {
			return "", errors.New("not valid UTF-8")
		}
		a, err := idnaProfile.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("not a valid internationalised name (%v)", err)
		}
		name = a
	} else {
		name = strings.ToLower(name)
	}
	name = strings.TrimSuffix(name, ".")
	if err := validateName(name); err != nil {
		return "", err
	}
	if numericLabel(lastLabel(name)) {
		return "", errIPLiteral
	}
	return name, nil
}

// needsIDNA reports whether s has non-ASCII bytes or a punycode ("xn--")
// label. Plain ASCII names skip the IDNA tables: for them UTS #46 mapping is
// just lower-casing, and validateName does the rest.
func needsIDNA(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return true
		}
	}
	for i := 0; i+4 <= len(s); i++ {
		if (i == 0 || s[i-1] == '.') && strings.EqualFold(s[i:i+4], "xn--") {
			return true
		}
	}
	return false
}

// validateName checks an ASCII, lower-case name without trailing dot:
// non-empty labels of letters, digits, "-" and "_", no label starting or
// ending with "-", and the RFC 1035 length limits.
func validateName(name string) error {
	if name == "" {
		return errors.New("empty host name; write a name such as example.com")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name is %d characters, the limit is %d", len(name), maxNameLen)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			if !isLDHU(c) {
				return fmt.Errorf("character %s is not allowed in a host name (use letters, digits, \"-\" or \"_\")", quoteByte(c))
			}
			continue
		}
		label := name[start:i]
		switch {
		case label == "":
			return errors.New("empty label (two dots in a row, or a leading dot); remove the extra dot")
		case len(label) > maxLabelLen:
			return fmt.Errorf("label %q is %d characters, the limit is %d", label, len(label), maxLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with \"-\", which DNS does not allow", label)
		}
		start = i + 1
	}
	return nil
}

func isLDHU(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func quoteByte(c byte) string {
	if c < utf8.RuneSelf {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

func lastLabel(name string) string {
	return name[strings.LastIndexByte(name, '.')+1:]
}

// numericLabel reports whether label is a number as inet_aton and the WHATWG
// URL parser read it: decimal or octal digits, or "0x" and hex digits. A name
// whose last label is numeric is parsed as an IPv4 address by clients, and is
// never a valid public DNS name.
func numericLabel(label string) bool {
	if label == "" {
		return false
	}
	digits := label
	hex := false
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		digits, hex = label[2:], true
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case '0' <= c && c <= '9':
		case hex && ('a' <= c && c <= 'f' || 'A' <= c && c <= 'F'):
		default:
			return false
		}
	}
	return true
}

// IsIPLiteral reports whether host spells an IP address in any form a client
// might accept: dotted quad, bracketed or bare IPv6, IPv4-mapped IPv6, and the
// legacy inet_aton forms (decimal "3232235777", hex "0xc0a80001", octal
// "0300.0250.0.1", short "127.1"), with or without a trailing dot.
//
// A ":port" suffix is tolerated ("[::1]:443", "10.0.0.1:80"), and so is an
// IPv6 zone ("fe80::1%eth0"). Any name whose last label is numeric counts as
// an address, because clients parse it as one.
func IsIPLiteral(host string) bool {
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return false
		}
		if rest := host[end+1:]; rest != "" && !isPortSuffix(rest) {
			return false
		}
		_, err := netip.ParseAddr(host[1:end])
		return err == nil
	}
	if strings.IndexByte(host, ':') >= 0 {
		if _, err := netip.ParseAddr(host); err == nil {
			return true
		}
		// "10.0.0.1:80": an IPv4 form with a port.
		i := strings.LastIndexByte(host, ':')
		if isPortSuffix(host[i:]) && strings.IndexByte(host[:i], ':') < 0 {
			return isIPv4Form(host[:i])
		}
		return false
	}
	return isIPv4Form(host)
}

// isIPv4Form reports whether host (no colon) is an IPv4 address in any
// inet_aton spelling, or any dotted name ending in a numeric label.
func isIPv4Form(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	return numericLabel(lastLabel(host))
}

// isPortSuffix reports whether s is ":" followed by 1-5 decimal digits.
func isPortSuffix(s string) bool {
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip shortens hostile input before it is quoted into an error.
func clip(s string) string {
	const limit = 300
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
