package egress

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
	"github.com/panopticon-dev/panopticon/internal/secrets"
)

const fakeReal = "sk-test-FAKE-egress-unit-0000"

// proxyTo builds a Proxy whose upstream is srv, whatever name is asked for
// (the test's stand-in for our resolver), with one secret for allowed.test;
// other.test is allowlisted but not among the secret's domains.
func proxyTo(t *testing.T, srv *httptest.Server) *Proxy {
	t.Helper()
	list, err := policy.Parse([]byte("allowed.test\nother.test\n"), "allowlist.txt")
	if err != nil {
		t.Fatal(err)
	}
	tab, _, err := secrets.FromEnv(map[string]string{
		"PLACEHOLDER_SECRET_VALUE_X":   fakeReal,
		"PLACEHOLDER_SECRET_DOMAINS_X": "allowed.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Listener.Addr().String()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // test upstream only
	}
	t.Cleanup(tr.CloseIdleConnections)
	return New(Config{Policy: policy.New(list, policy.NewGuard(nil)), Transport: tr, Secrets: tab})
}

// do sends an intercepted request for allowed.test through p.
func do(p *Proxy, method, target string, body io.Reader) *http.Response {
	r := httptest.NewRequest(method, target, body)
	r.Host = "allowed.test"
	meta := &connMeta{client: "198.51.100.2:1234", dst: netip.MustParseAddrPort("203.0.113.10:443")}
	meta.setSNI("allowed.test")
	r = r.WithContext(context.WithValue(r.Context(), metaKey{}, meta))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w.Result()
}

func TestEchoedSecretsAreRedactedEverywhereInTheResponse(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", fakeReal)
		io.WriteString(w, "body says "+fakeReal)
		w.(http.Flusher).Flush() // chunked, and then a trailer nobody announced
		w.Header().Set(http.TrailerPrefix+"X-Echo-Trailer", fakeReal)
	}))
	defer srv.Close()
	p := proxyTo(t, srv)

	// The request carries no placeholder: a value stored earlier can come back any time.
	resp := do(p, "GET", "https://allowed.test/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for what, got := range map[string]string{
		"header":  resp.Header.Get("X-Echo"),
		"body":    string(body),
		"trailer": resp.Trailer.Get("X-Echo-Trailer"),
	} {
		if strings.Contains(got, fakeReal) {
			t.Errorf("the real value reached the agent in the %s: %q", what, got)
		}
		if !strings.Contains(got, "PLACEHOLDER_SECRET_VALUE_X") {
			t.Errorf("the %s lost the placeholder: %q", what, got)
		}
	}
}

func TestAPlaceholderIsSwappedOnlyForItsHost(t *testing.T) {
	var hits atomic.Int32
	var got atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		got.Store(r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	p := proxyTo(t, srv)

	for _, tc := range []struct {
		name       string
		host       string
		tls        bool
		wantStatus int
		wantReason string
	}{
		{"its own host, over TLS", "allowed.test", true, 200, ""},
		{"another allowlisted host", "other.test", true, 403, refusal.SecretUnauthorised},
		{"its own host, over plain HTTP", "allowed.test", false, 403, refusal.SecretPlainHTTP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			got.Store("")
			r := httptest.NewRequest("GET", "https://"+tc.host+"/", nil)
			r.Host = tc.host
			r.Header.Set("Authorization", "Bearer PLACEHOLDER_SECRET_VALUE_X")
			meta := &connMeta{client: "c", dst: netip.MustParseAddrPort("203.0.113.10:443")}
			meta.setSNI(tc.host)
			if !tc.tls {
				meta = &connMeta{client: "c", dst: netip.MustParseAddrPort("203.0.113.10:80")}
			}
			w := httptest.NewRecorder()
			p.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), metaKey{}, meta)))
			if w.Code != tc.wantStatus || w.Header().Get(refusal.Header) != tc.wantReason {
				t.Fatalf("status %d, reason %q; want %d, %q", w.Code, w.Header().Get(refusal.Header), tc.wantStatus, tc.wantReason)
			}
			if tc.wantStatus == 200 {
				if hits.Load() != 1 || got.Load() != "Bearer "+fakeReal {
					t.Fatalf("its own host got %d requests, Authorization %q", hits.Load(), got.Load())
				}
				return
			}
			if hits.Load() != 0 {
				t.Fatalf("the request reached the upstream (Authorization %q): refused requests must not leave", got.Load())
			}
			if strings.Contains(w.Body.String(), fakeReal) {
				t.Fatal("the refusal shows the real value")
			}
		})
	}
}
