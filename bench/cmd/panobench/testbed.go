package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
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

type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCA(name string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certAuthority{cert: cert, key: key, der: der}, nil
}

func (ca *certAuthority) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
}

func (ca *certAuthority) keyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// leafPEM returns a server certificate and key (PEM) for names and ip.
func (ca *certAuthority) leafPEM(names []string, ip string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// writeUpstreamCerts writes the upstream CA and the two server certificates
// into dir: upstream-ca.pem, bench.{crt,key}, nores.{crt,key}.
func writeUpstreamCerts(dir string) (caFile string, err error) {
	ca, err := newCA("panobench upstream CA")
	if err != nil {
		return "", err
	}
	caFile = filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(caFile, ca.certPEM(), 0o644); err != nil {
		return "", err
	}
	for _, l := range []struct {
		base  string
		names []string
		ip    string
	}{{"bench", []string{benchHost, secretHost}, upstreamIP}, {"nores", []string{noResumeHost}, noResumeIP}} {
		c, k, err := ca.leafPEM(l.names, l.ip)
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
