package metrics

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$`)

// parse checks every line of the exposition and returns sample → value.
func parse(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	typed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 || (f[3] != "counter" && f[3] != "histogram") {
				t.Errorf("line %d: bad TYPE line %q", n, line)
			}
			typed[f[2]] = true
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d does not parse: %q", n, line)
				continue
			}
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")
			if !typed[m[1]] && !typed[base] {
				t.Errorf("line %d: sample %s before its TYPE", n, m[1])
			}
			v, err := strconv.ParseFloat(m[4], 64)
			if err != nil {
				t.Errorf("line %d: value %q: %v", n, m[4], err)
			}
			key := m[1] + m[2]
			if _, dup := out[key]; dup {
				t.Errorf("line %d: duplicate sample %s", n, key)
			}
			out[key] = v
		}
	}
	return out
}

func TestExposition(t *testing.T) {
	m := New()
	m.Observe(flowlog.Event{Kind: "egress", Decision: "allow", BytesIn: 1000, BytesOut: 200, DurationMS: 30})
	m.Observe(flowlog.Event{Kind: "egress", Decision: "allow", BytesIn: 5, DurationMS: 2000})
	m.Observe(flowlog.Event{Kind: "egress", Decision: "block", Reason: "not-allowlisted"})
	m.Observe(flowlog.Event{Kind: "dns", Decision: "allow", Detail: map[string]string{"rcode": "NOERROR"}})
	m.Observe(flowlog.Event{Kind: "dns", Decision: "block", Reason: "not-allowlisted", Detail: map[string]string{"rcode": "NXDOMAIN"}})
	m.Observe(flowlog.Event{Kind: "dns", Decision: "block", Reason: "not-allowlisted", Detail: map[string]string{"rcode": "NXDOMAIN"}})
	m.Observe(flowlog.Event{Kind: "inbound", Decision: "block", Reason: "filter:filters.txt:3"})
	m.Observe(flowlog.Event{Kind: "inbound", Decision: "block", Reason: "agent-chosen-" + strings.Repeat("x", 9)})

	var b strings.Builder
	err := m.WriteTo(&b, Sources{
		CertCache:         func() (uint64, uint64, uint64) { return 7, 3, 2 },
		WebhookDeliveries: func() map[string]uint64 { return map[string]uint64{"ok": 4, "error": 1} },
		WebhookDropped:    func() uint64 { return 9 },
		AllowlistReloads:  func() uint64 { return 5 },
		AllowlistFailures: func() uint64 { return 2 },
		FlowlogDropped:    func() uint64 { return 1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, b.String())
	want := map[string]float64{
		`panopticon_flows_total{kind="egress",decision="allow"}`:          2,
		`panopticon_flows_total{kind="egress",decision="block"}`:          1,
		`panopticon_flows_total{kind="dns",decision="block"}`:             2,
		`panopticon_blocks_total{kind="egress",reason="not-allowlisted"}`: 1,
		`panopticon_blocks_total{kind="dns",reason="not-allowlisted"}`:    2,
		`panopticon_blocks_total{kind="inbound",reason="filter"}`:         1, // the rule's file and line are not a label
		`panopticon_blocks_total{kind="inbound",reason="other"}`:          1, // an unregistered reason does not grow the scrape
		`panopticon_bytes_total{kind="egress",direction="in"}`:            1005,
		`panopticon_bytes_total{kind="egress",direction="out"}`:           200,
		`panopticon_upstream_duration_seconds_bucket{le="0.025"}`:         0,
		`panopticon_upstream_duration_seconds_bucket{le="0.05"}`:          1,
		`panopticon_upstream_duration_seconds_bucket{le="2.5"}`:           2,
		`panopticon_upstream_duration_seconds_bucket{le="+Inf"}`:          2,
		`panopticon_upstream_duration_seconds_count`:                      2,
		`panopticon_upstream_duration_seconds_sum`:                        2.03,
		`panopticon_dns_queries_total{decision="block",rcode="NXDOMAIN"}`: 2,
		`panopticon_dns_queries_total{decision="allow",rcode="NOERROR"}`:  1,
		`panopticon_cert_cache_hits_total`:                                7,
		`panopticon_cert_cache_misses_total`:                              3,
		`panopticon_cert_cache_mints_total`:                               2,
		`panopticon_webhook_deliveries_total{result="ok"}`:                4,
		`panopticon_webhook_deliveries_total{result="retry"}`:             0,
		`panopticon_webhook_deliveries_total{result="error"}`:             1,
		`panopticon_webhook_dropped_total`:                                9,
		`panopticon_allowlist_reloads_total`:                              5,
		`panopticon_allowlist_reload_failures_total`:                      2,
		`panopticon_flowlog_dropped_total`:                                1,
		`panopticon_flowlog_subscriber_dropped_total`:                     0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", b.String())
	}
}

func TestEmptyExpositionHasEveryMetric(t *testing.T) {
	var b strings.Builder
	if err := New().WriteTo(&b, Sources{}); err != nil {
		t.Fatal(err)
	}
	got := parse(t, b.String())
	for _, name := range []string{"panopticon_upstream_duration_seconds_count", "panopticon_cert_cache_mints_total", "panopticon_webhook_dropped_total", `panopticon_webhook_deliveries_total{result="ok"}`} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing from an empty exposition", name)
		}
	}
	for _, name := range []string{"panopticon_flows_total", "panopticon_bytes_total", "panopticon_dns_queries_total"} {
		if !strings.Contains(b.String(), "# TYPE "+name+" counter") {
			t.Errorf("%s has no TYPE line", name)
		}
	}
}

func TestLabelValuesAreEscapedAndBounded(t *testing.T) {
	m := New()
	for i := range 200 {
		m.Observe(flowlog.Event{Kind: "k" + strconv.Itoa(i), Decision: "a\"b\\c\nd"})
	}
	var b strings.Builder
	m.WriteTo(&b, Sources{})
	parse(t, b.String())
	if n := strings.Count(b.String(), "panopticon_flows_total{"); n > maxLabelValues+1 {
		t.Errorf("%d flows_total series, want at most %d", n, maxLabelValues+1)
	}
}
