package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// watchNetwork returns an error once the network namespace has had no interface
// but loopback for longer than after. Docker leaves a container that shares another
// container's namespace ("network_mode: service:proxy") in a namespace with only lo
// when that container restarts; exiting lets the restart policy rejoin the new one.
// A namespace that never had another interface is not watched.
func watchNetwork(ctx context.Context, sysClassNet string, after, every time.Duration) error {
	if !hasNonLoopback(sysClassNet) {
		return nil
	}
	var lostSince time.Time
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			switch {
			case hasNonLoopback(sysClassNet):
				lostSince = time.Time{}
			case lostSince.IsZero():
				lostSince = now
			case now.Sub(lostSince) >= after:
				return fmt.Errorf("network lost: only loopback in this namespace for %s (the proxy container restarted?); exiting so the container is restarted in the proxy's new namespace", after)
			}
		}
	}
}

func hasNonLoopback(sysClassNet string) bool {
	entries, err := os.ReadDir(sysClassNet)
	if err != nil {
		return true // cannot tell: never exit on a guess
	}
	for _, e := range entries {
		if e.Name() != "lo" {
			return true
		}
	}
	return false
}
