package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	miekg "github.com/miekg/dns"
)

// shutdownGrace bounds how long Serve waits for in-flight queries on shutdown.
const shutdownGrace = 5 * time.Second

// Listeners are bound DNS sockets, udp and tcp on each address, not yet serving.
type Listeners struct {
	servers []*miekg.Server
	addrs   []string

	mu     sync.Mutex
	served bool
}

// Listen validates s and binds udp and tcp on every address (e.g.
// "127.0.0.1:5353", "[::1]:5353"), so bind errors surface at start-up, while
// the process may still be root. Port 0 picks one free port for both
// transports. Bind errors wrap the syscall error (errors.Is(err,
// syscall.EADDRNOTAVAIL) when an address such as ::1 does not exist).
//
// Bind to loopback addresses, not the wildcard: a wildcard UDP socket answers
// redirected queries from the wrong source address.
func (s *Server) Listen(addrs []string) (*Listeners, error) {
	if err := s.validate(addrs); err != nil {
		return nil, err
	}
	slots := s.MaxInFlight
	if slots <= 0 {
		slots = DefaultMaxInFlight
	}
	s.inflight = make(chan struct{}, slots)

	l := &Listeners{}
	for _, addr := range addrs {
		pc, ln, err := bindPair(addr)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("dns: binding %s: %w", addr, err)
		}
		l.addrs = append(l.addrs, pc.LocalAddr().String())
		l.servers = append(l.servers,
			&miekg.Server{PacketConn: pc, Handler: s, UDPSize: miekg.DefaultMsgSize},
			&miekg.Server{Listener: ln, Handler: s},
		)
	}
	if err := l.checkLoop(s.Upstream); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// validate checks the fields Listen needs.
func (s *Server) validate(addrs []string) error {
	switch {
	case s.Policy == nil:
		return errors.New("dns: no policy")
	case s.Guard == nil:
		return errors.New("dns: no private-address guard")
	case len(addrs) == 0:
		return errors.New("dns: no listen addresses")
	}
	if _, _, err := net.SplitHostPort(s.Upstream); err != nil {
		return fmt.Errorf("dns: upstream resolver %q: want host:port: %w", s.Upstream, err)
	}
	return nil
}

// checkLoop refuses an upstream that is one of our own sockets: every allowed
// query would come back to us until the timeout.
func (l *Listeners) checkLoop(upstream string) error {
	up, err := netip.ParseAddrPort(upstream)
	if err != nil {
		return nil // a host name; it cannot be spelled like our loopback sockets
	}
	for _, a := range l.addrs {
		if own, err := netip.ParseAddrPort(a); err == nil && own.Port() == up.Port() &&
			(own.Addr().Unmap() == up.Addr().Unmap() || up.Addr().IsUnspecified()) {
			return fmt.Errorf("dns: upstream resolver %s is our own listener %s", upstream, a)
		}
	}
	return nil
}

// bindPair binds udp and tcp on addr. With port 0 the tcp socket takes the
// port the udp socket got, retrying when another process holds it for tcp.
func bindPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("udp: %w", err)
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("tcp: %w", err)
		}
	}
}

// Addrs returns the bound addresses, one "host:port" per Listen address
// (udp and tcp share the port).
func (l *Listeners) Addrs() []string {
	return append([]string(nil), l.addrs...)
}

// Serve answers queries on every socket until ctx is done, then shuts down,
// waiting a bounded time for queries in flight. It returns nil after a clean
// shutdown, or the error of a server that stopped on its own (which stops the
// others too). Serve may be called once.
func (l *Listeners) Serve(ctx context.Context) error {
	l.mu.Lock()
	if l.served {
		l.mu.Unlock()
		return errors.New("dns: listeners already served")
	}
	l.served = true
	l.mu.Unlock()

	type run struct {
		srv     *miekg.Server
		started chan struct{}
		exited  chan struct{}
		err     error
	}
	stopped := make(chan struct{}, len(l.servers))
	runs := make([]*run, len(l.servers))
	for i, srv := range l.servers {
		r := &run{srv: srv, started: make(chan struct{}), exited: make(chan struct{})}
		runs[i] = r
		srv.NotifyStartedFunc = sync.OnceFunc(func() { close(r.started) })
		go func() {
			r.err = srv.ActivateAndServe()
			close(r.exited)
			stopped <- struct{}{}
		}()
	}
	// Wait until each server serves or has given up: shutting down a server
	// that has not started yet is a no-op, and it would then serve forever.
	for _, r := range runs {
		select {
		case <-r.started:
		case <-r.exited:
		}
	}

	select {
	case <-ctx.Done():
	case <-stopped:
	}

	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, r := range runs {
		select {
		case <-r.exited:
		default:
			_ = r.srv.ShutdownContext(sctx)
		}
	}
	var errs []error
	for _, r := range runs {
		<-r.exited
		if r.err != nil {
			errs = append(errs, fmt.Errorf("dns: serving %s/%s: %w", network(r.srv), serverAddr(r.srv), r.err))
		}
	}
	return errors.Join(errs...)
}

// Close releases the sockets of listeners that were never served (start-up
// failed after Listen). Once Serve runs, cancel its context instead.
func (l *Listeners) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.served {
		return nil
	}
	l.served = true // a closed socket cannot be served
	var errs []error
	for _, srv := range l.servers {
		if srv.PacketConn != nil {
			errs = append(errs, srv.PacketConn.Close())
		}
		if srv.Listener != nil {
			errs = append(errs, srv.Listener.Close())
		}
	}
	return errors.Join(errs...)
}

func network(srv *miekg.Server) string {
	if srv.PacketConn != nil {
		return "udp"
	}
	return "tcp"
}

func serverAddr(srv *miekg.Server) string {
	if srv.PacketConn != nil {
		return srv.PacketConn.LocalAddr().String()
	}
	return srv.Listener.Addr().String()
}
