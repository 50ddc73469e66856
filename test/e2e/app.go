//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Paths of the binaries built by TestMain.
var (
	panopticonBin string
	agentBin      string
)

// App runs commands in the pod namespace as the application would: as a
// non-root uid (1000 unless said otherwise), trusting the CA bundle the app
// is given.
type App struct {
	t        *testing.T
	tb       *Testbed
	UID, GID int
}

// App returns the application running as uid/gid 1000.
func (tb *Testbed) App(t *testing.T) *App { return tb.AppAs(t, 1000, 1000) }

// AppAs returns the application running as uid/gid.
func (tb *Testbed) AppAs(t *testing.T, uid, gid int) *App {
	return &App{t: t, tb: tb, UID: uid, GID: gid}
}

// RunResult is a finished command.
type RunResult struct {
	Stdout, Stderr string
	Exit           int // -1 when it did not run or was killed
	Dur            time.Duration
}

func (r RunResult) String() string {
	return fmt.Sprintf("exit=%d after %v\nstdout: %s\nstderr: %s", r.Exit, r.Dur.Round(time.Millisecond),
		clip(r.Stdout, 2000), clip(r.Stderr, 2000))
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Run runs argv in the pod as the app, killed after timeout.
func (a *App) Run(timeout time.Duration, argv ...string) RunResult {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"netns", "exec", a.tb.Pod}
	if a.UID != 0 {
		args = append(args, "setpriv", "--reuid="+strconv.Itoa(a.UID), "--regid="+strconv.Itoa(a.GID), "--clear-groups", "--")
	}
	args = append(args, argv...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=/tmp",
		"SSL_CERT_FILE=" + a.tb.appCAFile,
		"CURL_CA_BUNDLE=" + a.tb.appCAFile,
	}
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := RunResult{Stdout: stdout.String(), Stderr: stderr.String(), Dur: time.Since(start), Exit: -1}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.Exit = 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.Exit = ee.ExitCode()
	default:
		r.Stderr += fmt.Sprintf("\n[run error: %v; context: %v]", err, ctx.Err())
	}
	return r
}

// CurlResult is what curl got.
type CurlResult struct {
	RunResult
	Status int         // 0 when no HTTP response arrived
	Header http.Header // response headers
	Body   string
}

// OK reports whether a response with status want arrived.
func (c CurlResult) Is(want int) bool { return c.Status == want }

func (c CurlResult) String() string {
	if c.Status == 0 {
		return "no response; curl " + c.RunResult.String()
	}
	return fmt.Sprintf("HTTP %d after %v, X-Panopticon-Block=%q, body=%q (curl exit %d, stderr %q)", c.Status,
		c.Dur.Round(time.Millisecond), c.Header.Get("X-Panopticon-Block"), clip(c.Body, 300), c.Exit, clip(c.Stderr, 300))
}

// Curl fetches url with curl (HTTP/1.1, bounded), extra curl args first.
func (a *App) Curl(url string, args ...string) CurlResult {
	a.t.Helper()
	argv := []string{"curl", "-sS", "-i", "--http1.1", "--connect-timeout", "5", "--max-time", "10"}
	argv = append(append(argv, args...), url)
	r := CurlResult{RunResult: a.Run(15*time.Second, argv...)}
	if r.Stdout == "" {
		return r
	}
	// curl has already decoded the body (chunked, say): parse only the head.
	head, body, _ := strings.Cut(r.Stdout, "\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head+"\r\n\r\n")), nil)
	if err != nil {
		r.Stderr += "\n[parsing curl output: " + err.Error() + "]"
		return r
	}
	r.Status, r.Header, r.Body = resp.StatusCode, resp.Header, body
	return r
}

// AgentResult mirrors the JSON line the agent prints.
type AgentResult struct {
	OK      bool     `json:"ok"`
	Err     string   `json:"err"`
	Got     string   `json:"got"`
	MS      int64    `json:"ms"`
	Rcode   string   `json:"rcode"`
	Answers []string `json:"answers"`
	Events  []int64  `json:"events_ms"`
	Status  int      `json:"status"`

	Run RunResult `json:"-"`
}

func (r AgentResult) String() string {
	b, _ := json.Marshal(r)
	return fmt.Sprintf("%s (wall %v, exit %d, stderr %q)", b, r.Run.Dur.Round(time.Millisecond), r.Run.Exit, clip(r.Run.Stderr, 300))
}

// Agent runs one agent subcommand; a result that cannot be parsed fails the test.
func (a *App) Agent(args ...string) AgentResult {
	a.t.Helper()
	run := a.Run(15*time.Second, append([]string{agentBin}, args...)...)
	var r AgentResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(run.Stdout)), &r); err != nil {
		a.t.Fatalf("agent %v: no result: %v\n%s", args, err, run)
	}
	r.Run = run
	return r
}
