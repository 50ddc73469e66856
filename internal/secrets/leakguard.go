package secrets

import (
	"bytes"
	"regexp"
	"slices"
)

// suspect is one well-known credential format.
type suspect struct {
	kind    string
	literal []string       // cheap prefilter: the pattern cannot match without one of these
	re      *regexp.Regexp // the format
	not     []byte         // a match starting with this is another kind
}

// suspects are the formats SuspectLeaks knows. Kinds appear verbatim in flow
// events.
var suspects = []suspect{
	{kind: "anthropic-key", literal: []string{"sk-ant-"}, re: regexp.MustCompile(`\bsk-ant-[A-Za-z0-9_\-]{20,}`)},
	{kind: "openai-key", literal: []string{"sk-"}, re: regexp.MustCompile(`\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}`), not: []byte("sk-ant-")},
	{kind: "github-token", literal: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}, re: regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})`)},
	{kind: "aws-access-key-id", literal: []string{"AKIA", "ASIA"}, re: regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`)},
	{kind: "slack-token", literal: []string{"xox"}, re: regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9\-]{10,}`)},
	{kind: "stripe-key", literal: []string{"k_live_"}, re: regexp.MustCompile(`\b[rs]k_live_[A-Za-z0-9]{20,}`)},
	{kind: "google-api-key", literal: []string{"AIza"}, re: regexp.MustCompile(`\bAIza[0-9A-Za-z_\-]{35}`)},
}

// SuspectLeaks returns the kinds of well-known credentials found in b (for
// example "openai-key"), never the matched text. It is a heuristic for the
// LEAK_GUARD setting; real configured values are found by Table.ContainsValue
// and the Rewriter.
func SuspectLeaks(b []byte) []string {
	var kinds []string
	for _, s := range suspects {
		if !slices.ContainsFunc(s.literal, func(l string) bool { return bytes.Contains(b, []byte(l)) }) {
			continue
		}
		for _, loc := range s.re.FindAllIndex(b, -1) {
			if s.not != nil && bytes.HasPrefix(b[loc[0]:], s.not) {
				continue
			}
			kinds = append(kinds, s.kind)
			break
		}
	}
	return kinds
}

// SuspectLeaksString is SuspectLeaks for a string (a URL, a header value).
func SuspectLeaksString(s string) []string { return SuspectLeaks([]byte(s)) }
