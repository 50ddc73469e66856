// Command demo-agent is the stand-in for an AI agent in the Docker deployment: a tiny
// HTTP and WebSocket echo server that panopticon's inbound reverse proxies forward to,
// in an image that also carries curl and wget for trying egress by hand.
//
//	demo-agent                  serve HTTP on 127.0.0.1:$APP_HTTP_PORT (default 8443)
//	                            and WebSocket echo on 127.0.0.1:$APP_WS_PORT (default 12001)
//	demo-agent ws URL MESSAGE   send one text message over a WebSocket and print the echo
//	                            (ws:// or wss://; CA from SSL_CERT_FILE or -cafile)
//
// HTTP: GET / says hello; any method on /echo answers the request as JSON.
//
// When the proxy container restarts, an app sharing its network namespace is left in
// the old namespace with only a loopback interface (fail closed). The server notices
// that and exits after NETWORK_LOSS_EXIT_AFTER (default 10s, 0 disables), so that
// `restart: unless-stopped` makes Docker start it again in the proxy's new namespace.
//
// Non-goals: WebSocket extensions, fragmented-message reassembly, production use.
// Standard library only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ws" {
		if err := wsClientCommand(args[1:], stdout); err != nil {
			fmt.Fprintln(stderr, "demo-agent ws:", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: demo-agent | demo-agent ws [-cafile FILE] [-insecure] URL MESSAGE")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if f := os.Getenv("PANOPTICON_READY_FILE"); f != "" {
		if err := waitForFirewall(ctx, f, 60*time.Second); err != nil {
			log.Error("not starting", "err", err)
			return 1
		}
	}
	if err := serve(ctx, log, os.Getenv); err != nil {
		log.Error("demo-agent stopped", "err", err)
		return 1
	}
	return 0
}

// settings are the demo agent's knobs, read from the environment.
type settings struct {
	listen       string
	httpPort     int
	wsPort       int
	netLossAfter time.Duration
}

func loadSettings(getenv func(string) string) (settings, error) {
	s := settings{listen: "127.0.0.1", httpPort: 8443, wsPort: 12001, netLossAfter: 10 * time.Second}
	if v := getenv("APP_LISTEN_ADDR"); v != "" {
		s.listen = v
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"APP_HTTP_PORT", &s.httpPort}, {"APP_WS_PORT", &s.wsPort}} {
		v := getenv(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return s, fmt.Errorf("%s=%q: want a port number 1-65535", p.name, v)
		}
		*p.dst = n
	}
	if s.httpPort == s.wsPort {
		return s, fmt.Errorf("APP_HTTP_PORT and APP_WS_PORT are both %d", s.httpPort)
	}
	if v := getenv("NETWORK_LOSS_EXIT_AFTER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return s, fmt.Errorf("NETWORK_LOSS_EXIT_AFTER=%q: want a duration such as 10s (0 disables)", v)
		}
		s.netLossAfter = d
	}
	return s, nil
}

func serve(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	s, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	httpLn, err := net.Listen("tcp", net.JoinHostPort(s.listen, strconv.Itoa(s.httpPort)))
	if err != nil {
		return fmt.Errorf("listening for HTTP: %w", err)
	}
	wsLn, err := net.Listen("tcp", net.JoinHostPort(s.listen, strconv.Itoa(s.wsPort)))
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("listening for WebSocket: %w", err)
	}
	servers := []*http.Server{
		{Handler: httpHandler(), ReadHeaderTimeout: 10 * time.Second},
		{Handler: wsHandler(log), ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, 3)
	go func() { errc <- servers[0].Serve(httpLn) }()
	go func() { errc <- servers[1].Serve(wsLn) }()
	if s.netLossAfter > 0 {
		go func() { errc <- watchNetwork(ctx, "/sys/class/net", s.netLossAfter, time.Second) }()
	}
	log.Info("demo-agent serving", "http", httpLn.Addr().String(), "ws", wsLn.Addr().String())

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shutdownCtx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// waitForFirewall waits until panopticon says the firewall of *our* network
// namespace is in place (the file names the namespace), so that an agent
// restarted into a fresh proxy namespace never runs before the firewall.
func waitForFirewall(ctx context.Context, file string, limit time.Duration) error {
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("reading our network namespace: %w", err)
	}
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile(file)
		if err == nil && strings.TrimSpace(string(b)) == own {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("panopticon's firewall is not in place for %s after %v (%s)", own, limit, file)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
