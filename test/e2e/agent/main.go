//go:build e2e

// Command agent plays the untrusted application in the end-to-end tests. Each
// subcommand tries one thing and prints one JSON line describing what happened;
// it exits 0 whenever it could report (the test judges the result) and 2 on a
// usage error. Every operation is bounded by a few seconds.
//
//	agent tcp HOST:PORT [PAYLOAD]        connect, send PAYLOAD, read what comes back
//	agent udp HOST:PORT PAYLOAD          send one datagram, wait for a reply
//	agent ping HOST                      one ICMP echo (needs ping_group_range)
//	agent dns SERVER:PORT NAME TYPE [tcp]  one DNS query, straight to SERVER
//	agent resolve NAME                   the system resolver (resolv.conf)
//	agent ws wss://HOST[:PORT]/PATH MSG  WebSocket over TLS, send MSG, read the echo
//	agent sse URL                        GET a server-sent event stream, time each event
//	agent tick wss://HOST/PATH|https://HOST/PATH MS  one connection busy for MS ms (a message or GET every 100 ms) until it fails
//	agent keepalive https://HOST/PATH HOST2  two requests on one TLS connection,
//	                                     the second with Host: HOST2
//	agent id                             print uid and gid
//	agent caps                           print the effective capability mask
//
// Attacks (agent_attacks.go):
//
//	agent setmark HOST:PORT MARK         SO_MARK a TCP socket, connect, read the banner
//	agent rawip HOST PORT                an IPv4/IPv6 UDP datagram through a raw socket
//	agent rawicmp HOST                   an ICMP echo through a raw socket
//	agent packet IFACE HOST PORT         an IPv4 UDP frame through an AF_PACKET socket
//	agent tcpscan HOST PORTS...          connect to each port; Got lists those that answered
//	agent udpscan HOST PORTS...          one datagram to each port; Got lists replies
//	agent raw HOST:PORT SNI|-|none REQ   send REQ verbatim, over TLS with SNI (- = plain, none = no SNI)
//	agent split HOST:PORT SNI PATH       TLS whose ClientHello is written one byte per segment
//	agent h2 URL AUTHORITY               one HTTP/2 GET with :authority AUTHORITY
//	agent hold ADDR N SECONDS            open N idle connections, hold them, report how many opened
//
// TLS trusts SSL_CERT_FILE (Go's system roots honour it).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/panopticon-dev/panopticon/test/e2e/internal/wsframe"
)

// Result is the one line every subcommand prints.
type Result struct {
	OK      bool     `json:"ok"`
	Err     string   `json:"err,omitempty"`
	Got     string   `json:"got,omitempty"`
	MS      int64    `json:"ms"`
	Rcode   string   `json:"rcode,omitempty"`
	Answers []string `json:"answers,omitempty"`
	Events  []int64  `json:"events_ms,omitempty"`
	Status  int      `json:"status,omitempty"`
}

const opTimeout = 3 * time.Second

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	start := time.Now()
	var r Result
	args := os.Args[2:]
	switch os.Args[1] {
	case "tcp":
		need(args, 1)
		payload := "SSH-2.0-agent\r\n"
		if len(args) > 1 {
			payload = args[1]
		}
		r = doTCP(args[0], payload)
	case "udp":
		need(args, 2)
		r = doUDP(args[0], args[1])
	case "ping":
		need(args, 1)
		r = doPing(args[0])
	case "dns":
		need(args, 3)
		r = doDNS(args[0], args[1], args[2], len(args) > 3 && args[3] == "tcp")
	case "resolve":
		need(args, 1)
		r = doResolve(args[0])
	case "ws":
		need(args, 2)
		r = doWS(args[0], args[1])
	case "sse":
		need(args, 1)
		r = doSSE(args[0])
	case "keepalive":
		need(args, 2)
		r = doKeepAlive(args[0], args[1])
	case "tick":
		need(args, 2)
		ms, _ := strconv.Atoi(args[1])
		r = doTick(args[0], time.Duration(ms)*time.Millisecond)
	case "id":
		r = Result{OK: true, Got: fmt.Sprintf("uid=%d gid=%d", os.Getuid(), os.Getgid())}
	default:
		var ok bool
		if r, ok = attack(os.Args[1], args); !ok {
			usage()
		}
	}
	r.MS = time.Since(start).Milliseconds()
	json.NewEncoder(os.Stdout).Encode(r)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: agent tcp|udp|ping|dns|resolve|ws|sse|id ARGS...")
	os.Exit(2)
}

func need(args []string, n int) {
	if len(args) < n {
		usage()
	}
}

func fail(err error) Result { return Result{Err: err.Error()} }

// doTCP reports OK when the connection was established; Got holds whatever
// came back before EOF or the read deadline.
func doTCP(addr, payload string) Result {
	c, err := net.DialTimeout("tcp", addr, opTimeout)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	r := Result{OK: true}
	c.SetDeadline(time.Now().Add(opTimeout))
	if _, err := c.Write([]byte(payload)); err != nil {
		r.Err = "write: " + err.Error()
	}
	buf := make([]byte, 4096)
	var got []byte
	for len(got) < 64<<10 {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if r.Err == "" {
				r.Err = "read: " + err.Error()
			}
			break
		}
	}
	r.Got = string(got)
	return r
}

// doUDP reports OK only when a reply arrived.
func doUDP(addr, payload string) Result {
	c, err := net.DialTimeout("udp", addr, opTimeout)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(opTimeout))
	if _, err := c.Write([]byte(payload)); err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return fail(fmt.Errorf("read: %w", err))
	}
	return Result{OK: true, Got: string(buf[:n])}
}

// doPing sends one ICMP echo over an unprivileged ICMP socket, connected and
// with IP(V6)_RECVERR like iputils ping, so an ICMP error (a REJECT) is
// reported at once instead of waiting for the timeout.
func doPing(host string) Result {
	ip := net.ParseIP(host)
	if ip == nil {
		return fail(fmt.Errorf("not an IP: %q", host))
	}
	var (
		fd    int
		err   error
		sa    unix.Sockaddr
		typ   icmp.Type = ipv4.ICMPTypeEcho
		reply icmp.Type = ipv4.ICMPTypeEchoReply
		proto           = 1
	)
	if ip4 := ip.To4(); ip4 != nil {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVERR, 1)
		}
		sa = &unix.SockaddrInet4{Addr: [4]byte(ip4)}
	} else {
		typ, reply, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6)
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_RECVERR, 1)
		}
		sa = &unix.SockaddrInet6{Addr: [16]byte(ip.To16())}
	}
	if err != nil {
		return fail(fmt.Errorf("icmp socket: %w", err))
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: 1, Data: []byte("agent-ping")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return fail(err)
	}
	if _, err := unix.Write(fd, b); err != nil {
		return fail(fmt.Errorf("send: %w", err))
	}
	deadline := time.Now().Add(opTimeout)
	buf := make([]byte, 1500)
	for range 10 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("poll: %w", err))
		}
		if n == 0 {
			break
		}
		n, err = unix.Read(fd, buf)
		if err != nil {
			return fail(fmt.Errorf("read: %w", err))
		}
		if m, err := icmp.ParseMessage(proto, buf[:n]); err == nil && m.Type == reply {
			return Result{OK: true, Got: "echo reply"}
		}
	}
	return fail(errors.New("no echo reply: timeout"))
}

func doDNS(server, name, qtype string, useTCP bool) Result {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return fail(fmt.Errorf("unknown type %q", qtype))
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), t)
	c := &dns.Client{Timeout: opTimeout}
	if useTCP {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(m, server)
	if err != nil {
		return fail(err)
	}
	r := Result{OK: true, Rcode: dns.RcodeToString[resp.Rcode]}
	for _, rr := range resp.Answer {
		switch v := rr.(type) {
		case *dns.A:
			r.Answers = append(r.Answers, v.A.String())
		case *dns.AAAA:
			r.Answers = append(r.Answers, v.AAAA.String())
		default:
			r.Answers = append(r.Answers, rr.String())
		}
	}
	return r
}

func doResolve(name string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return fail(err)
	}
	return Result{OK: true, Answers: addrs}
}

func doWS(rawURL, msg string) Result {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "wss" {
		return fail(fmt.Errorf("want a wss:// URL, got %q", rawURL))
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	d := &net.Dialer{Timeout: opTimeout}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(opTimeout))
	ws, err := wsframe.Dial(conn, u.Host, u.RequestURI())
	if err != nil {
		return fail(err)
	}
	if err := ws.WriteText(msg); err != nil {
		return fail(fmt.Errorf("send: %w", err))
	}
	_, got, err := ws.ReadMessage()
	if err != nil {
		return fail(fmt.Errorf("receive: %w", err))
	}
	ws.WriteFrame(wsframe.OpClose, []byte{0x03, 0xE8})
	return Result{OK: true, Got: string(got)}
}

// doTick keeps one connection busy for up to d: a WebSocket message
// ("n=1", "n=2", …) read back every 100 ms, or an HTTPS GET on one keep-alive
// connection. It stops at the first failure. Events are the milliseconds of
// each success since the start; OK means it lasted the whole d.
func doTick(rawURL string, d time.Duration) Result {
	start := time.Now()
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "https") {
		return fail(fmt.Errorf("want a wss:// or https:// URL, got %q", rawURL))
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: opTimeout}, "tcp", addr, &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	defer conn.Close()
	var (
		once   func(i int) error
		events []int64
	)
	if u.Scheme == "wss" {
		conn.SetDeadline(time.Now().Add(opTimeout))
		ws, err := wsframe.Dial(conn, u.Host, u.RequestURI())
		if err != nil {
			return fail(err)
		}
		once = func(i int) error {
			if err := ws.WriteText(fmt.Sprintf("n=%d", i)); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
			if _, _, err := ws.ReadMessage(); err != nil {
				return fmt.Errorf("receive %d: %w", i, err)
			}
			return nil
		}
	} else {
		br := bufio.NewReader(conn)
		once = func(i int) error {
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: agent\r\n\r\n", u.RequestURI(), u.Host)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return fmt.Errorf("request %d: %w", i, err)
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("request %d: status %d", i, resp.StatusCode)
			}
			return nil
		}
	}
	for i := 1; time.Since(start) < d && i <= 1000; i++ {
		conn.SetDeadline(time.Now().Add(opTimeout))
		if err := once(i); err != nil {
			return Result{Err: err.Error(), Events: events, Got: fmt.Sprintf("%d", len(events))}
		}
		events = append(events, time.Since(start).Milliseconds())
		time.Sleep(100 * time.Millisecond)
	}
	return Result{OK: true, Events: events, Got: fmt.Sprintf("%d", len(events))}
}

// doKeepAlive sends a request for the URL's host and then, on the same TLS
// connection, one with another Host header. Status is the second answer's.
func doKeepAlive(rawURL, host2 string) Result {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" {
		return fail(fmt.Errorf("want an https:// URL, got %q", rawURL))
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	d := &net.Dialer{Timeout: opTimeout}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(opTimeout))
	br := bufio.NewReader(conn)
	var got []string
	var last int
	for _, host := range []string{u.Host, host2} {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: agent\r\n\r\n", u.RequestURI(), host)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return Result{Err: fmt.Sprintf("response for Host %s: %v", host, err), Got: strings.Join(got, " | ")}
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		last = resp.StatusCode
		got = append(got, fmt.Sprintf("%d %s %q", resp.StatusCode, resp.Header.Get("X-Panopticon-Block"), body))
	}
	return Result{OK: true, Status: last, Got: strings.Join(got, " | ")}
}

// doSSE records, for each "data:" line, the milliseconds since the request started.
func doSSE(rawURL string) Result {
	start := time.Now()
	client := &http.Client{Timeout: 2 * opTimeout}
	resp, err := client.Get(rawURL)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	r := Result{Status: resp.StatusCode}
	sc := bufio.NewScanner(resp.Body)
	var data []string
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data:") {
			r.Events = append(r.Events, time.Since(start).Milliseconds())
			data = append(data, strings.TrimSpace(strings.TrimPrefix(line, "data:")))
		}
	}
	if err := sc.Err(); err != nil {
		r.Err = err.Error()
	}
	r.Got = strings.Join(data, ",")
	r.OK = resp.StatusCode == 200 && r.Err == ""
	return r
}
