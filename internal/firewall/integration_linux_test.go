package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIntegrationNetns applies the real rules with iptables inside a fresh
// network namespace (never the host's) and probes them with real sockets.
//
// Each step runs on its own OS thread that joined the namespace with setns
// and is never unlocked, so the thread dies with the goroutine. Sockets made
// there, and the iptables processes go-iptables execs from there, belong to
// the namespace: a child forked by a locked thread inherits that thread's
// network namespace (checked experimentally, and again by nsInode below).
func TestIntegrationNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create a network namespace and run iptables")
	}
	for _, bin := range []string{"ip", "iptables", "ip6tables", "iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipping: %s not on PATH", bin)
		}
	}
	ns := newNetns(t)
	run(t, "ip", "netns", "exec", ns, "sh", "-ec", `
		ip link set lo up
		ip link add d0 type veth peer name d1
		ip link set d1 up
		ip link set d0 up
		ip addr add 198.51.100.1/24 dev d0
		ip addr add 2001:db8::1/64 dev d0 nodad
		iptables -t nat -N DOCKER_OUTPUT
		iptables -t nat -A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp --dport 53 -j DNAT --to-destination 127.0.0.11:40000
		iptables -t nat -A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT`)

	host := nsInode(t, "/proc/self/ns/net")
	inNetns(t, ns, func() error {
		out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(out)); got == host {
			return fmt.Errorf("child of a setns'd locked thread is in the host namespace %s", got)
		}
		return nil
	})

	spec := Spec{ProxyUID: 1337, Mark: 0x539, TransparentPort: 18080, DNSPort: 15353,
		InboundPorts: []int{18443, 18081}, DashboardPort: 18081}
	before := save(t, ns)
	apply := func() {
		t.Helper()
		inNetns(t, ns, func() error {
			for _, fam := range []Family{IPv4, IPv6} {
				r, err := New(fam)
				if err != nil {
					return err
				}
				if err := Apply(r, BuildPlan(spec, fam)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	apply()
	first := save(t, ns)
	apply()
	if second := save(t, ns); second != first {
		t.Fatalf("second Apply changed the rules:\n--- first\n%s--- second\n%s", first, second)
	}
	for _, want := range []string{
		"-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:40000",
		"-A OUTPUT -j PANOPTICON_NAT\n-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT",
		"-A PANOPTICON_OUT -m owner --uid-owner 1337 -m mark --mark 0x539 -j ACCEPT",
		"-A PANOPTICON_IN -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("iptables-save lacks %q:\n%s", want, first)
		}
	}
	inNetns(t, ns, func() error {
		var errs []error
		for _, fam := range []Family{IPv4, IPv6} {
			r, err := New(fam)
			if err != nil {
				return err
			}
			errs = append(errs, Check(r, BuildPlan(spec, fam)))
		}
		return errors.Join(errs...)
	})

	t.Run("probes", func(t *testing.T) { probe(t, ns, spec) })

	inNetns(t, ns, func() error {
		for _, fam := range []Family{IPv4, IPv6} {
			r, err := New(fam)
			if err != nil {
				return err
			}
			for range 2 {
				if err := Remove(r, BuildPlan(spec, fam)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if after := save(t, ns); after != before {
		t.Fatalf("Remove did not restore the rules:\n--- before\n%s--- after\n%s", before, after)
	}
}

// probe checks behaviour, as root (neither uid 1337 nor marked): TCP and DNS
// are redirected to our ports, other UDP and the dashboard fail fast.
func probe(t *testing.T, ns string, s Spec) {
	cases := []struct {
		name, network, listen, dial string
		wantErr                     error
		mark                        bool
	}{
		{"v4 tcp redirected", "tcp", "127.0.0.1:" + strconv.Itoa(s.TransparentPort), "198.51.100.2:443", nil, false},
		{"v6 tcp redirected", "tcp", "[::1]:" + strconv.Itoa(s.TransparentPort), "[2001:db8::2]:80", nil, false},
		{"v4 dns redirected", "udp", "127.0.0.1:" + strconv.Itoa(s.DNSPort), "198.51.100.2:53", nil, false},
		{"v6 dns redirected", "udp", "[::1]:" + strconv.Itoa(s.DNSPort), "[2001:db8::2]:53", nil, false},
		// A local REJECT fails the send itself with EPERM.
		{"v4 udp rejected", "udp", "", "198.51.100.2:9", syscall.EPERM, false},
		{"v6 udp rejected", "udp", "", "[2001:db8::2]:9", syscall.EPERM, false},
		{"v4 tcp to a local address not redirected", "tcp", "198.51.100.1:18444", "198.51.100.1:18444", nil, false},
		{"v4 dashboard rejected", "tcp", "127.0.0.1:" + strconv.Itoa(s.DashboardPort), "127.0.0.1:" + strconv.Itoa(s.DashboardPort), syscall.ECONNREFUSED, false},
		{"v6 dashboard rejected with mark but wrong uid", "tcp", "[::1]:" + strconv.Itoa(s.DashboardPort), "[::1]:" + strconv.Itoa(s.DashboardPort), syscall.ECONNREFUSED, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inNetns(t, ns, func() error { return probeOne(c.network, c.listen, c.dial, c.mark, s.Mark, c.wantErr) })
		})
	}
}

func probeOne(network, listen, dial string, mark bool, markVal uint32, wantErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	got := make(chan struct{}, 1)
	if listen != "" {
		switch network {
		case "tcp":
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			defer l.Close()
			go func() {
				if c, err := l.Accept(); err == nil {
					c.Close()
					got <- struct{}{}
				}
			}()
		case "udp":
			pc, err := net.ListenPacket("udp", listen)
			if err != nil {
				return err
			}
			defer pc.Close()
			go func() {
				buf := make([]byte, 64)
				if _, _, err := pc.ReadFrom(buf); err == nil {
					got <- struct{}{}
				}
			}()
		}
	}
	d := net.Dialer{}
	if mark {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(markVal)) })
			return errors.Join(err, serr)
		}
	}
	start := time.Now()
	conn, err := d.DialContext(ctx, network, dial)
	if err == nil {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if network == "udp" {
			if _, err = conn.Write([]byte("probe")); err == nil && wantErr != nil {
				_, err = conn.Read(make([]byte, 64)) // the ICMP error surfaces here
			}
		}
	}
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			return fmt.Errorf("%s %s: got %v, want %v", network, dial, err, wantErr)
		}
		if el := time.Since(start); el > time.Second {
			return fmt.Errorf("%s %s: rejection took %v, want fast failure", network, dial, el)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", network, dial, err)
	}
	select {
	case <-got:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: nothing arrived on %s", network, dial, listen)
	}
}

// inNetns runs fn on a fresh OS thread inside ns. The thread stays locked
// and so is discarded when fn returns.
func inNetns(t *testing.T, ns string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("opening netns %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- fmt.Errorf("joining netns %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func newNetns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("fwtest-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("deleting netns %s: %v: %s", ns, err, out)
		}
	})
	return ns
}

var saveNoise = regexp.MustCompile(`(?m)^#.*\n|\[\d+:\d+\]`)

// save returns iptables-save and ip6tables-save output of ns without
// comments (timestamps), counters, and tables that hold nothing but empty
// built-in chains (nf_tables keeps a table once it has been used).
func save(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		out := saveNoise.ReplaceAllString(run(t, "ip", "netns", "exec", ns, bin), "")
		for _, block := range strings.SplitAfter(out, "COMMIT\n") {
			if strings.Contains(block, "\n-A ") || strings.Contains(block, " - \n") {
				b.WriteString(block)
			}
		}
	}
	return b.String()
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("running %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func nsInode(t *testing.T, path string) string {
	t.Helper()
	s, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
