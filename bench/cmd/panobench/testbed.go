package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/panopticon-dev/panopticon/internal/testpki"
)

// The fake internet lives in netNS; every subject has its own pod namespace
// joined to it by a veth pair on a /30 of 198.51.100.0/24.
const (
	netNS        = "bench-net"
	upstreamIP   = "203.0.113.10" // bench.test, secret.test: session tickets on
	noResumeIP   = "203.0.113.11" // nores.test: session tickets off
	dnsIP        = "203.0.113.53"
	benchHost    = "bench.test"
	secretHost   = "secret.test"
	noResumeHost = "nores.test"
)

// hostIPs is the fake DNS zone (A records; AAAA is NODATA).
var hostIPs = map[string]string{
	benchHost + ".":    upstreamIP,
	secretHost + ".":   upstreamIP,
	noResumeHost + ".": noResumeIP,
}

// testbed is the set of namespaces one run creates.
type testbed struct {
	dir  string   // scratch directory (certificates, configs, logs)
	pods []string // pod namespaces, in creation order
}

func run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipCmd(args ...string) error { return run(context.Background(), "ip", args...) }

// inNS runs argv inside namespace ns (short commands: iptables, sysctl).
func inNS(ns string, argv ...string) error {
	return run(context.Background(), "ip", append([]string{"netns", "exec", ns}, argv...)...)
}

func deleteNS(name string) {
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); err == nil {
		_ = ipCmd("netns", "delete", name)
	}
	_ = os.RemoveAll(filepath.Join("/etc/netns", name))
}

// newTestbed creates the internet namespace. Pods are added with addPod.
func newTestbed(dir string) (*testbed, error) {
	deleteNS(netNS)
	tb := &testbed{dir: dir}
	steps := [][]string{
		{"netns", "add", netNS},
		{"-n", netNS, "link", "set", "lo", "up"},
		{"-n", netNS, "addr", "add", upstreamIP + "/32", "dev", "lo"},
		{"-n", netNS, "addr", "add", noResumeIP + "/32", "dev", "lo"},
		{"-n", netNS, "addr", "add", dnsIP + "/32", "dev", "lo"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return tb, err
		}
	}
	return tb, nil
}

// addPod creates pod namespace name, joined to the internet by veth pair
// number i (198.51.100.4i+1 on the internet side, .4i+2 in the pod).
func (tb *testbed) addPod(name string, i int) error {
	deleteNS(name)
	tb.pods = append(tb.pods, name)
	if err := os.MkdirAll(filepath.Join("/etc/netns", name), 0o755); err != nil {
		return err
	}
	// `ip netns exec` bind-mounts this over /etc/resolv.conf.
	if err := os.WriteFile(filepath.Join("/etc/netns", name, "resolv.conf"),
		[]byte("nameserver "+dnsIP+"\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		return err
	}
	gw := fmt.Sprintf("198.51.100.%d", 4*i+1)
	podIP := fmt.Sprintf("198.51.100.%d", 4*i+2)
	peer := fmt.Sprintf("p%d", i)
	steps := [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
		// Both ends are created inside the namespaces: nothing touches the host's.
		{"-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", netNS},
		{"-n", name, "addr", "add", podIP + "/30", "dev", "eth0"},
		{"-n", netNS, "addr", "add", gw + "/30", "dev", peer},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", netNS, "link", "set", peer, "up"},
		{"-n", name, "route", "add", "default", "via", gw},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	// 10,000 idle connections through a proxy in the same namespace use
	// two local ports each.
	return inNS(name, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000")
}

// close deletes every namespace of the run.
func (tb *testbed) close() {
	for i := len(tb.pods) - 1; i >= 0; i-- {
		deleteNS(tb.pods[i])
	}
	deleteNS(netNS)
}

// ---- certificates ----

// newCA makes a CA for the fake upstream or for squid's ssl-bump.
func newCA(name string) (*testpki.CA, error) { return testpki.New(name, 7*24*time.Hour) }

// leafPEM returns a server certificate and key (PEM) for names and ip.
func leafPEM(ca *testpki.CA, names []string, ip string) (certPEM, keyPEM []byte, err error) {
	c, err := ca.Leaf(names, []net.IP{net.ParseIP(ip)})
	if err != nil {
		return nil, nil, err
	}
	return testpki.LeafPEM(c)
}

// writeUpstreamCerts writes the upstream CA and the two server certificates
// into dir: upstream-ca.pem, bench.{crt,key}, nores.{crt,key}.
func writeUpstreamCerts(dir string) (caFile string, err error) {
	ca, err := newCA("panobench upstream CA")
	if err != nil {
		return "", err
	}
	caFile = filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		return "", err
	}
	for _, l := range []struct {
		base  string
		names []string
		ip    string
	}{{"bench", []string{benchHost, secretHost}, upstreamIP}, {"nores", []string{noResumeHost}, noResumeIP}} {
		c, k, err := leafPEM(ca, l.names, l.ip)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, l.base+".crt"), c, 0o644); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, l.base+".key"), k, 0o600); err != nil {
			return "", err
		}
	}
	return caFile, nil
}
