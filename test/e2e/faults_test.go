//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	realBadCert = "fake-badcert-3333-panopticon-e2e"
	phBadCert   = "PLACEHOLDER_SECRET_VALUE_BADCERT"
)

// mountTmpfs mounts a tmpfs of size with opts at dir (in the host's mount
// namespace, which `ip netns exec` inherits) and unmounts it at cleanup.
// Register it before starting panopticon, so it is unmounted after the stop.
func mountTmpfs(t *testing.T, dir, opts string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// TestFaults breaks what panopticon depends on, one thing at a time, and
// checks each failure is answered clearly, logged, and disturbs nothing
// else: upstream DNS down or slow, an upstream certificate nobody trusts, an
// upstream that resets mid-body, the allowlist deleted or replaced by
// garbage, and a flow-log disk that fills up.
func TestFaults(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.PreparePanopticon(t, "allowed.test\n*.wild.test\nbadcert.test\n")
	p.Env = append(p.Env,
		phBadCert+"="+realBadCert,
		"PLACEHOLDER_SECRET_DOMAINS_BADCERT=badcert.test",
	)
	// The flow log lives on a 64 KiB filesystem, filled by the last case.
	mountTmpfs(t, p.LogDir, "size=64k,mode=0755")
	p.start(t)
	app := tb.App(t)
	healthy := func(t *testing.T) {
		t.Helper()
		if p.Exited() {
			t.Fatalf("panopticon exited:\n%s", p.Output())
		}
		if r := app.Curl("https://allowed.test/"); !r.Is(200) {
			t.Errorf("allowed.test, which this fault should not touch: %s", r)
		}
	}
	wild := func() CurlResult {
		return app.Curl("https://api.wild.test/", "--resolve", "api.wild.test:443:203.0.113.11")
	}

	t.Run("upstream dns down", func(t *testing.T) {
		tb.DNS.Down.Store(true)
		defer tb.DNS.Down.Store(false)
		r := wild() // never resolved before: nothing cached
		if !r.Is(502) || r.Header.Get("X-Panopticon-Block") != "upstream-error" {
			t.Errorf("with upstream DNS down: %s; want 502 upstream-error", r)
		}
		if r.Dur > 8*time.Second {
			t.Errorf("the refusal took %v", r.Dur)
		}
		// The DNS door gives up after its own 3s budget with SERVFAIL; a
		// stub resolver with a shorter timeout sees a timeout. Never an answer.
		if a := app.Agent("dns", UpstreamDNS, "api.wild.test", "A"); len(a.Answers) > 0 || a.OK && a.Rcode != "SERVFAIL" {
			t.Errorf("dns with the upstream down: %s; want SERVFAIL or a timeout", a)
		}
		if !p.waitOutput("upstream exchange failed", 3*time.Second) {
			t.Errorf("no log line names the failing upstream DNS")
		}
		f := p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "block", Reason: "upstream-error", Host: "api.wild.test"})
		if !strings.Contains(f.Detail["error"], "resolving") {
			t.Errorf("the flow event does not say resolution failed: %s", f)
		}
		tb.DNS.Down.Store(false)
		if r := wild(); !r.Is(200) {
			t.Errorf("after the upstream DNS came back: %s", r)
		}
		healthy(t)
	})

	t.Run("upstream dns slow", func(t *testing.T) {
		tb.DNS.Delay.Store(int64(1200 * time.Millisecond))
		defer tb.DNS.Delay.Store(0)
		r := app.Curl("https://wild.test/", "--resolve", "wild.test:443:203.0.113.13")
		if !r.Is(200) || r.Dur < time.Second {
			t.Errorf("with a 1.2s resolver: %s; want 200 after ≥ 1s", r)
		}
	})

	t.Run("upstream certificate invalid", func(t *testing.T) {
		m := tb.Mark()
		r := app.Curl("https://badcert.test/echo", "--resolve", "badcert.test:443:203.0.113.21",
			"-H", "Authorization: Bearer "+phBadCert)
		if !r.Is(502) || r.Header.Get("X-Panopticon-Block") != "upstream-cert-invalid" {
			t.Errorf("badcert.test: %s; want 502 upstream-cert-invalid", r)
		}
		if reqs := tb.Host("badcert.test").Requests(m[tb.Host("badcert.test").rec()]); len(reqs) > 0 {
			t.Errorf("a request (and the secret) reached the unverified upstream: %+v", reqs)
		}
		p.WaitFlow(t, FlowMatch{Kind: "egress", Decision: "block", Reason: "upstream-cert-invalid", Host: "badcert.test"})
		healthy(t)
	})

	t.Run("upstream resets mid-body", func(t *testing.T) {
		for _, c := range []struct{ name, url, proto string }{
			{"with a Content-Length, HTTP/1.1", "/reset", "--http1.1"},
			{"chunked, HTTP/1.1", "/reset?chunked&h1", "--http1.1"},
			{"chunked, HTTP/2", "/reset?chunked&h2", "--http2"},
		} {
			r := app.Run(15*time.Second, "curl", "-sS", c.proto, "--max-time", "10", "-o", "/dev/null",
				"-w", "%{http_code} %{size_download}", "https://allowed.test"+c.url)
			if r.Exit == 0 {
				t.Errorf("%s: a body cut short reached the app as complete: %s", c.name, r)
			}
			t.Logf("%s: curl after the upstream reset: %s", c.name, strings.TrimSpace(r.Stdout+" "+r.Stderr))
			f := p.WaitFlow(t, FlowMatch{Kind: "egress", Host: "allowed.test", Path: c.url})
			if !strings.Contains(f.Detail["error"], "broke off") {
				t.Errorf("%s: the flow event does not say the body broke off: %s", c.name, f)
			}
		}
		healthy(t)
	})

	t.Run("allowlist deleted, then garbage", func(t *testing.T) {
		denied := func() CurlResult {
			return app.Curl("https://denied.test/", "--resolve", "denied.test:443:203.0.113.20")
		}
		if err := os.Remove(p.AllowlistFile); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		healthy(t)
		assertBlocked(t, denied(), "not-allowlisted")
		if err := os.WriteFile(p.AllowlistFile, []byte("\x00\xff\xfe garbage \x01\n*.*\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		healthy(t)
		assertBlocked(t, denied(), "not-allowlisted")
		if r := wild(); !r.Is(200) {
			t.Errorf("*.wild.test after a garbage allowlist: %s", r)
		}
		if !p.waitOutput("keeping the last good list", 3*time.Second) {
			out := p.Output()
			t.Errorf("no log line says the last good list was kept:\n%s", out)
		}
		p.SetAllowlist(t, "allowed.test\n*.wild.test\nbadcert.test\n")
	})

	t.Run("flow log disk full", func(t *testing.T) {
		// ~400 requests on one connection: far more events than 64 KiB hold.
		args := []string{"curl", "-sS", "--http1.1", "--max-time", "60", "-o", "/dev/null", "-w", "%{http_code}\n"}
		for range 400 {
			args = append(args, "https://allowed.test/")
		}
		r := app.Run(70*time.Second, args...)
		if n := strings.Count(r.Stdout, "200"); n != 400 {
			t.Errorf("%d of 400 requests served while the log disk filled: %s", n, clip(r.Stdout, 200))
		}
		healthy(t)
		if !p.waitOutput("flow log write failed", 3*time.Second) {
			out := p.Output()
			t.Errorf("no log line says flow events are being dropped:\n%s", out)
		}
		if hc, err := p.Healthcheck(); err != nil {
			t.Errorf("healthcheck with a full log disk: %v: %s", err, hc)
		}
	})
}

// TestFaultCADirUnwritable: a CA directory panopticon cannot write at
// start-up is a clear start-up error naming CA_DIR, and nothing serves.
func TestFaultCADirUnwritable(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.PreparePanopticon(t, "allowed.test\n")
	mountTmpfs(t, p.CADir, "ro,size=16k")
	r := p.RunOnce(15 * time.Second)
	if r.Exit <= 0 {
		t.Fatalf("panopticon with a read-only CA_DIR: %s; want a non-zero exit", r)
	}
	if !strings.Contains(r.Stderr, "CA_DIR") || !strings.Contains(r.Stderr, "start-up failed") {
		t.Errorf("the error does not name CA_DIR: %s", r)
	}
	t.Logf("start-up error: %s", clip(r.Stderr, 400))
	// Fail closed: the firewall went in first and stays; the app has no way out.
	assertNoWayOut(t, tb, tb.App(t))
}

// waitOutput polls panopticon's output (at most limit) for s.
func (p *Panopticon) waitOutput(s string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		for _, f := range []string{p.StdoutFile, p.StderrFile} {
			if data, _ := os.ReadFile(f); strings.Contains(string(data), s) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
