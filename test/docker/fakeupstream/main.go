// Command fakeupstream plays "the internet" for the docker e2e (test/docker/e2e.sh):
//
//	fakeupstream https -ca-dir /ca -canary-tcp 9000 -canary-udp 9999
//	    HTTPS on :443 (IPv4 and IPv6) with a leaf per SNI minted from a test CA that is
//	    created at start and written to -ca-dir/ca.pem (panopticon trusts it through
//	    UPSTREAM_CA_FILE). GET / greets; /echo answers the request as JSON, with the
//	    SHA-256 of the Authorization header so the test can prove which secret arrived
//	    even though panopticon redacts real values in responses. Canary ports log every
//	    TCP connection / UDP datagram as "CANARY ..." — the test asserts there are none.
//	fakeupstream dns -a 203.0.113.10 -aaaa 2001:db8:113::10
//	    DNS on :53 (UDP and TCP) answering every A / AAAA question with those addresses.
//
// Every request, connection and query is logged to stdout, one line each, for the
// test to grep with `docker compose logs`. Test-only; never use outside the e2e.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fakeupstream https|dns [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "https":
		err = runHTTPS(os.Args[2:])
	case "dns":
		err = runDNS(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: want https or dns", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeupstream:", err)
		os.Exit(1)
	}
}
