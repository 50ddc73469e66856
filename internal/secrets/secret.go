package secrets

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/panopticon-dev/panopticon/internal/policy"
)

// Environment variable prefixes. The placeholder of a secret is the full name
// of its VALUE variable.
const (
	ValuePrefix   = "PLACEHOLDER_SECRET_VALUE_"
	DomainsPrefix = "PLACEHOLDER_SECRET_DOMAINS_"
	PinsPrefix    = "PLACEHOLDER_SECRET_PINS_"
)

// redacted stands in for a real value wherever one would be printed.
const redacted = "[REDACTED]"

// shortValue is the length under which a value gets a warning: the leak guard
// blocks every request that contains the value, so a short one blocks
// innocent requests.
const shortValue = 8

// Secret is one placeholder and what it may be swapped for. The real value is
// unexported and every printed form (String, GoString, Format, LogValue) is
// redacted.
type Secret struct {
	Name    string   // the placeholder, e.g. "PLACEHOLDER_SECRET_VALUE_OPENAI"
	Domains []string // normalised patterns, e.g. "api.openai.com", "*.openai.com"
	Pins    [][]byte // sha256 of SubjectPublicKeyInfo; empty: no pinning

	hz   *hazmat // behind a pointer: fmt prints nested pointers as addresses, so even a Secret in an unexported field of another struct does not show it
	list *policy.Allowlist
}

// hazmat holds a real value.
type hazmat struct{ value string }

// String returns a redacted description.
func (s Secret) String() string {
	var b strings.Builder
	b.WriteString("Secret{")
	b.WriteString(s.Name)
	b.WriteString(" for ")
	b.WriteString(strings.Join(s.Domains, ","))
	if len(s.Pins) > 0 {
		fmt.Fprintf(&b, " pins=%d", len(s.Pins))
	}
	b.WriteString(" value=" + redacted + "}")
	return b.String()
}

// GoString is the redacted form for %#v.
func (s Secret) GoString() string { return "secrets." + s.String() }

// Format makes every verb (%v %+v %#v %s %q %x …) print the redacted form.
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.String()) }

// LogValue is the redacted form for log/slog.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", s.Name),
		slog.Any("domains", s.Domains),
		slog.Int("pins", len(s.Pins)),
		slog.String("value", redacted),
	)
}

// MarshalJSON is redacted as well, for encoders that bypass slog.
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name    string   `json:"name"`
		Domains []string `json:"domains"`
		Pins    int      `json:"pins"`
		Value   string   `json:"value"`
	}{s.Name, s.Domains, len(s.Pins), redacted})
}

// Authorised reports whether host (normalised) may receive the real value.
func (s Secret) Authorised(host string) bool {
	if s.list == nil {
		return false
	}
	_, ok := s.list.Match(host, 0)
	return ok
}

// PinOK reports whether the verified chain (SPKI hashes, see SPKIHashes)
// satisfies the secret's pins. A secret without pins accepts any chain.
func (s Secret) PinOK(chain [][]byte) bool {
	if len(s.Pins) == 0 {
		return true
	}
	for _, p := range s.Pins {
		for _, c := range chain {
			if string(p) == string(c) {
				return true
			}
		}
	}
	return false
}

// SPKIHashes returns the sha256 of the SubjectPublicKeyInfo of every
// certificate in the verified chains, the form PinOK and Upstream.PeerKeys take.
func SPKIHashes(chains [][]*x509.Certificate) [][]byte {
	var out [][]byte
	for _, chain := range chains {
		for _, c := range chain {
			h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			out = append(out, h[:])
		}
	}
	return out
}

// formatRedacted writes s for any verb; %q quotes it.
func formatRedacted(f fmt.State, verb rune, s string) {
	if verb == 'q' {
		s = strconv.Quote(s)
	}
	_, _ = f.Write([]byte(s))
}

// Table is the set of secrets, immutable after FromEnv. A nil *Table is an
// empty table: nothing is swapped and nothing is redacted.
type Table struct {
	secrets []Secret // sorted by Name
	byName  map[string]int

	maxPlaceholder int      // longest placeholder
	needles        []needle // real values in every form the leak guard and the redactor look for
	maxNeedle      int
}

// needle is one spelling of a real value.
type needle struct {
	text   string
	bytes  []byte // text, for searching byte slices without converting
	secret int    // index into Table.secrets
}

// Len returns the number of secrets.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.secrets)
}

// Names returns the placeholders, sorted.
func (t *Table) Names() []string {
	if t == nil {
		return nil
	}
	names := make([]string, len(t.secrets))
	for i, s := range t.secrets {
		names[i] = s.Name
	}
	return names
}

// Secret returns the secret with placeholder name.
func (t *Table) Secret(name string) (Secret, bool) {
	if t == nil {
		return Secret{}, false
	}
	i, ok := t.byName[name]
	if !ok {
		return Secret{}, false
	}
	return t.secrets[i], true
}

// Pins returns a copy of the pins of the secret with placeholder name.
func (t *Table) Pins(name string) [][]byte {
	s, ok := t.Secret(name)
	if !ok {
		return nil
	}
	out := make([][]byte, len(s.Pins))
	for i, p := range s.Pins {
		out[i] = slices.Clone(p)
	}
	return out
}

// AuthorisedFor returns the placeholders that host may receive (ignoring pins).
func (t *Table) AuthorisedFor(host string) []string {
	if t == nil {
		return nil
	}
	var names []string
	for _, s := range t.secrets {
		if s.Authorised(host) {
			names = append(names, s.Name)
		}
	}
	return names
}

// ContainsValue reports whether b holds a real value in any form the leak
// guard knows (raw, percent-escaped, JSON-escaped, base64), and whose.
func (t *Table) ContainsValue(b []byte) (name string, ok bool) {
	if t == nil {
		return "", false
	}
	for _, n := range t.needles {
		if bytes.Contains(b, n.bytes) {
			return t.secrets[n.secret].Name, true
		}
	}
	return "", false
}

// containsValueString is ContainsValue for strings.
func (t *Table) containsValueString(s string) (int, bool) {
	if t == nil {
		return 0, false
	}
	for _, n := range t.needles {
		if strings.Contains(s, n.text) {
			return n.secret, true
		}
	}
	return 0, false
}

// String returns a redacted description: the placeholders only.
func (t *Table) String() string {
	if t == nil {
		return "secrets.Table{}"
	}
	return "secrets.Table{" + strings.Join(t.Names(), ", ") + "}"
}

// GoString is the redacted form for %#v.
func (t *Table) GoString() string { return t.String() }

// Format makes every verb print the redacted form.
func (t *Table) Format(f fmt.State, verb rune) { formatRedacted(f, verb, t.String()) }

// LogValue is the redacted form for log/slog.
func (t *Table) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, t.Len())
	if t != nil {
		for _, s := range t.secrets {
			attrs = append(attrs, slog.Any(s.Name, s))
		}
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON is redacted as well.
func (t *Table) MarshalJSON() ([]byte, error) {
	if t == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(t.secrets)
}

// newTable builds the lookup structures; secrets must be valid.
func newTable(secrets []Secret) *Table {
	slices.SortFunc(secrets, func(a, b Secret) int { return strings.Compare(a.Name, b.Name) })
	t := &Table{secrets: secrets, byName: make(map[string]int, len(secrets))}
	for i, s := range secrets {
		t.byName[s.Name] = i
		t.maxPlaceholder = max(t.maxPlaceholder, len(s.Name))
		for _, v := range spellings(s.hz.value) {
			if !slices.ContainsFunc(t.needles, func(n needle) bool { return n.text == v }) {
				t.needles = append(t.needles, needle{text: v, bytes: []byte(v), secret: i})
				t.maxNeedle = max(t.maxNeedle, len(v))
			}
		}
	}
	return t
}

// minEncodedNeedle is the shortest base64 fragment searched for: shorter ones
// would match unrelated data.
const minEncodedNeedle = 16

// spellings returns the forms in which value may travel: raw, percent-escaped
// (query and path), JSON-escaped, and base64 (standard and URL alphabets) at
// each of the three alignments it can have inside a longer encoded blob. For
// an unaligned blob only the characters determined by the value alone are
// used, so "Basic " credentials and tokens embedding the key are found too.
func spellings(value string) []string {
	out := []string{value}
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	add(url.QueryEscape(value))
	add(url.PathEscape(value))
	if j, err := json.Marshal(value); err == nil {
		add(string(j[1 : len(j)-1]))
	}
	add(strings.ReplaceAll(value, "/", `\/`))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for lead := range 3 {
			// With lead bytes before the value, its first whole 3-byte group
			// starts at skip.
			skip := (3 - lead) % 3
			if skip >= len(value) {
				continue
			}
			rest := value[skip:]
			rest = rest[:len(rest)/3*3]
			e := strings.TrimRight(enc.EncodeToString([]byte(rest)), "=")
			if len(e) >= minEncodedNeedle {
				add(e)
			}
		}
	}
	return out
}
