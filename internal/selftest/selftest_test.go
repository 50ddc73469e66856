package selftest

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestReport(t *testing.T) {
	ok := Report{Probes: []ProbeResult{{Name: "udp", Blocked: true, Detail: "rejected"}, {Name: "dns", Blocked: true}}}
	if !ok.OK() || len(ok.Escaped()) != 0 {
		t.Errorf("all blocked: OK=%v escaped=%v", ok.OK(), ok.Escaped())
	}
	bad := Report{Probes: []ProbeResult{{Name: "udp", Blocked: true}, {Name: "ipv6-tcp", Detail: "connected to the outside"}}}
	if bad.OK() || strings.Join(bad.Escaped(), ";") != "ipv6-tcp (connected to the outside)" {
		t.Errorf("one escaped: OK=%v escaped=%v", bad.OK(), bad.Escaped())
	}
	if !strings.Contains(bad.String(), "NOT BLOCKED") {
		t.Errorf("the summary does not shout: %s", bad)
	}
	if (Report{}).OK() {
		t.Error("a report without probes must not pass")
	}
}

// TestBlockedErr: only what our own firewall answers counts as blocked;
// "unreachable" may come from a router outside, after the packet left.
func TestBlockedErr(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{os.NewSyscallError("write", syscall.EPERM), true},
		{fmt.Errorf("read: %w", syscall.ECONNREFUSED), true},
		{syscall.EACCES, true},
		{syscall.ENETUNREACH, false},
		{syscall.EHOSTUNREACH, false},
		{errors.New("i/o timeout"), false},
	} {
		if got := blockedErr(c.err); got != c.want {
			t.Errorf("blockedErr(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestSelftestProbeRefusesRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("checks the refusal to run the probes as root")
	}
	var out, errb strings.Builder
	if code := ProbeMain(nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "must not run as root") {
		t.Errorf("probes as root: exit %d, stderr %q", code, errb.String())
	}
}
