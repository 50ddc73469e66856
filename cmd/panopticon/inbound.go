package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/panopticon-dev/panopticon/internal/inbound"
)

// bindInbound binds the inbound TLS reverse proxies (INBOUND_HTTPS_PORT,
// INBOUND_WSS_PORT) as root; they serve after the drop. The filter file and
// the certificate files are read now, as root; their reloads run as the
// proxy user, so a file it cannot read is warned about here.
func bindInbound(d *deps) (service, error) {
	cfg := d.cfg
	filter, err := inbound.NewFilter(cfg.InboundFilterFile)
	if err != nil {
		return service{}, fmt.Errorf("INBOUND_FILTER_FILE: %w", err)
	}
	var certs *inbound.Certs
	certMode := "minted from the CA for " + fmt.Sprint(cfg.InboundHostnames) + " and the listening addresses"
	if cfg.InboundTLSCert != "" {
		certs, err = inbound.NewFileCerts(cfg.InboundTLSCert, cfg.InboundTLSKey, d.logger)
		if err != nil {
			return service{}, fmt.Errorf("INBOUND_TLS_CERT / INBOUND_TLS_KEY: %w", err)
		}
		certMode = cfg.InboundTLSCert
	} else {
		if certs, err = inbound.NewMintedCerts(d.minter, cfg.InboundHostnames); err != nil {
			return service{}, err
		}
	}
	for _, f := range []struct{ name, path string }{
		{"INBOUND_FILTER_FILE", filter.Path()},
		{"INBOUND_TLS_CERT", cfg.InboundTLSCert},
		{"INBOUND_TLS_KEY", cfg.InboundTLSKey},
	} {
		if f.path != "" && !readableBy(f.path, cfg.ProxyUID, cfg.ProxyGID) {
			d.logger.Warn("file is not readable by the proxy user: changes to it will not be reloaded",
				"variable", f.name, "file", f.path, "uid", cfg.ProxyUID, "gid", cfg.ProxyGID)
		}
	}

	httpsLn, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.InboundHTTPSPort))
	if err != nil {
		return service{}, fmt.Errorf("INBOUND_HTTPS_PORT: %w", err)
	}
	wssLn, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.InboundWSSPort))
	if err != nil {
		httpsLn.Close()
		return service{}, fmt.Errorf("INBOUND_WSS_PORT: %w", err)
	}

	proxy := inbound.New(inbound.Config{
		Certs:        certs,
		Filter:       filter,
		FilterBytes:  cfg.InboundFilterBytes,
		Allow:        cfg.InboundAllowCIDRs,
		MaxBodyBytes: int64(cfg.InboundMaxBodyMB) << 20,
		Log:          d.flows,
		Logger:       d.logger,
	})
	doors := []inbound.Door{
		{Listener: httpsLn, App: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.AppHTTPPort)), HTTP2: true},
		{Listener: wssLn, App: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.AppWSPort))},
	}
	rules := filter.Rules()
	d.logger.Info("inbound proxies bound",
		"https", httpsLn.Addr().String(), "wss", wssLn.Addr().String(),
		"app_http", doors[0].App, "app_ws", doors[1].App,
		"certificate", certMode, "allow_cidrs", fmt.Sprint(cfg.InboundAllowCIDRs),
		"filter", filterName(cfg.InboundFilterFile), "filter_rules", rules.Len())

	serve := func(ctx context.Context) error {
		var wg sync.WaitGroup
		errs := make([]error, len(doors))
		for i, door := range doors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := proxy.Serve(ctx, door); err != nil {
					errs[i] = fmt.Errorf("%s: %w", door.Listener.Addr(), err)
				}
			}()
		}
		// The reloads run while the doors do: they must not keep a failed
		// door's error from being reported.
		watchCtx, stopWatching := context.WithCancel(ctx)
		var watchers sync.WaitGroup
		watchers.Go(func() { certs.Watch(watchCtx, reloadInterval) })
		watchers.Go(func() {
			filter.Watch(watchCtx, reloadInterval,
				func(rs *inbound.Rules) {
					d.logger.Info("inbound filter reloaded", "file", rs.Source(), "rules", rs.Len())
				},
				func(err error) {
					d.logger.Error("inbound filter reload failed; keeping the last good rules", "file", filter.Path(), "err", err)
				})
		})
		wg.Wait()
		stopWatching()
		watchers.Wait()
		return errors.Join(errs...)
	}
	return service{name: "inbound", serve: serve}, nil
}

func filterName(spec string) string {
	switch spec {
	case "":
		return "built-in starter rules"
	case inbound.FilterOff:
		return "off"
	}
	return spec
}

// readableBy reports whether uid:gid (no supplementary groups) may read path.
func readableBy(path string, uid, gid int) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; do not warn
	}
	mode := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return mode&0o400 != 0
	case int(st.Gid) == gid:
		return mode&0o040 != 0
	default:
		return mode&0o004 != 0
	}
}
