// Package dns is Panopticon's DNS door: the app's DNS (udp and tcp port 53,
// redirected by the firewall) lands here. Allowlisted names are forwarded to the
// upstream resolver and the answer relayed; every other name gets NXDOMAIN and
// is never sent upstream, so DNS cannot be used as a tunnel. Answers that put a
// name into a private range are refused (DNS rebinding).
//
//	srv := &dns.Server{Policy: pol, Guard: pol.Guard(), Upstream: "192.0.2.53:53", Log: flows}
//	ls, err := srv.Listen([]string{"127.0.0.1:5353", "[::1]:5353"}) // as root, before the drop
//	...                                                              // drop privileges
//	err = ls.Serve(ctx)                                              // until ctx is done
//
// What is forwarded carries no bits the agent chose beyond the allowed name:
// a fresh query with the lower-case name, an ordinary type (others get
// NOTIMP here), class IN, our own ID, header bits and EDNS. Answers, negative
// ones included (for their SOA minimum, RFC 2308), are cached, bounded, so
// repeats stay local.
//
// Non-goals: DNSSEC validation, zone transfers, ANY queries, filtering
// CNAME targets (CDNs chain through names nobody would allowlist; the chain is
// logged instead), and deciding anything itself — policy decides.
package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
)

// Decider answers whether a name may be resolved. *policy.Policy implements it;
// the DNS door always asks with port 0 ("any port").
type Decider interface {
	Decide(host string, port int) policy.Decision
}

// AddrChecker refuses addresses in private ranges. policy.Guard implements it.
type AddrChecker interface {
	Check(ip netip.Addr) error
}

// Exchanger sends one query to address and returns the reply. *miekg.Client
// implements it; the caller injects clients whose Dialer marks the socket.
type Exchanger interface {
	ExchangeContext(ctx context.Context, m *miekg.Msg, address string) (*miekg.Msg, time.Duration, error)
}

// Emitter records flow events. *flowlog.Log implements it.
type Emitter interface {
	Emit(flowlog.Event)
}

var (
	_ Decider     = (*policy.Policy)(nil)
	_ AddrChecker = policy.Guard{}
	_ Exchanger   = (*miekg.Client)(nil)
	_ Emitter     = (*flowlog.Log)(nil)
)

// Defaults.
const (
	DefaultTimeout     = 3 * time.Second // one query, UDP try and TCP retry together
	DefaultMaxInFlight = 1024            // concurrent upstream exchanges

	// ednsSize is the UDP payload size we advertise, upstream and to clients
	// (the DNS flag day 2020 value: avoids IP fragmentation).
	ednsSize = 1232
)

// What the DNS door writes beside the refusal reasons: an allowed name's
// reason is the prefix and its rule; an overloaded server says so in detail.
const (
	ReasonAllowlistedPrefix = "allowlisted:"
	ReasonOverloaded        = "overloaded"
)

// Keys of flowlog.Event.Detail for DNS events.
const (
	DetailQType     = "qtype"     // "A", "AAAA", "TXT", ...
	DetailRcode     = "rcode"     // rcode sent to the client: "NOERROR", "NXDOMAIN", ...
	DetailAnswers   = "answers"   // addresses and CNAME targets of the answer, comma separated
	DetailCNAMEs    = "cnames"    // the CNAME chain: "www.example.com>cdn.example.net"
	DetailTransport = "transport" // "udp" or "tcp", as the client asked
	DetailUpstream  = "upstream"  // transport that produced the answer, when it differs ("tcp" after TC)
	DetailError     = "error"     // why the upstream exchange failed
	DetailCache     = "cache"     // "hit" when the answer came from the cache
	DetailPrivate   = "private"   // the address that tripped the rebinding guard
)

// maxLoggedAnswers bounds DetailAnswers; a 400-record answer is still one short line.
const maxLoggedAnswers = 32

// Server answers DNS queries for the app. Set the fields, then call Listen once;
// do not change them afterwards. The zero values of optional fields are usable.
type Server struct {
	Policy   Decider     // required; nil denies every name
	Guard    AddrChecker // required; nil refuses every address answer
	Upstream string      // required: "host:port" of the upstream resolver
	UDP, TCP Exchanger   // default &miekg.Client{Net: "udp"/"tcp", Timeout: Timeout}
	Log      Emitter     // flow events; nil drops them
	Logger   *slog.Logger

	// Audit resolves names the allowlist would refuse and logs them as
	// would-block (MODE=audit). Private answers are refused in every mode.
	Audit bool

	// CacheSize bounds the answer cache (entries); 0 means DefaultCacheSize,
	// negative disables it. Answers are kept for their TTL, at most MaxCacheTTL.
	CacheSize int

	Timeout     time.Duration // per query, upstream retries included; default DefaultTimeout
	MaxInFlight int           // concurrent upstream exchanges; default DefaultMaxInFlight

	inflight chan struct{} // set by Listen (or lazily, see slots)

	cacheOnce sync.Once
	cache     *answerCache
}

func (s *Server) answers() *answerCache {
	s.cacheOnce.Do(func() {
		size := s.CacheSize
		if size == 0 {
			size = DefaultCacheSize
		}
		s.cache = newAnswerCache(size)
	})
	return s.cache
}

// ServeDNS answers one query. It implements miekg.Handler, never panics on
// hostile input, and emits exactly one flow event per question it answers.
func (s *Server) ServeDNS(w miekg.ResponseWriter, r *miekg.Msg) {
	start := time.Now()
	ev := flowlog.Event{
		Kind:     flowlog.KindDNS,
		Decision: flowlog.Block,
		Client:   remoteAddr(w),
		Detail:   map[string]string{DetailTransport: transport(w)},
	}
	defer func() {
		// A bug in a dependency must cost one query, not the process (invariant 8).
		if p := recover(); p != nil {
			s.logger().Error("dns: panic answering query", "panic", fmt.Sprint(p), "client", ev.Client, "host", ev.Host)
			if r != nil && !r.Response {
				m := new(miekg.Msg)
				m.SetRcode(r, miekg.RcodeServerFailure)
				_ = w.WriteMsg(m)
			}
		}
	}()

	reply := s.answer(r, isTCP(w), &ev)
	if reply == nil {
		return // a response or nil: answering could start a loop
	}
	ev.Detail[DetailRcode] = rcodeName(reply.Rcode)
	ev.DurationMS = time.Since(start).Milliseconds()
	ev.Time = time.Now()
	if s.Log != nil {
		s.Log.Emit(ev)
	}
	if err := w.WriteMsg(reply); err != nil {
		s.logger().Debug("dns: writing reply", "client", ev.Client, "host", ev.Host, "error", err)
	}
}

// answer builds the reply to r and fills ev. It returns nil when r must not be answered.
func (s *Server) answer(r *miekg.Msg, tcp bool, ev *flowlog.Event) *miekg.Msg {
	if r == nil || r.Response {
		return nil
	}
	if r.Opcode != miekg.OpcodeQuery {
		ev.Reason = refusal.Unsupported
		return errorReply(r, miekg.RcodeNotImplemented, nil)
	}
	if len(r.Question) != 1 {
		ev.Reason = refusal.Malformed
		return errorReply(r, miekg.RcodeFormatError, nil)
	}
	q := r.Question[0]
	ev.Host = hostName(q.Name)
	ev.Detail[DetailQType] = miekg.Type(q.Qtype).String()

	opt, err := clientEDNS(r)
	if err != nil {
		ev.Reason = refusal.Malformed
		return errorReply(r, miekg.RcodeFormatError, nil)
	}
	if opt != nil && opt.Version() != 0 {
		ev.Reason = refusal.Malformed
		return errorReply(r, miekg.RcodeBadVers, opt) // RFC 6891 6.1.3
	}

	d := s.decide(ev.Host)
	switch {
	case d.Allow:
		ev.Decision = flowlog.Allow
		ev.Reason = ReasonAllowlistedPrefix + d.Rule()
		ev.Rule, ev.RuleSource = d.Rule(), d.RuleSource()
	case s.Audit && d.Reason == refusal.NotAllowlisted:
		// Audit mode learns an agent's needs: resolve, and say it would be blocked.
		ev.Decision = flowlog.WouldBlock
		ev.Reason = d.Reason
	default:
		// NXDOMAIN rather than REFUSED: REFUSED makes stub resolvers try the next server.
		ev.Reason = d.Reason
		return errorReply(r, miekg.RcodeNameError, opt)
	}

	if !servedQuestion(q) {
		// Other classes, ANY (RFC 8482), zone transfers, meta and private-use
		// types are not lookups an app needs, and each would carry bits the
		// agent chose; NOTIMP says so without suggesting another server might
		// do better (REFUSED would send stub resolvers to the next one).
		ev.Decision, ev.Reason = flowlog.Block, refusal.Unsupported
		return errorReply(r, miekg.RcodeNotImplemented, opt)
	}

	// The policy was asked above, so a cached answer never outlives a reload
	// that denies the name; cached answers pass the rebinding check again below.
	// What goes upstream is canonical: the lower-case name, so the agent's
	// 0x20 case bits stay here (its spelling is restored in the reply).
	canon := miekg.Question{Name: miekg.CanonicalName(q.Name), Qtype: q.Qtype, Qclass: miekg.ClassINET}
	key := cacheKey{name: canon.Name, qtype: canon.Qtype, qclass: canon.Qclass}
	resp := s.answers().get(key, time.Now())
	if resp != nil {
		ev.Detail[DetailCache] = "hit"
	} else {
		release, ok := s.acquire()
		if !ok {
			ev.Detail[DetailError] = ReasonOverloaded
			return errorReply(r, miekg.RcodeServerFailure, opt)
		}
		var err error
		resp, err = s.forward(canon, ev)
		release()
		if err != nil {
			ev.Detail[DetailError] = err.Error()
			s.logger().Warn("dns: upstream exchange failed", "host", ev.Host, "qtype", ev.Detail[DetailQType], "upstream", s.Upstream, "error", err)
			return errorReply(r, miekg.RcodeServerFailure, opt)
		}
		if _, private := s.privateAddress(resp); !private {
			s.answers().put(key, resp, time.Now())
		}
	}

	logAnswers(resp, ev)
	if addr, private := s.privateAddress(resp); private {
		ev.Decision, ev.Reason = flowlog.Block, refusal.PrivateAddress
		ev.Detail[DetailPrivate] = addr
		// REFUSED, not an empty answer: the app should see an error, not "no such record".
		return errorReply(r, miekg.RcodeRefused, opt)
	}
	return s.clientReply(r, resp, opt, tcp)
}

// decide asks policy about host, refusing outright what is not a host name.
func (s *Server) decide(host string) policy.Decision {
	// An escaped byte ("evil\.allowed.test", "\000") means a label holds
	// something no host name holds; a suffix match could still be fooled by it.
	if host == "" || strings.ContainsRune(host, '\\') {
		return policy.Decision{Reason: refusal.BadHost}
	}
	if s.Policy == nil {
		return policy.Decision{Reason: refusal.NotAllowlisted}
	}
	d := s.Policy.Decide(host, 0)
	if !d.Allow && d.Reason == "" {
		d.Reason = refusal.NotAllowlisted
	}
	return d
}

// forward asks the upstream resolver q over UDP, whichever transport the
// client chose (the choice would be one more bit the agent sends out); a
// truncated answer is retried over TCP (miekg's client does not fall back).
func (s *Server) forward(q miekg.Question, ev *flowlog.Event) (*miekg.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout())
	defer cancel()

	// A fresh query: only the canonical question travels upstream. The
	// client's ID, header bits (CD, AD), DO bit, EDNS options and extra
	// records stay here, so they can neither carry data out nor weaken
	// spoofing resistance. Every bit of m is ours.
	m := new(miekg.Msg)
	m.Id = miekg.Id()
	m.RecursionDesired = true
	m.Question = []miekg.Question{q}
	m.SetEdns0(ednsSize, false)
	ev.BytesOut = int64(m.Len())

	resp, _, err := s.udp().ExchangeContext(ctx, m, s.Upstream)
	// A reply that came back but does not parse is most likely an oversized
	// datagram from an upstream that forgot TC: TCP gets the whole answer.
	if resp != nil && (resp.Truncated || err != nil) {
		ev.Detail[DetailUpstream] = "tcp"
		ev.BytesOut += int64(m.Len())
		resp, _, err = s.tcp().ExchangeContext(ctx, m, s.Upstream)
	}
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", s.Upstream, err)
	}
	if resp == nil {
		return nil, fmt.Errorf("asking %s: no reply", s.Upstream)
	}
	ev.BytesIn = int64(resp.Len())
	if err := checkReply(m, resp); err != nil {
		return nil, fmt.Errorf("asking %s: %w", s.Upstream, err)
	}
	return resp, nil
}

// forwardedTypes are the query types an app's lookups need. Nothing else is
// forwarded: a type number is 16 bits the agent would choose, and the
// upstream (or whoever watches it) would read them.
var forwardedTypes = map[uint16]bool{
	miekg.TypeA: true, miekg.TypeAAAA: true, miekg.TypeCNAME: true, miekg.TypeHTTPS: true,
	miekg.TypeSVCB: true, miekg.TypeMX: true, miekg.TypeTXT: true, miekg.TypeSRV: true,
	miekg.TypeCAA: true, miekg.TypeNS: true, miekg.TypeSOA: true, miekg.TypePTR: true,
}

// hostName is name as policy sees it: lower case, no trailing dot.
func hostName(name string) string {
	return strings.TrimSuffix(miekg.CanonicalName(name), ".")
}

func rcodeName(rcode int) string {
	if s, ok := miekg.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}

func remoteAddr(w miekg.ResponseWriter) string {
	if a := w.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

func isTCP(w miekg.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

func transport(w miekg.ResponseWriter) string {
	if isTCP(w) {
		return "tcp"
	}
	return "udp"
}

func (s *Server) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

func (s *Server) udp() Exchanger {
	if s.UDP != nil {
		return s.UDP
	}
	return &miekg.Client{Net: "udp", Timeout: s.timeout()}
}

func (s *Server) tcp() Exchanger {
	if s.TCP != nil {
		return s.TCP
	}
	return &miekg.Client{Net: "tcp", Timeout: s.timeout()}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// acquire takes one upstream slot, without waiting: under a flood, failing a
// query fast beats queueing it past the client's own timeout.
func (s *Server) acquire() (release func(), ok bool) {
	if s.inflight == nil {
		return func() {}, true // ServeDNS called without Listen (tests, fuzzing)
	}
	select {
	case s.inflight <- struct{}{}:
		return func() { <-s.inflight }, true
	default:
		return nil, false
	}
}
