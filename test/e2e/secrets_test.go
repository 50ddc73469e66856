//go:build e2e

package e2e

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Obviously fake secret values: the agent never holds them, only placeholders.
const (
	realTest      = "sk-test-FAKE-0000-panopticon-e2e-aaaa"
	realPinnedOK  = "fake-pinned-ok-1111-panopticon-e2e"
	realPinnedBad = "fake-pinned-bad-2222-panopticon-e2e"
	phTest        = "PLACEHOLDER_SECRET_VALUE_TEST"
	phPinnedOK    = "PLACEHOLDER_SECRET_VALUE_PINNEDOK"
	phPinnedBad   = "PLACEHOLDER_SECRET_VALUE_PINNEDBAD"
)

// spkiPin is the sha256/<base64> pin of the first certificate in a PEM file.
func spkiPin(t *testing.T, pemFile string) string {
	t.Helper()
	data, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

// TestSecrets plays an agent that holds only placeholders: real values reach
// exactly the hosts they are meant for, over verified TLS, and nothing else —
// not other hosts, not plain HTTP, not the agent (echoes are redacted), not
// the logs.
func TestSecrets(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.PreparePanopticon(t, "allowed.test\n*.wild.test\n")
	wrongPin := sha256.Sum256([]byte("not the upstream's key"))
	p.Env = append(p.Env,
		"PLACEHOLDER_SECRET_VALUE_TEST="+realTest,
		"PLACEHOLDER_SECRET_DOMAINS_TEST=allowed.test",
		"PLACEHOLDER_SECRET_VALUE_PINNEDOK="+realPinnedOK,
		"PLACEHOLDER_SECRET_DOMAINS_PINNEDOK=api.wild.test",
		"PLACEHOLDER_SECRET_PINS_PINNEDOK="+spkiPin(t, tb.UpstreamCAFile),
		"PLACEHOLDER_SECRET_VALUE_PINNEDBAD="+realPinnedBad,
		"PLACEHOLDER_SECRET_DOMAINS_PINNEDBAD=wild.test",
		"PLACEHOLDER_SECRET_PINS_PINNEDBAD=sha256/"+base64.StdEncoding.EncodeToString(wrongPin[:]),
		"DASHBOARD_TOKEN="+dashToken,
	)
	p.start(t)
	app := tb.App(t)
	allowed := tb.Host("allowed.test")

	// swapped asserts the upstream got the real value where the agent put the
	// placeholder, and that the agent's copy of the echo shows the placeholder only.
	swapped := func(t *testing.T, m Marks, r CurlResult, where func(Request) string) {
		t.Helper()
		if !r.Is(200) {
			t.Fatalf("request refused: %s", r)
		}
		reqs := allowed.Requests(m[allowed.rec()])
		if len(reqs) != 1 {
			t.Fatalf("upstream saw %d requests, want 1", len(reqs))
		}
		if got := where(reqs[0]); !strings.Contains(got, realTest) || strings.Contains(got, phTest) {
			t.Fatalf("upstream did not receive the real value there: %q", got)
		}
		if strings.Contains(r.Stdout, realTest) {
			t.Fatalf("the echo handed the real value to the agent: %q", clip(r.Stdout, 400))
		}
		if !strings.Contains(r.Body, phTest) {
			t.Fatalf("the echo lost the placeholder: %q", clip(r.Body, 400))
		}
	}

	t.Run("in a header", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/echo", "-H", "Authorization: Bearer "+phTest)
		swapped(t, m, r, func(q Request) string { return q.Header.Get("Authorization") })
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "allow", Host: "allowed.test"})
	})
	t.Run("in the query", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/echo?key=" + phTest + "&x=1")
		swapped(t, m, r, func(q Request) string { return q.Query })
	})
	t.Run("in a JSON body", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/echo", "-H", "Content-Type: application/json", "--data-binary", `{"api_key":"`+phTest+`"}`)
		swapped(t, m, r, func(q Request) string { return q.Body })
	})
	t.Run("in Basic credentials", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/echo", "-u", "agent:"+phTest)
		swapped(t, m, r, func(q Request) string {
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(q.Header.Get("Authorization"), "Basic "))
			return string(raw)
		})
	})
	t.Run("in a chunked body", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://allowed.test/echo", "-H", "Transfer-Encoding: chunked", "--data-binary", "token="+phTest)
		swapped(t, m, r, func(q Request) string { return q.Body })
	})
	t.Run("in a WebSocket message", func(t *testing.T) {
		m := tb.Mark()
		r := app.Agent("ws", "wss://allowed.test/ws", "token="+phTest)
		if !r.OK {
			t.Fatalf("websocket: %s", r)
		}
		if strings.Contains(r.Got, realTest) || !strings.Contains(r.Got, phTest) {
			t.Fatalf("agent's echo = %q, want the placeholder only", r.Got)
		}
		seen := strings.Join(allowed.Since(m[allowed.rec()]), "\n")
		if !strings.Contains(seen, "ws-message token="+realTest) {
			t.Fatalf("upstream did not receive the real value in the message: %q", clip(seen, 400))
		}
	})

	t.Run("a value stored by one request does not come back in a later one", func(t *testing.T) {
		if r := app.Curl("https://allowed.test/store", "--data-binary", "note: "+phTest); !r.Is(200) {
			t.Fatalf("store: %s", r)
		}
		r := app.Curl("https://allowed.test/stored") // no placeholder in this request
		if !r.Is(200) || strings.Contains(r.Stdout, realTest) || !strings.Contains(r.Body, phTest) {
			t.Fatalf("read back: %s", r)
		}
	})

	t.Run("a placeholder for an allowlisted but unauthorised host is refused and nothing is sent", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://api.wild.test/echo", "-H", "Authorization: Bearer "+phTest)
		assertBlocked(t, r, "secret-not-authorised")
		if !strings.Contains(r.Body, phTest) || !strings.Contains(r.Body, "api.wild.test") {
			t.Errorf("reason should name the secret and the host: %q", r.Body)
		}
		AssertUnseen(t, m, tb.Host("api.wild.test"))
	})
	t.Run("a placeholder over plain HTTP is refused", func(t *testing.T) {
		m := tb.Mark()
		assertBlocked(t, app.Curl("http://allowed.test/echo", "-H", "Authorization: Bearer "+phTest), "secret-plain-http")
		AssertUnseen(t, m, allowed)
	})
	t.Run("a Host header naming the authorised host does not unlock it", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://api.wild.test/echo", "-H", "Host: allowed.test", "-H", "Authorization: Bearer "+phTest)
		if r.Is(200) {
			t.Fatalf("Host game released the secret: %s", r)
		}
		AssertUnseen(t, m, tb.Host("api.wild.test"), allowed)
	})
	t.Run("a real value in the agent's hands is refused for any host", func(t *testing.T) {
		m := tb.Mark()
		assertBlocked(t, app.Curl("https://allowed.test/echo", "-H", "X-Key: "+realTest), "secret-leak")
		AssertUnseen(t, m, allowed)
	})
	t.Run("a pinned secret is released to the pinned key", func(t *testing.T) {
		m := tb.Mark()
		h := tb.Host("api.wild.test")
		r := app.Curl("https://api.wild.test/echo", "-H", "Authorization: Bearer "+phPinnedOK)
		if !r.Is(200) || strings.Contains(r.Stdout, realPinnedOK) {
			t.Fatalf("pinned secret: %s", r)
		}
		reqs := h.Requests(m[h.rec()])
		if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer "+realPinnedOK {
			t.Fatalf("upstream got %+v", reqs)
		}
	})
	t.Run("a pinned secret is withheld from a host with another key", func(t *testing.T) {
		m := tb.Mark()
		h := tb.Host("wild.test")
		r := app.Curl("https://wild.test/echo", "-H", "Authorization: Bearer "+phPinnedBad)
		assertBlocked(t, r, "secret-pin-mismatch")
		if reqs := h.Requests(m[h.rec()]); len(reqs) != 0 {
			t.Fatalf("wild.test received a request: %+v", reqs)
		}
		// Without the secret, the same host is reached as usual.
		if r := app.Curl("https://wild.test/"); !r.Is(200) {
			t.Errorf("wild.test without the secret: %s", r)
		}
	})

	t.Run("flow events name the secrets swapped", func(t *testing.T) {
		found := false
		for _, f := range p.Flows(t) {
			if f.Host == "allowed.test" && strings.Contains(f.raw, `"secrets":["`+phTest+`"]`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no flow event lists %s in secrets", phTest)
		}
	})

	t.Run("the dashboard shows headers with placeholders only", func(t *testing.T) {
		r := tb.Outside(t, dashURL+"/api/flows", bearerArgs(dashToken)...)
		if r.Status != 200 {
			t.Fatalf("dashboard flows: %s", r)
		}
		if !strings.Contains(r.Body, "Bearer "+phTest) {
			t.Errorf("the request headers with the placeholder are not shown")
		}
		for _, v := range []string{realTest, realPinnedOK, realPinnedBad} {
			if strings.Contains(r.Body, v) {
				t.Errorf("the dashboard API hands out a real secret value")
			}
		}
	})

	t.Run("no real value in any log file or panopticon output", func(t *testing.T) {
		if err := p.Stop(t); err != nil {
			t.Logf("stop: %v", err)
		}
		files := []string{p.StdoutFile, p.StderrFile}
		filepath.WalkDir(p.LogDir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return nil
		})
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Errorf("reading %s: %v", f, err)
				continue
			}
			for _, v := range []string{realTest, realPinnedOK, realPinnedBad} {
				if strings.Contains(string(data), v) {
					t.Errorf("%s contains a real secret value", f)
				}
			}
		}
	})
}
