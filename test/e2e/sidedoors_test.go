//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// TestRealValueNeverComesBack plays an agent that got a real value stored at
// the host it is meant for (any API with a write and a read does that) and
// then tries every indirect way to read it back: other content codings,
// line-wrapped base64, partial content, and another host of the same service.
// Each time the far side really sends the value; the agent must never get it.
func TestRealValueNeverComesBack(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.PreparePanopticon(t, "allowed.test\nalt.test\n")
	p.Env = append(p.Env,
		"PLACEHOLDER_SECRET_VALUE_TEST="+realTest,
		"PLACEHOLDER_SECRET_DOMAINS_TEST=allowed.test",
	)
	p.start(t)
	app := tb.App(t)
	allowed := tb.Host("allowed.test")

	// store makes allowed.test hold prefix+value (the proxy swaps the
	// placeholder on the way), and checks that it really does.
	store := func(t *testing.T, prefix string) {
		t.Helper()
		if r := app.Curl("https://allowed.test/store", "--data-binary", prefix+phTest); !r.Is(200) {
			t.Fatalf("store: %s", r)
		}
		allowed.storeMu.Lock()
		held := string(allowed.stored)
		allowed.storeMu.Unlock()
		if held != prefix+realTest {
			t.Fatalf("the far side holds %q, want the real value", held)
		}
	}
	// never asserts the agent got no spelling of the value that the far side sent.
	never := func(t *testing.T, what string, got string) {
		t.Helper()
		flat := strings.NewReplacer("\r", "", "\n", "", `\r`, "", `\n`, "").Replace(got)
		if strings.Contains(got, realTest) {
			t.Fatalf("%s: the agent got the real value: %q", what, clip(got, 300))
		}
		for _, b64 := range base64Spellings(realTest) {
			if strings.Contains(flat, b64) {
				t.Fatalf("%s: the agent got the value's base64 %q: %q", what, b64, clip(got, 300))
			}
		}
	}

	store(t, "note: ")
	t.Run("in every content coding the proxy can decode, the value comes back as its placeholder", func(t *testing.T) {
		for _, as := range []string{"gzip", "br", "zstd", "gzip,br", "identity,identity"} {
			for _, compressed := range []bool{false, true} {
				args := []string{}
				if compressed {
					args = append(args, "--compressed")
				}
				r := app.Curl("https://allowed.test/stored?as="+as, args...)
				if !r.Is(200) {
					t.Fatalf("as=%s: %s", as, r)
				}
				never(t, "as="+as, r.Stdout)
				if r.Body != "note: "+phTest {
					t.Errorf("as=%s (--compressed %v): body %q, want the note with the placeholder", as, compressed, clip(r.Body, 200))
				}
			}
		}
	})
	t.Run("a coding the proxy cannot decode is withheld with a reason", func(t *testing.T) {
		r := app.Curl("https://allowed.test/stored?as=compress")
		if !r.Is(502) || r.Header.Get("X-Panopticon-Block") != "undecodable-response" {
			t.Fatalf("want 502 undecodable-response, got %s", r)
		}
		never(t, "as=compress", r.Stdout)
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "block", Reason: "undecodable-response", Host: "allowed.test"})
	})
	t.Run("line-wrapped base64 at every alignment is redacted", func(t *testing.T) {
		for _, prefix := range []string{"", "n", "no", "note: a longer prefix that moves the line break "} {
			store(t, prefix)
			for _, as := range []string{"mime", "pem", "github"} {
				r := app.Curl("https://allowed.test/stored?as=" + as)
				if !r.Is(200) {
					t.Fatalf("as=%s: %s", as, r)
				}
				never(t, "as="+as+" prefix "+prefix, r.Stdout)
				if as == "github" {
					var doc map[string]string
					if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
						t.Fatalf("the JSON answer no longer parses: %v: %q", err, r.Body)
					}
				}
			}
		}
	})
	store(t, "note: ")
	t.Run("range requests cannot read the value in pieces", func(t *testing.T) {
		m := tb.Mark()
		half := len("note: ") + len(realTest)/2
		var pieces string
		for _, rg := range []string{"0-" + strconv.Itoa(half-1), strconv.Itoa(half) + "-"} {
			r := app.Curl("https://allowed.test/stored", "-r", rg)
			if r.Is(206) {
				t.Fatalf("range %s: partial content reached the agent: %s", rg, r)
			}
			if !r.Is(200) {
				t.Fatalf("range %s: %s", rg, r)
			}
			pieces += r.Body
		}
		never(t, "two ranges", pieces)
		for _, e := range allowed.Since(m[allowed.rec()]) {
			if strings.HasPrefix(e, "range ") {
				t.Errorf("the far side received a Range header: %s", e)
			}
		}
	})
	t.Run("a large answer of announced length is cut at the value", func(t *testing.T) {
		r := app.Curl("https://allowed.test/stored?as=large")
		never(t, "large", r.Stdout)
		if r.Exit == 0 {
			t.Errorf("the cut answer reached the agent as complete: %s", r.RunResult)
		}
		if !r.Is(200) || r.Header.Get("Content-Length") != strconv.Itoa(2<<20+len("note: "+realTest)) {
			t.Errorf("want 200 with the announced length kept, got %s", r)
		}
		f := p.WaitFlow(t, FlowMatch{Kind: "egress", Host: "allowed.test", Path: "/stored?as=large"})
		if !strings.Contains(f.Detail["redaction"], "cut at the value") {
			t.Errorf("the flow event does not say the answer was cut: %s", f)
		}
	})
	t.Run("a value read back through another host of the service is redacted", func(t *testing.T) {
		r := app.Curl("https://alt.test/stored?from=allowed.test")
		if !r.Is(200) || r.Body != "note: "+phTest {
			t.Fatalf("want the note with the placeholder, got %s", r)
		}
		never(t, "other host", r.Stdout)
		r = app.Curl("https://alt.test/stored?from=allowed.test&as=br", "--compressed")
		never(t, "other host, br", r.Stdout)
	})
	t.Run("a value in a WebSocket message from another host is redacted", func(t *testing.T) {
		r := app.Agent("ws", "wss://alt.test/ws?from=allowed.test", "hello")
		if !r.OK {
			t.Fatalf("websocket: %s", r.Run)
		}
		never(t, "websocket", r.Got)
		if !strings.Contains(r.Got, phTest) {
			t.Fatalf("agent got %q, want the placeholder", r.Got)
		}
	})
}

// base64Spellings is the value's base64 at each of the three alignments it
// can have inside a longer blob (characters determined by the value alone).
func base64Spellings(v string) []string {
	var out []string
	for lead := range 3 {
		rest := v[(3-lead)%3:]
		rest = rest[:len(rest)/3*3]
		out = append(out, strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(rest)), "="))
	}
	return out
}
