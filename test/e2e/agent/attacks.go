//go:build e2e

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// attack runs the attack subcommands; ok is false for an unknown name.
func attack(name string, args []string) (Result, bool) {
	switch name {
	case "caps":
		return doCaps(), true
	case "setmark":
		need(args, 2)
		return doSetMark(args[0], args[1]), true
	case "rawip":
		need(args, 2)
		return doRawIP(args[0], args[1]), true
	case "rawicmp":
		need(args, 1)
		return doRawICMP(args[0]), true
	case "packet":
		need(args, 3)
		return doPacket(args[0], args[1], args[2]), true
	case "tcpscan":
		need(args, 2)
		return doScan("tcp", args[0], args[1:]), true
	case "udpscan":
		need(args, 2)
		return doScan("udp", args[0], args[1:]), true
	case "raw":
		need(args, 3)
		timeout := opTimeout
		if len(args) > 3 {
			if ms, err := strconv.Atoi(args[3]); err == nil {
				timeout = time.Duration(ms) * time.Millisecond
			}
		}
		return doRaw(args[0], args[1], args[2], timeout), true
	case "split":
		need(args, 3)
		return doSplit(args[0], args[1], args[2]), true
	case "h2":
		need(args, 2)
		return doH2(args[0], args[1]), true
	case "bound":
		need(args, 4)
		return doBound(args[0], args[1], args[2], args[3]), true
	case "hold":
		need(args, 3)
		payload := ""
		if len(args) > 3 {
			payload = args[3]
		}
		return doHold(args[0], args[1], args[2], payload), true
	case "udpspray":
		need(args, 4)
		return doUDPSpray(args[0], args[1], args[2], args[3]), true
	case "load":
		need(args, 4)
		return doLoad(args[0], args[1], args[2], args[3] == "new"), true
	}
	return Result{}, false
}

// doCaps reports the effective capability set (hex, as in /proc/self/status).
func doCaps() Result {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fail(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return Result{OK: true, Got: fmt.Sprintf("uid=%d CapEff=%s", os.Getuid(), strings.TrimSpace(v))}
		}
	}
	return fail(errors.New("no CapEff in /proc/self/status"))
}

// doSetMark tries to wear panopticon's socket mark. OK means the mark was
// accepted *and* the connection answered; Err says which step failed.
func doSetMark(addr, markStr string) Result {
	mark, err := strconv.ParseUint(markStr, 0, 32)
	if err != nil {
		return fail(err)
	}
	var markErr error
	d := &net.Dialer{Timeout: opTimeout, Control: func(_, _ string, c syscall.RawConn) error {
		_ = c.Control(func(fd uintptr) {
			markErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if markErr != nil {
			return fmt.Errorf("setsockopt SO_MARK: %w", markErr)
		}
		return nil
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(opTimeout))
	io.WriteString(c, "marked\r\n")
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	r := Result{Got: "mark set; " + string(buf[:n])}
	if err != nil {
		r.Err = "read: " + err.Error()
	}
	r.OK = n > 0
	return r
}

// udpPacket builds a UDP header and payload (checksum 0: "none" for IPv4).
func udpPacket(srcPort, dstPort int, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], uint16(srcPort))
	binary.BigEndian.PutUint16(b[2:], uint16(dstPort))
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	return b
}

// ipv4Header builds a 20-byte IPv4 header; a zero src is filled in by the
// kernel for raw sockets, the checksum is computed here for AF_PACKET.
func ipv4Header(src, dst netip.Addr, proto, payloadLen int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+payloadLen))
	binary.BigEndian.PutUint16(h[4:], uint16(os.Getpid()))
	h[8] = 64
	h[9] = byte(proto)
	if src.IsValid() {
		s := src.As4()
		copy(h[12:16], s[:])
	}
	d := dst.As4()
	copy(h[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return h
}

// doRawIP sends one UDP datagram through a raw IP socket (needs CAP_NET_RAW).
// OK means the kernel accepted the send; whether anything left is for the
// test's recorders to say.
func doRawIP(host, portStr string) Result {
	dst, err := netip.ParseAddr(host)
	if err != nil {
		return fail(err)
	}
	port, _ := strconv.Atoi(portStr)
	payload := udpPacket(40000, port, []byte("raw-ip-exfiltrate"))
	var fd int
	var sa unix.Sockaddr
	var pkt []byte
	if dst.Is4() {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		pkt = append(ipv4Header(netip.Addr{}, dst, unix.IPPROTO_UDP, len(payload)), payload...)
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_UDP)
		if err == nil {
			// Let the kernel compute the UDP checksum (mandatory over IPv6).
			err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 6)
		}
		pkt = payload
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	}
	if err != nil {
		return fail(fmt.Errorf("raw socket: %w", err))
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return fail(fmt.Errorf("sendto: %w", err))
	}
	time.Sleep(200 * time.Millisecond)
	return Result{OK: true, Got: "sent"}
}

// doRawICMP sends an ICMP echo through a raw socket and waits briefly for the reply.
func doRawICMP(host string) Result {
	dst, err := netip.ParseAddr(host)
	if err != nil {
		return fail(err)
	}
	network, typ, reply, proto := "ip4:icmp", icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply), 1
	if dst.Is6() {
		network, typ, reply, proto = "ip6:ipv6-icmp", ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	pc, err := icmp.ListenPacket(network, "")
	if err != nil {
		return fail(fmt.Errorf("raw icmp socket: %w", err))
	}
	defer pc.Close()
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: 7, Data: []byte("raw-icmp-exfiltrate")}}
	b, _ := msg.Marshal(nil)
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fail(fmt.Errorf("send: %w", err))
	}
	pc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 1500)
	for range 20 {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return Result{Err: "no echo reply: " + err.Error(), Got: "sent"}
		}
		if m, err := icmp.ParseMessage(proto, buf[:n]); err == nil && m.Type == reply {
			return Result{OK: true, Got: "echo reply from " + from.String()}
		}
	}
	return Result{Err: "no echo reply", Got: "sent"}
}

// doPacket writes an IPv4/UDP frame straight onto IFACE with an AF_PACKET
// socket (needs CAP_NET_RAW). Such frames never pass through netfilter.
func doPacket(iface, host, portStr string) Result {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(err)
	}
	dst, err := netip.ParseAddr(host)
	if err != nil || !dst.Is4() {
		return fail(fmt.Errorf("want an IPv4 address, got %q", host))
	}
	var src netip.Addr
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			src = p.Addr()
		}
	}
	port, _ := strconv.Atoi(portStr)
	payload := udpPacket(40001, port, []byte("af-packet-exfiltrate"))
	pkt := append(ipv4Header(src, dst, unix.IPPROTO_UDP, len(payload)), payload...)

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
	if err != nil {
		return fail(fmt.Errorf("AF_PACKET socket: %w", err))
	}
	defer unix.Close(fd)
	mac := neighbourMAC(iface)
	sll := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index, Halen: 6}
	copy(sll.Addr[:], mac)
	if err := unix.Sendto(fd, pkt, 0, sll); err != nil {
		return fail(fmt.Errorf("sendto: %w", err))
	}
	time.Sleep(200 * time.Millisecond)
	return Result{OK: true, Got: fmt.Sprintf("sent to %s via %s (%s)", host, iface, net.HardwareAddr(mac))}
}

// unhex decodes a "hex:…" argument (arguments cannot hold NUL bytes).
func unhex(s string) string {
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		if b, err := hex.DecodeString(h); err == nil {
			return string(b)
		}
	}
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// neighbourMAC is the first complete ARP entry on iface, else broadcast.
func neighbourMAC(iface string) []byte {
	data, _ := os.ReadFile("/proc/net/arp")
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 6 && f[5] == iface && f[2] != "0x0" {
			if mac, err := net.ParseMAC(f[3]); err == nil {
				return mac
			}
		}
	}
	return []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
}

// doScan tries every port (32 at a time). Got lists "port:reply" for each
// port that sent anything back; Answers lists the ports that connected (tcp).
func doScan(network, host string, ports []string) Result {
	var (
		mu        sync.Mutex
		hits      []string
		connected []string
		wg        sync.WaitGroup
		sem       = make(chan struct{}, 32)
	)
	for _, p := range ports {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			addr := net.JoinHostPort(host, p)
			c, err := net.DialTimeout(network, addr, time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			if network == "tcp" {
				mu.Lock()
				connected = append(connected, p)
				mu.Unlock()
			}
			c.SetDeadline(time.Now().Add(500 * time.Millisecond))
			c.Write([]byte("scan " + p + "\r\n"))
			buf := make([]byte, 256)
			n, _ := c.Read(buf)
			if n > 0 {
				mu.Lock()
				hits = append(hits, p+":"+strconv.Quote(string(buf[:n])))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return Result{OK: len(hits) > 0, Got: strings.Join(hits, ","), Answers: connected}
}

// dialMaybeTLS connects to addr; sni "-" means plain TCP, "none" TLS
// without a server name. The attacker does not verify the certificate.
func dialMaybeTLS(addr, sni string, nextProtos []string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, opTimeout)
	if err != nil || sni == "-" {
		return c, err
	}
	if sni == "none" {
		sni = ""
	}
	tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: nextProtos})
	tc.SetDeadline(time.Now().Add(opTimeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}

// doBound connects (tcp) or sends (udp) from a socket bound to iface with
// SO_BINDTODEVICE (unprivileged since Linux 5.7), which makes the kernel
// route even a redirected packet out of that device.
func doBound(iface, network, addr, payload string) Result {
	d := &net.Dialer{Timeout: time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), iface) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_BINDTODEVICE %s: %w", iface, serr)
		}
		return nil
	}}
	c, err := d.Dial(network, addr)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, unhex(payload)); err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	r := Result{OK: n > 0, Got: string(buf[:n])}
	if err != nil {
		r.Err = "read: " + err.Error()
	}
	return r
}

// doRaw sends req byte for byte and reads everything until EOF or timeout.
// Status is the first response's status; Got is everything received.
func doRaw(addr, sni, req string, timeout time.Duration) Result {
	c, err := dialMaybeTLS(addr, sni, []string{"http/1.1"})
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, unhex(req)); err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	got, err := io.ReadAll(io.LimitReader(c, 64<<10))
	r := Result{Got: string(got), OK: len(got) > 0}
	if err != nil {
		r.Err = "read: " + err.Error()
	}
	if resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil); err == nil {
		r.Status = resp.StatusCode
		resp.Body.Close()
	}
	return r
}

// slowConn writes its first `bytewise` bytes one byte per write (TCP_NODELAY
// is Go's default, so each is its own segment), pausing between them.
type slowConn struct {
	net.Conn
	bytewise int
}

func (c *slowConn) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) && c.bytewise > 0 {
		if _, err := c.Conn.Write(b[n : n+1]); err != nil {
			return n, err
		}
		n++
		c.bytewise--
	}
	if n == len(b) {
		return n, nil
	}
	m, err := c.Conn.Write(b[n:])
	return n + m, err
}

// doSplit fetches PATH from sni over TLS (verified against SSL_CERT_FILE),
// writing the ClientHello one byte per TCP segment.
func doSplit(addr, sni, path string) Result {
	raw, err := net.DialTimeout("tcp", addr, opTimeout)
	if err != nil {
		return fail(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(3 * opTimeout))
	c := tls.Client(&slowConn{Conn: raw, bytewise: 4096}, &tls.Config{ServerName: sni, NextProtos: []string{"http/1.1"}})
	if err := c.Handshake(); err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return Result{OK: resp.StatusCode == 200, Status: resp.StatusCode, Got: string(body)}
}

// doH2 sends one HTTP/2 GET for rawURL whose :authority is authority (the
// TLS server name stays the URL's host).
func doH2(rawURL, authority string) Result {
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{NextProtos: []string{"h2"}}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: opTimeout}
	req, err := http.NewRequestWithContext(context.Background(), "GET", rawURL, nil)
	if err != nil {
		return fail(err)
	}
	req.Host = authority
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return Result{OK: resp.StatusCode == 200, Status: resp.StatusCode,
		Got: fmt.Sprintf("%s %s block=%s %s", resp.Proto, resp.Status, resp.Header.Get("X-Panopticon-Block"), body)}
}

// doHold opens n connections to addr that send nothing, holds them for the
// given seconds, and reports in Answers [opened, still open at the end].
// holdGrace is how long past its hold doHold waits for connections to close.
const holdGrace = 8 * time.Second

func doHold(addr, nStr, secStr, payload string) Result {
	n, _ := strconv.Atoi(nStr)
	secs, _ := strconv.Atoi(secStr)
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	var conns []net.Conn
	var firstErr error
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, opTimeout)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if payload != "" {
			io.WriteString(c, unhex(payload))
		}
		conns = append(conns, c)
	}
	// Say we are holding, so the test can act meanwhile.
	fmt.Fprintf(os.Stderr, "holding %d\n", len(conns))
	time.Sleep(time.Duration(secs) * time.Second)
	// A connection the far side closed reads its end at once; one it still
	// holds is given a grace of holdGrace in all (the far side's timers
	// start when it accepts, which on a loaded machine may be seconds after
	// the dial returned from the backlog).
	open := 0
	grace := time.Now().Add(holdGrace)
	for _, c := range conns {
		c.SetReadDeadline(grace)
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
		c.Close()
	}
	r := Result{OK: true, Answers: []string{strconv.Itoa(len(conns)), strconv.Itoa(open)}}
	if firstErr != nil {
		r.Err = firstErr.Error()
	}
	return r
}

// doLoad fetches url n times from conc workers and counts 200s.
func doLoad(url, nStr, concStr string, newConn bool) Result {
	n, _ := strconv.Atoi(nStr)
	conc, _ := strconv.Atoi(concStr)
	conc = max(1, conc)
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: conc, DisableKeepAlives: newConn, ForceAttemptHTTP2: false,
		TLSClientConfig: &tls.Config{NextProtos: []string{"http/1.1"}}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		mu       sync.Mutex
		ok, bad  int
		firstErr string
		next     = make(chan struct{}, n)
		wg       sync.WaitGroup
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				resp, err := client.Get(url)
				good := false
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					good = resp.StatusCode == 200
					if !good {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				mu.Lock()
				if good {
					ok++
				} else {
					bad++
					if firstErr == "" {
						firstErr = err.Error()
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return Result{OK: bad == 0, Got: firstErr, Answers: []string{strconv.Itoa(ok), strconv.Itoa(bad)}}
}

// doUDPSpray sends payload to dst from every source port in low..high that
// is free. A port panopticon used for a query moments ago still has a
// conntrack entry to dst; a datagram on that tuple is not NEW, so it is not
// redirected — the firewall must still refuse it.
func doUDPSpray(dst, payload, lowStr, highStr string) Result {
	low, _ := strconv.Atoi(lowStr)
	high, _ := strconv.Atoi(highStr)
	raddr, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		return fail(err)
	}
	sa := &unix.SockaddrInet4{Port: raddr.Port, Addr: [4]byte(raddr.IP.To4())}
	msg := []byte(unhex(payload))
	sent, refused := 0, 0
	for port := low; port <= high; port++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		if unix.Bind(fd, &unix.SockaddrInet4{Port: port}) == nil {
			if unix.Sendto(fd, msg, 0, sa) == nil {
				sent++
			} else {
				refused++
			}
		}
		unix.Close(fd)
	}
	return Result{OK: true, Answers: []string{strconv.Itoa(sent), strconv.Itoa(refused)}}
}
