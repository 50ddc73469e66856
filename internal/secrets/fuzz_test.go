package secrets

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

var fuzzHosts = []string{"api.openai.test", "api.github.test", "evil.test", "pinned.test"}

// FuzzRewriterStream checks that streaming substitution equals whole-buffer
// substitution for arbitrary data and read splits, and that a failed stream
// never emitted a real value it was not entitled to.
func FuzzRewriterStream(f *testing.F) {
	f.Add([]byte("Bearer "+openaiPH), uint16(3), uint16(9), uint8(0))
	f.Add([]byte("a"+openaiPH+githubPH+"b"), uint16(30), uint16(1), uint8(1))
	f.Add([]byte("PLACEHOLDER_SECRET_VALUE_PLACEHOLDER_SECRET_VALUE_OPENAI"), uint16(25), uint16(2), uint8(0))
	f.Add([]byte("x="+openaiValue), uint16(5), uint16(5), uint8(2))
	tab := testTable(f)
	f.Fuzz(func(t *testing.T, data []byte, s1, s2 uint16, hostSel uint8) {
		host := fuzzHosts[int(hostSel)%len(fuzzHosts)]
		want, wantErr := tab.Rewriter(host, hostSel < 128).String(string(data))
		rw := tab.Rewriter(host, hostSel < 128)
		a := int(s1) % (len(data) + 1)
		b := int(s2) % (len(data) + 1)
		got, err := io.ReadAll(rw.Reader(&splitReader{data: bytes.Clone(data), sizes: []int{a, b, 1, b}}))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("stream err %v, String err %v", err, wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) && !errors.Is(err, ErrLeak) && !errors.Is(err, ErrPlainHTTP) && !errors.Is(err, ErrPinMismatch) {
				t.Fatalf("unexpected error kind %v", err)
			}
			return
		}
		if string(got) != want {
			t.Fatalf("stream %q != String %q", got, want)
		}
	})
}

// FuzzRedactor checks that streaming redaction equals whole-buffer redaction
// and that no raw value survives.
func FuzzRedactor(f *testing.F) {
	f.Add([]byte("echo "+openaiValue), uint16(7), uint16(3))
	f.Add([]byte(githubValue+"sk-test-FAKE-000"+openaiValue), uint16(20), uint16(1))
	f.Add([]byte("gh-test-FAKE-1111%2F%2B%3D%26x"), uint16(2), uint16(11))
	tab := testTable(f)
	d := tab.Redactor(tab.Names())
	f.Fuzz(func(t *testing.T, data []byte, s1, s2 uint16) {
		want := d.String(string(data))
		a := int(s1) % (len(data) + 1)
		b := int(s2) % (len(data) + 1)
		got, err := io.ReadAll(d.Reader(&splitReader{data: bytes.Clone(data), sizes: []int{a, b, 1, b}}))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("stream %q != String %q", got, want)
		}
		for _, v := range []string{openaiValue, githubValue, pinnedValue} {
			if bytes.Contains(got, []byte(v)) {
				t.Fatalf("value survived redaction: %q", got)
			}
		}
	})
}
