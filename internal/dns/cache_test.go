package dns

import (
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

func countSeen(h *harness, name string) int {
	n := 0
	for _, s := range h.up.seen() {
		if miekg.CanonicalName(s.name) == miekg.CanonicalName(name) {
			n++
		}
	}
	return n
}

func TestRepeatedLookupsAreAnsweredFromTheCache(t *testing.T) {
	h := newHarness(t, nil)
	for i := 0; i < 5; i++ {
		r := h.query(t, "udp", "allowed.test.", miekg.TypeA, 0)
		if r.Rcode != miekg.RcodeSuccess || len(answerAddrs(r)) != 1 {
			t.Fatalf("query %d: %v", i, r)
		}
	}
	if n := countSeen(h, "allowed.test."); n != 1 {
		t.Fatalf("upstream asked %d times for allowed.test, want 1", n)
	}
	if got := h.events.last(t).Detail[DetailCache]; got != "hit" {
		t.Errorf("last event detail cache = %q, want hit", got)
	}
}

func TestACachedNameIsDeniedAtOnceWhenThePolicyChanges(t *testing.T) {
	h := newHarness(t, nil)
	if r := h.query(t, "udp", "allowed.test.", miekg.TypeA, 0); r.Rcode != miekg.RcodeSuccess {
		t.Fatalf("first query: %v", r)
	}
	h.pol.mu.Lock()
	h.pol.exact = nil // the allowlist reloaded without allowed.test
	h.pol.mu.Unlock()
	if r := h.query(t, "udp", "allowed.test.", miekg.TypeA, 0); r.Rcode != miekg.RcodeNameError {
		t.Fatalf("after the policy change: rcode %s, want NXDOMAIN", miekg.RcodeToString[r.Rcode])
	}
}

func TestPrivateAnswersAreNotCached(t *testing.T) {
	h := newHarness(t, nil)
	for i := 0; i < 2; i++ {
		if r := h.query(t, "udp", "p10.wild.test.", miekg.TypeA, 0); r.Rcode != miekg.RcodeRefused {
			t.Fatalf("query %d: rcode %s, want REFUSED", i, miekg.RcodeToString[r.Rcode])
		}
	}
	if n := countSeen(h, "p10.wild.test."); n != 2 {
		t.Fatalf("upstream asked %d times, want 2 (refused answers are not cached)", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	h := newHarness(t, func(s *Server) { s.CacheSize = -1 })
	for i := 0; i < 3; i++ {
		h.query(t, "udp", "allowed.test.", miekg.TypeA, 0)
	}
	if n := countSeen(h, "allowed.test."); n != 3 {
		t.Fatalf("upstream asked %d times with the cache off, want 3", n)
	}
}

func TestAnswerCacheAgesTTLsAndExpires(t *testing.T) {
	c := newAnswerCache(10)
	m := new(miekg.Msg)
	m.SetQuestion("a.test.", miekg.TypeA)
	m.Response = true
	rr, _ := miekg.NewRR("a.test. 30 IN A 203.0.113.1")
	m.Answer = []miekg.RR{rr}
	k := cacheKey{name: "a.test.", qtype: miekg.TypeA, qclass: miekg.ClassINET}
	t0 := time.Unix(1000, 0)
	c.put(k, m, t0)
	got := c.get(k, t0.Add(10*time.Second))
	if got == nil || got.Answer[0].Header().Ttl != 20 {
		t.Fatalf("after 10s: %v, want TTL 20", got)
	}
	if c.get(k, t0.Add(31*time.Second)) != nil {
		t.Fatal("served after its TTL")
	}

	servfail := m.Copy()
	servfail.Rcode = miekg.RcodeServerFailure
	c.put(k, servfail, t0)
	if c.get(k, t0) != nil {
		t.Fatal("SERVFAIL was cached")
	}
	trunc := m.Copy()
	trunc.Truncated = true
	c.put(k, trunc, t0)
	if c.get(k, t0) != nil {
		t.Fatal("a truncated answer was cached")
	}
}

func TestAnswerCacheIsBounded(t *testing.T) {
	c := newAnswerCache(3)
	m := new(miekg.Msg)
	rr, _ := miekg.NewRR("a.test. 30 IN A 203.0.113.1")
	m.Answer = []miekg.RR{rr}
	now := time.Unix(1000, 0)
	for i := 0; i < 10; i++ {
		c.put(cacheKey{name: string(rune('a'+i)) + ".test.", qtype: 1}, m, now)
		if len(c.m) > 3 {
			t.Fatalf("cache holds %d entries, bound is 3", len(c.m))
		}
	}
}
