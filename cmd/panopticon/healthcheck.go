package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/config"
	"github.com/panopticon-dev/panopticon/internal/firewall"
)

// healthcheck passes when every firewall rule is in place and every listener
// answers. It runs as root inside the same network namespace (docker exec,
// a startup probe), so it can read the rules, and it runs the quiet self-test.
func healthcheck(cfg config.Config) error {
	var errs []error
	spec := firewallSpec(cfg)
	for _, fam := range families() {
		r, err := firewall.New(fam)
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall (%s): %w", fam, err))
			continue
		}
		if err := firewall.Check(r, firewall.BuildPlan(spec, fam)); err != nil {
			errs = append(errs, fmt.Errorf("firewall (%s): %w", fam, err))
		}
	}
	// The dashboard is left out: the firewall lets only panopticon's own
	// marked sockets reach it, even over loopback.
	for _, l := range []struct {
		name string
		port int
	}{{"transparent proxy", cfg.TransparentPort}, {"inbound HTTPS", cfg.InboundHTTPSPort}, {"inbound WSS", cfg.InboundWSSPort}} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(l.port))
		if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", l.name, addr, err))
		} else {
			_ = c.Close()
		}
	}
	dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.DNSPort))
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(healthName), dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}
		if _, _, err := c.Exchange(m, dnsAddr); err != nil {
			errs = append(errs, fmt.Errorf("dns %s/%s: %w", dnsAddr, network, err))
		}
	}
	if len(errs) == 0 {
		// The firewall and listeners are there; check they hold, with the
		// quiet probes (no flow events) and a short budget.
		rep, err := Selftest(context.Background(), cfg, time.Second, true)
		switch {
		case errors.Is(err, syscall.EPERM):
			// A probe runner without CAP_SETUID (a restricted exec probe)
			// cannot switch uid; the rules were checked above.
			fmt.Fprintf(os.Stderr, "panopticon: healthcheck: selftest skipped: %v\n", err)
		case err != nil:
			errs = append(errs, err)
		case !rep.OK():
			recordSelftest(cfg, rep)
			errs = append(errs, fmt.Errorf("selftest: got out: %s", strings.Join(rep.Escaped(), "; ")))
		default:
			recordSelftest(cfg, rep)
		}
	}
	return errors.Join(errs...)
}
