package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/panopticon-dev/panopticon/internal/atomicfile"
	"github.com/panopticon-dev/panopticon/internal/ca"
	"github.com/panopticon-dev/panopticon/internal/config"
	pdns "github.com/panopticon-dev/panopticon/internal/dns"
	"github.com/panopticon-dev/panopticon/internal/egress"
	"github.com/panopticon-dev/panopticon/internal/filewatch"
	"github.com/panopticon-dev/panopticon/internal/firewall"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/privdrop"
	"github.com/panopticon-dev/panopticon/internal/secrets"
	"github.com/panopticon-dev/panopticon/internal/selftest"
	"github.com/panopticon-dev/panopticon/internal/upstream"
)

// proxyMark is the SO_MARK on panopticon's own upstream sockets. Together with
// the uid it is what the firewall lets out; setting it needs CAP_NET_ADMIN,
// which the app does not have.
const proxyMark = 0x1337

// reloadInterval is how often the allowlist file is polled.
const reloadInterval = 500 * time.Millisecond

func ipv6Available() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

func firewallSpec(cfg config.Config) firewall.Spec {
	return firewall.Spec{
		ProxyUID:           cfg.ProxyUID,
		Mark:               proxyMark,
		TransparentPort:    cfg.TransparentPort,
		DNSPort:            cfg.DNSPort,
		InboundPorts:       []int{cfg.InboundHTTPSPort, cfg.InboundWSSPort, cfg.DashboardPort},
		InboundAllow:       cfg.InboundAllowCIDRs,
		DashboardPort:      cfg.DashboardPort,
		DashboardLocalUIDs: cfg.DashboardLocalUIDs,
	}
}

func families() []firewall.Family {
	if ipv6Available() {
		return []firewall.Family{firewall.IPv4, firewall.IPv6}
	}
	return []firewall.Family{firewall.IPv4}
}

// run follows DESIGN.md's start-up order: configuration, firewall, CA,
// listeners, privilege drop, serve. Nothing serves before the firewall is in.
func run(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(logger)
	fail := func(format string, args ...any) error {
		return &startupError{fmt.Errorf(format, args...)}
	}

	// 1. Configuration that needs files.
	allowFile, err := filewatch.Open("allowlist", func() (*policy.Allowlist, error) {
		return policy.ParseFile(cfg.AllowlistFile)
	}, cfg.AllowlistFile)
	if err != nil {
		return fail("ALLOWLIST_FILE: %w", err)
	}
	list := allowFile.Value()
	upstreamDNS, err := cfg.ResolveUpstreamDNS("/etc/resolv.conf")
	if err != nil {
		return fail("%w", err)
	}
	secretTable, warnings, err := secrets.FromEnv(cfg.Secrets)
	if err != nil {
		return fail("%w", err)
	}
	for _, w := range warnings {
		logger.Warn(w)
	}
	roots, err := upstream.Roots(cfg.UpstreamCAFile)
	if err != nil {
		return fail("UPSTREAM_CA_FILE: %w", err)
	}

	// 2. Firewall, as root, before anything listens.
	spec := firewallSpec(cfg)
	for _, fam := range families() {
		r, err := firewall.New(fam)
		if err != nil {
			return fail("firewall (%s): %w", fam, err)
		}
		if err := firewall.Apply(r, firewall.BuildPlan(spec, fam)); err != nil {
			return fail("firewall (%s): %w", fam, err)
		}
	}
	if !ipv6Available() {
		logger.Warn("IPv6 is not available in this kernel; only IPv4 rules installed")
	}
	logger.Info("firewall installed", "transparent_port", cfg.TransparentPort, "dns_port", cfg.DNSPort, "proxy_uid", cfg.ProxyUID)

	// 3. CA.
	authority, err := ca.LoadOrCreate(cfg.CADir)
	if err != nil {
		return fail("CA_DIR: %w", err)
	}
	if err := authority.Export(cfg.CAExportDir); err != nil {
		return fail("CA_EXPORT_DIR: %w", err)
	}
	if err := markFirewallReady(cfg.CAExportDir); err != nil {
		return fail("CA_EXPORT_DIR: %w", err)
	}
	minter := ca.NewMinter(authority, 4096)

	// Directories the dropped identity writes to.
	if err := ownDir(cfg.LogDir, cfg.ProxyUID, cfg.ProxyGID); err != nil {
		return fail("LOG_DIR: %w", err)
	}
	flowStdout := stdout
	if cfg.FlowStdout == "off" {
		flowStdout = nil
	}
	flows, err := flowlog.New(flowlog.Options{
		Dir: cfg.LogDir, MaxSizeMB: cfg.LogMaxSizeMB, MaxBackups: cfg.LogMaxBackups,
		MaxAgeDays: cfg.LogMaxAgeDays, Compress: cfg.LogCompress,
		StdoutJSON: cfg.FlowStdout == "json",
		Redact:     redactAll(secretTable),
	}, flowStdout)
	if err != nil {
		return fail("LOG_DIR: %w", err)
	}
	defer flows.Close()

	pol := policy.New(list, policy.NewGuard(cfg.AllowPrivateCIDRs))
	resolver := upstream.NewResolver(upstreamDNS, proxyMark)
	dialer := &upstream.Dialer{Resolver: resolver, Guard: pol.Guard(), Mark: proxyMark}

	// 4. Listeners.
	transparent, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.TransparentPort))
	if err != nil {
		return fail("TRANSPARENT_PORT: %w", err)
	}
	dnsAddrs := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.DNSPort))}
	if ipv6Available() {
		dnsAddrs = append(dnsAddrs, net.JoinHostPort("::1", strconv.Itoa(cfg.DNSPort)))
	}
	dnsServer := &pdns.Server{
		Policy:   pol,
		Guard:    pol.Guard(),
		Upstream: upstreamDNS,
		UDP:      resolver.UDP,
		TCP:      resolver.TCP,
		Log:      quietHealth{flows},
		Logger:   logger,
		Audit:    cfg.Mode == "audit",
	}
	dnsListeners, err := dnsServer.Listen(dnsAddrs)
	if errors.Is(err, syscall.EADDRNOTAVAIL) && len(dnsAddrs) > 1 {
		// IPv6 is disabled on lo (Docker's default): there is no ::1 to
		// redirect to, and the ip6tables rules still reject all IPv6.
		logger.Warn("::1 is not available; DNS listens on IPv4 loopback only", "err", err)
		dnsListeners, err = dnsServer.Listen(dnsAddrs[:1])
	}
	if err != nil {
		return fail("DNS_PORT: %w", err)
	}

	d := &deps{cfg: cfg, logger: logger, stdout: stdout, policy: pol, allowFile: allowFile, flows: flows, authority: authority, minter: minter,
		resolver: resolver, roots: roots}
	var services []service
	for _, bind := range []func(*deps) (service, error){bindInbound, bindDashboard} {
		svc, err := bind(d)
		if err != nil {
			return fail("%w", err)
		}
		if svc.serve != nil {
			services = append(services, svc)
		}
	}

	// 5. Drop to the proxy identity, keeping only CAP_NET_ADMIN (for SO_MARK).
	if err := privdrop.Drop(cfg.ProxyUID, cfg.ProxyGID, privdrop.CapNetAdmin); err != nil {
		return fail("dropping privileges to %d:%d: %w", cfg.ProxyUID, cfg.ProxyGID, err)
	}
	logger.Info("privileges dropped", "uid", os.Getuid(), "gid", os.Getgid())

	// 6. Serve.
	transport := upstream.NewTransport(dialer.DialContext, roots)
	proxy := egress.New(egress.Config{
		Policy:    pol,
		Certs:     minter,
		Transport: transport,
		Log:       flows,
		Logger:    logger,
		OwnPorts:  portsOf(cfg),
		Audit:     cfg.Mode == "audit",
		Secrets:   secretTable,
		LeakGuard: cfg.LeakGuard,
	})

	// A listener that fails stops everything (and the process exits, so a
	// restart policy can act) instead of leaving the others serving alone.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3+len(services))
	start := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	start("egress", func() error { return proxy.Serve(ctx, transparent) })
	start("dns", func() error { return dnsListeners.Serve(ctx) })
	for _, svc := range services {
		start(svc.name, func() error { return svc.serve(ctx) })
	}
	start("allowlist reload", func() error {
		allowFile.Watch(ctx, reloadInterval,
			func(l *policy.Allowlist) {
				pol.Swap(l)
				// A large list was just parsed while the old one was live: hand the
				// old one's memory back now rather than at the next GC cycle.
				debug.FreeOSMemory()
				logger.Info("allowlist reloaded", "file", cfg.AllowlistFile, "entries", l.Len())
			},
			func(err error) {
				logger.Error("allowlist reload failed; keeping the last good list", "file", cfg.AllowlistFile, "err", err)
			})
		return nil
	})
	logger.Info("panopticon serving", "version", version, "transparent", transparent.Addr().String(), "dns", dnsListeners.Addrs(), "upstream_dns", upstreamDNS, "allowlist_entries", list.Len(), "secrets", secretTable.Names())

	select {
	case <-ctx.Done():
		logger.Info("shutting down; the firewall stays in place (fail closed)")
	case err := <-errc:
		logger.Error("a listener failed; shutting down", "err", err)
		cancel()
		wg.Wait()
		return err
	}
	wg.Wait()
	return nil
}

// redactAll replaces every real secret value with its placeholder (nil when
// there are no secrets, so events cost nothing extra).
func redactAll(t *secrets.Table) func(string) string {
	if t.Len() == 0 {
		return nil
	}
	return t.Redactor(t.Names()).String
}

// readyFile names, in CA_EXPORT_DIR, the network namespace whose firewall is
// in place. An app sharing the namespace waits until it names its own before
// starting, so that after a proxy restart it cannot race the firewall.
const readyFile = "firewall-netns"

func markFirewallReady(dir string) error {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("reading our network namespace: %w", err)
	}
	return atomicfile.Replace(filepath.Join(dir, readyFile), []byte(ns+"\n"), 0o644)
}

func portsOf(cfg config.Config) []int {
	var out []int
	for _, p := range cfg.Ports() {
		out = append(out, p)
	}
	return out
}

// ownDir creates dir and hands it (and what is in it) to uid:gid, so the
// dropped identity can write and rotate its files.
func ownDir(dir string, uid, gid int) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("chown %s to %d:%d: %w", path, uid, gid, err)
		}
		return nil
	})
}

// quietHealth keeps the healthcheck's probes out of the flow log.
type quietHealth struct{ l *flowlog.Log }

func (q quietHealth) Emit(e flowlog.Event) {
	if e.Host == selftest.DeniedName {
		return
	}
	q.l.Emit(e)
}
