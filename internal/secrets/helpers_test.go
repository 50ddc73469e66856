package secrets

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"testing"
)

// Obviously fake values. They must never appear in printed output.
const (
	openaiValue = "sk-test-FAKE-0000"
	githubValue = "gh-test-FAKE-1111/+=&x"
	pinnedValue = "pinned-test-FAKE-2222"

	openaiPH = "PLACEHOLDER_SECRET_VALUE_OPENAI"
	githubPH = "PLACEHOLDER_SECRET_VALUE_GITHUB"
	pinnedPH = "PLACEHOLDER_SECRET_VALUE_PINNED"
)

var goodPin = sha256.Sum256([]byte("the pinned SPKI"))

func testEnv() map[string]string {
	return map[string]string{
		"PLACEHOLDER_SECRET_VALUE_OPENAI":   openaiValue,
		"PLACEHOLDER_SECRET_DOMAINS_OPENAI": "api.openai.test, *.openai-cdn.test",
		"PLACEHOLDER_SECRET_VALUE_GITHUB":   githubValue,
		"PLACEHOLDER_SECRET_DOMAINS_GITHUB": "api.github.test",
		"PLACEHOLDER_SECRET_VALUE_PINNED":   pinnedValue,
		"PLACEHOLDER_SECRET_DOMAINS_PINNED": "pinned.test",
		"PLACEHOLDER_SECRET_PINS_PINNED":    "sha256/" + base64.StdEncoding.EncodeToString(goodPin[:]),
		"UNRELATED":                         "x",
	}
}

func testTable(t testing.TB) *Table {
	t.Helper()
	tab, warnings, err := FromEnv(testEnv())
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if len(warnings) != 0 {
		t.Fatalf("unexpected warnings: %q", warnings)
	}
	return tab
}

// splitReader returns the data in reads of the given sizes, then the rest.
type splitReader struct {
	data  []byte
	sizes []int
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n = min(n, r.sizes[0])
		r.sizes = r.sizes[1:]
	}
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// assertNoValue fails when s contains any real test value.
func assertNoValue(t testing.TB, what string, s []byte) {
	t.Helper()
	for _, v := range []string{openaiValue, githubValue, pinnedValue, "FAKE"} {
		if bytes.Contains(s, []byte(v)) {
			t.Errorf("%s contains a real value %q: %s", what, v, s)
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
