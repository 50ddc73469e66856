// Package selftest proves, from inside the pod, that the firewall holds:
// an unprivileged identity that is not the proxy's (like the app) tries
// IPv6, UDP, a direct IP and an outside DNS server, and every attempt must
// be redirected to panopticon or refused. The healthcheck runs it quietly,
// `panopticon selftest` loudly, and each leaves its verdict for the
// dashboard.
//
//	rep, err := selftest.Run(ctx, self, proxyUID, 3*time.Second, false) // as root
//	if !rep.OK() { /* rep.Escaped() names what got out */ }
//	selftest.Record(stateDir, rep)
//
// Run re-executes self (this binary) with ProbeCommand as another uid; that
// child calls ProbeMain. Non-goals: testing what is allowed (the e2e suite
// does), or running without root.
package selftest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/panopticon-dev/panopticon/internal/atomicfile"
)

// ProbeCommand is the hidden command the self-test re-executes its binary
// with, as an unprivileged uid that is not the proxy's: its sockets carry no
// mark and no panopticon identity, like the app's.
const ProbeCommand = "__selftest-probe"

// DeniedName is the DNS name the probes (and the healthcheck) ask: never
// allowlisted, so panopticon's DNS door must answer NXDOMAIN; the flow log
// leaves it out.
const DeniedName = "panopticon-healthcheck.invalid"

// Probe targets: documentation addresses that exist nowhere. Reaching one
// means "redirected to panopticon"; an ICMP port-unreachable from one means
// "rejected by our firewall"; silence means the packet may have left.
const (
	probeIPv4    = "192.0.2.1"
	probeIPv6    = "2001:db8::1"
	probeDNSAddr = "192.0.2.53:53"
)

// ProbeResult is the outcome of one self-test probe.
type ProbeResult struct {
	Name    string `json:"name"`
	Blocked bool   `json:"blocked"` // true: the attempt was redirected or refused as it must be
	Detail  string `json:"detail"`  // what happened, in one line
}

// Report is what the self-test found; OK when every probe was blocked.
type Report struct {
	Probes []ProbeResult `json:"probes"`
}

// OK reports whether every probe was blocked.
func (r Report) OK() bool {
	for _, p := range r.Probes {
		if !p.Blocked {
			return false
		}
	}
	return len(r.Probes) > 0
}

// Escaped names the probes that got out.
func (r Report) Escaped() []string {
	var out []string
	for _, p := range r.Probes {
		if !p.Blocked {
			out = append(out, p.Name+" ("+p.Detail+")")
		}
	}
	return out
}

func (r Report) String() string {
	var b strings.Builder
	for _, p := range r.Probes {
		verdict := "blocked"
		if !p.Blocked {
			verdict = "NOT BLOCKED"
		}
		fmt.Fprintf(&b, "  %-10s %-11s %s\n", p.Name, verdict, p.Detail)
	}
	return b.String()
}

// Run probes, from a non-proxy identity inside this network namespace,
// that IPv6, UDP, a direct IP and an outside DNS server are all blocked. It
// must run as root (it re-executes self, this binary, as another uid). quiet uses
// probes that leave no flow event (for the healthcheck, which runs often);
// the full self-test also asks for an IP literal over HTTP and expects
// panopticon's 403. The dashboard may call it too.
func Run(ctx context.Context, self string, proxyUID int, budget time.Duration, quiet bool) (Report, error) {
	uid := 65534 // nobody
	if uid == proxyUID {
		uid--
	}
	ctx, cancel := context.WithTimeout(ctx, budget+2*time.Second)
	defer cancel()
	args := []string{ProbeCommand, "--budget=" + budget.String()}
	if quiet {
		args = append(args, "--quiet")
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // no secrets in the child
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	cmd.Dir = "/"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Report{}, fmt.Errorf("selftest: running the probes as uid %d: %w: %s", uid, err, strings.TrimSpace(stderr.String()))
	}
	var rep Report
	if err := json.Unmarshal(out, &rep); err != nil {
		return Report{}, fmt.Errorf("selftest: reading the probes' report: %w", err)
	}
	return rep, nil
}

// ProbeMain is the child: it runs every probe and prints the report as JSON.
func ProbeMain(args []string, stdout, stderr io.Writer) int {
	budget, quiet := 3*time.Second, false
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--budget="):
			if d, err := time.ParseDuration(strings.TrimPrefix(a, "--budget=")); err == nil && d > 0 {
				budget = d
			}
		case a == "--quiet":
			quiet = true
		}
	}
	if os.Getuid() == 0 {
		fmt.Fprintln(stderr, "panopticon: the self-test probes must not run as root")
		return 2
	}
	probes := []func(time.Duration) ProbeResult{probeUDP, probeIPv6UDP, probeIPv6TCP, probeDNS}
	if quiet {
		probes = append(probes, probeDirectIPQuiet)
	} else {
		probes = append(probes, probeDirectIP)
	}
	rep := Report{Probes: make([]ProbeResult, len(probes))}
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Probes[i] = p(budget)
		}()
	}
	wg.Wait()
	_ = json.NewEncoder(stdout).Encode(rep)
	return 0
}

// udpRejected sends one datagram to addr and expects our firewall's ICMP
// port-unreachable (ECONNREFUSED); no route at all is fine too.
func udpRejected(name, addr string, budget time.Duration) ProbeResult {
	r := ProbeResult{Name: name}
	c, err := net.DialTimeout("udp", addr, budget)
	if err != nil {
		r.Blocked, r.Detail = true, "no route: "+err.Error()
		return r
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(budget))
	if _, err := c.Write([]byte("panopticon self-test")); err != nil {
		r.Blocked, r.Detail = blockedErr(err), "send to "+addr+": "+err.Error()
		return r
	}
	_, err = c.Read(make([]byte, 512))
	switch {
	case err == nil:
		r.Detail = "a datagram to " + addr + " was answered"
	case blockedErr(err):
		r.Blocked, r.Detail = true, "rejected: "+shortErr(err)
	default:
		r.Detail = "a datagram to " + addr + " was not rejected (" + shortErr(err) + "): it may have left"
	}
	return r
}

// blockedErr reports an error our own firewall produces: EPERM/EACCES
// (a local REJECT) or ECONNREFUSED (its reset or port-unreachable; the
// probe targets exist nowhere, so nobody else sends one). "Unreachable"
// is not one of them: a router outside says that about a packet that left.
func blockedErr(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPERM) ||
		errors.Is(err, syscall.EACCES)
}

// noRoute reports whether this namespace has no route to addr at all (a
// UDP connect sends nothing): then nothing can leave that way.
func noRoute(addr string) bool {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

func shortErr(err error) string {
	var se syscall.Errno
	if errors.As(err, &se) {
		return se.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer within the budget"
	}
	return err.Error()
}

func probeUDP(budget time.Duration) ProbeResult {
	return udpRejected("udp", net.JoinHostPort(probeIPv4, "443"), budget)
}

func probeIPv6UDP(budget time.Duration) ProbeResult {
	return udpRejected("ipv6-udp", net.JoinHostPort(probeIPv6, "443"), budget)
}

// probeIPv6TCP: TCP to a global IPv6 address must land on panopticon (the
// redirect), be refused, or find no route. A connection that takes the
// whole budget went somewhere else — or nowhere, unfiltered.
func probeIPv6TCP(budget time.Duration) ProbeResult {
	return connectRedirected("ipv6-tcp", net.JoinHostPort(probeIPv6, "80"), budget)
}

// probeDirectIPQuiet: TCP to an IPv4 address that exists nowhere connects
// at once only when redirected to panopticon. It sends nothing, so
// panopticon logs nothing.
func probeDirectIPQuiet(budget time.Duration) ProbeResult {
	return connectRedirected("direct-ip", net.JoinHostPort(probeIPv4, "80"), budget)
}

func connectRedirected(name, addr string, budget time.Duration) ProbeResult {
	c, r := dialProbe(name, addr, budget)
	if c == nil {
		return r
	}
	_ = c.Close()
	r.Blocked, r.Detail = true, "redirected to panopticon ("+addr+" exists nowhere)"
	return r
}

// dialProbe connects to addr, which exists nowhere. When that fails, the
// result says whether the failure was ours (refused, or no route at all)
// and c is nil; a connection means it was redirected to panopticon.
func dialProbe(name, addr string, budget time.Duration) (c net.Conn, r ProbeResult) {
	r.Name = name
	c, err := net.DialTimeout("tcp", addr, budget)
	if err == nil {
		return c, r
	}
	switch {
	case blockedErr(err):
		r.Blocked, r.Detail = true, "refused: "+shortErr(err)
	case noRoute(addr):
		r.Blocked, r.Detail = true, "no route: "+shortErr(err)
	default:
		r.Detail = "connecting to " + addr + ": " + shortErr(err) + " (not redirected to panopticon)"
	}
	return nil, r
}

// probeDirectIP asks an IP literal for a page and expects panopticon's 403.
func probeDirectIP(budget time.Duration) ProbeResult {
	addr := net.JoinHostPort(probeIPv4, "80")
	c, r := dialProbe("direct-ip", addr, budget)
	if c == nil {
		return r
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(budget))
	fmt.Fprintf(c, "GET /panopticon-selftest HTTP/1.1\r\nHost: %s\r\nUser-Agent: panopticon-selftest\r\nConnection: close\r\n\r\n", probeIPv4)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		r.Detail = "no HTTP answer from " + addr + ": " + shortErr(err)
		return r
	}
	resp.Body.Close()
	if block := resp.Header.Get("X-Panopticon-Block"); resp.StatusCode == http.StatusForbidden && block == "ip-literal" {
		r.Blocked, r.Detail = true, "403 ip-literal from panopticon"
	} else {
		r.Detail = fmt.Sprintf("%s answered %d (X-Panopticon-Block %q), not panopticon's 403 ip-literal", addr, resp.StatusCode, block)
	}
	return r
}

// probeDNS asks a resolver that exists nowhere; only panopticon's DNS door
// (the redirect) can answer, and it must say NXDOMAIN for a denied name.
func probeDNS(budget time.Duration) ProbeResult {
	r := ProbeResult{Name: "dns"}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(DeniedName), dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: budget}
	resp, _, err := c.Exchange(m, probeDNSAddr)
	switch {
	case err != nil && blockedErr(err):
		r.Blocked, r.Detail = true, "refused: "+shortErr(err)
	case err != nil:
		r.Detail = "no answer from " + probeDNSAddr + " (" + shortErr(err) + "): DNS is not redirected to panopticon"
	case resp.Rcode == dns.RcodeNameError && len(resp.Answer) == 0:
		r.Blocked, r.Detail = true, "NXDOMAIN from panopticon"
	default:
		r.Detail = fmt.Sprintf("%s answered %s with %d records", probeDNSAddr, dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	return r
}

// File is where the last self-test result is kept (in STATE_DIR), for
// the dashboard: panopticon itself cannot run the probes once it has dropped
// root, so the healthcheck and `panopticon selftest` leave their verdict there.
const File = "selftest.json"

// Record writes rep to stateDir/selftest.json (best effort).
func Record(stateDir string, rep Report) {
	data, err := json.Marshal(struct {
		Time   time.Time     `json:"time"`
		OK     bool          `json:"ok"`
		Probes []ProbeResult `json:"probes"`
	}{time.Now().UTC(), rep.OK(), rep.Probes})
	if err != nil {
		return
	}
	// STATE_DIR belongs to the proxy's uid and this runs as root:
	// atomicfile never follows a link planted there.
	_ = atomicfile.Replace(filepath.Join(stateDir, File), data, 0o644)
}
