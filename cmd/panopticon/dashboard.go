package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/panopticon-dev/panopticon/internal/dashboard"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/metrics"
	"github.com/panopticon-dev/panopticon/internal/notify"
	"github.com/panopticon-dev/panopticon/internal/selftest"
	"github.com/panopticon-dev/panopticon/internal/upstream"
)

// liveBuffer is how many events the dashboard and the webhook notifier may
// fall behind before the flow log drops events for them (counted).
const liveBuffer = 4096

// bindDashboard binds the dashboard (DASHBOARD_PORT) as root; it serves after
// the drop. It also prepares STATE_DIR (owned by the proxy user), loads the
// runtime allowlist from it, and starts the webhook notifier when WEBHOOK_URL
// is set.
func bindDashboard(d *deps) (service, error) {
	cfg := d.cfg
	if err := ownDir(cfg.StateDir, cfg.ProxyUID, cfg.ProxyGID); err != nil {
		return service{}, fmt.Errorf("STATE_DIR: %w", err)
	}
	runtimeList, err := dashboard.OpenRuntimeList(filepath.Join(cfg.StateDir, dashboard.RuntimeFileName), d.policy)
	if err != nil {
		return service{}, fmt.Errorf("STATE_DIR: %w", err)
	}
	if n := len(runtimeList.Patterns()); n > 0 {
		d.logger.Info("runtime allowlist loaded", "file", runtimeList.Path(), "entries", n)
	}

	token := cfg.DashboardToken
	if token == "" {
		b := make([]byte, 24)
		rand.Read(b)
		token = base64.RawURLEncoding.EncodeToString(b)
		// Printed once, on stdout, and never logged again.
		fmt.Fprintf(d.stdout, "panopticon: dashboard token (generated; set DASHBOARD_TOKEN to choose one): %s\n"+
			"panopticon: open http://<this host>:%d/?token=%s\n", token, cfg.DashboardPort, token)
	}

	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.DashboardPort))
	if err != nil {
		return service{}, fmt.Errorf("DASHBOARD_PORT: %w", err)
	}

	var notifier *notify.Notifier
	if cfg.WebhookURL != "" {
		client := webhookClient(d)
		notifier = notify.New(notify.Options{
			URL: cfg.WebhookURL, Secret: cfg.WebhookSecret,
			Dedup:  time.Duration(cfg.WebhookDedupSeconds) * time.Second,
			Client: client, Logger: d.logger,
		})
	}

	src := metrics.Sources{
		CertCache:         d.minter.Stats,
		AllowlistReloads:  d.allowFile.Reloads,
		AllowlistFailures: d.allowFile.Failures,
		FlowlogDropped:    d.flows.Dropped,
		SubscriberDrops:   d.flows.SubscriberDrops,
		StdoutDropped:     d.flows.StdoutDropped,
	}
	if notifier != nil {
		src.WebhookDeliveries = func() map[string]uint64 { return notifier.Stats().Deliveries }
		src.WebhookDropped = func() uint64 { return notifier.Stats().Dropped }
	}
	srv := dashboard.New(dashboard.Options{
		Token: token, Policy: d.policy, Runtime: runtimeList, Mode: cfg.Mode,
		BufferSize: cfg.FlowBuffer, Sources: src, Logger: d.logger,
		SelftestFile: filepath.Join(cfg.StateDir, selftest.File),
	})
	// History from the log files (only the newest FLOW_BUFFER events), read
	// while still root in case older files are root's.
	if history, err := flowlog.ReadRecent(cfg.LogDir, cfg.FlowBuffer); err != nil {
		d.logger.Warn("dashboard: reading recent flows", "err", err)
	} else {
		srv.Seed(history)
	}
	// Subscribe now, so nothing emitted between here and serving is missed.
	events, cancelEvents := d.flows.Subscribe(liveBuffer)
	var hooks <-chan flowlog.Event
	cancelHooks := func() {}
	if notifier != nil {
		hooks, cancelHooks = d.flows.Subscribe(liveBuffer)
	}

	return service{name: "dashboard", serve: func(ctx context.Context) error {
		defer cancelEvents()
		defer cancelHooks()
		go srv.Run(ctx, events)
		if notifier != nil {
			go notifier.Run(ctx)
			go func() {
				for e := range hooks {
					notifier.Notify(e)
				}
			}()
			d.logger.Info("webhook notifications on", "dedup_seconds", cfg.WebhookDedupSeconds, "signed", cfg.WebhookSecret != "")
		}
		d.logger.Info("dashboard serving", "addr", ln.Addr().String(), "mode", cfg.Mode, "runtime_allowlist", runtimeList.Path())
		if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}}, nil
}

// webhookClient posts from panopticon's own, marked sockets, with the
// upstream resolver and roots the egress door uses: the webhook is
// panopticon's configuration, not the app's traffic, so the allowlist and the
// private-address guard do not apply (a receiver on an internal address, or
// at an IP literal, is fine).
func webhookClient(d *deps) *http.Client {
	dialer := &upstream.Dialer{Resolver: d.resolver, Mark: proxyMark, Literals: true}
	tr := upstream.NewTransport(dialer.DialContext, d.roots)
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 4, 4
	tr.ResponseHeaderTimeout = notify.DefaultTimeout
	return &http.Client{Timeout: notify.DefaultTimeout, Transport: tr}
}
