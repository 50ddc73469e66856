// Command panobench is the side-by-side benchmark behind `make bench`: it
// builds a fake internet and one pod network namespace per subject (direct,
// panopticon, mitmproxy, squid), drives the same loads through each, in
// alternating order, and reports absolute figures and ratios.
//
//	bench/run.sh                      # installs tools, builds, runs everything
//	panobench run -panopticon bin/panopticon -out bench/out   # as root
//
// Subcommands other than run are its own helpers, started inside the
// namespaces: `upstream` (HTTPS + DNS in the internet namespace) and `load`
// (a client in a pod namespace that prints one JSON result).
//
// Non-goals: being a general load generator; the keep-alive load is wrk's.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: panobench run|upstream|load|report [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(ctx, os.Args[2:])
	case "upstream":
		err = upstreamCmd(ctx, os.Args[2:])
	case "load":
		err = loadCmd(ctx, os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "panobench:", err)
		os.Exit(1)
	}
}
