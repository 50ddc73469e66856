package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/panopticon-dev/panopticon/internal/policy"
)

// FromEnv builds the table from environment variables (as read by
// godotenv.Read or os.Environ). Every error names the variable it is about and
// all of them are reported together; warnings never contain a value.
func FromEnv(env map[string]string) (*Table, []string, error) {
	type entry struct {
		value, domains, pins      string
		hasValue, hasDom, hasPins bool
	}
	byName := map[string]*entry{}
	get := func(name string) *entry {
		e := byName[name]
		if e == nil {
			e = &entry{}
			byName[name] = e
		}
		return e
	}
	for k, v := range env {
		switch {
		case strings.HasPrefix(k, ValuePrefix):
			e := get(k[len(ValuePrefix):])
			e.value, e.hasValue = v, true
		case strings.HasPrefix(k, DomainsPrefix):
			e := get(k[len(DomainsPrefix):])
			e.domains, e.hasDom = v, true
		case strings.HasPrefix(k, PinsPrefix):
			e := get(k[len(PinsPrefix):])
			e.pins, e.hasPins = v, true
		}
	}

	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)

	var (
		errs     []error
		warnings []string
		secrets  []Secret
	)
	for _, n := range names {
		e := byName[n]
		valueVar, domVar, pinVar := ValuePrefix+n, DomainsPrefix+n, PinsPrefix+n
		if !validName(n) {
			for _, v := range []struct {
				name string
				set  bool
			}{{valueVar, e.hasValue}, {domVar, e.hasDom}, {pinVar, e.hasPins}} {
				if v.set {
					errs = append(errs, fmt.Errorf("%s: the secret name after the prefix must be letters, digits and underscores", v.name))
				}
			}
			continue
		}
		if !e.hasValue {
			if e.hasDom {
				errs = append(errs, fmt.Errorf("%s is set but %s is not: set the value or remove the domains", domVar, valueVar))
			}
			if e.hasPins {
				errs = append(errs, fmt.Errorf("%s is set but %s is not: set the value or remove the pins", pinVar, valueVar))
			}
			continue
		}
		s := Secret{Name: valueVar, hz: &hazmat{e.value}}
		ok := true
		switch {
		case e.value == "":
			errs = append(errs, fmt.Errorf("%s is empty: set the real value (single-quoted)", valueVar))
			ok = false
		case strings.ContainsFunc(e.value, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			errs = append(errs, fmt.Errorf("%s contains a control character (a stray carriage return from a Windows line ending?)", valueVar))
			ok = false
		}
		if strings.Contains(e.value, "$") {
			warnings = append(warnings, fmt.Sprintf("%s contains '$': an env file expands it unless the value is single-quoted; check the value is what you meant", valueVar))
		}
		if len(e.value) > 0 && len(e.value) < shortValue {
			warnings = append(warnings, fmt.Sprintf("%s is shorter than %d bytes: the leak guard blocks every request containing it, so it may block innocent requests", valueVar, shortValue))
		}

		if !e.hasDom {
			errs = append(errs, fmt.Errorf("%s is set but %s is not: a secret needs the domains it may be sent to (there is no \"any domain\")", valueVar, domVar))
			ok = false
		} else if strings.TrimSpace(e.domains) == "" {
			errs = append(errs, fmt.Errorf("%s is empty: list the domains %s may be sent to (there is no \"any domain\")", domVar, valueVar))
			ok = false
		} else if list, doms, err := parseDomains(domVar, e.domains); err != nil {
			errs = append(errs, err)
			ok = false
		} else {
			s.list, s.Domains = list, doms
		}

		if e.hasPins {
			pins, err := parsePins(pinVar, e.pins)
			if err != nil {
				errs = append(errs, err)
				ok = false
			}
			s.Pins = pins
		}
		if ok {
			secrets = append(secrets, s)
		}
	}

	// Placeholders must be prefix-free, or "…_AB" would be read as "…_A" + "B".
	// A value inside a placeholder would make the leak guard block every use.
	for i, a := range secrets {
		for j, b := range secrets {
			if i != j && strings.HasPrefix(b.Name, a.Name) {
				errs = append(errs, fmt.Errorf("%s is a prefix of %s: a placeholder must not begin with another one; rename one of them", a.Name, b.Name))
			}
			if strings.Contains(b.Name, a.hz.value) {
				errs = append(errs, fmt.Errorf("%s: the value occurs inside the placeholder %s, so the leak guard would block every use; use the real value", a.Name, b.Name))
			}
		}
	}

	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return newTable(secrets), warnings, nil
}

// validName reports whether a secret name is [A-Za-z0-9_]+: such placeholders
// are never percent-escaped and cannot hide a delimiter.
func validName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// parseDomains reads a comma-separated list with the allowlist's own parser,
// so patterns mean exactly what they mean there. Ports are refused: a secret is
// bound to names, and a port here would only suggest a restriction that the
// rewriter does not make.
func parseDomains(varName, list string) (*policy.Allowlist, []string, error) {
	items := strings.Split(list, ",")
	for i, it := range items {
		it = strings.TrimSpace(it)
		switch {
		case it == "":
			return nil, nil, fmt.Errorf("%s: empty pattern at position %d: remove the extra comma", varName, i+1)
		case strings.ContainsAny(it, "#\n\r\t "):
			return nil, nil, fmt.Errorf("%s: pattern %q: separate patterns with commas, no comments or spaces", varName, it)
		}
		items[i] = it
	}
	// Line n of the parsed text is pattern n, so policy's "VAR:n:" errors
	// point at the right item.
	al, err := policy.Parse([]byte(strings.Join(items, "\n")), varName)
	if err != nil {
		return nil, nil, err
	}
	var doms []string
	for _, e := range al.Entries() {
		if e.Port != 0 {
			return nil, nil, fmt.Errorf("%s:%d: %q: secret domains take no port; write %q", varName, e.Line, e.String(), e.Pattern)
		}
		doms = append(doms, e.Pattern)
	}
	return al, doms, nil
}

// parsePins reads "sha256/<base64>,…".
func parsePins(varName, list string) ([][]byte, error) {
	var pins [][]byte
	for i, it := range strings.Split(list, ",") {
		it = strings.TrimSpace(it)
		b64, ok := strings.CutPrefix(it, "sha256/")
		if !ok {
			return nil, fmt.Errorf("%s: pin %d must look like sha256/<base64 of the SPKI hash>", varName, i+1)
		}
		h, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("%s: pin %d is not the base64 of a 32-byte sha256 hash (openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)", varName, i+1)
		}
		if !slices.ContainsFunc(pins, func(p []byte) bool { return bytes.Equal(p, h) }) {
			pins = append(pins, h)
		}
	}
	return pins, nil
}
