package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Entry is one allowlist line after normalisation.
type Entry struct {
	Pattern  string // normalised: "example.com" or "*.example.com"
	Port     int    // 0 means the default ports 443 and 80
	Wildcard bool
	Line     int    // 1-based line in Source
	Source   string // file name the entry came from
}

// String renders the entry as it would be written in the file, e.g. "*.example.com:8443".
func (e Entry) String() string {
	if e.Port == 0 {
		return e.Pattern
	}
	return e.Pattern + ":" + strconv.Itoa(e.Port)
}

// name is the host name part of the pattern: "example.com" for both
// "example.com" and "*.example.com". It shares Pattern's bytes.
func (e Entry) name() string {
	if e.Wildcard {
		return e.Pattern[2:]
	}
	return e.Pattern
}

// allowsPort reports whether e admits port; port 0 means any port.
func (e Entry) allowsPort(port int) bool {
	if port == 0 {
		return true
	}
	if e.Port == 0 {
		return port == 443 || port == 80
	}
	return e.Port == port
}

// Allowlist is an immutable, parsed allowlist. Share it freely; replace it by swapping.
//
// Matching costs one map lookup for the exact name and one per label of the
// host for wildcards, whatever the size of the list. Entries with the same
// name (say "example.com" and "example.com:8443") are chained through next in
// file order.
type Allowlist struct {
	entries  []Entry
	exact    map[string]int32 // name → index of its first entry
	wildcard map[string]int32 // "example.com" for "*.example.com" → first entry
	next     []int32          // next entry with the same map key, or -1
}

// maxReportedErrors caps how many bad lines one Parse reports.
const maxReportedErrors = 10

// Parse reads an allowlist. source names the input in errors ("allowlist.txt:7: ...").
// Syntax: one pattern per line; "#" starts a comment (whole line or trailing);
// blank lines ignored; case and trailing dots ignored; IDNs normalised to ASCII;
// "example.com", "*.example.com" (every subdomain and example.com itself),
// optionally ":port". IP literals, bare "*", "*.com"-style wildcards over a
// single label, and malformed names are errors that suggest the fix.
//
// Every bad line is reported (up to ten), one per line of the error text.
func Parse(data []byte, source string) (*Allowlist, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	var (
		entries []Entry
		errs    []error
	)
	for lineNo := 1; len(data) > 0; lineNo++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		e, err := parseEntry(string(line))
		if err != nil {
			if len(errs) < maxReportedErrors {
				errs = append(errs, fmt.Errorf("%s:%d: %w", source, lineNo, err))
			}
			continue
		}
		e.Line, e.Source = lineNo, source
		entries = append(entries, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newAllowlist(entries), nil
}

// ParseFile reads and parses path.
func ParseFile(path string) (*Allowlist, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading allowlist: %w; check ALLOWLIST_FILE", err)
	}
	return Parse(data, path)
}

// parseEntry parses one trimmed, comment-free pattern.
func parseEntry(text string) (Entry, error) {
	q := strconv.Quote(clip(text))
	switch {
	case strings.ContainsAny(text, " \t\v\f\r"):
		return Entry{}, fmt.Errorf("%s: one pattern per line; put comments after \"#\"", q)
	case strings.Contains(text, "://") || strings.ContainsAny(text, "/?@"):
		return Entry{}, fmt.Errorf("%s: write the host name only, e.g. \"example.com\" or \"*.example.com:8443\"", q)
	case IsIPLiteral(text):
		return Entry{}, fmt.Errorf("%s is an IP address; destinations are host names and IP literals are always refused, so list the name the app connects to", q)
	}

	host, port := text, 0
	if i := strings.LastIndexByte(text, ':'); i >= 0 {
		p, err := parsePort(text[i+1:])
		if err != nil {
			return Entry{}, fmt.Errorf("%s: %w", q, err)
		}
		host, port = text[:i], p
	}

	wildcard := false
	switch {
	case host == "*" || host == "*.":
		return Entry{}, fmt.Errorf("%s matches everything; list domains explicitly", q)
	case strings.HasPrefix(host, "*."):
		wildcard = true
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return Entry{}, fmt.Errorf("%s: a wildcard must be the whole leftmost label, e.g. \"*.example.com\"", q)
	}

	name, err := normalizeHost(host)
	switch {
	case errors.Is(err, errIPLiteral):
		return Entry{}, fmt.Errorf("%s ends in a number, so clients read it as an IP address; list a host name instead", q)
	case err != nil:
		return Entry{}, fmt.Errorf("%s: %w", q, err)
	case wildcard && strings.IndexByte(name, '.') < 0:
		return Entry{}, fmt.Errorf("%s covers a whole top-level domain; list the domains you need, e.g. \"*.example.%s\"", q, name)
	}

	pattern := name
	if wildcard {
		pattern = "*." + name
	}
	// Clone so the entry does not pin the line (and its comment) in memory.
	return Entry{Pattern: strings.Clone(pattern), Port: port, Wildcard: wildcard}, nil
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty port after \":\"; write host:port, e.g. \"example.com:8443\", or drop the colon for ports 443 and 80")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q is not a number; write host:port, e.g. \"example.com:8443\"", clip(s))
		}
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %s is out of range; use 1-65535", clip(s))
	}
	return p, nil
}

// newAllowlist indexes entries (which it keeps) for matching.
func newAllowlist(entries []Entry) *Allowlist {
	a := &Allowlist{
		entries:  entries,
		exact:    make(map[string]int32),
		wildcard: make(map[string]int32),
		next:     make([]int32, len(entries)),
	}
	// Walk backwards and prepend, so each chain ends up in file order.
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		m := a.exact
		if e.Wildcard {
			m = a.wildcard
		}
		key := e.name()
		a.next[i] = -1
		if head, ok := m[key]; ok {
			a.next[i] = head
		}
		m[key] = int32(i)
	}
	return a
}

// Entries returns the entries in file order.
func (a *Allowlist) Entries() []Entry {
	if a == nil {
		return nil
	}
	out := make([]Entry, len(a.entries))
	copy(out, a.entries)
	return out
}

// Len returns the number of entries.
func (a *Allowlist) Len() int {
	if a == nil {
		return 0
	}
	return len(a.entries)
}

// Match returns the entry that allows host on port (port 0: any port, for DNS).
// host must already be normalised.
//
// An exact entry wins over a wildcard, and a deeper wildcard over a shallower
// one; among entries for the same name the first in the file wins.
func (a *Allowlist) Match(host string, port int) (Entry, bool) {
	if a == nil || host == "" {
		return Entry{}, false
	}
	if e, ok := a.find(a.exact, host, port); ok {
		return e, true
	}
	for suffix := host; ; {
		if e, ok := a.find(a.wildcard, suffix, port); ok {
			return e, true
		}
		i := strings.IndexByte(suffix, '.')
		if i < 0 {
			return Entry{}, false
		}
		suffix = suffix[i+1:]
	}
}

func (a *Allowlist) find(m map[string]int32, key string, port int) (Entry, bool) {
	i, ok := m[key]
	if !ok {
		return Entry{}, false
	}
	for ; i >= 0; i = a.next[i] {
		if a.entries[i].allowsPort(port) {
			return a.entries[i], true
		}
	}
	return Entry{}, false
}
