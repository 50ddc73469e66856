package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/config"
	"github.com/panopticon-dev/panopticon/internal/firewall"
)

// healthcheck passes when every firewall rule is in place and every listener
// answers. It runs as root inside the same network namespace (docker exec,
// a startup probe), so it can read the rules.
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
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.TransparentPort))
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("transparent proxy %s: %w", addr, err))
	} else {
		_ = c.Close()
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
	return errors.Join(errs...)
}
