package main

import (
	"strings"
	"testing"

	"github.com/panopticon-dev/panopticon/internal/secrets"
)

func TestRedactAllReplacesEveryRealValue(t *testing.T) {
	tab, _, err := secrets.FromEnv(map[string]string{
		"PLACEHOLDER_SECRET_VALUE_A": "sk-test-FAKE-aaaa-1111", "PLACEHOLDER_SECRET_DOMAINS_A": "a.test",
		"PLACEHOLDER_SECRET_VALUE_B": "sk-test-FAKE-bbbb-2222", "PLACEHOLDER_SECRET_DOMAINS_B": "b.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	red := redactAll(tab)
	got := red("/x?a=sk-test-FAKE-aaaa-1111&b=sk-test-FAKE-bbbb-2222")
	if strings.Contains(got, "FAKE") || !strings.Contains(got, "PLACEHOLDER_SECRET_VALUE_A") || !strings.Contains(got, "PLACEHOLDER_SECRET_VALUE_B") {
		t.Fatalf("redacted = %q", got)
	}
	if redactAll(nil) != nil {
		t.Fatal("no secrets should mean no redactor (no cost per event)")
	}
}
