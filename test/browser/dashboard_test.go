// Package browser drives the real dashboard in headless Chromium (Debian's
// chromium package) through chromedp. It is its own Go module, so the main
// module gains no dependency, and it does not import the main module: the
// end-to-end suite (test/e2e, TestDashboardBrowser) builds this test, starts
// panopticon in its network-namespace testbed and runs the binary inside the
// "internet" namespace with:
//
//	DASHBOARD_URL    http://198.51.100.2:8081
//	DASHBOARD_TOKEN  the token panopticon was started with
//	CONTROL_SOCKET   a unix socket: GET /curl?url=…[&resolve=host:port:addr]
//	                 makes the app (uid 1000 in the pod) fetch url and
//	                 answers {"status": N}
//	SCREENSHOT       where to save the PNG
//
// Run directly, without those, the test skips.
package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// control asks the e2e harness to make the app fetch target.
func control(t *testing.T, target, resolve string) int {
	t.Helper()
	sock := os.Getenv("CONTROL_SOCKET")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	q := url.Values{"url": {target}}
	if resolve != "" {
		q.Set("resolve", resolve)
	}
	resp, err := c.Get("http://control/curl?" + q.Encode())
	if err != nil {
		t.Fatalf("control %s: %v", target, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("control %s: %v", target, err)
	}
	t.Logf("app fetched %s: %d %s", target, r.Status, r.Detail)
	return r.Status
}

// within runs actions with their own deadline.
func within(ctx context.Context, d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func TestDashboard(t *testing.T) {
	base, token := os.Getenv("DASHBOARD_URL"), os.Getenv("DASHBOARD_TOKEN")
	if base == "" || token == "" || os.Getenv("CONTROL_SOCKET") == "" {
		t.Skip("run through the end-to-end suite: go test -tags e2e -run TestDashboardBrowser ./test/e2e/")
	}
	shot := os.Getenv("SCREENSHOT")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.NoSandbox, // root inside a test namespace
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1440, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelCtx()

	// Log in: the token leaves the address bar. (The first call starts the
	// browser: no timeout on its context, as chromedp asks.)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?token="+url.QueryEscape(token))); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}
	if err := within(ctx, 10*time.Second, chromedp.WaitVisible(chromedp.CSS(`#flows`))); err != nil {
		t.Fatalf("the dashboard did not render: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(loc, token) {
		t.Errorf("the token is still in the address bar: %s", loc)
	}
	if err := within(ctx, 10*time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](`document.querySelector('#live-text').textContent === 'live'`)(ctx, tg)
		return err
	})); err != nil {
		t.Fatalf("the event stream did not connect: %v", err)
	}

	// A request by the app shows up in the live table within two seconds.
	if s := control(t, "https://allowed.test/", ""); s != 200 {
		t.Fatalf("app → allowed.test: %d, want 200", s)
	}
	start := time.Now()
	if err := within(ctx, 2*time.Second, chromedp.WaitVisible(chromedp.CSS(`#flows tbody tr[data-host="allowed.test"][data-decision="allow"]`))); err != nil {
		t.Fatalf("allowed.test not in the live table within 2s: %v", err)
	}
	t.Logf("allowed.test in the live table after %v", time.Since(start).Round(time.Millisecond))

	// A blocked host appears under "Blocked", with Allow.
	if s := control(t, "https://denied.test/", "denied.test:443:203.0.113.20"); s != 403 {
		t.Fatalf("app → denied.test: %d, want 403", s)
	}
	control(t, "https://allowed.test/echo?q=dashboard", "")
	allowBtn := `#blocked tbody tr[data-host="denied.test"][data-reason="not-allowlisted"] button.allow`
	if err := within(ctx, 5*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#flows tbody tr[data-host="denied.test"][data-decision="block"]`)),
		chromedp.Click(chromedp.CSS(`.tab[data-tab="blocked"]`)),
		chromedp.WaitVisible(chromedp.CSS(allowBtn)),
	); err != nil {
		t.Fatalf("denied.test not under Blocked: %v", err)
	}

	// The screenshot: the live table, one flow opened.
	if shot != "" {
		if err := within(ctx, 10*time.Second,
			chromedp.Click(chromedp.CSS(`.tab[data-tab="flows"]`)),
			chromedp.Click(chromedp.CSS(`#flows tbody tr[data-host="denied.test"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#details`)),
			chromedp.Sleep(1300*time.Millisecond), // let the row flash fade
		); err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot saved to %s (%d bytes)", shot, len(png))
	}

	// Allow: the next request succeeds, and the entry is listed as runtime.
	if err := within(ctx, 10*time.Second,
		chromedp.Click(chromedp.CSS(`.tab[data-tab="blocked"]`)),
		chromedp.Click(chromedp.CSS(allowBtn)),
		chromedp.WaitNotPresent(chromedp.CSS(`#blocked tbody tr[data-host="denied.test"]`)),
	); err != nil {
		t.Fatalf("clicking Allow: %v", err)
	}
	var status int
	for range 10 { // the DNS answer the app cached (NXDOMAIN) is not ours to flush
		if status = control(t, "https://denied.test/", ""); status == 200 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status != 200 {
		t.Fatalf("app → denied.test after Allow: %d, want 200", status)
	}
	if err := within(ctx, 5*time.Second,
		chromedp.Click(chromedp.CSS(`.tab[data-tab="allowlist"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#runtime tbody tr[data-pattern="denied.test"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#file tbody tr[data-pattern="allowed.test"]`)),
	); err != nil {
		t.Fatalf("allowlist tab: %v", err)
	}
	if shot != "" {
		if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
			os.WriteFile(strings.TrimSuffix(shot, ".png")+"-allowlist.png", png, 0o644)
		}
	}
	fmt.Fprintln(os.Stderr, "browser: dashboard test passed")
}
