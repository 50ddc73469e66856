//go:build e2e

package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dashToken is the DASHBOARD_TOKEN the dashboard tests start panopticon with.
const dashToken = "e2e-dashboard-token-5d1f0c"

// dashURL is the dashboard as the outside (the internet namespace) sees it.
var dashURL = "http://" + net.JoinHostPort(PodIP, "8081")

// StartWithDashboard starts panopticon with a known dashboard token and a
// state directory of the testbed's own, plus extra variables.
func (tb *Testbed) StartWithDashboard(t *testing.T, allowlist string, extra ...string) *Panopticon {
	t.Helper()
	p := tb.PreparePanopticon(t, allowlist)
	p.Env = append(p.Env,
		"DASHBOARD_TOKEN="+dashToken,
		"STATE_DIR="+filepath.Join(tb.Dir, "panopticon", "state"),
	)
	p.Env = append(p.Env, extra...)
	p.start(t)
	return p
}

// OutsideResult is what curl in the internet namespace got.
type OutsideResult struct {
	Status int
	Header http.Header
	Body   string
	Err    string
}

// Outside runs curl in the internet namespace (a browser or a script outside
// the pod), extra curl arguments first.
func (tb *Testbed) Outside(t *testing.T, url string, args ...string) OutsideResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	hdrFile := filepath.Join(tb.Dir, fmt.Sprintf("outside-%d.headers", time.Now().UnixNano()))
	defer os.Remove(hdrFile)
	argv := append([]string{"netns", "exec", tb.Net, "curl", "-sS", "--max-time", "10", "-D", hdrFile, "-w", "\n%{http_code}"}, args...)
	cmd := exec.CommandContext(ctx, "ip", append(argv, url)...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	var r OutsideResult
	body, code := "", string(out)
	if i := strings.LastIndexByte(string(out), '\n'); i >= 0 { // -w puts the status last
		body, code = string(out[:i]), string(out[i+1:])
	}
	r.Status, _ = strconv.Atoi(strings.TrimSpace(code))
	r.Body = body
	if err != nil {
		r.Err = err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			r.Err += ": " + string(ee.Stderr)
		}
	}
	r.Header = http.Header{}
	if raw, err := os.ReadFile(hdrFile); err == nil {
		for _, line := range strings.Split(string(raw), "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
	}
	return r
}

func (r OutsideResult) String() string {
	return fmt.Sprintf("HTTP %d body=%q err=%q", r.Status, clip(r.Body, 300), r.Err)
}

func bearerArgs(token string) []string { return []string{"-H", "Authorization: Bearer " + token} }

// TestDashboard checks access to the dashboard from outside and from the app,
// and that Allow (through the API) lets the app through, at once and after a
// restart.
func TestDashboard(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	p := tb.StartWithDashboard(t, "allowed.test\n")
	app := tb.App(t)

	t.Run("token required from outside", func(t *testing.T) {
		for _, path := range []string{"/", "/api/state", "/api/flows", "/metrics"} {
			if r := tb.Outside(t, dashURL+path); r.Status != 401 {
				t.Errorf("GET %s without a token: %s, want 401", path, r)
			}
			if r := tb.Outside(t, dashURL+path, bearerArgs("wrong-token")...); r.Status != 401 {
				t.Errorf("GET %s with a wrong token: %s, want 401", path, r)
			}
			if r := tb.Outside(t, dashURL+path, bearerArgs(dashToken)...); r.Status != 200 {
				t.Errorf("GET %s with the token: %s, want 200", path, r)
			}
		}
		r := tb.Outside(t, dashURL+"/?token="+dashToken)
		if r.Status != 303 || strings.Contains(r.Header.Get("Location"), dashToken) || !strings.Contains(r.Header.Get("Set-Cookie"), "HttpOnly") {
			t.Errorf("login: %s, Location %q, Set-Cookie %q", r, r.Header.Get("Location"), r.Header.Get("Set-Cookie"))
		}
	})

	t.Run("the app gets nothing from the dashboard port, token or not", func(t *testing.T) {
		for _, uid := range []int{1000, 1337, 0} {
			a := tb.AppAs(t, uid, uid)
			for _, url := range []string{"http://127.0.0.1:8081/api/state", "http://[::1]:8081/api/state", "http://" + PodIP + ":8081/api/state"} {
				r := a.Curl(url, "-H", "Authorization: Bearer "+dashToken)
				if r.Status != 0 {
					t.Errorf("uid %d: %s answered: %s", uid, url, r)
				}
			}
		}
	})

	t.Run("flows and metrics", func(t *testing.T) {
		if r := app.Curl("https://allowed.test/"); !r.Is(200) {
			t.Fatalf("app → allowed.test: %s", r)
		}
		var flows []Flow
		deadline := time.Now().Add(2 * time.Second)
		for {
			r := tb.Outside(t, dashURL+"/api/flows", bearerArgs(dashToken)...)
			json.Unmarshal([]byte(r.Body), &flows)
			if containsFlow(flows, "allowed.test", "allow") || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !containsFlow(flows, "allowed.test", "allow") {
			t.Errorf("dashboard flows lack allowed.test: %v", flows)
		}
		m := tb.Outside(t, dashURL+"/metrics", bearerArgs(dashToken)...)
		for _, want := range []string{`panopticon_flows_total{kind="egress",decision="allow"}`, "panopticon_cert_cache_mints_total", `panopticon_dns_queries_total{decision="allow",rcode="NOERROR"}`} {
			if !strings.Contains(m.Body, want) {
				t.Errorf("metrics lack %s:\n%s", want, clip(m.Body, 3000))
			}
		}
	})

	t.Run("allow from the dashboard, kept across a restart", func(t *testing.T) {
		resolve := []string{"--resolve", "denied.test:443:203.0.113.20"}
		assertBlocked(t, app.Curl("https://denied.test/", resolve...), "not-allowlisted")
		r := tb.Outside(t, dashURL+"/api/allow", append(bearerArgs(dashToken), "-H", "Content-Type: application/json", "--data", `{"patterns":["denied.test"]}`)...)
		if r.Status != 200 {
			t.Fatalf("POST /api/allow: %s", r)
		}
		if r := app.Curl("https://denied.test/"); !r.Is(200) || r.Body != "hello from denied.test" {
			t.Fatalf("after Allow: %s", r)
		}
		if err := p.Stop(t); err != nil {
			t.Errorf("stopping panopticon: %v", err)
		}
		p.start(t)
		if r := app.Curl("https://denied.test/"); !r.Is(200) {
			t.Errorf("after a restart: %s", r)
		}
		if r := tb.Outside(t, dashURL+"/api/runtime/remove", append(bearerArgs(dashToken), "-H", "Content-Type: application/json", "--data", `{"pattern":"denied.test"}`)...); r.Status != 200 {
			t.Fatalf("remove: %s", r)
		}
		assertBlocked(t, app.Curl("https://denied.test/", resolve...), "not-allowlisted")
	})
}

func containsFlow(flows []Flow, host, decision string) bool {
	for _, f := range flows {
		if f.Host == host && f.Decision == decision {
			return true
		}
	}
	return false
}

// hookReceiver is a webhook endpoint in the internet namespace.
type hookReceiver struct {
	mu    sync.Mutex
	posts []hookPost
}

type hookPost struct {
	Body []byte
	Sig  string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	h.mu.Lock()
	h.posts = append(h.posts, hookPost{body, r.Header.Get("X-Panopticon-Signature")})
	h.mu.Unlock()
	w.WriteHeader(204)
}

func (h *hookReceiver) got() []hookPost {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookPost(nil), h.posts...)
}

// TestWebhook: repeated blocks of one host give one signed POST, delivered
// from panopticon's own sockets to a receiver outside the pod.
func TestWebhook(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	recv := &hookReceiver{}
	const secret = "e2e-webhook-secret"
	addr := net.JoinHostPort(NetIP, "9099")
	if err := tb.inNetns(tb.Net, func() error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		tb.onClose(func() { srv.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tb.StartWithDashboard(t, "allowed.test\n",
		"WEBHOOK_URL=http://"+addr+"/hook", "WEBHOOK_SECRET="+secret, "WEBHOOK_DEDUP_SECONDS=60")
	app := tb.App(t)
	for range 3 {
		assertBlocked(t, app.Curl("https://denied.test/", "--resolve", "denied.test:443:203.0.113.20"), "not-allowlisted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(recv.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would have arrived by now
	posts := recv.got()
	var egress []hookPost
	for _, p := range posts {
		var m struct{ Kind, Host, Reason, Text string }
		json.Unmarshal(p.Body, &m)
		if m.Kind == "egress" && m.Host == "denied.test" {
			egress = append(egress, p)
			if m.Reason != "not-allowlisted" || !strings.Contains(m.Text, "denied.test") {
				t.Errorf("webhook body %s", p.Body)
			}
		}
	}
	if len(egress) != 1 {
		t.Fatalf("receiver got %d egress posts for denied.test, want 1 (all posts: %d)", len(egress), len(posts))
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(egress[0].Body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); egress[0].Sig != want {
		t.Errorf("signature %q, want %q", egress[0].Sig, want)
	}
}

// TestDashboardAudit: in MODE=audit the dashboard lists what would be
// blocked, and "add all" turns it into runtime allowlist entries.
func TestDashboardAudit(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	tb.StartWithDashboard(t, "allowed.test\n", "MODE=audit")
	app := tb.App(t)
	if r := app.Curl("https://denied.test/"); !r.Is(200) {
		t.Fatalf("audit mode: app → denied.test: %s, want 200", r)
	}
	type group struct{ Host, Reason, Pattern string }
	var st struct {
		Mode       string  `json:"mode"`
		WouldBlock []group `json:"would_block"`
		Blocked    []group `json:"blocked"`
		Allowlist  struct {
			Runtime []struct{ Pattern string } `json:"runtime"`
		} `json:"allowlist"`
	}
	state := func() {
		t.Helper()
		r := tb.Outside(t, dashURL+"/api/state", bearerArgs(dashToken)...)
		if err := json.Unmarshal([]byte(r.Body), &st); err != nil {
			t.Fatalf("state: %v: %s", err, r)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for state(); len(st.WouldBlock) == 0 && time.Now().Before(deadline); state() {
		time.Sleep(100 * time.Millisecond)
	}
	if st.Mode != "audit" || len(st.WouldBlock) == 0 || len(st.Blocked) != 0 {
		t.Fatalf("state: mode %q, would-block %+v, blocked %+v", st.Mode, st.WouldBlock, st.Blocked)
	}
	var patterns []string
	for _, g := range st.WouldBlock {
		if g.Host != "denied.test" || g.Reason != "not-allowlisted" || g.Pattern != "denied.test" {
			t.Errorf("would-block group %+v", g)
		}
		patterns = append(patterns, g.Pattern)
	}
	body, _ := json.Marshal(map[string][]string{"patterns": patterns})
	if r := tb.Outside(t, dashURL+"/api/allow", append(bearerArgs(dashToken), "-H", "Content-Type: application/json", "--data", string(body))...); r.Status != 200 {
		t.Fatalf("add all: %s", r)
	}
	state()
	if len(st.WouldBlock) != 0 || len(st.Allowlist.Runtime) != 1 {
		t.Errorf("after add all: would-block %+v, runtime %+v", st.WouldBlock, st.Allowlist.Runtime)
	}
}
