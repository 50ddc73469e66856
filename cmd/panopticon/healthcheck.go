package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/config"
	"github.com/panopticon-dev/panopticon/internal/firewall"
	"github.com/panopticon-dev/panopticon/internal/selftest"
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
		m.SetQuestion(dns.Fqdn(selftest.DeniedName), dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}
		if _, _, err := c.Exchange(m, dnsAddr); err != nil {
			errs = append(errs, fmt.Errorf("dns %s/%s: %w", dnsAddr, network, err))
		}
	}
	if len(errs) == 0 {
		// The firewall and listeners are there; check they hold, with the
		// quiet probes (no flow events) and a short budget.
		rep, err := runSelftest(cfg, time.Second, true)
		switch {
		case errors.Is(err, syscall.EPERM):
			// A probe runner without CAP_SETUID (a restricted exec probe)
			// cannot switch uid; the rules were checked above.
			fmt.Fprintf(os.Stderr, "panopticon: healthcheck: selftest skipped: %v\n", err)
		case err != nil:
			errs = append(errs, err)
		case !rep.OK():
			selftest.Record(cfg.StateDir, rep)
			errs = append(errs, fmt.Errorf("selftest: got out: %s", strings.Join(rep.Escaped(), "; ")))
		default:
			selftest.Record(cfg.StateDir, rep)
		}
	}
	return errors.Join(errs...)
}

// runSelftest runs the probes of internal/selftest from this binary.
func runSelftest(cfg config.Config, budget time.Duration, quiet bool) (selftest.Report, error) {
	self, err := os.Executable()
	if err != nil {
		return selftest.Report{}, fmt.Errorf("selftest: finding this binary: %w", err)
	}
	return selftest.Run(context.Background(), self, cfg.ProxyUID, budget, quiet)
}

// selftestMain runs `panopticon selftest`.
func selftestMain(cfg config.Config, stdout, stderr io.Writer) int {
	rep, err := runSelftest(cfg, 3*time.Second, false)
	if err != nil {
		fmt.Fprintf(stderr, "panopticon: selftest could not run: %v\n", err)
		return 1
	}
	selftest.Record(cfg.StateDir, rep)
	if !rep.OK() {
		fmt.Fprintf(stderr, "panopticon: SELFTEST FAILED: got out: %s\n%s", strings.Join(rep.Escaped(), "; "), rep)
		return 1
	}
	fmt.Fprintf(stdout, "panopticon: selftest passed: IPv6, UDP, a direct IP and outside DNS are all blocked\n%s", rep)
	return 0
}
