package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
)

const token = "test-token-0123456789"

type fixture struct {
	srv     *Server
	http    *httptest.Server
	policy  *policy.Policy
	runtime *RuntimeList
	dir     string
}

func newFixture(t *testing.T, buffer int) *fixture {
	t.Helper()
	list, err := policy.Parse([]byte("allowed.test\n*.wild.test\n"), "allowlist.txt")
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.New(list, policy.NewGuard(nil))
	dir := t.TempDir()
	rt, err := OpenRuntimeList(filepath.Join(dir, RuntimeFileName), pol)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Token: token, Policy: pol, Runtime: rt, Mode: "enforce", BufferSize: buffer})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &fixture{srv: srv, http: hs, policy: pol, runtime: rt, dir: dir}
}

func (f *fixture) do(t *testing.T, method, path string, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var bearer = map[string]string{"Authorization": "Bearer " + token}

func jsonBearer() map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
}

func TestTokenIsRequiredEverywhere(t *testing.T) {
	f := newFixture(t, 10)
	paths := []string{"/", "/static/app.js", "/api/state", "/api/flows", "/api/events", "/metrics"}
	for _, p := range paths {
		for name, hdr := range map[string]map[string]string{
			"none":         nil,
			"wrong bearer": {"Authorization": "Bearer nope"},
			"prefix":       {"Authorization": "Bearer " + token[:10]},
			"basic":        {"Authorization": "Basic " + token},
			"wrong cookie": {"Cookie": CookieName + "=" + token},
		} {
			if resp := f.do(t, "GET", p, "", hdr); resp.StatusCode != 401 {
				t.Errorf("GET %s with %s: %d, want 401", p, name, resp.StatusCode)
			}
		}
	}
	for _, p := range []string{"/", "/static/app.js", "/static/style.css", "/api/state", "/api/flows", "/metrics"} {
		if resp := f.do(t, "GET", p, "", bearer); resp.StatusCode != 200 {
			t.Errorf("GET %s with the token: %d, want 200", p, resp.StatusCode)
		}
	}
	if resp := f.do(t, "GET", "/?token=wrong", "", nil); resp.StatusCode != 401 {
		t.Errorf("login with a wrong token: %d, want 401", resp.StatusCode)
	}
	for _, p := range []string{"/api/allow", "/api/dismiss", "/api/runtime/remove"} {
		if resp := f.do(t, "POST", p, `{}`, map[string]string{"Content-Type": "application/json"}); resp.StatusCode != 401 {
			t.Errorf("POST %s without the token: %d, want 401", p, resp.StatusCode)
		}
	}
}

func TestLoginSetsCookieAndDropsTokenFromURL(t *testing.T) {
	f := newFixture(t, 10)
	resp := f.do(t, "GET", "/?token="+token+"&tab=blocked", "", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d, want 303", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); strings.Contains(loc, token) || loc != "/?tab=blocked" {
		t.Errorf("redirect to %q, want /?tab=blocked (token dropped)", loc)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Value == token {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, not the token itself", cookie)
	}
	if resp := f.do(t, "GET", "/api/state", "", map[string]string{"Cookie": cookie.String()}); resp.StatusCode != 200 {
		t.Errorf("with the cookie: %d, want 200", resp.StatusCode)
	}
	page := f.do(t, "GET", "/", "", map[string]string{"Cookie": cookie.String()})
	body, _ := io.ReadAll(page.Body)
	if !strings.Contains(string(body), `<script src="/static/app.js"`) {
		t.Errorf("index page does not load app.js")
	}
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(string(body), "http://") && strings.Contains(string(body), "<script src=\"http") {
		t.Errorf("index page loads something from elsewhere")
	}
}

func TestMutationsNeedPOSTJSONAndSameOrigin(t *testing.T) {
	f := newFixture(t, 10)
	login := f.do(t, "GET", "/?token="+token, "", nil)
	cookie := login.Cookies()[0].String()
	body := `{"patterns":["evil.test"]}`
	cases := []struct {
		name   string
		method string
		hdr    map[string]string
		want   int
	}{
		{"GET", "GET", bearer, 405},
		{"form post", "POST", map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"cross-site cookie", "POST", map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, 403},
		{"other origin cookie", "POST", map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Origin": "http://evil.example"}, 403},
	}
	for _, c := range cases {
		if resp := f.do(t, c.method, "/api/allow", body, c.hdr); resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	if f.policy.Decide("evil.test", 443).Allow {
		t.Fatal("a refused request changed the policy")
	}
	same := map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin", "Origin": f.http.URL}
	if resp := f.do(t, "POST", "/api/allow", body, same); resp.StatusCode != 200 {
		t.Errorf("same-origin POST with the cookie: %d, want 200", resp.StatusCode)
	}
}

func TestAllowTakesEffectAndIsPersisted(t *testing.T) {
	f := newFixture(t, 10)
	f.srv.Ingest(flowlog.Event{Time: time.Now(), Kind: "egress", Decision: "block", Reason: "not-allowlisted", Host: "new.test", Port: 443})
	f.srv.Ingest(flowlog.Event{Time: time.Now(), Kind: "egress", Decision: "block", Reason: "not-allowlisted", Host: "odd.test", Port: 8443})
	st := f.state(t)
	if len(st.Blocked) != 2 {
		t.Fatalf("blocked %+v, want 2 groups", st.Blocked)
	}
	pattern := map[string]string{}
	for _, g := range st.Blocked {
		pattern[g.Host] = g.Pattern
	}
	if pattern["new.test"] != "new.test" || pattern["odd.test"] != "odd.test:8443" {
		t.Errorf("allow patterns %v", pattern)
	}
	if f.policy.Decide("new.test", 443).Allow {
		t.Fatal("new.test allowed before Allow")
	}
	resp := f.do(t, "POST", "/api/allow", `{"patterns":["New.Test."]}`, jsonBearer())
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("allow: %d %s", resp.StatusCode, b)
	}
	if d := f.policy.Decide("new.test", 443); !d.Allow || d.Rule() != "new.test" {
		t.Errorf("after Allow: %+v, want allowed by new.test", d)
	}
	data, err := os.ReadFile(filepath.Join(f.dir, RuntimeFileName))
	if err != nil || !strings.Contains(string(data), "\nnew.test\n") {
		t.Errorf("runtime file %q (%v), want new.test on a line", data, err)
	}
	st = f.state(t)
	if len(st.Blocked) != 1 || st.Blocked[0].Host != "odd.test" {
		t.Errorf("blocked after Allow: %+v, want only odd.test", st.Blocked)
	}
	if len(st.Allowlist.Runtime) != 1 || st.Allowlist.Runtime[0].Pattern != "new.test" {
		t.Errorf("runtime entries %+v", st.Allowlist.Runtime)
	}

	// A restart reads it back.
	list, _ := policy.Parse([]byte("allowed.test\n"), "allowlist.txt")
	pol := policy.New(list, policy.NewGuard(nil))
	rt, err := OpenRuntimeList(filepath.Join(f.dir, RuntimeFileName), pol)
	if err != nil {
		t.Fatal(err)
	}
	if !pol.Decide("new.test", 443).Allow || len(rt.Patterns()) != 1 {
		t.Errorf("after reopening: new.test not allowed (patterns %v)", rt.Patterns())
	}

	for _, bad := range []string{`{"patterns":["1.2.3.4"]}`, `{"patterns":["*"]}`, `{"patterns":["a b"]}`, `{"patterns":[]}`, `{"pattern":"x.test"}`, `not json`} {
		if resp := f.do(t, "POST", "/api/allow", bad, jsonBearer()); resp.StatusCode != 400 {
			t.Errorf("allow %s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestRemoveRuntimeEntry(t *testing.T) {
	f := newFixture(t, 10)
	if _, err := f.runtime.Add("gone.test", "kept.test"); err != nil {
		t.Fatal(err)
	}
	if resp := f.do(t, "POST", "/api/runtime/remove", `{"pattern":"gone.test"}`, jsonBearer()); resp.StatusCode != 200 {
		t.Fatalf("remove: %d", resp.StatusCode)
	}
	if f.policy.Decide("gone.test", 443).Allow || !f.policy.Decide("kept.test", 443).Allow {
		t.Error("after remove: want gone.test refused and kept.test allowed")
	}
	data, _ := os.ReadFile(filepath.Join(f.dir, RuntimeFileName))
	if strings.Contains(string(data), "gone.test") {
		t.Errorf("runtime file still holds gone.test: %q", data)
	}
	if resp := f.do(t, "POST", "/api/runtime/remove", `{"pattern":"gone.test"}`, jsonBearer()); resp.StatusCode != 404 {
		t.Errorf("removing again: %d, want 404", resp.StatusCode)
	}
	// File entries cannot be removed: they are not runtime entries.
	if resp := f.do(t, "POST", "/api/runtime/remove", `{"pattern":"allowed.test"}`, jsonBearer()); resp.StatusCode != 404 {
		t.Errorf("removing a file entry: %d, want 404", resp.StatusCode)
	}
	if !f.policy.Decide("allowed.test", 443).Allow {
		t.Error("file entry allowed.test lost")
	}
}

func TestDismiss(t *testing.T) {
	f := newFixture(t, 10)
	f.srv.Ingest(flowlog.Event{Time: time.Now(), Kind: "egress", Decision: "block", Reason: "ip-literal", Host: "1.2.3.4", Port: 443})
	if st := f.state(t); len(st.Blocked) != 1 || st.Blocked[0].Pattern != "" {
		t.Fatalf("blocked %+v, want one group with no allow pattern", st.Blocked)
	}
	if resp := f.do(t, "POST", "/api/dismiss", `{"host":"1.2.3.4","reason":"ip-literal"}`, jsonBearer()); resp.StatusCode != 200 {
		t.Fatalf("dismiss: %d", resp.StatusCode)
	}
	if st := f.state(t); len(st.Blocked) != 0 {
		t.Errorf("blocked after dismiss: %+v", st.Blocked)
	}
}

func TestWouldBlockAndHitCounts(t *testing.T) {
	f := newFixture(t, 10)
	now := time.Now()
	f.srv.Ingest(flowlog.Event{Time: now, Kind: "egress", Decision: "allow", Reason: "allowed.test", Rule: "allowed.test", Host: "allowed.test", Port: 443})
	f.srv.Ingest(flowlog.Event{Time: now, Kind: "dns", Decision: "allow", Reason: "allowlisted:*.wild.test", Rule: "*.wild.test", Host: "a.wild.test"})
	f.srv.Ingest(flowlog.Event{Time: now, Kind: "egress", Decision: "allow", Reason: "*.wild.test", Rule: "*.wild.test", Host: "a.wild.test", Port: 443})
	f.srv.Ingest(flowlog.Event{Time: now, Kind: "egress", Decision: WouldBlock, Reason: "not-allowlisted", Host: "learn.test", Port: 443})
	f.srv.Ingest(flowlog.Event{Time: now, Kind: "dns", Decision: WouldBlock, Reason: "not-allowlisted", Host: "learn2.test"})
	st := f.state(t)
	hits := map[string]uint64{}
	for _, e := range st.Allowlist.File {
		hits[e.Pattern] = e.Hits
	}
	if hits["allowed.test"] != 1 || hits["*.wild.test"] != 2 {
		t.Errorf("hits %v, want allowed.test 1 and *.wild.test 2", hits)
	}
	if len(st.WouldBlock) != 2 || len(st.Blocked) != 0 {
		t.Fatalf("would-block %+v blocked %+v", st.WouldBlock, st.Blocked)
	}
	var patterns []string
	for _, g := range st.WouldBlock {
		patterns = append(patterns, `"`+g.Pattern+`"`)
	}
	if resp := f.do(t, "POST", "/api/allow", `{"patterns":[`+strings.Join(patterns, ",")+`]}`, jsonBearer()); resp.StatusCode != 200 {
		t.Fatalf("add all: %d", resp.StatusCode)
	}
	if st := f.state(t); len(st.WouldBlock) != 0 || len(st.Allowlist.Runtime) != 2 {
		t.Errorf("after add all: would-block %+v, runtime %+v", st.WouldBlock, st.Allowlist.Runtime)
	}
}

func (f *fixture) state(t *testing.T) State {
	t.Helper()
	resp := f.do(t, "GET", "/api/state", "", bearer)
	var st State
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestEventStreamDeliversHistoryThenLiveFlows(t *testing.T) {
	f := newFixture(t, 10)
	f.srv.Seed([]flowlog.Event{{Kind: "egress", Decision: "allow", Host: "old.test"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() Flow {
		t.Helper()
		var id string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				var fl Flow
				if err := json.Unmarshal([]byte(v), &fl); err != nil {
					t.Fatal(err)
				}
				if id == "" {
					t.Error("event without an id")
				}
				return fl
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return Flow{}
	}
	if fl := next(); fl.Host != "old.test" || fl.ID != 1 {
		t.Errorf("first event %+v, want history old.test id 1", fl)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.srv.Ingest(flowlog.Event{Kind: "egress", Decision: "block", Host: "live.test"})
	}()
	if fl := next(); fl.Host != "live.test" || fl.ID != 2 || fl.Decision != "block" {
		t.Errorf("live event %+v, want live.test id 2", fl)
	}
}

func TestEventStreamResumesFromLastEventID(t *testing.T) {
	f := newFixture(t, 10)
	for _, h := range []string{"a.test", "b.test", "c.test"} {
		f.srv.Ingest(flowlog.Event{Kind: "egress", Decision: "allow", Host: h})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Last-Event-ID", "2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body) // until the context ends
	if n := strings.Count(string(body), "event: flow"); n != 1 || !strings.Contains(string(body), `"host":"c.test"`) {
		t.Errorf("resumed after id 2, got %d events:\n%s", n, body)
	}
}

func TestRingIsBounded(t *testing.T) {
	f := newFixture(t, 5)
	for i := range 23 {
		f.srv.Ingest(flowlog.Event{Kind: "egress", Decision: "allow", Host: "h.test", Port: i})
	}
	resp := f.do(t, "GET", "/api/flows", "", bearer)
	var flows []Flow
	if err := json.NewDecoder(resp.Body).Decode(&flows); err != nil {
		t.Fatal(err)
	}
	if len(flows) != 5 {
		t.Fatalf("%d flows kept, want 5", len(flows))
	}
	for i, fl := range flows { // newest first
		if want := uint64(23 - i); fl.ID != want || fl.Port != int(want)-1 {
			t.Errorf("flows[%d] = id %d port %d, want id %d", i, fl.ID, fl.Port, want)
		}
	}
	if st := f.state(t); st.Flows != 23 || st.Hosts[0].Requests != 23 {
		t.Errorf("state counts %d flows, host %+v; want 23", st.Flows, st.Hosts)
	}
}

func TestSummariesAreBounded(t *testing.T) {
	s := newSummary()
	base := time.Now()
	for i := range maxHosts + 100 {
		s.add(flowlog.Event{Time: base.Add(time.Duration(i)), Kind: "egress", Decision: "block", Reason: "not-allowlisted", Host: "h" + itoa(i) + ".test", Port: 443})
	}
	if len(s.hosts) > maxHosts || len(s.blocked) > maxGroups {
		t.Errorf("%d hosts, %d groups; want at most %d and %d", len(s.hosts), len(s.blocked), maxHosts, maxGroups)
	}
	if _, ok := s.hosts["h0.test"]; ok {
		t.Error("the oldest host was kept")
	}
}

func TestMetricsEndpoint(t *testing.T) {
	f := newFixture(t, 10)
	f.srv.Ingest(flowlog.Event{Kind: "egress", Decision: "allow", Host: "allowed.test", DurationMS: 12, BytesIn: 100})
	resp := f.do(t, "GET", "/metrics", "", bearer)
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`panopticon_flows_total{kind="egress",decision="allow"} 1`,
		`panopticon_bytes_total{kind="egress",direction="in"} 100`,
		`panopticon_upstream_duration_seconds_count 1`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if !strings.HasPrefix(line, "#") && len(strings.Fields(line)) != 2 {
			t.Errorf("line %q is not 'name value'", line)
		}
	}
}

func TestOpenRuntimeListRejectsBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), RuntimeFileName)
	os.WriteFile(path, []byte("ok.test\n1.2.3.4\n"), 0o600)
	pol := policy.New(nil, policy.NewGuard(nil))
	_, err := OpenRuntimeList(path, pol)
	if err == nil || !strings.Contains(err.Error(), path+":2") {
		t.Errorf("error %v, want one naming %s:2", err, path)
	}
}

func TestStateShowsTheLastSelftest(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "selftest.json")
	verdict := `{"time":"2026-11-27T19:00:00Z","ok":false,"probes":[{"name":"udp","blocked":false,"detail":"sent"}]}`
	if err := os.WriteFile(file, []byte(verdict), 0o644); err != nil {
		t.Fatal(err)
	}
	list, _ := policy.Parse([]byte("allowed.test\n"), "allowlist.txt")
	s := New(Options{Token: "t", Policy: policy.New(list, policy.NewGuard(nil)), SelftestFile: file})
	st := s.snapshot()
	if string(st.Selftest) != verdict {
		t.Fatalf("selftest = %s, want the file's verdict", st.Selftest)
	}
	os.Remove(file)
	if st := s.snapshot(); st.Selftest != nil {
		t.Fatalf("selftest shown without a file: %s", st.Selftest)
	}
}
