// Command panopticon is the egress firewall sidecar for autonomous agents.
//
//	panopticon [run] [--env-file PATH]   install the firewall, drop to PROXY_UID, serve
//	panopticon healthcheck [--env-file PATH]   exit 0 when the firewall is in place and every listener answers
//	panopticon selftest [--env-file PATH]      probe as another uid that IPv6, UDP, a direct IP and outside DNS are blocked
//	panopticon tail [--blocked] [--host H] [--kind K] [--json] [--log-dir DIR]   follow the flow log
//	panopticon version
//
// main only parses the command line, builds the configuration and calls run;
// only main exits the process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/panopticon-dev/panopticon/internal/config"
	"github.com/panopticon-dev/panopticon/internal/selftest"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if cmd == selftest.ProbeCommand {
		return selftest.ProbeMain(args, stdout, stderr)
	}
	if cmd == "tail" {
		return tailMain(args, stdout, stderr)
	}
	fs := flag.NewFlagSet("panopticon "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	envFile := fs.String("env-file", "", "read variables from this .env file (the process environment wins)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "panopticon", version)
		return 0
	case "run", "healthcheck", "selftest":
	default:
		fmt.Fprintf(stderr, "panopticon: unknown command %q (want run, healthcheck, selftest, tail or version)\n", cmd)
		return 2
	}

	cfg, err := config.Load(os.Environ(), *envFile)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "panopticon: configuration error:\n%v\n", err)
		return 1
	}

	if cmd == "selftest" {
		return selftestMain(cfg, stdout, stderr)
	}
	if cmd == "healthcheck" {
		if err := healthcheck(cfg); err != nil {
			fmt.Fprintf(stderr, "panopticon: unhealthy: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "panopticon: healthy")
		return 0
	}

	// The first signal drains gracefully; a second one exits at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
		hard := make(chan os.Signal, 1)
		signal.Notify(hard, syscall.SIGTERM, syscall.SIGINT)
		<-hard
		fmt.Fprintln(stderr, "panopticon: second signal, exiting now")
		os.Exit(1)
	}()
	if err := run(ctx, cfg, stdout, stderr); err != nil {
		var se *startupError
		if errors.As(err, &se) {
			fmt.Fprintf(stderr, "panopticon: start-up failed: %v\n", se.err)
		} else {
			fmt.Fprintf(stderr, "panopticon: %v\n", err)
		}
		return 1
	}
	return 0
}

// startupError marks a failure before serving began.
type startupError struct{ err error }

func (e *startupError) Error() string { return e.err.Error() }
func (e *startupError) Unwrap() error { return e.err }
