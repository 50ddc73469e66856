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
	"errors"
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

// checkReply rejects an upstream reply that does not answer query.
func checkReply(query, resp *miekg.Msg) error {
	if !resp.Response || resp.Opcode != miekg.OpcodeQuery {
		return errors.New("reply is not a query response")
	}
	if resp.Id != query.Id {
		return errors.New("reply has another ID")
	}
	// Some servers omit the question in error replies; when present it must match.
	if len(resp.Question) > 0 {
		q, got := query.Question[0], resp.Question[0]
		if len(resp.Question) != 1 || got.Qtype != q.Qtype || got.Qclass != q.Qclass ||
			miekg.CanonicalName(got.Name) != miekg.CanonicalName(q.Name) {
			return errors.New("reply answers another question")
		}
	}
	if resp.Truncated {
		return errors.New("reply truncated even over TCP")
	}
	return nil
}

// clientReply turns the upstream reply into the reply to r, sized for the client's transport.
func (s *Server) clientReply(r, resp *miekg.Msg, opt *miekg.OPT, tcp bool) *miekg.Msg {
	resp.Id = r.Id
	resp.Question = []miekg.Question{r.Question[0]} // the client's spelling (0x20 case)
	restoreCase(resp.Answer, r.Question[0].Name)
	resp.RecursionDesired = r.RecursionDesired
	resp.RecursionAvailable = true
	resp.Truncated = false
	resp.Extra = withoutOPT(resp.Extra)
	if resp.Rcode > 0xF && opt == nil {
		// An extended rcode cannot be told to a client that did not speak EDNS.
		return errorReply(r, miekg.RcodeServerFailure, nil)
	}
	if opt != nil {
		resp.Extra = append(resp.Extra, replyOPT(opt))
	}
	size := miekg.MaxMsgSize
	if !tcp {
		size = miekg.MinMsgSize
		if opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
	}
	resp.Truncate(size)
	return resp
}

// privateAddress reports the first address in resp the guard refuses: A and
// AAAA records in any section, and the address hints of SVCB/HTTPS records.
func (s *Server) privateAddress(resp *miekg.Msg) (string, bool) {
	for _, section := range [][]miekg.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range section {
			for _, ip := range recordAddrs(rr) {
				if s.refuses(ip) {
					return ip.String(), true
				}
			}
		}
	}
	return "", false
}

// refuses reports whether the guard refuses ip. An IPv4-mapped IPv6 address is
// checked in both forms, so a guard that forgets to unmap still catches it.
func (s *Server) refuses(ip netip.Addr) bool {
	if s.Guard == nil || !ip.IsValid() {
		return true
	}
	if s.Guard.Check(ip) != nil {
		return true
	}
	return ip.Is4In6() && s.Guard.Check(ip.Unmap()) != nil
}

// recordAddrs returns the addresses rr would direct a client to. A malformed
// address comes back invalid, and the guard refuses it.
func recordAddrs(rr miekg.RR) []netip.Addr {
	switch v := rr.(type) {
	case *miekg.A:
		return []netip.Addr{addr4(v.A)}
	case *miekg.AAAA:
		return []netip.Addr{addr6(v.AAAA)}
	case *miekg.SVCB:
		return hintAddrs(v.Value)
	case *miekg.HTTPS:
		return hintAddrs(v.Value)
	}
	return nil
}

// addr4 converts an A record's address (4 or 16 bytes in memory).
func addr4(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

// addr6 converts an AAAA record's address, keeping an IPv4-mapped form as such.
func addr6(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To16())
	return a
}

func hintAddrs(kvs []miekg.SVCBKeyValue) []netip.Addr {
	var addrs []netip.Addr
	for _, kv := range kvs {
		switch h := kv.(type) {
		case *miekg.SVCBIPv4Hint:
			for _, ip := range h.Hint {
				addrs = append(addrs, addr4(ip))
			}
		case *miekg.SVCBIPv6Hint:
			for _, ip := range h.Hint {
				addrs = append(addrs, addr6(ip))
			}
		}
	}
	return addrs
}

// logAnswers puts the answer's addresses and CNAME chain into ev.Detail.
func logAnswers(resp *miekg.Msg, ev *flowlog.Event) {
	var answers, chain []string
	for _, rr := range resp.Answer {
		switch v := rr.(type) {
		case *miekg.A:
			answers = append(answers, addr4(v.A).String())
		case *miekg.AAAA:
			answers = append(answers, addr6(v.AAAA).String())
		case *miekg.CNAME:
			target := hostName(v.Target)
			answers = append(answers, target)
			if len(chain) == 0 {
				chain = append(chain, hostName(v.Hdr.Name))
			}
			chain = append(chain, target)
		}
	}
	if n := len(answers); n > maxLoggedAnswers {
		answers = append(answers[:maxLoggedAnswers], fmt.Sprintf("...(+%d)", n-maxLoggedAnswers))
	}
	if len(answers) > 0 {
		ev.Detail[DetailAnswers] = strings.Join(answers, ",")
	}
	if len(chain) > 0 {
		ev.Detail[DetailCNAMEs] = strings.Join(chain, ">")
	}
}

// forwardedTypes are the query types an app's lookups need. Nothing else is
// forwarded: a type number is 16 bits the agent would choose, and the
// upstream (or whoever watches it) would read them.
var forwardedTypes = map[uint16]bool{
	miekg.TypeA: true, miekg.TypeAAAA: true, miekg.TypeCNAME: true, miekg.TypeHTTPS: true,
	miekg.TypeSVCB: true, miekg.TypeMX: true, miekg.TypeTXT: true, miekg.TypeSRV: true,
	miekg.TypeCAA: true, miekg.TypeNS: true, miekg.TypeSOA: true, miekg.TypePTR: true,
}

// restoreCase gives records owned by the question name the client's
// spelling of it, as a resolver that echoes 0x20 case would.
func restoreCase(rrs []miekg.RR, name string) {
	canon := miekg.CanonicalName(name)
	for _, rr := range rrs {
		if h := rr.Header(); h.Name == canon {
			h.Name = miekg.Fqdn(name)
		}
	}
}

// servedQuestion reports whether q is a lookup we forward: class IN and an
// ordinary type.
func servedQuestion(q miekg.Question) bool {
	return q.Qclass == miekg.ClassINET && forwardedTypes[q.Qtype]
}

// clientEDNS returns the client's OPT record; more than one is malformed (RFC 6891 6.1.1).
func clientEDNS(r *miekg.Msg) (*miekg.OPT, error) {
	var opt *miekg.OPT
	for _, rr := range r.Extra {
		o, ok := rr.(*miekg.OPT)
		if !ok {
			continue
		}
		if opt != nil {
			return nil, errors.New("more than one OPT record")
		}
		opt = o
	}
	return opt, nil
}

// replyOPT is the OPT record of a reply to a client that sent opt.
func replyOPT(opt *miekg.OPT) *miekg.OPT {
	o := &miekg.OPT{Hdr: miekg.RR_Header{Name: ".", Rrtype: miekg.TypeOPT}}
	o.SetUDPSize(ednsSize)
	if opt.Do() {
		o.SetDo()
	}
	return o
}

func withoutOPT(rrs []miekg.RR) []miekg.RR {
	kept := rrs[:0:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != miekg.TypeOPT {
			kept = append(kept, rr)
		}
	}
	return kept
}

// errorReply is an empty reply to r with rcode; it speaks EDNS when the client did.
func errorReply(r *miekg.Msg, rcode int, opt *miekg.OPT) *miekg.Msg {
	m := new(miekg.Msg)
	m.SetRcode(r, rcode)
	if r.Opcode != miekg.OpcodeQuery {
		m.Question = nil // we did not parse an unknown opcode's sections
	}
	m.Authoritative = false
	m.RecursionAvailable = true
	if opt != nil {
		m.Extra = append(m.Extra, replyOPT(opt))
	}
	return m
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
