// Package upstream is how panopticon itself reaches the internet: a resolver
// that asks UPSTREAM_DNS (never the app's choice of address) and a dialer that
// connects only to what that resolver returned, after the private-address
// guard, from sockets carrying panopticon's firewall mark.
//
//	r := upstream.NewResolver("1.1.1.1:53", mark)
//	d := &upstream.Dialer{Resolver: r, Guard: guard, Mark: mark}
//	roots, err := upstream.Roots(caFile)
//	tr := upstream.NewTransport(d.DialContext, roots)
//
// The mark is what the firewall exempts (together with the uid): an app
// process that becomes uid 1337 cannot set it without CAP_NET_ADMIN.
// NewTransport is the one HTTP transport of what panopticon sends upstream
// (egress, webhooks, the bench), so they cannot drift apart.
// Non-goals: policy decisions on names (the doors ask policy first).
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Marked returns a net.Dialer whose sockets carry mark (SO_MARK needs CAP_NET_ADMIN).
// mark 0 leaves sockets unmarked.
func Marked(mark uint32, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if mark != 0 {
		d.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
			})
			if err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("setting SO_MARK %#x on upstream socket (needs CAP_NET_ADMIN): %w", mark, serr)
			}
			return nil
		}
	}
	return d
}

// AddrChecker refuses addresses panopticon must not dial (policy.Guard).
type AddrChecker interface {
	Check(ip netip.Addr) error
}

// GuardError is returned when every address a name resolved to was refused by the guard.
type GuardError struct {
	Host string
	Err  error
}

func (e *GuardError) Error() string { return fmt.Sprintf("%s: %v", e.Host, e.Err) }
func (e *GuardError) Unwrap() error { return e.Err }

// Resolver looks names up at one DNS server, with a small TTL-bounded cache.
type Resolver struct {
	Server string // host:port
	UDP    *dns.Client
	TCP    *dns.Client
	Now    func() time.Time

	mu    sync.Mutex
	cache map[string]cacheEntry
}

type cacheEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

const (
	minTTL       = 5 * time.Second
	maxTTL       = 5 * time.Minute
	maxCacheSize = 10000
)

// NewResolver returns a resolver for server whose queries leave from marked sockets.
func NewResolver(server string, mark uint32) *Resolver {
	return &Resolver{
		Server: server,
		UDP:    &dns.Client{Net: "udp", Timeout: 3 * time.Second, Dialer: Marked(mark, 3*time.Second)},
		TCP:    &dns.Client{Net: "tcp", Timeout: 3 * time.Second, Dialer: Marked(mark, 3*time.Second)},
		Now:    time.Now,
		cache:  map[string]cacheEntry{},
	}
}

// LookupHost returns the IPv4 then IPv6 addresses of host (a name, not a literal).
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	name := dns.CanonicalName(host)
	now := r.Now()
	r.mu.Lock()
	if e, ok := r.cache[name]; ok && now.Before(e.expires) {
		r.mu.Unlock()
		return e.addrs, nil
	}
	r.mu.Unlock()

	v4, v6 := make(chan result, 1), make(chan result, 1)
	go func() { a, t, err := r.query(ctx, name, dns.TypeA); v4 <- result{a, t, err} }()
	go func() { a, t, err := r.query(ctx, name, dns.TypeAAAA); v6 <- result{a, t, err} }()
	r4, r6 := <-v4, <-v6
	addrs := append(append([]netip.Addr{}, r4.addrs...), r6.addrs...)
	if len(addrs) == 0 {
		if r4.err != nil {
			return nil, r4.err
		}
		if r6.err != nil {
			return nil, r6.err
		}
		return nil, fmt.Errorf("resolving %s at %s: no addresses", host, r.Server)
	}
	ttl := time.Duration(min(r4.ttlOr(r6.ttl), r6.ttlOr(r4.ttl))) * time.Second
	ttl = max(minTTL, min(ttl, maxTTL))
	r.mu.Lock()
	if len(r.cache) >= maxCacheSize {
		clear(r.cache)
	}
	r.cache[name] = cacheEntry{addrs: addrs, expires: now.Add(ttl)}
	r.mu.Unlock()
	return addrs, nil
}

type result struct {
	addrs []netip.Addr
	ttl   uint32
	err   error
}

// ttlOr is r's TTL, or other when r found nothing (its TTL means nothing then).
func (r result) ttlOr(other uint32) uint32 {
	if len(r.addrs) == 0 {
		return other
	}
	return r.ttl
}

func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]netip.Addr, uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	resp, _, err := r.UDP.ExchangeContext(ctx, m, r.Server)
	if err == nil && resp.Truncated {
		resp, _, err = r.TCP.ExchangeContext(ctx, m, r.Server)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("resolving %s at %s: %w", name, r.Server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, 0, fmt.Errorf("resolving %s at %s: %s", name, r.Server, dns.RcodeToString[resp.Rcode])
	}
	var addrs []netip.Addr
	ttl := uint32(maxTTL / time.Second)
	for _, rr := range resp.Answer {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
			ttl = min(ttl, rr.Header().Ttl)
		}
	}
	return addrs, ttl, nil
}

// Dialer connects to names through Resolver, refusing guarded addresses.
type Dialer struct {
	Resolver *Resolver
	Guard    AddrChecker
	Mark     uint32
	Timeout  time.Duration // per address; default 10s
	// Literals dials IP literals as given. Only for destinations that are
	// panopticon's own configuration (a webhook URL), never the agent's.
	Literals bool

	once sync.Once
	net  *net.Dialer
}

// DialContext dials addr ("name:port"). An IP literal is refused (unless
// Literals): destinations are names. Addresses are tried in resolver order;
// the first that the guard allows and that answers wins.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.once.Do(func() {
		t := d.Timeout
		if t == 0 {
			t = 10 * time.Second
		}
		d.net = Marked(d.Mark, t)
	})
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %q: %w", addr, err)
	}
	if _, err := strconv.Atoi(portStr); err != nil {
		return nil, fmt.Errorf("dialing %q: bad port", addr)
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		if !d.Literals {
			return nil, fmt.Errorf("dialing %s: an IP literal is never dialled, only names", addr)
		}
		addrs = []netip.Addr{ip}
	} else if addrs, err = d.Resolver.LookupHost(ctx, host); err != nil {
		return nil, err
	}
	var errs []error
	var guardErr error
	for _, a := range addrs {
		if d.Guard != nil {
			if err := d.Guard.Check(a); err != nil {
				guardErr = err
				continue
			}
		}
		c, err := d.net.DialContext(ctx, network, net.JoinHostPort(a.String(), portStr))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 && guardErr != nil {
		return nil, &GuardError{Host: host, Err: guardErr}
	}
	return nil, fmt.Errorf("dialing %s: %w", addr, errors.Join(errs...))
}
