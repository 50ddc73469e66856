package dashboard

import (
	"cmp"
	"slices"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// WouldBlock is the decision audit mode logs for a flow the allowlist would block.
const WouldBlock = flowlog.WouldBlock

// Bounds on the summaries: the agent chooses host names, so every map that
// is keyed by one is capped; when full, the entry seen longest ago goes.
const (
	maxHosts      = 5000
	maxGroups     = 2000
	maxRules      = 10000
	maxShownHosts = 500
)

// HostStat is the per-host summary.
type HostStat struct {
	Host        string    `json:"host"`
	Requests    uint64    `json:"requests"`
	BytesIn     int64     `json:"bytes_in"`
	BytesOut    int64     `json:"bytes_out"`
	Blocks      uint64    `json:"blocks"`
	WouldBlocks uint64    `json:"would_blocks"`
	Last        time.Time `json:"last"`
}

// BlockGroup is every block of one host for one reason.
type BlockGroup struct {
	Host    string    `json:"host"`
	Reason  string    `json:"reason"`
	Kind    string    `json:"kind"`
	Port    int       `json:"port"` // of the last block
	Count   uint64    `json:"count"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	Path    string    `json:"path,omitempty"`    // of the last block
	Pattern string    `json:"pattern,omitempty"` // what Allow would add; empty when allowing cannot help
}

type groupKey struct{ host, reason string }

// summary aggregates flows for the dashboard. Not safe for concurrent use.
type summary struct {
	hosts   map[string]*HostStat
	blocked map[groupKey]*BlockGroup
	would   map[groupKey]*BlockGroup
	hits    map[string]uint64 // allowlist rule → allowed flows
}

func newSummary() *summary {
	return &summary{
		hosts:   map[string]*HostStat{},
		blocked: map[groupKey]*BlockGroup{},
		would:   map[groupKey]*BlockGroup{},
		hits:    map[string]uint64{},
	}
}

func (s *summary) add(e flowlog.Event) {
	host := e.Host
	if host == "" {
		host = "-"
	}
	h := s.hosts[host]
	if h == nil {
		evictOldest(s.hosts, maxHosts, func(h *HostStat) time.Time { return h.Last })
		h = &HostStat{Host: host}
		s.hosts[host] = h
	}
	h.Requests++
	h.BytesIn += e.BytesIn
	h.BytesOut += e.BytesOut
	h.Last = e.Time

	switch e.Decision {
	case flowlog.Allow:
		if rule := e.Rule; rule != "" {
			if _, ok := s.hits[rule]; ok || len(s.hits) < maxRules {
				s.hits[rule]++
			}
		}
	case flowlog.Block:
		h.Blocks++
		s.group(s.blocked, e)
	case WouldBlock:
		h.WouldBlocks++
		s.group(s.would, e)
	}
}

func (s *summary) group(m map[groupKey]*BlockGroup, e flowlog.Event) {
	k := groupKey{e.Host, e.Reason}
	g := m[k]
	if g == nil {
		evictOldest(m, maxGroups, func(g *BlockGroup) time.Time { return g.Last })
		g = &BlockGroup{Host: e.Host, Reason: e.Reason, Kind: e.Kind, First: e.Time}
		m[k] = g
	}
	g.Count++
	g.Last, g.Port, g.Path = e.Time, e.Port, e.Path
	g.Pattern = allowPattern(e)
}

// allowPattern is the entry that would let e through, or "" when an
// allowlist entry cannot help (an IP literal, a private address, inbound).
func allowPattern(e flowlog.Event) string {
	if e.Kind == flowlog.KindInbound {
		return ""
	}
	switch e.Reason {
	case refusal.NotAllowlisted, refusal.PortNotAllowed:
	default:
		return ""
	}
	p := e.Host
	if e.Port != 0 && e.Port != 443 && e.Port != 80 {
		p += ":" + itoa(e.Port)
	}
	c, err := Canonical(p)
	if err != nil {
		return ""
	}
	return c
}

// forget drops the groups a new policy lets through.
func (s *summary) forget(p *policy.Policy) {
	for _, m := range []map[groupKey]*BlockGroup{s.blocked, s.would} {
		for k, g := range m {
			if g.Pattern == "" {
				continue
			}
			port := g.Port
			if g.Kind == flowlog.KindDNS {
				port = 0
			}
			if p.Decide(g.Host, port).Allow {
				delete(m, k)
			}
		}
	}
}

func evictOldest[K comparable, V any](m map[K]V, limit int, last func(V) time.Time) {
	if len(m) < limit {
		return
	}
	var (
		oldestK K
		oldestT time.Time
		found   bool
	)
	for k, v := range m {
		if t := last(v); !found || t.Before(oldestT) {
			oldestK, oldestT, found = k, t, true
		}
	}
	delete(m, oldestK)
}

// groups returns m's groups, most recent first.
func groups(m map[groupKey]*BlockGroup) []BlockGroup {
	out := make([]BlockGroup, 0, len(m))
	for _, g := range m {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b BlockGroup) int {
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return cmp.Compare(a.Host+a.Reason, b.Host+b.Reason)
	})
	return out
}

// topHosts returns the busiest hosts, at most maxShownHosts.
func (s *summary) topHosts() []HostStat {
	out := make([]HostStat, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b HostStat) int {
		if c := cmp.Compare(b.Requests, a.Requests); c != 0 {
			return c
		}
		return cmp.Compare(a.Host, b.Host)
	})
	if len(out) > maxShownHosts {
		out = out[:maxShownHosts]
	}
	return out
}
