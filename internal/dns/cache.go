package dns

import (
	"sync"
	"time"

	miekg "github.com/miekg/dns"
)

// Answer cache bounds.
const (
	DefaultCacheSize = 10000
	MaxCacheTTL      = 5 * time.Minute
)

type cacheKey struct {
	name          string // canonical (lower case, trailing dot)
	qtype, qclass uint16
}

type cacheEntry struct {
	msg     *miekg.Msg
	stored  time.Time
	expires time.Time
}

// answerCache keeps upstream answers for their TTL (capped), so repeated
// lookups of allowed names do not each cost an upstream round trip. It is
// bounded: when full, it is emptied (simple, and a full cache of live
// entries is rare for one agent). nil or size < 0 disables it.
type answerCache struct {
	mu   sync.Mutex
	size int
	m    map[cacheKey]cacheEntry
}

func newAnswerCache(size int) *answerCache {
	if size < 0 {
		return nil
	}
	return &answerCache{size: size, m: make(map[cacheKey]cacheEntry)}
}

// get returns a copy of the cached answer with TTLs aged by its time in the
// cache, or nil.
func (c *answerCache) get(k cacheKey, now time.Time) *miekg.Msg {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	e, ok := c.m[k]
	if ok && !now.Before(e.expires) {
		delete(c.m, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, section := range [][]miekg.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			h := rr.Header()
			if h.Rrtype == miekg.TypeOPT {
				continue
			}
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m
}

// put stores m when it is a cacheable answer (NOERROR or NXDOMAIN, not
// truncated) with a positive TTL: the smallest TTL of its records, or of the
// SOA for a negative answer.
func (c *answerCache) put(k cacheKey, m *miekg.Msg, now time.Time) {
	if c == nil || m.Truncated || (m.Rcode != miekg.RcodeSuccess && m.Rcode != miekg.RcodeNameError) {
		return
	}
	ttl, ok := minTTL(m)
	if !ok || ttl == 0 {
		return
	}
	d := min(time.Duration(ttl)*time.Second, MaxCacheTTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.size {
		clear(c.m)
	}
	c.m[k] = cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(d)}
}

// minTTL is how long m may be cached: the smallest TTL of its records, and
// for a negative answer (NXDOMAIN, or NOERROR without answers) the SOA's
// min(TTL, MINIMUM) as RFC 2308 says; a negative answer without SOA is not
// cached.
func minTTL(m *miekg.Msg) (uint32, bool) {
	if m.Rcode == miekg.RcodeNameError || len(m.Answer) == 0 {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*miekg.SOA); ok {
				return min(soa.Hdr.Ttl, soa.Minttl), true
			}
		}
		return 0, false
	}
	var ttl uint32
	found := false
	for _, section := range [][]miekg.RR{m.Answer, m.Ns} {
		for _, rr := range section {
			if t := rr.Header().Ttl; !found || t < ttl {
				ttl, found = t, true
			}
		}
	}
	return ttl, found
}
