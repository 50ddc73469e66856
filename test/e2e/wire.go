//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Wire records every IP packet that arrives from the pod on the fake
// internet's side of the veth, whatever its protocol or port, except
// panopticon's own expected traffic (upstream DNS, the fake hosts' service
// ports) and IPv6 neighbour discovery. It sees frames that bypass netfilter
// (AF_PACKET) too: it is the widest "the far side saw nothing" check.
type Wire struct{ recorder }

func (w *Wire) String() string { return "the wire (any packet leaving the pod)" }

// StartWire starts the wire recorder; it stops with the testbed.
func (tb *Testbed) StartWire() (*Wire, error) {
	w := &Wire{}
	var fd int
	err := tb.inNetns(tb.Net, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("wire: AF_PACKET socket: %w", err)
		}
		// Netlink, unlike /sys, answers for this thread's namespace.
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("wire: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("wire: bind: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A read timeout lets the loop notice the close.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	done := make(chan struct{})
	stopped := make(chan struct{})
	tb.onClose(func() { close(done); <-stopped; unix.Close(fd) })
	go func() {
		defer close(stopped)
		buf := make([]byte, 65536)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			ll, ok := from.(*unix.SockaddrLinklayer)
			if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if s, ok := describePacket(htons(ll.Protocol), buf[:n]); ok {
				w.add("%s", s)
			}
		}
	}()
	tb.wire = w
	return w, nil
}

// expectedTraffic is what panopticon itself sends: DNS to the upstream
// resolver and connections to the fake hosts' service ports.
func expectedTraffic(dst netip.Addr, proto int, dport int) bool {
	if dst.String() == NetIP && dport == 53 && (proto == unix.IPPROTO_UDP || proto == unix.IPPROTO_TCP) {
		return true
	}
	if proto != unix.IPPROTO_TCP {
		return false
	}
	for _, h := range fakeHosts {
		if h.IP == dst.String() && (slices.Contains(h.TLSPorts, dport) || slices.Contains(h.HTTPPorts, dport)) {
			return true
		}
	}
	return false
}

// describePacket summarises an IP packet, or reports false for one that is
// expected or not IP at all (ARP).
func describePacket(ethType uint16, b []byte) (string, bool) {
	var src, dst netip.Addr
	var proto int
	var l4 []byte
	switch ethType {
	case unix.ETH_P_IP:
		if len(b) < 20 {
			return "", false
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return "", false
		}
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		proto, l4 = int(b[9]), b[ihl:]
	case unix.ETH_P_IPV6:
		if len(b) < 40 {
			return "", false
		}
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		proto, l4 = int(b[6]), b[40:]
		if proto == unix.IPPROTO_HOPOPTS && len(l4) >= 8 { // MLD reports carry a hop-by-hop header
			proto, l4 = int(l4[0]), l4[(int(l4[1])+1)*8:]
		}
		if proto == unix.IPPROTO_ICMPV6 && len(l4) > 0 && l4[0] >= 130 && l4[0] <= 143 {
			return "", false // MLD and neighbour discovery
		}
	default:
		return "", false
	}
	dport := 0
	if (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP) && len(l4) >= 4 {
		dport = int(binary.BigEndian.Uint16(l4[2:4]))
	}
	if expectedTraffic(dst, proto, dport) && !bytes.Contains(l4, []byte(SprayMarker)) {
		return "", false
	}
	name := map[int]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_ICMPV6: "icmp6"}[proto]
	if name == "" {
		name = "proto " + strconv.Itoa(proto)
	}
	return fmt.Sprintf("%s %s -> %s port %d (%d bytes)", name, src, dst, dport, len(b)), true
}

// SprayMarker marks the app's datagrams in packets the wire would otherwise
// take for panopticon's own DNS traffic.
const SprayMarker = "PANO-SPRAY"

func htons(v uint16) uint16 { return v<<8 | v>>8 }
