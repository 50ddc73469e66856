// Package metrics counts flow events and renders them, with counters kept
// elsewhere, in the Prometheus text exposition format (version 0.0.4).
//
//	m := metrics.New()
//	for e := range events { m.Observe(e) }
//	...
//	m.WriteTo(w, metrics.Sources{CertCache: minter.Stats})
//
// Every metric is always present (zero until something happens), so a
// dashboard built on it never sees a series appear out of nowhere.
//
// Non-goals: a client library. The exposition is written by hand; there are no
// gauges, summaries or per-host labels (hosts are unbounded: a label per host
// would let the agent grow the scrape without limit).
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// DurationBuckets are the upper bounds (seconds) of the upstream duration histogram.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// maxLabelValues bounds the label values one counter keeps (kinds, decisions
// and rcodes are short lists; this only guards against a door inventing many).
const maxLabelValues = 64

// Metrics counts flow events. Safe for concurrent use.
type Metrics struct {
	mu       sync.Mutex
	flows    map[[2]string]uint64 // kind, decision
	bytes    map[[2]string]uint64 // kind, direction
	dns      map[[2]string]uint64 // decision, rcode
	blocks   map[[2]string]uint64 // kind, registered reason
	buckets  []uint64             // cumulative counts are computed at write time
	durCount uint64
	durSum   float64
}

// New returns empty counters.
func New() *Metrics {
	return &Metrics{
		flows:   map[[2]string]uint64{},
		bytes:   map[[2]string]uint64{},
		dns:     map[[2]string]uint64{},
		blocks:  map[[2]string]uint64{},
		buckets: make([]uint64, len(DurationBuckets)+1), // the last is +Inf
	}
}

// Observe counts one flow event.
func (m *Metrics) Observe(e flowlog.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	inc(m.flows, [2]string{e.Kind, e.Decision}, 1)
	if e.Decision == flowlog.Block || e.Decision == flowlog.WouldBlock {
		inc(m.blocks, [2]string{e.Kind, reasonLabel(e.Reason)}, 1)
	}
	if e.BytesIn > 0 {
		inc(m.bytes, [2]string{e.Kind, "in"}, uint64(e.BytesIn))
	}
	if e.BytesOut > 0 {
		inc(m.bytes, [2]string{e.Kind, "out"}, uint64(e.BytesOut))
	}
	switch {
	case e.Kind == flowlog.KindDNS:
		rcode := e.Detail["rcode"]
		if rcode == "" {
			rcode = "none"
		}
		inc(m.dns, [2]string{e.Decision, rcode}, 1)
	case e.Kind == flowlog.KindEgress && e.Decision == flowlog.Allow:
		s := float64(e.DurationMS) / 1000
		i, _ := slices.BinarySearch(DurationBuckets, s)
		m.buckets[i]++
		m.durCount++
		m.durSum += s
	}
}

// reasonLabel is the registered token of a reason ("filter:f.txt:3" counts
// as "filter"), or "other": labels stay a short, fixed list.
func reasonLabel(token string) string {
	if r, ok := refusal.Lookup(token); ok {
		return r.Token
	}
	return "other"
}

func inc(m map[[2]string]uint64, k [2]string, n uint64) {
	if _, ok := m[k]; !ok && len(m) >= maxLabelValues {
		k = [2]string{"other", "other"}
	}
	m[k] += n
}

// Sources are counters kept by other parts of panopticon, read at scrape
// time. A nil source is written as zero.
type Sources struct {
	CertCache         func() (hits, misses, mints uint64)
	WebhookDeliveries func() map[string]uint64 // by result: ok, retry, error
	WebhookDropped    func() uint64
	AllowlistReloads  func() uint64
	AllowlistFailures func() uint64 // changed allowlist files that could not be loaded
	FlowlogDropped    func() uint64 // events the flow log could not write
	SubscriberDrops   func() uint64 // events a slow live reader (dashboard, webhook) missed
	StdoutDropped     func() uint64 // flow lines a stalled stdout could not take
}

// ContentType is the exposition's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteTo writes every metric in the text exposition format.
func (m *Metrics) WriteTo(w io.Writer, src Sources) error {
	bw := bufio.NewWriter(w)
	m.mu.Lock()
	flows, bytes, dns, blocks := maps.Clone(m.flows), maps.Clone(m.bytes), maps.Clone(m.dns), maps.Clone(m.blocks)
	buckets, count, sum := slices.Clone(m.buckets), m.durCount, m.durSum
	m.mu.Unlock()

	pairs(bw, "panopticon_flows_total", "Flows by door and decision.", "kind", "decision", flows)
	pairs(bw, "panopticon_blocks_total", "Refusals (and audit mode's would-be refusals) by door and reason, as in the flow log.", "kind", "reason", blocks)
	pairs(bw, "panopticon_bytes_total", "Bytes by door; in is received from the far side, out is sent to it.", "kind", "direction", bytes)
	header(bw, "panopticon_upstream_duration_seconds", "histogram", "Duration of allowed egress flows, from request to the end of the response.")
	var cum uint64
	for i, le := range DurationBuckets {
		cum += buckets[i]
		fmt.Fprintf(bw, "panopticon_upstream_duration_seconds_bucket{le=%q} %d\n", formatFloat(le), cum)
	}
	cum += buckets[len(DurationBuckets)]
	fmt.Fprintf(bw, "panopticon_upstream_duration_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	fmt.Fprintf(bw, "panopticon_upstream_duration_seconds_sum %s\n", formatFloat(sum))
	fmt.Fprintf(bw, "panopticon_upstream_duration_seconds_count %d\n", count)
	pairs(bw, "panopticon_dns_queries_total", "DNS queries by decision and the rcode sent to the client.", "decision", "rcode", dns)

	var hits, misses, mints uint64
	if src.CertCache != nil {
		hits, misses, mints = src.CertCache()
	}
	counter(bw, "panopticon_cert_cache_hits_total", "Leaf certificates served from the cache.", hits)
	counter(bw, "panopticon_cert_cache_misses_total", "Leaf certificate lookups that missed the cache.", misses)
	counter(bw, "panopticon_cert_cache_mints_total", "Leaf certificates minted.", mints)

	deliveries := map[[2]string]uint64{}
	for _, r := range []string{"ok", "retry", "error"} {
		deliveries[[2]string{r}] = 0
	}
	if src.WebhookDeliveries != nil {
		for r, n := range src.WebhookDeliveries() {
			deliveries[[2]string{r}] = n
		}
	}
	header(bw, "panopticon_webhook_deliveries_total", "counter", "Webhook delivery attempts by result (ok, retry: failed and retried later, error: given up).")
	for _, k := range sortedKeys(deliveries) {
		fmt.Fprintf(bw, "panopticon_webhook_deliveries_total{result=%s} %d\n", quote(k[0]), deliveries[k])
	}
	counter(bw, "panopticon_webhook_dropped_total", "Block notifications dropped because the webhook queue was full.", call(src.WebhookDropped))
	counter(bw, "panopticon_allowlist_reloads_total", "Allowlist file changes loaded (start-up is not a reload).", call(src.AllowlistReloads))
	counter(bw, "panopticon_allowlist_reload_failures_total", "Allowlist file changes that could not be loaded (the last good list stayed in force).", call(src.AllowlistFailures))
	counter(bw, "panopticon_flowlog_dropped_total", "Flow events that could not be written to the log file.", call(src.FlowlogDropped))
	counter(bw, "panopticon_flowlog_subscriber_dropped_total", "Flow events a slow live reader (dashboard, webhook notifier) missed.", call(src.SubscriberDrops))
	counter(bw, "panopticon_flowlog_stdout_dropped_total", "Flow lines dropped because stdout did not keep up (the file log has them).", call(src.StdoutDropped))
	return bw.Flush()
}

func call(f func() uint64) uint64 {
	if f == nil {
		return 0
	}
	return f()
}

func header(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func counter(w io.Writer, name, help string, v uint64) {
	header(w, name, "counter", help)
	fmt.Fprintf(w, "%s %d\n", name, v)
}

func pairs(w io.Writer, name, help, l1, l2 string, m map[[2]string]uint64) {
	header(w, name, "counter", help)
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(w, "%s{%s=%s,%s=%s} %d\n", name, l1, quote(k[0]), l2, quote(k[1]), m[k])
	}
}

func sortedKeys(m map[[2]string]uint64) [][2]string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return keys
}

// quote escapes a label value: backslash, double quote and newline.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
