//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRevokingAHostCutsWhatIsOpen plays an agent that keeps tunnels open to a
// host before it is taken off the allowlist: a WebSocket, a long streaming
// answer and a keep-alive HTTPS connection to allowed.test, and a keep-alive
// connection to alt.test, which stays allowed. After the reload the first
// three must be cut (the far side stops receiving), the fourth must keep
// working, and each tunnel cut is one revoked event in the flow log.
func TestRevokingAHostCutsWhatIsOpen(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.StartPanopticon(t, "allowed.test\nalt.test\n")
	app := tb.App(t)
	allowed := tb.Host("allowed.test")

	const busyMS = 7000
	tunnels := map[string][]string{
		"websocket to the revoked host":  {"tick", "wss://allowed.test/ws", strconv.Itoa(busyMS)},
		"stream from the revoked host":   {"sse", "https://allowed.test/sse?n=45&every=100"},
		"keep-alive to the revoked host": {"tick", "https://allowed.test/", strconv.Itoa(busyMS)},
		"keep-alive to a kept host":      {"tick", "https://alt.test/", strconv.Itoa(busyMS)},
	}
	results := map[string]AgentResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	started := time.Now()
	for name, args := range tunnels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := app.Agent(args...)
			mu.Lock()
			results[name] = r
			mu.Unlock()
		}()
	}
	time.Sleep(1500 * time.Millisecond) // every tunnel is open and busy
	m := tb.Mark()
	revokedAt := time.Since(started)
	p.SetAllowlist(t, "alt.test\n") // replace by rename, as editors do
	wg.Wait()

	cutWithin := func(t *testing.T, r AgentResult) {
		t.Helper()
		if r.OK || len(r.Events) == 0 {
			t.Fatalf("the tunnel was not cut, or never worked: ok=%v err=%q events=%d", r.OK, r.Err, len(r.Events))
		}
		last := time.Duration(r.Events[len(r.Events)-1]) * time.Millisecond
		took := last - revokedAt
		t.Logf("last success %v after the allowlist was rewritten (err %q)", took.Round(time.Millisecond), r.Err)
		// The file watcher picks up the edit within 2 s (see TestAllowlistReload);
		// the cut follows the reload within 2 s.
		if took > 4*time.Second {
			t.Errorf("the tunnel still worked %v after the rewrite", took.Round(time.Millisecond))
		}
	}
	t.Run("a WebSocket to the revoked host is cut, and the far side receives nothing after", func(t *testing.T) {
		r := results["websocket to the revoked host"]
		cutWithin(t, r)
		received := 0
		for _, e := range allowed.Since(m[allowed.rec()]) {
			if strings.HasPrefix(e, "ws-message n=") {
				received++
			}
		}
		// Messages after the rewrite reached the far side until the cut; the
		// agent saw each echoed, at most one more was in flight when it fell.
		after := 0
		for _, ms := range r.Events {
			if time.Duration(ms)*time.Millisecond >= revokedAt {
				after++
			}
		}
		if received > after+1 {
			t.Errorf("the far side received %d messages after the rewrite, the agent saw %d answered: some went through after the cut", received, after)
		}
	})
	t.Run("a streaming answer from the revoked host is cut mid-stream", func(t *testing.T) {
		cutWithin(t, results["stream from the revoked host"])
	})
	t.Run("a keep-alive connection to the revoked host is cut", func(t *testing.T) {
		// By the revocation or by its next request's 403, whichever comes first.
		cutWithin(t, results["keep-alive to the revoked host"])
	})
	t.Run("a connection to a host still allowed is not touched", func(t *testing.T) {
		r := results["keep-alive to a kept host"]
		if !r.OK {
			t.Fatalf("cut: %q after %d requests", r.Err, len(r.Events))
		}
	})
	t.Run("a new request to the revoked host gets the usual 403", func(t *testing.T) {
		assertBlocked(t, app.Curl("https://allowed.test/", "--resolve", "allowed.test:443:203.0.113.10"), "not-allowlisted")
	})
	t.Run("one revoked event per cut connection", func(t *testing.T) {
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "block", Reason: "revoked", Host: "allowed.test"})
		n := 0
		for _, f := range p.Flows(t) {
			if f.Reason == "revoked" {
				n++
				if !strings.EqualFold(f.Host, "allowed.test") {
					t.Errorf("revoked event for %s", f.Host)
				}
			}
		}
		// The WebSocket and the stream send no new request: only the
		// revocation can end them. The keep-alive connection may have been
		// refused by its next request first.
		if n < 2 || n > 3 {
			t.Errorf("%d revoked events, want one each for the WebSocket and the stream (and perhaps the keep-alive connection)", n)
		}
	})
}
