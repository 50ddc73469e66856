package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startTail runs tail in the background until the test ends.
func startTail(t *testing.T, o tailOptions) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tail(ctx, o, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tail: %v", err)
		}
	})
	return out
}

func waitOutput(t *testing.T, out *syncBuffer, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := out.String()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; output so far:\n%s", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func appendLine(t *testing.T, path string, e flowlog.Event) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := json.Marshal(e)
	f.Write(append(b, '\n'))
}

func ev(host string) flowlog.Event {
	return flowlog.Event{Time: time.Now(), Kind: "egress", Decision: "allow", Host: host, Port: 443}
}

// The real writer (lumberjack under flowlog) rotates many times while tail
// follows: every event must come out exactly once, in order.
func TestTailFollowsAcrossRealRotations(t *testing.T) {
	dir := t.TempDir()
	log, err := flowlog.New(flowlog.Options{Dir: dir, MaxSizeMB: 1, MaxBackups: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	log.Emit(ev("before.test")) // history, not asked for (-n 0)
	out := startTail(t, tailOptions{dir: dir, json: true, follow: true, poll: 5 * time.Millisecond})
	time.Sleep(30 * time.Millisecond)

	// ~350-byte events: 1 MB rotates every ~3,000. Emit in bursts so that
	// tail sees each rotation (one per poll at most is what it promises).
	pad := strings.Repeat("p", 200)
	const total = 9000
	for i := range total {
		log.Emit(flowlog.Event{Kind: "egress", Decision: "allow", Host: fmt.Sprintf("h%05d.test", i), Port: 443, Path: "/" + pad})
		if i%500 == 499 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	s := waitOutput(t, out, "every event", func(s string) bool { return strings.Contains(s, fmt.Sprintf("h%05d.test", total-1)) })
	backups, _ := filepath.Glob(filepath.Join(dir, "flows-*.jsonl"))
	if len(backups) < 2 {
		t.Fatalf("only %d rotations happened; the test needs at least 2", len(backups))
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) != total {
		t.Fatalf("%d lines, want %d (across %d rotations)", len(lines), total, len(backups))
	}
	for i, line := range lines {
		var e flowlog.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %d is not JSON: %q", i, line)
		}
		if want := fmt.Sprintf("h%05d.test", i); e.Host != want {
			t.Fatalf("line %d is %s, want %s", i, e.Host, want)
		}
	}
}

func TestTailRenameCreateAndTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, flowlog.FileName)
	appendLine(t, path, ev("old.test"))
	out := startTail(t, tailOptions{dir: dir, lines: 1, follow: true, poll: 5 * time.Millisecond})
	waitOutput(t, out, "history", func(s string) bool { return strings.Contains(s, "old.test") })

	appendLine(t, path, ev("a.test"))
	waitOutput(t, out, "a.test", func(s string) bool { return strings.Contains(s, "a.test") })

	// Rotate by hand: rename, a late write to the renamed file, a new file.
	rotated := filepath.Join(dir, "flows-2026-01-01T00-00-00.000.jsonl")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	appendLine(t, rotated, ev("late.test"))
	time.Sleep(20 * time.Millisecond) // tail sees the file missing for a while
	appendLine(t, path, ev("new.test"))
	s := waitOutput(t, out, "new.test", func(s string) bool { return strings.Contains(s, "new.test") })
	if !strings.Contains(s, "late.test") || strings.Index(s, "late.test") > strings.Index(s, "new.test") {
		t.Errorf("want late.test (written to the renamed file) before new.test:\n%s", s)
	}

	// Truncate in place (copytruncate-style) and write again.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLine(t, path, ev("t.test"))
	waitOutput(t, out, "t.test after truncation", func(s string) bool { return strings.Contains(s, "t.test") })
	if n := strings.Count(out.String(), "new.test"); n != 1 {
		t.Errorf("new.test printed %d times, want 1", n)
	}
}

func TestTailWaitsForAMissingLog(t *testing.T) {
	dir := t.TempDir()
	out := startTail(t, tailOptions{dir: dir, lines: 10, follow: true, poll: 5 * time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	appendLine(t, filepath.Join(dir, flowlog.FileName), ev("first.test"))
	waitOutput(t, out, "first.test", func(s string) bool { return strings.Contains(s, "first.test") })
}

func TestTailFilters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, flowlog.FileName)
	now := time.Now()
	for _, e := range []flowlog.Event{
		{Time: now, Kind: "egress", Decision: "allow", Host: "api.example.com", Port: 443},
		{Time: now, Kind: "egress", Decision: "block", Reason: "not-allowlisted", Host: "evil.test", Port: 443},
		{Time: now, Kind: "dns", Decision: "block", Reason: "not-allowlisted", Host: "evil.test"},
		{Time: now, Kind: "egress", Decision: "would-block", Reason: "not-allowlisted", Host: "learn.test", Port: 443},
		{Time: now, Kind: "egress", Decision: "allow", Host: "notexample.com", Port: 443},
	} {
		appendLine(t, path, e)
	}
	cases := []struct {
		name string
		o    tailOptions
		want []string
	}{
		{"all", tailOptions{}, []string{"api.example.com", "evil.test", "evil.test", "learn.test", "notexample.com"}},
		{"blocked", tailOptions{blocked: true}, []string{"evil.test", "evil.test", "learn.test"}},
		{"kind", tailOptions{kind: "dns"}, []string{"evil.test"}},
		{"host and subdomains", tailOptions{host: "example.com"}, []string{"api.example.com"}},
		{"combined", tailOptions{blocked: true, kind: "egress", host: "evil.test"}, []string{"evil.test"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.dir, c.o.lines, c.o.json = dir, 100, true
			var out bytes.Buffer
			if err := tail(context.Background(), c.o, &out); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var e flowlog.Event
				if line != "" && json.Unmarshal([]byte(line), &e) == nil {
					got = append(got, e.Host)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestFormatTail(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	allow := formatTail(flowlog.Event{Time: ts, Kind: "egress", Decision: "allow", Reason: "*.openai.com", Host: "api.openai.com", Port: 443, Method: "GET", Path: "/v1/models", Status: 200, BytesIn: 1200, DurationMS: 35, Secrets: []string{"OPENAI"}}, false)
	block := formatTail(flowlog.Event{Time: ts, Kind: "dns", Decision: "block", Reason: "not-allowlisted", Host: "evil.test"}, false)
	would := formatTail(flowlog.Event{Time: ts, Kind: "egress", Decision: "would-block", Reason: "not-allowlisted", Host: "x.test", Port: 443}, false)
	if want := "03:04:05  egress   allow        api.openai.com:443                 GET /v1/models 200 1.2kB 35ms  [*.openai.com]  secrets=OPENAI\n"; allow != want {
		t.Errorf("allow line\n got %q\nwant %q", allow, want)
	}
	// Hosts start in the same column whatever the decision.
	col := strings.Index(allow, "api.openai.com")
	if strings.Index(block, "evil.test") != col || strings.Index(would, "x.test") != col {
		t.Errorf("hosts not aligned:\n%s%s%s", allow, block, would)
	}
	if !strings.Contains(block, "BLOCK") || !strings.HasSuffix(block, "not-allowlisted\n") {
		t.Errorf("block line %q", block)
	}
	colored := formatTail(flowlog.Event{Time: ts, Kind: "egress", Decision: "block", Reason: "not-allowlisted", Host: "evil.test", Port: 443}, true)
	if !strings.Contains(colored, "\x1b[1;31mBLOCK\x1b[0m") {
		t.Errorf("coloured block line %q", colored)
	}
	if strings.Contains(block, "\x1b") {
		t.Errorf("uncoloured line has escapes: %q", block)
	}
	evil := formatTail(flowlog.Event{Time: ts, Kind: "egress", Decision: "block", Host: "a\x1b[2Jb.test", Path: "/\r\nfake line"}, false)
	if strings.ContainsAny(evil, "\x1b\r") || strings.Count(evil, "\n") != 1 {
		t.Errorf("control characters from the wire reached the terminal: %q", evil)
	}
}

func TestTailCommandLine(t *testing.T) {
	dir := t.TempDir()
	appendLine(t, filepath.Join(dir, flowlog.FileName), ev("cli.test"))
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"tail", "--log-dir", dir, "--no-follow", "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"host":"cli.test"`) {
		t.Errorf("stdout %q", stdout.String())
	}
	if code := realMain([]string{"tail", "--kind", "bogus", "--log-dir", dir}, &stdout, &stderr); code != 2 {
		t.Errorf("--kind bogus: exit %d, want 2", code)
	}
}

// --host is spelled as the flow log spells names: an IDN finds its punycode.
func TestHostFilterSpellsNamesAsTheLogDoes(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM.":   "example.com",
		"bücher.example": "xn--bcher-kva.example",
		"203.0.113.7":    "203.0.113.7",
		"[2001:DB8::1]":  "[2001:db8::1]",
	} {
		if got := hostFilter(in); got != want {
			t.Errorf("hostFilter(%q) = %q, want %q", in, got, want)
		}
	}
	o := tailOptions{host: hostFilter("bücher.example")}
	if !o.match(ev("www.xn--bcher-kva.example")) {
		t.Error("--host bücher.example does not match a subdomain as logged")
	}
}
