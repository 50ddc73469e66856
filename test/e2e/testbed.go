//go:build e2e

// Package e2e holds Panopticon's end-to-end tests: the real binary in a "pod"
// network namespace, joined by a veth pair to a fake "internet" namespace
// that holds named HTTPS upstreams, an attacker and DNS servers. Requires root.
//
//	go test -tags e2e -count=1 ./test/e2e/ -v
package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/sys/unix"
)

// nsPrefix starts the name of every namespace this suite creates. Names embed
// the creating process id so a sweep only removes leftovers of dead runs.
const nsPrefix = "pano-"

var bedSeq atomic.Int64

// Testbed is one pod namespace joined to one fake internet.
type Testbed struct {
	Pod, Net string // network namespace names
	Dir      string // scratch directory, world-readable (uids 1000 and 1337 read from it)

	UpstreamCAFile string // PEM of the CA that signed the fake upstreams
	Hosts          map[string]*Upstream
	Attacker       *Attacker
	DNS            *FakeDNS // 198.51.100.1:53, the resolver the pod is configured with
	DirectDNS      *FakeDNS // 203.0.113.53:53, an outside resolver

	appCAFile string // what the app trusts: the upstream CA, or panopticon's bundle once started
	wire      *Wire  // set by StartWire; then part of every Mark
	closers   []func()
}

// NewTestbed builds the namespaces and starts the fake internet. Everything is
// torn down by t.Cleanup, also when the test fails.
func NewTestbed(t *testing.T) *Testbed {
	t.Helper()
	n := bedSeq.Add(1)
	tb := &Testbed{
		Pod:   fmt.Sprintf("%spod-%d-%d", nsPrefix, os.Getpid(), n),
		Net:   fmt.Sprintf("%snet-%d-%d", nsPrefix, os.Getpid(), n),
		Hosts: map[string]*Upstream{},
	}
	dir, err := os.MkdirTemp("", "pano-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	tb.Dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	mustChmod(t, dir, 0o755)

	t.Cleanup(func() {
		for i := len(tb.closers) - 1; i >= 0; i-- {
			tb.closers[i]()
		}
		deleteNamespace(tb.Pod)
		deleteNamespace(tb.Net)
	})
	if err := tb.setupNetwork(); err != nil {
		t.Fatalf("testbed network: %v", err)
	}
	if err := tb.startFakeInternet(); err != nil {
		t.Fatalf("fake internet: %v", err)
	}
	return tb
}

func mustChmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// ip runs one iproute2 command with a time bound.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (tb *Testbed) setupNetwork() error {
	pod, nt := tb.Pod, tb.Net
	if err := os.MkdirAll(filepath.Join("/etc/netns", pod), 0o755); err != nil {
		return err
	}
	// `ip netns exec` bind-mounts this over /etc/resolv.conf.
	if err := os.WriteFile(filepath.Join("/etc/netns", pod, "resolv.conf"), []byte("nameserver "+NetIP+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		return err
	}
	steps := [][]string{
		{"netns", "add", pod},
		{"netns", "add", nt},
		{"-n", pod, "link", "set", "lo", "up"},
		{"-n", nt, "link", "set", "lo", "up"},
		// Both ends are created inside the namespaces: nothing touches the host's.
		{"-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nt},
		{"-n", pod, "addr", "add", PodIP + "/24", "dev", "eth0"},
		{"-n", pod, "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad"},
		{"-n", nt, "addr", "add", NetIP + "/24", "dev", "eth0"},
		{"-n", nt, "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad"},
		{"-n", pod, "link", "set", "eth0", "up"},
		{"-n", nt, "link", "set", "eth0", "up"},
		{"-n", pod, "route", "add", "default", "via", NetIP},
		{"-n", pod, "-6", "route", "add", "default", "via", "2001:db8:1::1"},
		{"-n", nt, "addr", "add", AttackerIP + "/32", "dev", "lo"},
		{"-n", nt, "addr", "add", DirectDNSIP + "/32", "dev", "lo"},
		{"-n", nt, "-6", "addr", "add", AttackerIPv6 + "/128", "dev", "lo"},
	}
	for _, h := range fakeHosts {
		steps = append(steps, []string{"-n", nt, "addr", "add", h.IP + "/32", "dev", "lo"})
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	// Let uid 1000 send ICMP echo through unprivileged ICMP sockets (a per-netns sysctl).
	return tb.inNetns(pod, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644)
	})
}

// deleteNamespace removes a namespace and its resolv.conf; missing is fine.
func deleteNamespace(name string) {
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); err == nil {
		ip("netns", "delete", name)
	}
	os.RemoveAll(filepath.Join("/etc/netns", name))
}

// SweepStaleNamespaces deletes pano-* namespaces left by runs whose process is gone.
func SweepStaleNamespaces() []string {
	var swept []string
	for _, dir := range []string{"/var/run/netns", "/etc/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, nsPrefix) {
				continue
			}
			parts := strings.Split(name, "-") // pano-pod-PID-N
			if len(parts) >= 3 {
				if pid, err := strconv.Atoi(parts[2]); err == nil && pid != os.Getpid() && processAlive(pid) {
					continue // another run in progress
				}
			}
			deleteNamespace(name)
			swept = append(swept, name)
		}
	}
	return swept
}

func processAlive(pid int) bool {
	return unix.Kill(pid, 0) == nil || errors.Is(unix.Kill(pid, 0), unix.EPERM)
}

// inNetns runs fn on a thread that has entered namespace name. Sockets made
// there stay in that namespace and can be served from any goroutine. The
// thread is never unlocked, so it dies with the goroutine instead of
// returning to the scheduler in the wrong namespace.
func (tb *Testbed) inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", name))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (tb *Testbed) onClose(f func()) { tb.closers = append(tb.closers, f) }

func (tb *Testbed) startFakeInternet() error {
	ca, err := newTestCA()
	if err != nil {
		return err
	}
	tb.UpstreamCAFile = filepath.Join(tb.Dir, "upstream-ca.pem")
	if err := os.WriteFile(tb.UpstreamCAFile, ca.CertPEM(), 0o644); err != nil {
		return err
	}
	tb.appCAFile = tb.UpstreamCAFile
	tb.Attacker = &Attacker{}
	tb.DNS = &FakeDNS{Addr: UpstreamDNS}
	tb.DirectDNS = &FakeDNS{Addr: net.JoinHostPort(DirectDNSIP, "53")}

	return tb.inNetns(tb.Net, func() error {
		for _, h := range fakeHosts {
			u := &Upstream{Name: h.Name, IP: h.IP, peers: tb.Hosts}
			tb.Hosts[h.Name] = u
			signer := ca
			if h.BadCert {
				if signer, err = newTestCA(); err != nil {
					return err
				}
			}
			cert, err := signer.Leaf([]string{h.Name}, []net.IP{net.ParseIP(h.IP)})
			if err != nil {
				return err
			}
			for _, port := range h.TLSPorts {
				if err := tb.serveHTTP(u, port, &tls.Config{Certificates: []tls.Certificate{cert}}); err != nil {
					return err
				}
			}
			for _, port := range h.HTTPPorts {
				if err := tb.serveHTTP(u, port, nil); err != nil {
					return err
				}
			}
		}
		for _, addr := range []string{AttackerIP, AttackerIPv6} {
			for _, port := range attackerTCPPorts {
				ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
				if err != nil {
					return err
				}
				tb.onClose(func() { ln.Close() })
				go tb.Attacker.serveTCP(ln)
			}
			for _, port := range attackerUDPPorts {
				pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(port)))
				if err != nil {
					return err
				}
				tb.onClose(func() { pc.Close() })
				go tb.Attacker.serveUDP(pc)
			}
		}
		for _, s := range []struct {
			network, addr string
			proto         int
		}{{"ip4:icmp", AttackerIP, 1}, {"ip6:ipv6-icmp", AttackerIPv6, 58}} {
			pc, err := icmp.ListenPacket(s.network, s.addr)
			if err != nil {
				return fmt.Errorf("icmp recorder: %w", err)
			}
			tb.onClose(func() { pc.Close() })
			go tb.Attacker.serveICMP(pc, s.proto)
		}
		for _, d := range []*FakeDNS{tb.DNS, tb.DirectDNS} {
			if err := tb.serveDNS(d); err != nil {
				return err
			}
		}
		return nil
	})
}

// serveHTTP must run inside the net namespace (it creates the listener).
func (tb *Testbed) serveHTTP(u *Upstream, port int, cfg *tls.Config) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(u.IP, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           u.handler(port, cfg != nil),
		ReadHeaderTimeout: 5 * time.Second,
		// HTTP/1.1 only: keeps WebSocket upgrades and recording simple.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	var l net.Listener = countingListener{Listener: ln, rec: &u.recorder, port: port}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	go srv.Serve(l)
	tb.onClose(func() { srv.Close() })
	return nil
}

func (tb *Testbed) serveDNS(d *FakeDNS) error {
	pc, err := net.ListenPacket("udp", d.Addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", d.Addr)
	if err != nil {
		pc.Close()
		return err
	}
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: ln, Handler: d}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	tb.onClose(func() { udp.Shutdown(); tcp.Shutdown(); pc.Close(); ln.Close() })
	return nil
}

// Host returns the named upstream.
func (tb *Testbed) Host(name string) *Upstream {
	u, ok := tb.Hosts[name]
	if !ok {
		panic("no fake host " + name)
	}
	return u
}

// Marks remembers a position in every recorder of the testbed.
type Marks map[*recorder]int

// Mark takes a position in every recorder; pass it to AssertUnseen after acting.
func (tb *Testbed) Mark() Marks {
	m := Marks{}
	for _, w := range tb.watched() {
		m[w.rec()] = w.rec().Mark()
	}
	return m
}

func (tb *Testbed) watched() []Watched {
	ws := []Watched{tb.Attacker, tb.DNS, tb.DirectDNS}
	if tb.wire != nil {
		ws = append(ws, tb.wire)
	}
	for _, h := range tb.Hosts {
		ws = append(ws, h)
	}
	return ws
}

// AssertUnseen fails unless none of ws recorded anything after m.
// The check waits a moment so a late packet is not missed.
func AssertUnseen(t *testing.T, m Marks, ws ...Watched) {
	t.Helper()
	time.Sleep(100 * time.Millisecond)
	for _, w := range ws {
		if got := w.rec().Since(m[w.rec()]); len(got) > 0 {
			t.Errorf("%s saw %d event(s), want none:\n  %s", w, len(got), strings.Join(got, "\n  "))
		}
	}
}

// AssertSeen fails unless w recorded something after m (waiting up to 1s:
// recorders run in their own goroutines).
func AssertSeen(t *testing.T, m Marks, w Watched) {
	t.Helper()
	for range 20 {
		if len(w.rec().Since(m[w.rec()])) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("%s saw nothing, want at least one event", w)
}
