package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPrintedFormsAreRedacted proves that no way of printing a type that holds
// a real value shows it.
func TestPrintedFormsAreRedacted(t *testing.T) {
	tab := testTable(t)
	s, _ := tab.Secret(openaiPH)
	rw := tab.Rewriter("api.openai.test", true)
	_, _ = rw.String(openaiPH)
	reader := rw.Reader(strings.NewReader(openaiPH + " and more"))
	_, _ = reader.Read(make([]byte, 4)) // the window now holds the value
	body, _ := rw.Body(io.NopCloser(strings.NewReader(openaiPH)), "")
	ws := rw.WebSocket(strings.NewReader(""))
	d := tab.Redactor([]string{openaiPH})
	values := map[string]any{
		"Secret": s, "*Secret": &s, "Table": tab, "[]Secret": tab.secrets, "Rewriter": rw,
		"Reader": reader, "Body": body, "WebSocket": ws, "Redactor": d,
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%T %[1]v"} {
			t.Run(name+" printed with "+verb, func(t *testing.T) {
				assertNoValue(t, verb, []byte(fmt.Sprintf(verb, v)))
			})
		}
		t.Run(name+" in a slog JSON record", func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("msg", "v", v, slog.Any("any", v))
			assertNoValue(t, "slog JSON", buf.Bytes())
			buf.Reset()
			slog.New(slog.NewTextHandler(&buf, nil)).Info("msg", "v", v)
			assertNoValue(t, "slog text", buf.Bytes())
		})
		t.Run(name+" wrapped in an error", func(t *testing.T) {
			err := fmt.Errorf("loading %v: %w", v, errors.New("boom"))
			assertNoValue(t, "error", []byte(err.Error()))
		})
		t.Run(name+" in a recovered panic", func(t *testing.T) {
			defer func() {
				r := recover()
				assertNoValue(t, "panic", []byte(fmt.Sprint(r)))
				assertNoValue(t, "panic %#v", []byte(fmt.Sprintf("%#v", r)))
			}()
			panic(v)
		})
	}
	t.Run("Secret and Table in JSON", func(t *testing.T) {
		b, err := json.Marshal(map[string]any{"s": s, "t": tab})
		if err != nil {
			t.Fatal(err)
		}
		assertNoValue(t, "json", b)
		if !strings.Contains(string(b), openaiPH) {
			t.Errorf("json lost the name: %s", b)
		}
	})
	t.Run("the redacted form still names the secret", func(t *testing.T) {
		if got := fmt.Sprint(s); !strings.Contains(got, openaiPH) || !strings.Contains(got, "api.openai.test") || !strings.Contains(got, redacted) {
			t.Errorf("String() = %q", got)
		}
	})
}

// TestUncaughtPanicIsRedacted runs a child process that dies of a panic with
// a Secret, as the runtime would print it.
func TestUncaughtPanicIsRedacted(t *testing.T) {
	if os.Getenv("SECRETS_TEST_PANIC") == "1" {
		s, _ := testTable(t).Secret(openaiPH)
		panic(s)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUncaughtPanicIsRedacted$")
	cmd.Env = append(os.Environ(), "SECRETS_TEST_PANIC=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("child did not panic")
	}
	if !bytes.Contains(out, []byte("panic: ")) || !bytes.Contains(out, []byte(openaiPH)) {
		t.Fatalf("unexpected child output:\n%s", out)
	}
	assertNoValue(t, "panic output", out)
}

func TestSecretInsideAnotherStructIsRedacted(t *testing.T) {
	tab := testTable(t)
	s, _ := tab.Secret(openaiPH)
	type holder struct {
		secret  Secret
		secrets []Secret
		table   *Table
		rw      *Rewriter
		red     *Redactor
		body    io.Reader
	}
	rw := tab.Rewriter("api.openai.test", true)
	h := holder{s, []Secret{s}, tab, rw, tab.Redactor(tab.Names()), rw.Reader(strings.NewReader(openaiPH))}
	_, _ = h.body.Read(make([]byte, 1))
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		assertNoValue(t, "holder "+verb, []byte(fmt.Sprintf(verb, h)))
		assertNoValue(t, "&holder "+verb, []byte(fmt.Sprintf(verb, &h)))
	}
}
