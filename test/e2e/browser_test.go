//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDashboardBrowser drives the dashboard in headless Chromium: the test in
// test/browser (its own Go module, chromedp) runs inside the internet
// namespace against the real binary in the pod, and asks this test, over a
// unix socket, to make requests as the app. The screenshot lands in
// test/e2e/artifacts/dashboard.png.
func TestDashboardBrowser(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Fatalf("the browser test needs Chromium: apt-get install chromium (%v)", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tb := NewTestbed(t)
	bin := filepath.Join(tb.Dir, "browser.test")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Dir = filepath.Join(root, "test", "browser")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the browser test: %v\n%s", err, out)
	}

	tb.StartWithDashboard(t, "allowed.test\n")
	app := tb.App(t)

	sock := filepath.Join(tb.Dir, "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /curl", func(w http.ResponseWriter, r *http.Request) {
		var args []string
		if res := r.URL.Query().Get("resolve"); res != "" {
			args = append(args, "--resolve", res)
		}
		c := app.Curl(r.URL.Query().Get("url"), args...)
		json.NewEncoder(w).Encode(map[string]any{"status": c.Status, "detail": clip(c.String(), 300)})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	artifacts, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, "ip", "netns", "exec", tb.Net, bin, "-test.v", "-test.count=1", "-test.timeout=150s")
	run.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + tb.Dir,
		"DASHBOARD_URL=" + dashURL,
		"DASHBOARD_TOKEN=" + dashToken,
		"CONTROL_SOCKET=" + sock,
		"SCREENSHOT=" + filepath.Join(artifacts, "dashboard.png"),
	}
	run.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := run.CombinedOutput()
	t.Logf("browser test (%v):\n%s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("browser test failed: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP") || !strings.Contains(string(out), "--- PASS: TestDashboard") {
		t.Fatalf("browser test did not run to a pass")
	}
}
