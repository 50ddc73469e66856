package secrets

import (
	"strings"
	"testing"
)

func TestSuspectLeaks(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
	}{
		{"an OpenAI key", "Authorization: Bearer sk-" + strings.Repeat("a", 48), "openai-key"},
		{"an OpenAI project key", "key=sk-proj-" + strings.Repeat("Ab1_", 10), "openai-key"},
		{"an Anthropic key is not also an OpenAI key", "x-api-key: sk-ant-api03-" + strings.Repeat("b", 40), "anthropic-key"},
		{"a GitHub token", "token ghp_" + strings.Repeat("c", 36), "github-token"},
		{"a fine-grained GitHub token", "github_pat_" + strings.Repeat("d", 30), "github-token"},
		{"an AWS access key id", "AKIAIOSFODNN7EXAMPLE", "aws-access-key-id"},
		{"a Slack token", "xoxb-1234567890-abcdef", "slack-token"},
		{"a Stripe key", "sk_live_" + strings.Repeat("e", 24), "stripe-key"},
		{"a Google API key", "key=AIza" + strings.Repeat("f", 35), "google-api-key"},
		{"two kinds", "AKIAIOSFODNN7EXAMPLE ghp_" + strings.Repeat("c", 36), "github-token,aws-access-key-id"},
		{"ordinary text", "task-" + strings.Repeat("a", 40) + " the AKIA word, ghp_short", ""},
		{"a placeholder", "Bearer PLACEHOLDER_SECRET_VALUE_OPENAI", ""},
		{"a fake test value", openaiValue, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SuspectLeaks([]byte(tt.in))
			if strings.Join(got, ",") != tt.want {
				t.Errorf("SuspectLeaks = %v, want %q", got, tt.want)
			}
			for _, k := range got {
				if strings.Contains(tt.in, k) {
					t.Errorf("kind %q quotes the input", k)
				}
			}
		})
	}
}
