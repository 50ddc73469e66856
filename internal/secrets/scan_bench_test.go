package secrets

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

// BenchmarkRedactorReader measures the response scan on bulk bodies: the
// bench's download pattern, random binary and base64 text.
func BenchmarkRedactorReader(b *testing.B) {
	tab, _, err := FromEnv(map[string]string{
		"PLACEHOLDER_SECRET_VALUE_BENCH":   "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz-REAL",
		"PLACEHOLDER_SECRET_DOMAINS_BENCH": "secret.test",
	})
	if err != nil {
		b.Fatal(err)
	}
	red := tab.Redactor(tab.Names())
	random := make([]byte, 8<<20)
	_, _ = rand.Read(random)
	bodies := map[string][]byte{
		"pattern": bytes.Repeat([]byte("0123456789abcdef"), 512<<10),
		"random":  random,
		"text":    bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog, {\"id\": 12345, \"name\": \"example\"}\n"), 100<<10),
	}
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := io.Copy(io.Discard, red.Reader(bytes.NewReader(body))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
