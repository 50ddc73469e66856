//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// TestDashboardLocalUIDs: with DASHBOARD_LOCAL_UIDS=0 (kubectl port-forward
// dials from inside the pod as root), uid 0 in the namespace reaches the
// dashboard — with the token — while the app's uid still gets nothing.
func TestDashboardLocalUIDs(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	tb.StartWithDashboard(t, "allowed.test\n", "DASHBOARD_LOCAL_UIDS=0")
	url := "http://127.0.0.1:8081/api/state"

	root := tb.AppAs(t, 0, 0)
	r := root.Curl(url, bearerArgs(dashToken)...)
	if !r.Is(200) {
		t.Fatalf("uid 0 with the token: %s", r)
	}
	// The healthcheck that said panopticon was ready also ran the self-test;
	// the dashboard shows its verdict.
	if !strings.Contains(r.Body, `"selftest":{`) || !strings.Contains(r.Body, `"ok":true`) {
		t.Errorf("dashboard state lacks a passing self-test: %s", clip(r.Body, 400))
	}
	if r := root.Curl(url); !r.Is(401) {
		t.Errorf("uid 0 without the token: %s, want 401", r)
	}
	for _, uid := range []int{1000, 1337} {
		r := tb.AppAs(t, uid, uid).Curl(url, bearerArgs(dashToken)...)
		if r.Status != 0 {
			t.Errorf("uid %d reached the dashboard: %s", uid, r)
		}
	}
}
