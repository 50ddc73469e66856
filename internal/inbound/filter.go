package inbound

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
)

// StarterRules is the built-in rule file, used when INBOUND_FILTER_FILE is
// unset. It is a tripwire for well-known prompt-injection phrasings, not a
// guarantee: anyone who rephrases, encodes or translates gets past it.
//
//go:embed starter_rules.txt
var StarterRules []byte

// StarterSource is the name the starter rules carry in flow events
// ("filter:builtin:12").
const StarterSource = "builtin"

// maxReportedErrors caps how many bad lines one ParseRules reports.
const maxReportedErrors = 10

// Rule is one line of a filter file.
type Rule struct {
	Source  string // file the rule came from, or StarterSource
	Line    int    // 1-based line number
	Pattern string // the RE2 expression as written
	re      *regexp.Regexp
}

// Reason is the rule as a flow-event reason: "filter:<file>:<line>".
func (r Rule) Reason() string { return "filter:" + r.Source + ":" + strconv.Itoa(r.Line) }

// Rules is a parsed filter file. The zero value and nil match nothing.
type Rules struct {
	source string
	rules  []Rule
}

// Len is the number of rules.
func (rs *Rules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.rules)
}

// Source names where the rules came from.
func (rs *Rules) Source() string {
	if rs == nil {
		return ""
	}
	return rs.source
}

// ParseRules parses a filter file. source names it in errors and reasons.
//
// Syntax: one RE2 regular expression per line, matched anywhere in the text
// (anchor with ^ and $ when you mean it). A line whose first non-blank
// character is "#" is a comment; blank lines are ignored; leading and
// trailing blanks are trimmed (write \x20 or [ ] for a significant edge
// space). Flags go at the start of the expression in RE2's own syntax:
// (?i) case-insensitive, (?s) "." also matches a newline, (?m) ^ and $ match
// at line breaks; they may be combined, e.g. (?is). Every bad line is
// reported (up to ten), each as "file:line: …".
func ParseRules(source string, data []byte) (*Rules, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	rs := &Rules{source: source}
	var errs []error
	for lineNo := 1; len(data) > 0; lineNo++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		text := strings.TrimSpace(string(line))
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		re, err := regexp.Compile(text)
		if err != nil {
			if len(errs) < maxReportedErrors {
				errs = append(errs, fmt.Errorf("%s:%d: %q is not a valid RE2 expression: %v", source, lineNo, clip(text), regexpReason(err)))
			}
			continue
		}
		if re.MatchString("") {
			if len(errs) < maxReportedErrors {
				errs = append(errs, fmt.Errorf("%s:%d: %q matches empty text and so every request; make it more specific", source, lineNo, clip(text)))
			}
			continue
		}
		rs.rules = append(rs.rules, Rule{Source: source, Line: lineNo, Pattern: text, re: re})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

// ParseRulesFile reads and parses path.
func ParseRulesFile(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading inbound filter: %w", err)
	}
	return ParseRules(path, data)
}

func regexpReason(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return string(se.Code) + " " + strconv.Quote(se.Expr)
	}
	return err.Error()
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Match returns the first rule matching text.
func (rs *Rules) Match(text string) (Rule, bool) {
	if rs == nil {
		return Rule{}, false
	}
	for _, r := range rs.rules {
		if r.re.MatchString(text) {
			return r, true
		}
	}
	return Rule{}, false
}

// matchBytes is Match for a byte slice, without copying it.
func (rs *Rules) matchBytes(b []byte) (Rule, bool) {
	if rs == nil {
		return Rule{}, false
	}
	for _, r := range rs.rules {
		if r.re.Match(b) {
			return r, true
		}
	}
	return Rule{}, false
}

// matchEncoded checks text and, when it holds percent-escapes or '+', its
// URL-decoded form, so "ignore%20previous%20instructions" does not slip by.
func (rs *Rules) matchEncoded(text string) (Rule, bool) {
	if r, ok := rs.Match(text); ok {
		return r, true
	}
	if strings.ContainsAny(text, "%+") {
		if dec := lenientUnescape(text); dec != text {
			return rs.Match(dec)
		}
	}
	return Rule{}, false
}

// lenientUnescape decodes every valid %XX and '+', leaving bad escapes as
// they are, so one malformed escape cannot hide the rest of the text.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
