//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Panopticon is the real binary running as root in the pod namespace.
type Panopticon struct {
	tb            *Testbed
	cmd           *exec.Cmd
	done          chan struct{}
	waitErr       error
	Env           []string
	AllowlistFile string
	CADir         string
	ExportDir     string
	LogDir        string
	StdoutFile    string
	StderrFile    string
}

// StartPanopticon writes allowlist, starts `panopticon run` in the pod and
// waits (at most 15s) for `panopticon healthcheck` to succeed. From then on
// the app trusts panopticon's exported CA bundle.
func (tb *Testbed) StartPanopticon(t *testing.T, allowlist string) *Panopticon {
	t.Helper()
	p := tb.PreparePanopticon(t, allowlist)
	p.start(t)
	return p
}

// PreparePanopticon lays out panopticon's files and environment without starting it.
// A second call in the same testbed keeps the CA and logs, as a container restart does.
func (tb *Testbed) PreparePanopticon(t *testing.T, allowlist string) *Panopticon {
	t.Helper()
	if panopticonBuildErr != nil {
		t.Fatalf("cannot start panopticon: %v", panopticonBuildErr)
	}
	base := filepath.Join(tb.Dir, "panopticon")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Panopticon{
		tb:            tb,
		AllowlistFile: filepath.Join(base, "allowlist.txt"),
		CADir:         filepath.Join(base, "ca"),
		ExportDir:     filepath.Join(base, "export"),
		LogDir:        filepath.Join(base, "log"),
		StdoutFile:    filepath.Join(base, "stdout.log"),
		StderrFile:    filepath.Join(base, "stderr.log"),
	}
	p.SetAllowlist(t, allowlist)
	p.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"ALLOWLIST_FILE=" + p.AllowlistFile,
		"UPSTREAM_DNS=" + UpstreamDNS,
		"UPSTREAM_CA_FILE=" + tb.UpstreamCAFile,
		"CA_DIR=" + p.CADir,
		"CA_EXPORT_DIR=" + p.ExportDir,
		"LOG_DIR=" + p.LogDir,
		"STATE_DIR=" + filepath.Join(base, "state"),
		"PROXY_UID=1337",
		"PROXY_GID=1337",
		"TRANSPARENT_PORT=8080",
		"DNS_PORT=5353",
		"INBOUND_HTTPS_PORT=443",
		"INBOUND_WSS_PORT=12000",
		"APP_HTTP_PORT=8443",
		"APP_WS_PORT=12001",
		"DASHBOARD_PORT=8081",
	}
	return p
}

// RunOnce runs `panopticon run` in the pod and waits for it to exit (for
// start-up failures); a process still running after timeout is killed.
func (p *Panopticon) RunOnce(timeout time.Duration) RunResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", p.tb.Pod, panopticonBin, "run")
	cmd.Env = p.Env
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := RunResult{Stdout: stdout.String(), Stderr: stderr.String(), Dur: time.Since(start), Exit: -1}
	if ee, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
		r.Exit = ee.ExitCode()
	} else if err == nil {
		r.Exit = 0
	}
	return r
}

func (p *Panopticon) start(t *testing.T) {
	t.Helper()
	tb := p.tb
	stdout, err := os.OpenFile(p.StdoutFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.OpenFile(p.StderrFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// `ip netns exec` execs the command, so cmd.Process is panopticon itself.
	p.cmd = exec.Command("ip", "netns", "exec", tb.Pod, panopticonBin, "run")
	p.cmd.Env = p.Env
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting panopticon: %v", err)
	}
	stdout.Close()
	stderr.Close()
	p.done = make(chan struct{})
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("panopticon output:\n%s", p.Output())
		}
		p.Stop(t)
	})

	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("panopticon exited during start-up (%v)\n%s", p.waitErr, p.Output())
		default:
		}
		out, err := p.Healthcheck()
		if err == nil {
			tb.appCAFile = filepath.Join(p.ExportDir, "ca-bundle.pem")
			return
		}
		last = fmt.Sprintf("%v: %s", err, out)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("panopticon not healthy within 15s; last healthcheck: %s\n%s", last, p.Output())
}

// Healthcheck runs `panopticon healthcheck` in the pod with the same environment.
func (p *Panopticon) Healthcheck() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", p.tb.Pod, panopticonBin, "healthcheck")
	cmd.Env = p.Env
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// SetAllowlist replaces the allowlist file the way an editor does (write a
// new file, rename it over the old one).
func (p *Panopticon) SetAllowlist(t *testing.T, content string) {
	t.Helper()
	tmp := p.AllowlistFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.AllowlistFile); err != nil {
		t.Fatal(err)
	}
}

// RewriteAllowlist edits the allowlist in place (truncate and write).
func (p *Panopticon) RewriteAllowlist(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(p.AllowlistFile, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Exited reports whether the process has ended.
func (p *Panopticon) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits (10s, then SIGKILL). It returns the exit error.
func (p *Panopticon) Stop(t *testing.T) error {
	if p.Exited() {
		return p.waitErr
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(10 * time.Second):
		t.Errorf("panopticon did not exit within 10s of SIGTERM; killing it")
		p.cmd.Process.Kill()
		<-p.done
		return p.waitErr
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Panopticon) Kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("panopticon still running 5s after SIGKILL")
	}
}

// Output returns the tail of panopticon's stdout and stderr.
func (p *Panopticon) Output() string {
	var b strings.Builder
	for _, f := range []string{p.StdoutFile, p.StderrFile} {
		data, _ := os.ReadFile(f)
		s := string(data)
		if len(s) > 6000 {
			s = "…" + s[len(s)-6000:]
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", filepath.Base(f), s)
	}
	return b.String()
}

// Flow is one line of flows.jsonl (only the fields the tests look at).
type Flow struct {
	Time     string            `json:"time"`
	Kind     string            `json:"kind"`
	Decision string            `json:"decision"`
	Reason   string            `json:"reason"`
	Rule     string            `json:"rule"`
	RuleSrc  string            `json:"rule_source"`
	Client   string            `json:"client"`
	Host     string            `json:"host"`
	Port     int               `json:"port"`
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Status   int               `json:"status"`
	Detail   map[string]string `json:"detail"`
	raw      string
}

func (f Flow) String() string { return f.raw }

// Flows parses $LOG_DIR/flows.jsonl; a line that is not JSON fails the test.
func (p *Panopticon) Flows(t *testing.T) []Flow {
	t.Helper()
	flows, err := p.readFlows()
	if err != nil {
		t.Fatalf("flow log: %v", err)
	}
	return flows
}

func (p *Panopticon) readFlows() ([]Flow, error) {
	f, err := os.Open(filepath.Join(p.LogDir, "flows.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var flows []Flow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var fl Flow
		if err := json.Unmarshal(sc.Bytes(), &fl); err != nil {
			return flows, fmt.Errorf("flows.jsonl:%d is not JSON: %v: %q", n, err, sc.Text())
		}
		fl.raw = sc.Text()
		flows = append(flows, fl)
	}
	return flows, sc.Err()
}

// FlowMatch describes a flow event; empty fields match anything.
type FlowMatch struct {
	Kind, Decision, Reason, Host string
	Port                         int
	Path                         string // the request URI, exactly
}

func (m FlowMatch) matches(f Flow) bool {
	return (m.Kind == "" || f.Kind == m.Kind) &&
		(m.Decision == "" || f.Decision == m.Decision) &&
		(m.Reason == "" || f.Reason == m.Reason) &&
		(m.Host == "" || strings.EqualFold(strings.TrimSuffix(f.Host, "."), m.Host)) &&
		(m.Port == 0 || f.Port == m.Port) &&
		(m.Path == "" || f.Path == m.Path)
}

// WaitFlow polls the flow log (at most 3s) for an event matching m.
func (p *Panopticon) WaitFlow(t *testing.T, m FlowMatch) Flow {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	var flows []Flow
	var err error
	for {
		flows, err = p.readFlows()
		if err != nil && !os.IsNotExist(err) {
			t.Fatalf("flow log: %v", err)
		}
		for _, f := range flows {
			if m.matches(f) {
				return f
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lines []string
	for _, f := range flows[max(0, len(flows)-30):] {
		lines = append(lines, f.raw)
	}
	t.Errorf("no flow event matching %+v; last events:\n  %s", m, strings.Join(lines, "\n  "))
	return Flow{}
}
